"""DNS providers behind one small registry: each is a `ProviderPlugin` found through the
`mailu_flows.dns_providers` entry point group, so a new provider is one module plus its block.

A plugin declares what it supports (`ProviderSupport`: record types, features, its namespaced record
options with their defaults), and how to build a `Provider` for a stack (`connect(config, owner)`,
which loads its credentials block and registers its secrets for redaction). The flows never name a
provider: `connect_provider(config)` looks up `config.dns.provider`.

The package's own entries (pyproject.toml):

    [project.entry-points."mailu_flows.dns_providers"]
    cloudflare = "mailu_flows.dns.cloudflare:PLUGIN"
    rfc2136 = "mailu_flows.dns.rfc2136:PLUGIN"
    memory = "mailu_flows.dns.memory:PLUGIN"
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from mailu_flows.dns.provider import DnsError, Provider, ProviderSupport

if TYPE_CHECKING:
    from mailu_core.config import StackConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "ProviderPlugin",
    "UnknownProvider",
    "connect_provider",
    "provider_plugin",
    "providers",
]

ENTRY_POINT_GROUP = "mailu_flows.dns_providers"


class UnknownProvider(DnsError, LookupError):
    """`dns.provider` names no installed provider; the message lists the installed ones."""


@dataclass(frozen=True)
class ProviderPlugin:
    """One DNS provider: its name (the `dns.provider` value), support, and how to connect it for a
    stack (config, ownership name) -> Provider."""

    name: str
    description: str
    support: ProviderSupport
    connect: Callable[[StackConfig, str], Provider]
    block_type: Callable[[], type[Any]] | None = None
    """The Prefect block class holding its credentials (`blocks.dns_provider` names one), imported
    only when asked (`mailu-flows blocks check`); None for a provider without credentials."""


@functools.cache
def providers() -> dict[str, ProviderPlugin]:
    """Every installed provider, by name (loaded once per process)."""
    found: dict[str, ProviderPlugin] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        plugin = ep.load()
        if not isinstance(plugin, ProviderPlugin):
            raise DnsError(
                f"entry point {ep.name} = {ep.value} of {ENTRY_POINT_GROUP} is not a ProviderPlugin"
            )
        if plugin.name != ep.name:
            raise DnsError(f"entry point {ep.name} = {ep.value} names a plugin called {plugin.name!r}")
        found[ep.name] = plugin
    return found


def provider_plugin(name: str) -> ProviderPlugin:
    """The provider called `name`; `UnknownProvider` lists the installed ones."""
    known = providers()
    if name not in known:
        installed = ", ".join(sorted(known))
        raise UnknownProvider(
            f"dns.provider {name!r} is not an installed DNS provider (installed: {installed}); "
            f"a provider package registers a ProviderPlugin under the entry point group {ENTRY_POINT_GROUP} "
            "(after editing pyproject.toml, reinstall the project: pip install -e .)"
        )
    return known[name]


def connect_provider(config: StackConfig, owner: str) -> Provider:
    """The provider `config.dns.provider` names, for `config.dns.zone`, with its block's credentials."""
    return provider_plugin(config.dns.provider).connect(config, owner)
