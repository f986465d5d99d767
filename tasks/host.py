"""Reaching the managed host from a flow: one SSH connection per flow run, from the SSH host block."""

from __future__ import annotations

from blocks import SshHost, load_block
from mailu_core.config import StackConfig
from mailu_flows import redact
from mailu_flows.host import Host
from mailu_flows.remote import RemoteHost


def connect_host(config: StackConfig) -> RemoteHost:
    """Open the flow run's one SSH connection, with the key and pinned host key from the block."""
    block = load_block(SshHost, config.blocks.ssh_host)
    for secret in (block.private_key, block.private_key_passphrase):
        redact.register_secret(secret.get_secret_value())  # never in a log, traceback or state message
    host = RemoteHost(
        str(block.address),
        block.port,
        block.user,
        block.private_key.get_secret_value(),
        block.host_keys,
        key_passphrase=block.private_key_passphrase.get_secret_value() or None,
        max_command_s=config.host.max_command_s,
    )
    return host.connect()


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
