"""The DNS provider contract: what every `Provider` does, whatever is behind it.

`ProviderContract` is a class of tests; a subclass supplies three fixtures and runs them against its
provider: `provider_factory` (owner -> Provider on the zone), `label` (a fresh name under the zone that
the test may fill and that is cleaned afterwards) and `zone`. The unit tests run it on the in-memory
provider (tests/core/dns/test_memory_provider.py), the lab on RFC 2136 against Knot and on Cloudflare
against the emulator (tests/lab/test_dns_providers.py). Every record a test writes lies under
`<label>.<zone>`, and the second owner is `<label>-b`, so a shared zone is left as it was found.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from mailu_core.dns import Record
from mailu_flows.dns.provider import Provider, RecordOutsideZoneError, UnsupportedRecord, plan_for

Factory = Callable[[str], Provider]
DKIM_LIKE = "v=DKIM1; k=rsa; p=" + "A" * 392  # longer than one 255-byte character-string


def under(provider: Provider, base: str) -> dict[tuple[str, str, tuple[str, ...]], tuple[int, bool]]:
    """What the provider lists at and below `base`: (name, type, values) -> (ttl, owned)."""
    return {
        (p.record.name, p.record.type, p.record.values): (p.record.ttl, p.owned)
        for p in provider.list_records()
        if p.record.name == base or p.record.name.endswith("." + base)
    }


class ProviderContract:
    """Tests every provider passes (see the module docstring)."""

    @pytest.fixture
    def base(self, label: str, zone: str) -> str:
        return f"{label}.{zone}"

    def records(self, base: str) -> list[Record]:
        mail = f"mail.{base}"
        return [
            Record(mail, "A", 60, ("192.0.2.10",)),
            Record(mail, "AAAA", 60, ("2001:db8::10",)),
            Record(base, "MX", 60, (f"10 {mail}",)),
            Record(base, "TXT", 60, (f"v=spf1 mx a:{mail} ~all",)),
            Record(f"dkim._domainkey.{base}", "TXT", 60, (DKIM_LIKE,)),
            Record(f"_imaps._tcp.{base}", "SRV", 60, (f"10 1 993 {mail}",)),
            Record(f"autoconfig.{base}", "CNAME", 60, (mail,)),
        ]

    def test_publish_then_nothing_to_do(self, provider_factory: Factory, label: str, base: str) -> None:
        provider = provider_factory(label)
        want = self.records(base)
        plan, _ = plan_for(provider, want)
        assert [c.kind for c in plan.changes] == ["create"] * len(want) and not plan.conflicts
        types = [c.record.type for c in plan.changes]
        assert types[0] in ("A", "AAAA") and types[-1] == "MX"  # apply order: MX last
        assert provider.apply(plan).complete
        assert under(provider, base) == {(r.name, r.type, r.values): (r.ttl, True) for r in want}
        again, _ = plan_for(provider, want)
        assert again.empty and not again.conflicts, again.render_text()
        assert again.owned_count == len(want)
        assert provider.apply(again).applied == ()

    def test_update_in_place(self, provider_factory: Factory, label: str, base: str) -> None:
        provider = provider_factory(label)
        want = self.records(base)
        provider.apply(plan_for(provider, want)[0])
        moved = [
            Record(r.name, r.type, r.ttl, ("192.0.2.99",)) if r.type == "A"
            else Record(r.name, r.type, 120, r.values) if r.type == "MX" else r
            for r in want
        ]  # fmt: skip
        plan, _ = plan_for(provider, moved)
        assert sorted((c.kind, c.record.type) for c in plan.changes) == [("update", "A"), ("update", "MX")]
        provider.apply(plan)
        listed = under(provider, base)
        assert listed[(f"mail.{base}", "A", ("192.0.2.99",))] == (60, True)
        assert listed[(base, "MX", (f"10 mail.{base}",))] == (120, True)
        assert plan_for(provider, moved)[0].empty

    def test_only_our_records_are_deleted(self, provider_factory: Factory, label: str, base: str) -> None:
        ours, theirs = provider_factory(label), provider_factory(f"{label}-b")
        verification = Record(base, "TXT", 60, ("site-verification=abc",))
        theirs.apply(plan_for(theirs, [verification])[0])
        ours.apply(plan_for(ours, self.records(base))[0])
        assert under(ours, base)[(base, "TXT", (verification.value,))] == (60, False)
        plan, _ = plan_for(ours, [])
        assert len(plan.deletes) == len(self.records(base)) and not plan.creates and not plan.updates
        plan.raise_if_unsafe(force=True)  # deleting everything we own is over the rail without force
        ours.apply(plan)
        assert under(ours, base) == {(base, "TXT", (verification.value,)): (60, False)}
        theirs.apply(plan_for(theirs, [])[0])
        assert under(ours, base) == {}

    def test_foreign_record_in_our_slot_is_a_conflict_until_adopted(
        self, provider_factory: Factory, label: str, base: str
    ) -> None:
        ours, theirs = provider_factory(label), provider_factory(f"{label}-b")
        foreign_spf = Record(base, "TXT", 60, ("v=spf1 include:elsewhere.example -all",))
        theirs.apply(plan_for(theirs, [foreign_spf])[0])
        want = [Record(base, "TXT", 60, ("v=spf1 mx ~all",))]
        plan, _ = plan_for(ours, want)
        assert plan.empty and [c.desired for c in plan.conflicts] == want
        adopted, _ = plan_for(ours, want, adopt=True)
        (change,) = adopted.changes
        assert change.kind == "update" and change.adopt and change.old == foreign_spf
        ours.apply(adopted)
        assert under(ours, base) == {(base, "TXT", ("v=spf1 mx ~all",)): (60, True)}
        ours.apply(plan_for(ours, [])[0])
        theirs.apply(plan_for(theirs, [])[0])

    def test_two_owners_share_the_zone(self, provider_factory: Factory, label: str, base: str) -> None:
        a, b = provider_factory(label), provider_factory(f"{label}-b")
        a_rec = Record(f"a.{base}", "A", 60, ("192.0.2.1",))
        b_rec = Record(f"b.{base}", "A", 60, ("192.0.2.2",))
        a.apply(plan_for(a, [a_rec])[0])
        b.apply(plan_for(b, [b_rec])[0])
        assert plan_for(a, [a_rec])[0].empty and plan_for(b, [b_rec])[0].empty  # neither deletes the other
        listed = under(a, base)
        assert listed[(a_rec.name, "A", a_rec.values)] == (60, True)
        assert listed[(b_rec.name, "A", b_rec.values)] == (60, False)
        b.apply(plan_for(b, [])[0])
        a.apply(plan_for(a, [])[0])

    def test_refusals_come_before_any_read_or_write(
        self, provider_factory: Factory, label: str, base: str
    ) -> None:
        provider = provider_factory(label)
        with pytest.raises(RecordOutsideZoneError, match=r"outside-the-zone\.example"):
            plan_for(provider, [Record("mail.outside-the-zone.example", "A", 60, ("192.0.2.1",))])
        with pytest.raises(UnsupportedRecord, match=re.escape(f"cannot publish 10.{base} PTR")):
            plan_for(provider, [Record(f"10.{base}", "PTR", 60, (f"mail.{base}",))])
        unknown = Record(f"mail.{base}", "A", 60, ("192.0.2.1",)).with_options(provider.name, no_such=1)
        with pytest.raises(UnsupportedRecord, match=re.escape(f"{provider.name}.no_such")):
            plan_for(provider, [unknown])
        assert under(provider, base) == {}

    def test_other_providers_options_are_ignored(
        self, provider_factory: Factory, label: str, base: str
    ) -> None:
        provider = provider_factory(label)
        rec = Record(f"mail.{base}", "A", 60, ("192.0.2.1",)).with_options("elsewhere", weight=5)
        provider.apply(plan_for(provider, [rec])[0])
        assert under(provider, base) == {(rec.name, "A", rec.values): (60, True)}
        assert plan_for(provider, [rec])[0].empty
        provider.apply(plan_for(provider, [])[0])
