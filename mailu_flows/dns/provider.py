"""The one interface every DNS provider implements, plus the errors and the result of an apply.

A provider reads its zone (`list_records`, each record flagged `owned` by this stack) and applies a
`Plan` made from that listing (`apply`). `plan_for(provider, desired)` glues both to the pure core.
Errors name the zone, the record or the server involved; an apply that stopped part-way raises with
an `ApplyResult` attached (`error.result`) saying what was applied and what was not, so that the next
run, which re-plans from the zone, converges.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mailu_core.dns import Change, OptionValue, Plan, Record, in_zone, plan
from mailu_core.errors import MailuFlowsError

__all__ = [
    "DEFAULT_OWNER",
    "ApplyResult",
    "DnsAuthError",
    "DnsConnectionError",
    "DnsError",
    "OptionSpec",
    "PlanOutdatedError",
    "Provider",
    "ProviderRecord",
    "ProviderSupport",
    "RecordOutsideZoneError",
    "UnsupportedRecord",
    "ZoneNotFoundError",
    "check_in_zone",
    "check_supported",
    "plan_for",
    "with_option_defaults",
]

DEFAULT_OWNER = "mailu-flows"


@dataclass(frozen=True)
class ProviderRecord:
    """A record as the provider lists it, and whether this stack (the provider's owner) manages it."""

    record: Record
    owned: bool


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did: `applied` in order, the change that `failed` (with why), the ones `not_applied`."""

    zone: str
    applied: tuple[Change, ...] = ()
    failed: Change | None = None
    error: str | None = None
    not_applied: tuple[Change, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return self.failed is None and not self.not_applied

    def summary(self) -> str:
        if self.complete:
            return f"zone {self.zone}: applied {len(self.applied)} change(s)"
        lines = [
            f"zone {self.zone}: PARTIAL apply, {len(self.applied)} applied, "
            f"{len(self.not_applied) + (self.failed is not None)} not applied (re-run to converge)"
        ]
        lines += [f"  applied: {c}" for c in self.applied]
        if self.failed is not None:
            lines.append(f"  FAILED: {self.failed}: {self.error}")
        lines += [f"  not applied: {c}" for c in self.not_applied]
        return "\n".join(lines)


class DnsError(MailuFlowsError):
    """A DNS provider or server problem; `result` is set when an apply stopped part-way."""

    result: ApplyResult | None = None

    def with_result(self, result: ApplyResult) -> DnsError:
        self.result = result
        self.args = (f"{self.args[0] if self.args else ''}\n{result.summary()}",)
        return self


class ZoneNotFoundError(DnsError):
    """The provider has no zone of that name (or the credentials cannot see it)."""


class DnsAuthError(DnsError):
    """The credentials were refused: a token without permission, a wrong TSIG key."""


class DnsConnectionError(DnsError):
    """The API or the server could not be reached (after retries)."""


class RecordOutsideZoneError(DnsError, ValueError):
    """A record's name is not in the zone the provider manages."""


class PlanOutdatedError(DnsError):
    """The zone changed between planning and applying; plan again."""


class UnsupportedRecord(DnsError, ValueError):
    """A record of a type (or with an option) the provider does not support; named before any write."""


@dataclass(frozen=True)
class OptionSpec:
    """A provider-specific record option: the record types it applies to, its default, what it does."""

    types: frozenset[str]
    default: OptionValue
    doc: str = ""


@dataclass(frozen=True)
class ProviderSupport:
    """What a provider can publish. `features` are free-form flags the flows and docs read
    (`atomic-apply`, `ownership-in-zone`, `list-whole-zone`, ...); `options` are its namespaced
    record options (`Record.provider_options[<provider name>]`)."""

    record_types: frozenset[str]
    features: frozenset[str] = frozenset()
    options: Mapping[str, OptionSpec] = field(default_factory=dict)


def check_in_zone(records: Iterable[Record], zone: str) -> None:
    """Raise `RecordOutsideZoneError` naming the first record outside `zone`."""
    for r in records:
        if not in_zone(r.name, zone):
            raise RecordOutsideZoneError(
                f"record {r.name} {r.type} is outside zone {zone}; it cannot be published"
            )


@runtime_checkable
class Provider(Protocol):
    """Reads a zone and applies plans to it, touching only records its owner manages.

    `name` is its registry name (the namespace of its record options), `support` what it can publish
    (`mailu_flows.dns.registry.ProviderSupport`)."""

    name: str

    @property
    def support(self) -> ProviderSupport: ...

    @property
    def zone(self) -> str: ...

    def list_records(self, names: Collection[str] = ()) -> list[ProviderRecord]:
        """Every record of the zone except apex SOA/NS; `names` are hints for providers that cannot
        list a whole zone (RFC 2136 without zone transfer)."""
        ...

    def apply(self, plan: Plan) -> ApplyResult:
        """Make the changes, in `plan.changes` order; an empty plan makes no write at all."""
        ...


def check_supported(name: str, support: ProviderSupport, records: Iterable[Record]) -> None:
    """Refuse, naming the record and the provider, a type it cannot publish or an option of its own
    namespace it does not know (other providers' options are ignored: they are not for it)."""
    for r in records:
        if r.type not in support.record_types:
            raise UnsupportedRecord(
                f"DNS provider {name} cannot publish {r.name} {r.type} (it supports "
                f"{', '.join(sorted(support.record_types))}); nothing was changed"
            )
        for key in r.options(name):
            spec = support.options.get(key)
            known = ", ".join(sorted(support.options)) or "none"
            if spec is None or r.type not in spec.types:
                raise UnsupportedRecord(
                    f"record {r.name} {r.type} sets {name}.{key}, which DNS provider {name} does not "
                    f"support for {r.type} records (its options: {known})"
                )


def with_option_defaults(name: str, support: ProviderSupport, records: Iterable[Record]) -> list[Record]:
    """The records with the provider's option defaults filled in where they apply and are not set, so
    a zone record that differs from the default (a proxied A record) shows in the plan."""
    out = []
    for r in records:
        mine = r.options(name)
        missing = {
            k: spec.default for k, spec in support.options.items() if r.type in spec.types and k not in mine
        }
        out.append(r.with_options(name, **missing) if missing else r)
    return out


def plan_for(provider: Provider, desired: Iterable[Record], *, adopt: bool = False) -> tuple[Plan, int]:
    """The plan for `desired` against the provider's current zone, and the zone's record count (for the
    plan artifact). The plan counts the records this owner manages (`Plan.owned_count`) from the
    provider's `owned` flags, so `Plan.raise_if_unsafe` works alike for every provider. The desired
    records get the provider's option defaults, and a type or option it does not support is refused
    (`UnsupportedRecord`) before anything is read or written."""
    want = with_option_defaults(provider.name, provider.support, desired)
    check_in_zone(want, provider.zone)
    check_supported(provider.name, provider.support, want)
    listed = provider.list_records(names={r.name for r in want})
    existing = [p.record for p in listed]
    owned = [p.record for p in listed if p.owned]
    return plan(want, existing, owned, zone=provider.zone, adopt=adopt), len(existing)
