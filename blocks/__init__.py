"""Prefect block types holding every credential a Mailu stack needs (the stack config names them)."""

from blocks.backup import BackupSigningKey
from blocks.dns import CloudflareDns, Rfc2136Dns
from blocks.gpg import GpgBackupPrivateKey, GpgBackupPublicKey
from blocks.mailu import MailuSecrets
from blocks.registry import (
    BLOCK_TYPES,
    KINDS,
    BlockNotFound,
    block_type_for,
    load_block,
    register_block_types,
)
from blocks.ssh import SshHost

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
