"""Plan = desired records minus what the zone holds, with octoDNS's safety rails.

Rules, and why:
- Only records we own are updated or deleted (ownership is the provider's business: a Cloudflare
  comment, an RFC 2136 ownership record). Other writers share the zone.
- A foreign record in a slot we want (a hand-made SPF at the apex, a foreign MX) is a `Conflict`
  with the fix spelled out, never overwritten silently. `adopt=True` takes such records over.
  A foreign record in another slot at the same name (a verification TXT beside our SPF) is left alone.
- The apex SOA and NS are never touched (they are the delegation), whatever the input says.
- `Plan.raise_if_unsafe` refuses, unless forced, a plan that updates or deletes more of the records we
  own than a fraction of them (octoDNS's `MAX_SAFE_*_PCENT = 0.3`), with a small absolute allowance
  instead of octoDNS's `MIN_EXISTING_RECORDS = 10` (see `ALWAYS_ALLOWED_CHANGES`).
- `Plan.changes` is in apply order: creates/updates A/AAAA first and MX last (mail must be able to
  arrive before MX points at it), then deletes in the reverse order (MX first).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from mailu_core.dns.records import Record, RecordKey, in_zone, normalize_name
from mailu_core.errors import MailuFlowsError

__all__ = [
    "ALWAYS_ALLOWED_CHANGES",
    "MAX_CHANGE_FRACTION",
    "Change",
    "Conflict",
    "Plan",
    "TooMuchChange",
    "UnsafePlan",
    "apply_order",
    "plan",
]

ChangeKind = Literal["create", "update", "delete"]

# Lower goes first for creates/updates; deletes run in the reverse order.
_RANK = {"A": 0, "AAAA": 0, "CNAME": 1, "TXT": 2, "SRV": 3, "CAA": 3, "TLSA": 3, "MX": 9}

# The safety rail (`Plan.raise_if_unsafe`), counted over the records this owner manages, not the zone:
# in a shared zone (a company's Cloudflare zone, the lab's) our ~8 records are a few percent of it, so
# deleting all of them stayed under any fraction of the zone.
MAX_CHANGE_FRACTION = 0.3
# octoDNS skips zones under MIN_EXISTING_RECORDS = 10; a Mailu stack owns 4-8 records per mail domain
# (A, AAAA, MX, SPF, DMARC, DKIM, + autoconfig/MTA-STS), so that would skip every mail zone. Instead
# every zone is checked and this many updates+deletes always pass: a routine change touches at most
# two of our records (a new server address: A and AAAA; retiring a DKIM selector: one TXT per domain;
# an SPF or DMARC edit: one TXT per domain), while the mistakes the rail is for touch more (a renamed
# domain deletes MX, SPF, DMARC and DKIM; a new hostname moves MX, SPF, A and AAAA). Beyond two, the
# fraction decides, so a stack with many domains can still edit one TXT in each.
ALWAYS_ALLOWED_CHANGES = 2


class UnsafePlan(MailuFlowsError):
    """A plan that must not be applied without `force`."""


class TooMuchChange(UnsafePlan):
    """More updates+deletes than the plan's limit (`Plan.change_limit`) of the records we own."""

    def __init__(
        self,
        zone: str,
        updates: int,
        deletes: int,
        owned_count: int,
        max_fraction: float,
        limit: int,
        always_allowed: int,
    ) -> None:
        self.zone = zone
        self.updates = updates
        self.deletes = deletes
        self.change_count = updates + deletes
        self.owned_count = owned_count
        self.max_fraction = max_fraction
        self.limit = limit
        pct = f"{100.0 * self.change_count / owned_count:.0f}%" if owned_count else "all"
        super().__init__(
            f"[{zone}] too many changes: {updates} update(s) + {deletes} delete(s) = {self.change_count} of "
            f"the {owned_count} records mailu-flows owns in the zone ({pct}), over the limit of {limit} "
            f"({100 * max_fraction:.0f}% of {owned_count}, dns.max_change_fraction, but at least "
            f"{always_allowed}); nothing was changed. Review the plan, then apply it with force: "
            "`mailu-flows dkim-publish --force` (or the dkim-publish flow with force=true) publishes the "
            "whole record set"
        )


@dataclass(frozen=True)
class Change:
    """One create, update or delete; `old` is what the zone holds, `new` what it will hold."""

    kind: ChangeKind
    old: Record | None = None
    new: Record | None = None
    adopt: bool = False

    @property
    def record(self) -> Record:
        """The record this change is about (the new one, or the deleted one)."""
        rec = self.new or self.old
        assert rec is not None
        return rec

    def __str__(self) -> str:
        r = self.record
        if self.kind == "create":
            return f"create {r.name} {r.type} {r.ttl} {r.short(100)}"
        if self.kind == "delete":
            return f"delete {r.name} {r.type} {r.short(100)}"
        assert self.old is not None and self.new is not None
        take = " (adopt)" if self.adopt else ""
        old, new = self.old, self.new
        return f"update{take} {r.name} {r.type}: {old.ttl} {old.short(80)} -> {new.ttl} {new.short(80)}"


