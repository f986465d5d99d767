# mypy: ignore-errors
"""Shared start-up helpers for the lab's Mailu stand-ins (a small subset of Mailu's `socrate`).

Why: every real Mailu container calls `socrate.system.set_env()` first; a config that breaks it
(e.g. an unreadable SECRET_KEY_FILE) must break the stand-ins the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("mailu")

DEFAULT_PORTS = "25,80,443,465,993,995,4190"
MAIL_PROXY_PORTS = "25,110,995,143,993,587,465,4190"


def setup_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def read_file_env(key: str) -> None:
    """`<KEY>_FILE` -> `<KEY>`; an unreadable file is fatal (exit 1), like socrate/ConfigManager."""
    path = os.environ.get(f"{key}_FILE")
    if not path:
        return
    try:
        with open(path) as fh:
            os.environ[key] = fh.read().strip()
    except Exception as exc:
        log.error("Can't read %s_FILE = %s: %s", key, path, exc)
        sys.exit(1)


def set_env(required_secrets: Sequence[str] = ()) -> None:
    """Mirror socrate.system.set_env(): SECRET_KEY_FILE, derived keys, PORTS/PROXY_PROTOCOL cleanup."""
    setup_logging()
    read_file_env("SECRET_KEY")
    secret = os.environ.get("SECRET_KEY", "")
    for name in required_secrets:
        os.environ[f"{name}_KEY"] = hmac.new(secret.encode(), name.encode(), hashlib.sha256).hexdigest()
    clean_env()


def clean_env() -> None:
    """Normalise PORTS and PROXY_PROTOCOL the way socrate.system.clean_env does (keywords -> ports)."""
    os.environ["PORTS"] = os.environ.get("PORTS") or DEFAULT_PORTS
    pp = os.environ.get("PROXY_PROTOCOL", "").strip()
    if pp == "mail":
        pp = MAIL_PROXY_PORTS
    elif pp == "all-but-http":
        pp = MAIL_PROXY_PORTS + ",443"
    elif pp == "all":
        pp = MAIL_PROXY_PORTS + ",443,80"
    os.environ["PROXY_PROTOCOL"] = pp
    hostnames = [h.strip() for h in os.environ.get("HOSTNAMES", "").split(",") if h.strip()]
    # Docker sets HOSTNAME to the container id; Mailu's HOSTNAME is the first of HOSTNAMES.
    if hostnames:
        os.environ["HOSTNAME"] = hostnames[0]


def port_set(var: str) -> set[int]:
    out: set[int] = set()
    for item in os.environ.get(var, "").split(","):
        item = item.strip()
        if item.isdigit():
            out.add(int(item))
        elif item:
            log.error("%s: ignoring invalid port %r", var, item)
    return out


def resolve(host: str, attempts: int = 60) -> str:
    """IPv4 address of a compose service name; waits for Docker DNS like Mailu's resolve_address."""
    for i in range(attempts):
        try:
            return socket.gethostbyname(host)
        except OSError:
            if i == attempts - 1:
                raise
            time.sleep(1)
    raise RuntimeError("unreachable")


def supervise(procs: dict[str, subprocess.Popen[bytes]]) -> int:
    """Wait until one child exits; then stop the rest and return its code. SIGTERM stops all cleanly."""
    stopping = False

    def _term(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    while True:
        for name, p in procs.items():
            rc = p.poll()
            if rc is not None:
                if not stopping:
                    log.error("%s exited with %s; stopping the container", name, rc)
                    _term(signal.SIGTERM, None)
                for other in procs.values():
                    try:
                        other.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        other.kill()
                return 0 if stopping else (rc or 1)
        time.sleep(0.2)


def write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)
