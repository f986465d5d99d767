"""Reaching the managed host from a flow: one SSH connection per flow run, from the SSH host block."""

from __future__ import annotations

from blocks import SshHost, load_block
from mailu_core.config import StackConfig
from mailu_flows import redact
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