@dataclass(frozen=True)
class Conflict:
    """A slot we want that a foreign record holds: nothing is written there; `fix` says what to do."""

    desired: Record
    existing: tuple[Record, ...]
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.desired.name} {self.desired.type}: {self.reason}. Fix: {self.fix}"


def apply_order(changes: Iterable[Change]) -> list[Change]:
    """Creates/updates by rank (A/AAAA first, MX last), then deletes in reverse rank (MX first)."""
    items = list(changes)
    writes = [c for c in items if c.kind != "delete"]
    deletes = [c for c in items if c.kind == "delete"]
    writes.sort(key=lambda c: (_RANK.get(c.record.type, 5), c.record.name, c.record.key))
    deletes.sort(key=lambda c: (-_RANK.get(c.record.type, 5), c.record.name, c.record.key))
    return writes + deletes


@dataclass(frozen=True)
class Plan:
    """What applying the desired records to a zone would do; empty when the zone already agrees."""

    zone: str
    changes: tuple[Change, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    unchanged: tuple[Record, ...] = field(default=(), repr=False)
    owned_count: int = 0
    """How many records of the zone (apex SOA/NS aside) this owner managed when the plan was made."""

    @property
    def creates(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "create"]

    @property
    def updates(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "update"]

    @property
    def deletes(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "delete"]

    @property
    def empty(self) -> bool:
        """No changes to make (conflicts may still need a human)."""
        return not self.changes

    def change_limit(
        self, max_change_fraction: float = MAX_CHANGE_FRACTION, always_allowed: int = ALWAYS_ALLOWED_CHANGES
    ) -> int:
        """How many updates+deletes pass: `max_change_fraction` of the records we own, rounded down,
        but never fewer than `always_allowed` (see `ALWAYS_ALLOWED_CHANGES` for why)."""
        if not 0 < max_change_fraction <= 1:
            raise ValueError(f"max_change_fraction must be in (0, 1], got {max_change_fraction}")
        if always_allowed < 0:
            raise ValueError(f"always_allowed must be >= 0, got {always_allowed}")
        return max(always_allowed, math.floor(max_change_fraction * self.owned_count + 1e-9))

    def raise_if_unsafe(
        self,
        max_change_fraction: float = MAX_CHANGE_FRACTION,
        *,
        force: bool = False,
        always_allowed: int = ALWAYS_ALLOWED_CHANGES,
    ) -> None:
        """Raise `TooMuchChange` if updates+deletes exceed `change_limit(...)`; `force=True` skips it.

        Counted over the records we own (`owned_count`), whatever the provider, not over the zone: the
        other writers' records do not make ours safer to delete. Creates never count (a first publish
        creates everything); adopting a foreign record counts as an update.
        """
        if force:
            return
        limit = self.change_limit(max_change_fraction, always_allowed)
        updates, deletes = len(self.updates), len(self.deletes)
        if updates + deletes > limit:
            raise TooMuchChange(
                self.zone, updates, deletes, self.owned_count, max_change_fraction, limit, always_allowed
            )

    def summary(self) -> str:
        parts = [f"{len(self.creates)} create", f"{len(self.updates)} update", f"{len(self.deletes)} delete"]
        text = f"zone {self.zone}: " + ", ".join(parts)
        if self.conflicts:
            text += f", {len(self.conflicts)} conflict"
        return text

    def render_markdown(self, width: int = 60) -> str:
        """A markdown table of the changes (and the conflicts below it), for an artifact or a log."""
        lines = [f"**DNS plan** — {self.summary()}", ""]
        touched = len(self.updates) + len(self.deletes)
        lines += [
            f"Records mailu-flows owns in the zone: {self.owned_count}; this plan updates or deletes "
            f"{touched} of them (the change threshold counts these).",
            "",
        ]
        if self.changes:
            lines += ["| # | action | name | type | TTL | old | new |", "|---|---|---|---|---|---|---|"]
            for i, c in enumerate(self.changes, 1):
                old = c.old.short(width) if c.old else ""
                new = c.new.short(width) if c.new else ""
                ttl = c.new.ttl if c.new else (c.old.ttl if c.old else "")
                if c.old and c.new and c.old.ttl != c.new.ttl:
                    ttl = f"{c.old.ttl} → {c.new.ttl}"
                if c.old and c.new:
                    for provider, key, was, _ in c.old.option_changes(c.new):
                        shown = str(was).lower() if isinstance(was, bool) else was
                        old += f" ({provider}.{key}={shown})"
                action = c.kind + (" (adopt)" if c.adopt else "")
                r = c.record
                lines.append(f"| {i} | {action} | `{r.name}` | {r.type} | {ttl} | `{old}` | `{new}` |")
        else:
            lines.append("No changes: the zone already serves the desired records.")
        if self.conflicts:
            lines += ["", "**Conflicts** (nothing written there):", ""]
            for k in self.conflicts:
                lines.append(f"- `{k.desired.name}` {k.desired.type}: {k.reason}. *Fix:* {k.fix}")
        return "\n".join(lines) + "\n"

    def render_text(self) -> str:
        """Plain text for a terminal: one line per change and per conflict."""
        lines = [self.summary()]
        lines += [f"  {i}. {c}" for i, c in enumerate(self.changes, 1)]
        lines += [f"  CONFLICT {c}" for c in self.conflicts]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render_text()


def _is_protected(record: Record, zone: str | None) -> bool:
    """Apex SOA/NS (any SOA at all): the delegation, never ours to change."""
    if record.type == "SOA":
        return True
    return record.type == "NS" and (zone is None or record.name == zone)


def _conflict(desired: Record, foreign: list[Record]) -> Conflict:
    values = "; ".join(repr(f.short(80)) for f in foreign)
    if desired.key[2] == "spf1":
        return Conflict(
            desired,
            tuple(foreign),
            f"an SPF record not managed by mailu-flows already exists: {values} (two SPF records make SPF "
            "fail with permerror)",
            f"merge what it allows into dns.spf of the stack config (we want {desired.value!r}), then "
            "delete the old record, or re-run with adopt to let mailu-flows replace it",
        )
    if desired.type == "CNAME" or any(f.type == "CNAME" for f in foreign):
        return Conflict(
            desired,
            tuple(foreign),
            f"a CNAME cannot share its name with other records; the zone has {values} there",
            f"delete the records at {desired.name} that mailu-flows does not manage, or drop the option "
            "that asks for this record",
        )
    return Conflict(
        desired,
        tuple(foreign),
        f"a {desired.type} record not managed by mailu-flows already holds this slot: {values}",
        f"delete it (we want {desired.short(80)!r}) or re-run with adopt to let mailu-flows manage it",
    )


def plan(
    desired: Iterable[Record],
    existing: Iterable[Record],
    owned: Iterable[Record],
    *,
    zone: str | None = None,
    adopt: bool = False,
) -> Plan:
    """The changes that make the zone serve `desired`, touching only `owned` records.

    `existing` is everything the zone holds (as the provider lists it), `owned` the subset we manage.
    `zone` (default: the name of an existing SOA, else the shortest desired name) identifies the apex
    whose NS must never change; desired records outside it or at protected slots are a ValueError.
    With `adopt`, a foreign record in a slot we want is taken over (updated and marked ours).
    """
    want = list(desired)
    have = list(existing)
    mine = set(owned)
    if zone is None:
        soa = [r.name for r in have if r.type == "SOA"]
        zone = soa[0] if soa else (min((r.name for r in want), key=len) if want else None)
    zone_name = normalize_name(zone) if zone else ""

    by_key: dict[RecordKey, Record] = {}
    for r in want:
        if zone_name and not in_zone(r.name, zone_name):
            raise ValueError(f"desired record {r.name} {r.type} is outside zone {zone_name}")
        if _is_protected(r, zone_name or None):
            raise ValueError(f"desired record {r.name} {r.type} is the zone's SOA/apex NS; never managed")
        if r.key in by_key:
            raise ValueError(f"two desired records for the same slot: {by_key[r.key]} and {r}")
        by_key[r.key] = r

    considered = [r for r in have if not _is_protected(r, zone_name or None)]
    existing_by_key: dict[RecordKey, list[Record]] = defaultdict(list)
    existing_by_name: dict[str, list[Record]] = defaultdict(list)
    for r in considered:
        existing_by_key[r.key].append(r)
        existing_by_name[r.name].append(r)

    changes: list[Change] = []
    conflicts: list[Conflict] = []
    unchanged: list[Record] = []
    handled: set[int] = set()

    for key, d in sorted(by_key.items()):
        at_slot = existing_by_key.get(key, [])
        handled.update(id(r) for r in at_slot)
        foreign = [r for r in at_slot if r not in mine]
        ours = [r for r in at_slot if r in mine]
        # CNAME exclusivity: a foreign record of another type at the name blocks a CNAME, and vice versa.
        others = [r for r in existing_by_name.get(d.name, []) if r.key != key and r not in mine]
        clash = [r for r in others if d.type == "CNAME" or r.type == "CNAME"]
        if clash:
            conflicts.append(_conflict(d, clash))
            continue
        if foreign and not adopt:
            conflicts.append(_conflict(d, foreign))
            continue
        current = ours + foreign
        if not current:
            changes.append(Change("create", new=d))
            continue
        first, extra = current[0], current[1:]
        if first.differs(d) or first in foreign:
            changes.append(Change("update", old=first, new=d, adopt=first in foreign))
        else:
            unchanged.append(first)
        changes.extend(Change("delete", old=r) for r in extra)

    for r in considered:
        if id(r) not in handled and r in mine:
            changes.append(Change("delete", old=r))

    return Plan(
        zone=zone_name,
        changes=tuple(apply_order(changes)),
        conflicts=tuple(conflicts),
        unchanged=tuple(unchanged),
        owned_count=sum(1 for r in considered if r in mine),
    )
