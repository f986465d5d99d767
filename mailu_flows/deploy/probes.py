"""Post-deploy probes through Traefik's entrypoints, as a mail client and a browser would connect:
SMTP/IMAP banners, STARTTLS, implicit TLS verified against the CA and the mail hostname, and the
admin/webmail URLs. Each probe returns a Check row instead of raising."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable

from mailu_core.config import StackConfig
from mailu_flows.deploy.preflight import Check


class _Line:
    """A line-oriented TCP client that can upgrade to TLS in place."""

    def __init__(self, addr: str, port: int, timeout: float) -> None:
        self.sock: socket.socket = socket.create_connection((addr, port), timeout=timeout)
        self.buf = b""

    def readline(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"connection closed after {self.buf[:80]!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def smtp_reply(self) -> list[str]:
        lines = [self.readline()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.readline())
        return lines

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def tls(self, ctx: ssl.SSLContext, hostname: str) -> str:
        self.sock = ctx.wrap_socket(self.sock, server_hostname=hostname)
        return str(self.sock.version())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def tls_context(cfg: StackConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.traefik.check_ca_file)
    ctx.check_hostname = True
    return ctx


def _smtp(addr: str, port: int, cfg: StackConfig, implicit: bool, timeout: float) -> str:
    ctx, host = tls_context(cfg), cfg.hostname
    c = _Line(addr, port, timeout)
    try:
        version = c.tls(ctx, host) if implicit else ""
        banner = c.smtp_reply()
        if not banner[0].startswith("220"):
            raise ValueError(f"banner {banner[0]!r}")
        c.send("EHLO mailu-flows.check")
        ehlo = c.smtp_reply()
        if not implicit:
            if not any(line[4:].upper().startswith("STARTTLS") for line in ehlo):
                raise ValueError("EHLO does not offer STARTTLS")
            c.send("STARTTLS")
            if not c.smtp_reply()[0].startswith("220"):
                raise ValueError("STARTTLS refused")
            version = c.tls(ctx, host)
            c.send("EHLO mailu-flows.check")
            c.smtp_reply()
        c.send("QUIT")
        return f"{banner[0][:60]}; {version} verified for {host}"
    finally:
        c.close()


def _imap(addr: str, port: int, cfg: StackConfig, implicit: bool, timeout: float) -> str:
    ctx, host = tls_context(cfg), cfg.hostname
    c = _Line(addr, port, timeout)
    try:
        version = c.tls(ctx, host) if implicit else ""
        greeting = c.readline()
        if not greeting.startswith("* OK"):
            raise ValueError(f"greeting {greeting!r}")
        if not implicit:
            c.send("a CAPABILITY")
            caps = []
            while True:
                line = c.readline()
                caps.append(line)
                if line.startswith("a "):
                    break
            if "STARTTLS" not in " ".join(caps).upper():
                raise ValueError("CAPABILITY does not offer STARTTLS")
            c.send("b STARTTLS")
            if not c.readline().startswith("b OK"):
                raise ValueError("STARTTLS refused")
            version = c.tls(ctx, host)
        c.send("z LOGOUT")
        return f"{greeting[:50]}; {version} verified for {host}"
    finally:
        c.close()


MAIL_PROBES: dict[int, tuple[str, Callable[[str, int, StackConfig, bool, float], str], bool]] = {
    25: ("SMTP 25: banner, EHLO with STARTTLS, TLS", _smtp, False),
    587: ("submission 587: banner, EHLO with STARTTLS, TLS", _smtp, False),
    465: ("submissions 465: implicit TLS, banner", _smtp, True),
    143: ("IMAP 143: greeting, STARTTLS, TLS", _imap, False),
    993: ("IMAPS 993: implicit TLS, greeting", _imap, True),
}


def mail_checks(cfg: StackConfig, timeout: float = 10.0) -> list[Check]:
    """One probe per mail entrypoint, concurrently (rows keep the entrypoints' order)."""
    from concurrent.futures import ThreadPoolExecutor

    addr = str(cfg.traefik.check_address or cfg.mailu.public_ipv4)

    def one(port: int, host_port: int) -> Check:
        label, probe, implicit = MAIL_PROBES[port]
        try:
            return Check(label, True, probe(addr, host_port, cfg, implicit, timeout))
        except (OSError, ValueError, ssl.SSLError) as exc:
            return Check(label, False, f"{addr}:{host_port}: {exc}")

    eps = cfg.traefik.mail_entrypoints
    with ThreadPoolExecutor(max_workers=len(eps)) as pool:
        return list(pool.map(one, [ep.port for ep in eps], [ep.host_port for ep in eps]))


def https_status(cfg: StackConfig, host: str, path: str, timeout: float = 10.0) -> int:
    """Status of GET https://host{path} through Traefik's HTTPS entrypoint (CA and hostname verified)."""
    import http.client

    addr = str(cfg.traefik.check_address or cfg.mailu.public_ipv4)
    ctx = tls_context(cfg)
    raw = socket.create_connection((addr, cfg.traefik.websecure_published_port), timeout=timeout)
    conn = http.client.HTTPSConnection(
        host, cfg.traefik.websecure_published_port, context=ctx, timeout=timeout
    )
    conn.sock = ctx.wrap_socket(raw, server_hostname=host)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "mailu-flows-check"})
        return conn.getresponse().status
    finally:
        conn.close()


def web_checks(cfg: StackConfig) -> list[Check]:
    """The admin and webmail URLs as a browser reaches them, each request concurrently (rows keep the
    order below)."""
    from concurrent.futures import ThreadPoolExecutor

    admin_path = cfg.mailu.admin_path.rstrip("/") + "/"
    probes: list[tuple[str, str, str, Callable[[int], bool], str]] = [
        (
            "admin refuses without credentials",
            cfg.admin_host,
            admin_path,
            lambda s: s in (401, 302, 303, 307),
            "401 or a redirect to auth",
        )
    ]
    if cfg.mailu.webmail != "none":
        probes.append(
            (
                "webmail answers",
                cfg.webmail_host,
                cfg.mailu.webmail_path.rstrip("/") + "/",
                lambda s: s < 400,
                "2xx/3xx",
            )
        )
        if cfg.webmail_host != cfg.admin_host:
            for path in (admin_path, cfg.mailu.api_path.rstrip("/") + "/v1/domain"):
                probes.append(
                    (
                        f"webmail host refuses {path}",
                        cfg.webmail_host,
                        path,
                        lambda s: s in (401, 403, 404),
                        "401/403/404",
                    )
                )

    def row(probe: tuple[str, str, str, Callable[[int], bool], str]) -> Check:
        label, host, path, accept, want = probe
        try:
            status = https_status(cfg, host, path)
            return Check(label, accept(status), f"https://{host}{path} -> {status} (want {want})")
        except (OSError, ssl.SSLError) as exc:
            return Check(label, False, f"https://{host}{path}: {exc}")

    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        return list(pool.map(row, probes))
