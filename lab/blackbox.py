"""A blackbox exporter for the lab (Debian's prometheus-blackbox-exporter), on loopback only.

Why: the host's blackbox exporter is the operator's; the lab runs one reading the rendered module
file, so that the monitoring tests (and the lab's Prometheus, whose blackbox job sends probes to the
`exporter` label) probe the deployed stack through Traefik for real.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path

from lab.procs import start_daemon, stop_daemon

BLACKBOX_PORT = 19115
BLACKBOX_BIN = "/usr/bin/prometheus-blackbox-exporter"
DAEMON = "blackbox-exporter"


def blackbox_url() -> str:
    return f"http://127.0.0.1:{BLACKBOX_PORT}"


def blackbox_ready() -> bool:
    try:
        with urllib.request.urlopen(f"{blackbox_url()}/-/healthy", timeout=1) as resp:
            status: int = resp.status
            return status == 200
    except Exception:
        return False


def ensure_blackbox(config_file: Path) -> str:
    """Start the exporter on `config_file` unless it already runs (it re-reads the file on /-/reload)."""
    start_daemon(
        DAEMON,
        [BLACKBOX_BIN, f"--config.file={config_file}", f"--web.listen-address=127.0.0.1:{BLACKBOX_PORT}"],
        ready=blackbox_ready,
        timeout=30,
    )
    reload = urllib.request.Request(f"{blackbox_url()}/-/reload", method="POST")
    with urllib.request.urlopen(reload, timeout=5):
        pass
    return blackbox_url()


def stop_blackbox() -> bool:
    return stop_daemon(DAEMON)


def probe(target: str, module: str, timeout: float = 15.0) -> dict[str, float]:
    """One probe through the exporter: its samples by metric name (labels dropped; last one wins)."""
    query = urllib.parse.urlencode({"target": target, "module": module})
    with urllib.request.urlopen(f"{blackbox_url()}/probe?{query}", timeout=timeout) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, _, value = line.rpartition(" ")
            samples[name_labels.split("{", 1)[0]] = float(value)
    return samples
