"""All block types of this project, by kind, and their registration with the Prefect API.

A *kind* is the slug without its `mailu-` prefix (`ssh-host`, `cloudflare`, ...), used on the
command line; the slug is the server-side key and must never change.
"""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block

from blocks.backup import BackupSigningKey
from blocks.dns import CloudflareDns, Rfc2136Dns
from blocks.gpg import GpgBackupPrivateKey, GpgBackupPublicKey
from blocks.mailu import MailuSecrets
from blocks.ssh import SshHost

B = TypeVar("B", bound=Block)

BLOCK_TYPES: tuple[type[Block], ...] = (
    SshHost,
    CloudflareDns,
    Rfc2136Dns,
    GpgBackupPublicKey,
    GpgBackupPrivateKey,
    BackupSigningKey,
    MailuSecrets,
)


def kind_of(block_type: type[Block]) -> str:
    return block_type.get_block_type_slug().removeprefix("mailu-")


KINDS: dict[str, type[Block]] = {kind_of(block_type): block_type for block_type in BLOCK_TYPES}


def block_type_for(kind: str) -> type[Block]:
    """The block class for a kind (`ssh-host`) or a slug (`mailu-ssh-host`)."""
    found = KINDS.get(kind.removeprefix("mailu-")) or KINDS.get(kind)
    if found is None:
        raise KeyError(f"unknown block kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return found


def register_block_types() -> list[str]:
    """Register every block type and schema with the current Prefect API (idempotent); returns the slugs."""
    slugs = []
    for block_type in BLOCK_TYPES:
        block_type.register_type_and_schema()
        slugs.append(block_type.get_block_type_slug())
    return slugs


def load_block(block_type: type[B], name: str) -> B:
    """`block_type.load(name)`, synchronously and typed (Block.load is typed `Self | Coroutine`)."""
    block = block_type.load(name, _sync=True)  # type: ignore[call-arg]
    if not isinstance(block, block_type):
        raise TypeError(f"{name!r} loaded as {type(block).__name__}, not {block_type.__name__}")
    return block
