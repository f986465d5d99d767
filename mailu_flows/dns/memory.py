"""An in-memory DNS provider: a zone in a Python object, with the same contract as the real ones.

What it is for: the provider contract suite (`tests/core/dns/provider_contract.py`) runs on it in the
unit tests and on the real providers in the lab, and the DNS flows' decisions can be tested without a
nameserver. Several `MemoryProvider`s (one per owner) can share one `MemoryZone`, as stacks share a
real zone. An apply is atomic, like an RFC 2136 UPDATE: every change is checked against the zone
first (an update or delete of a record that changed since the plan raises `PlanOutdatedError`, a
create into a slot someone filled meanwhile too), and nothing changes on a refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailu_core.dns import Change, Plan, Record, normalize_name
from mailu_flows.dns.provider import (
    DEFAULT_OWNER,
    ApplyResult,
    DnsError,
    PlanOutdatedError,
    ProviderRecord,
    ProviderSupport,
    check_in_zone,
)
from mailu_flows.dns.registry import ProviderPlugin

if TYPE_CHECKING:
    from mailu_core.config import StackConfig

__all__ = ["PLUGIN", "SUPPORT", "MemoryProvider", "MemoryZone", "memory_zone"]

log = logging.getLogger(__name__)

SUPPORT = ProviderSupport(
    record_types=frozenset({"A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS"}),
    features=frozenset({"atomic-apply", "list-whole-zone", "ownership-per-record"}),
)


@dataclass
class MemoryZone:
    """A zone's records (apex SOA/NS aside) and who owns each; shared by the providers of its owners."""

    name: str
    records: list[tuple[Record, str | None]] = field(default_factory=list)
    writes: int = 0
    """Applies that changed something (an empty plan makes none)."""

    def __post_init__(self) -> None:
        self.name = normalize_name(self.name)

    def add_foreign(self, *records: Record) -> None:
        """Records someone else made (no owner): what a hand-made SPF or another tool's record is."""
        self.records += [(r, None) for r in records]


_ZONES: dict[str, MemoryZone] = {}


def memory_zone(name: str) -> MemoryZone:
    """The process-wide zone of that name (what `dns.provider: memory` publishes into)."""
    key = normalize_name(name)
    return _ZONES.setdefault(key, MemoryZone(key))


class MemoryProvider:
    """One owner's view of a `MemoryZone`; see the module docstring."""

    name = "memory"
    support = SUPPORT

    def __init__(self, zone: MemoryZone | str, owner: str = DEFAULT_OWNER) -> None:
        self.state = zone if isinstance(zone, MemoryZone) else MemoryZone(zone)
        self.owner = owner
        self.fail_next: DnsError | None = None
        """Set to make the next apply raise this error (nothing applied), as a broken server would."""

    def __repr__(self) -> str:
        return f"MemoryProvider(zone={self.state.name!r}, owner={self.owner!r})"

    @property
    def zone(self) -> str:
        return self.state.name

    def list_records(self, names: Collection[str] = ()) -> list[ProviderRecord]:
        out = [ProviderRecord(r, owner == self.owner) for r, owner in self.state.records]
        return sorted(out, key=lambda p: (p.record.key, p.record.values))

    def _index(self, record: Record) -> int:
        for i, (r, _owner) in enumerate(self.state.records):
            if r == record:
                return i
        raise PlanOutdatedError(
            f"{record.name} {record.type} changed in zone {self.zone} since the plan was made; plan again"
        )

    def _check(self, changes: list[Change]) -> None:
        """Refuse the whole plan, before any change, if the zone moved under it."""
        for ch in changes:
            if ch.old is not None:
                self._index(ch.old)
            elif ch.new is not None and ch.new.type != "TXT":
                taken = [r for r, _ in self.state.records if r.key == ch.new.key]
                if taken:
                    raise PlanOutdatedError(
                        f"{ch.new.name} {ch.new.type} was created in zone {self.zone} since the plan was "
                        "made; plan again"
                    )

    def apply(self, plan: Plan) -> ApplyResult:
        """All changes at once (atomic); an empty plan changes nothing."""
        if plan.empty:
            return ApplyResult(self.zone)
        changes = list(plan.changes)
        check_in_zone([c.record for c in changes], self.zone)
        try:
            if self.fail_next is not None:
                error, self.fail_next = self.fail_next, None
                raise error
            self._check(changes)
        except DnsError as e:
            raise e.with_result(ApplyResult(self.zone, (), None, str(e), tuple(changes))) from e.__cause__
        for ch in changes:
            log.info("memory %s: %s", self.zone, ch)
            if ch.old is not None:
                del self.state.records[self._index(ch.old)]
            if ch.new is not None:
                self.state.records.append((ch.new, self.owner))
        self.state.writes += 1
        return ApplyResult(self.zone, tuple(changes))


def _connect(config: StackConfig, owner: str) -> MemoryProvider:
    return MemoryProvider(memory_zone(config.dns.zone), owner)


PLUGIN = ProviderPlugin("memory", "an in-memory zone in this process (tests, dry runs)", SUPPORT, _connect)
