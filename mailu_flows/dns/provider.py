"""The one interface every DNS provider implements, plus the errors and the result of an apply.

A provider reads its zone (`list_records`, each record flagged `owned` by this stack) and applies a
`Plan` made from that listing (`apply`). `plan_for(provider, desired)` glues both to the pure core.
Errors name the zone, the record or the server involved; an apply that stopped part-way raises with
an `ApplyResult` attached (`error.result`) saying what was applied and what was not, so that the next
run, which re-plans from the zone, converges.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mailu_core.dns import Change, Plan, Record, in_zone, plan
from mailu_core.errors import MailuFlowsError

__all__ = [
    "DEFAULT_OWNER",
    "ApplyResult",
    "DnsAuthError",
    "DnsConnectionError",
    "DnsError",
    "PlanOutdatedError",
    "Provider",
    "ProviderRecord",
    "RecordOutsideZoneError",
    "ZoneNotFoundError",
    "check_in_zone",
    "plan_for",
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


def check_in_zone(records: Iterable[Record], zone: str) -> None:
    """Raise `RecordOutsideZoneError` naming the first record outside `zone`."""
    for r in records:
        if not in_zone(r.name, zone):
            raise RecordOutsideZoneError(
                f"record {r.name} {r.type} is outside zone {zone}; it cannot be published"
            )


@runtime_checkable
class Provider(Protocol):
    """Reads a zone and applies plans to it, touching only records its owner manages."""

    @property
    def zone(self) -> str: ...

    def list_records(self, names: Collection[str] = ()) -> list[ProviderRecord]:
        """Every record of the zone except apex SOA/NS; `names` are hints for providers that cannot
        list a whole zone (RFC 2136 without zone transfer)."""
        ...

    def apply(self, plan: Plan) -> ApplyResult:
        """Make the changes, in `plan.changes` order; an empty plan makes no write at all."""
        ...


def plan_for(provider: Provider, desired: Iterable[Record], *, adopt: bool = False) -> tuple[Plan, int]:
    """The plan for `desired` against the provider's current zone, and the zone's record count (for the
    plan artifact). The plan counts the records this owner manages (`Plan.owned_count`) from the
    provider's `owned` flags, so `Plan.raise_if_unsafe` works alike for every provider."""
    want = list(desired)
    check_in_zone(want, provider.zone)
    listed = provider.list_records(names={r.name for r in want})
    existing = [p.record for p in listed]
    owned = [p.record for p in listed if p.owned]
    return plan(want, existing, owned, zone=provider.zone, adopt=adopt), len(existing)
