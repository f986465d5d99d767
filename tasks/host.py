"""Reaching the managed host from a flow: one SSH connection per flow run, from the SSH host block
(`connect_host`, `host_session`: mailu_flows/session.py), and the metrics files flows write there."""

from __future__ import annotations

from mailu_core.config import StackConfig
from mailu_flows.host import Host
from mailu_flows.session import connect_host, host_session

__all__ = ["connect_host", "host_session", "textfile_dir", "write_textfile_metric"]


def textfile_dir(config: StackConfig) -> str | None:
    """The node exporter's textfile-collector directory the flows write metrics into (none: off)."""
    directory = config.monitoring.textfile_dir
    return str(directory) if config.monitoring.enabled and directory else None


def write_textfile_metric(host: Host, directory: str, name: str, text: str) -> str:
    """Write `<directory>/<name>.prom` on the host (atomically, 0644: no secret in it); returns its path."""
    path = f"{directory}/{name}.prom"
    host.run(["mkdir", "-p", directory])
    host.write_file(path, text.encode(), mode=0o644)
    return path
