"""Prefect block types holding every credential a Mailu stack needs (the stack config names them)."""

from mailu_flows.blocks.backup import BackupSigningKey
from mailu_flows.blocks.dns import CloudflareDns, Rfc2136Dns
from mailu_flows.blocks.gpg import GpgBackupPrivateKey, GpgBackupPublicKey
from mailu_flows.blocks.mailu import MailuSecrets
from mailu_flows.blocks.registry import (
    BLOCK_TYPES,
    KINDS,
    BlockNotFound,
    block_type_for,
    load_block,
    register_block_types,
)
from mailu_flows.blocks.ssh import SshHost

__all__ = [
    "BLOCK_TYPES",
    "KINDS",
    "BackupSigningKey",
    "BlockNotFound",
    "CloudflareDns",
    "GpgBackupPrivateKey",
    "GpgBackupPublicKey",
    "MailuSecrets",
    "Rfc2136Dns",
    "SshHost",
    "block_type_for",
    "load_block",
    "register_block_types",
]
