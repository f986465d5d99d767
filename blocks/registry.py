"""All block types of this project, by kind, and their registration with the Prefect API.

A *kind* is the slug without its `mailu-` prefix (`ssh-host`, `cloudflare`, ...), used on the
command line; the slug is the server-side key and must never change.
"""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block

from mailu_core.errors import MailuFlowsError
from mailu_flows.blocks.backup import BackupSigningKey
from mailu_flows.blocks.dns import CloudflareDns, Rfc2136Dns
from mailu_flows.blocks.gpg import GpgBackupPrivateKey, GpgBackupPublicKey
from mailu_flows.blocks.mailu import MailuSecrets
from mailu_flows.blocks.ssh import SshHost
from mailu_flows.blocks.stack import MailuStack

B = TypeVar("B", bound=Block)

BLOCK_TYPES: tuple[type[Block], ...] = (
    SshHost,
    CloudflareDns,
    Rfc2136Dns,
    GpgBackupPublicKey,
    GpgBackupPrivateKey,
    BackupSigningKey,
    MailuSecrets,
    MailuStack,
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
    """Register every block type and schema with the current Prefect API (idempotent); returns the slugs.

    The same as Prefect's own `prefect block register -m mailu_flows.blocks`; a Prefect server whose
    environment has mailu-flows installed also registers them when it starts (the `prefect.collections`
    entry point)."""
    slugs = []
    for block_type in BLOCK_TYPES:
        block_type.register_type_and_schema()
        slugs.append(block_type.get_block_type_slug())
    return slugs


LAB_API_URL = "http://127.0.0.1:4200/api"


class BlockNotFound(MailuFlowsError, ValueError):
    """A block the config names is not on the Prefect server asked; the message says which server."""


def prefect_server() -> str:
    """Which Prefect server this process asks, in words (PREFECT_API_URL, or the ephemeral one)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        return f"the Prefect server at {url} (PREFECT_API_URL)"
    return "a temporary Prefect server of this process (PREFECT_API_URL is not set)"


def where_hint() -> str:
    """How to point this shell at the server that holds the blocks."""
    return (
        "if it is on another Prefect server, point PREFECT_API_URL there "
        f"(the lab's: `export PREFECT_API_URL={LAB_API_URL}`)"
    )


def load_block(block_type: type[B], name: str) -> B:
    """`block_type.load(name)`, synchronously and typed (Block.load is typed `Self | Coroutine`).

    A missing block or an unreachable server raises BlockNotFound naming the server asked and how to
    point at another: the usual cause is a shell that talks to another server than the one that
    holds the blocks."""
    import httpx

    slug = block_type.get_block_type_slug()
    try:
        block = block_type.load(name, _sync=True)  # type: ignore[call-arg]
    except httpx.HTTPError as exc:
        raise BlockNotFound(
            f"cannot load the {slug} block {name!r}: {prefect_server()} does not answer ({exc}); "
            f"start it, or {where_hint()}"
        ) from None
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        create = (
            "save it with `mailu-flows config push --config <stack file>`"
            if block_type is MailuStack
            else f"create it with `mailu-flows blocks create {kind_of(block_type)} {name} ...`"
        )
        raise BlockNotFound(
            f"no {slug} block named {name!r} on {prefect_server()}; {create} or in the UI's Blocks page; "
            f"{where_hint()}"
        ) from None
    if not isinstance(block, block_type):
        raise TypeError(f"{name!r} loaded as {type(block).__name__}, not {block_type.__name__}")
    return block
