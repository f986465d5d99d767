"""Prefect block types holding every credential a Mailu stack needs (the stack config names them), and
the stack config itself."""

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
from mailu_flows.blocks.stack import MailuStack, StackParameter, push_stack_config, stack_config

__all__ = [
    "BLOCK_TYPES",
    "KINDS",
    "BackupSigningKey",
    "BlockNotFound",
    "CloudflareDns",
    "GpgBackupPrivateKey",
    "GpgBackupPublicKey",
    "MailuSecrets",
    "MailuStack",
    "Rfc2136Dns",
    "SshHost",
    "StackParameter",
    "block_type_for",
    "load_block",
    "push_stack_config",
    "register_block_types",
    "stack_config",
]
