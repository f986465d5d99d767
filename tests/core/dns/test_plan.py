"""Plan/diff with ownership, conflicts, the safety threshold and apply order (octoDNS-style)."""

from __future__ import annotations

import pytest

from mailu_core.dns import Record, TooMuchChange, apply_order, desired_records, plan

from .conftest import example_config

ZONE = "inlock.ai"
SOA = Record(ZONE, "SOA", 3600, ("ns1.inlock.ai. hostmaster.inlock.ai. 1 3600 600 86400 60",))
NS = Record(ZONE, "NS", 3600, ("ns1.cloudflare.com", "ns2.cloudflare.com"))
WEB = Record("www.inlock.ai", "A", 300, ("198.51.100.7",))
VERIFY = Record(ZONE, "TXT", 300, ("google-site-verification=abc123",))


def desired() -> list[Record]:
    return desired_records(example_config(public_ipv6="2001:db8::10"), {"dkim": "v=DKIM1; k=rsa; p=AAAA"})


def test_empty_zone_creates_everything_a_first_mx_last() -> None:
    p = plan(desired(), [SOA, NS], [], zone=ZONE)
    assert [c.kind for c in p.changes] == ["create"] * len(desired())
    types = [c.record.type for c in p.changes]
    assert types[:2] == ["A", "AAAA"] and types[-1] == "MX"
    assert not p.conflicts and not p.empty


def test_no_op_when_the_zone_agrees() -> None:
    want = desired()
    p = plan(want, [SOA, NS, WEB, VERIFY, *want], want, zone=ZONE)
    assert p.empty and not p.conflicts
    assert set(p.unchanged) == set(want)
    assert "No changes" in p.render_markdown()


def test_update_and_delete_show_old_and_new() -> None:
    # as plan_for gives it for Cloudflare: the provider's option default filled in
    want = [r.with_options("cloudflare", proxied=False) if r.type == "A" else r for r in desired()]
    old_a = Record("mail.inlock.ai", "A", 600, ("192.0.2.99",)).with_options("cloudflare", proxied=True)
    stale = Record("old._domainkey.inlock.ai", "TXT", 600, ("v=DKIM1; k=rsa; p=OLD",))
    existing = [r for r in want if r.type != "A"] + [old_a, stale, WEB]
    owned = [r for r in existing if r is not WEB]
    p = plan(want, existing, owned, zone=ZONE)
    assert [(c.kind, c.record.name) for c in p.changes] == [
        ("update", "mail.inlock.ai"),
        ("delete", "old._domainkey.inlock.ai"),
    ]
    upd = p.updates[0]
    assert upd.old == old_a and upd.new is not None and upd.new.values == ("203.0.113.10",)
    md = p.render_markdown()
    assert "192.0.2.99" in md and "203.0.113.10" in md and "cloudflare.proxied=true" in md and "delete" in md
    assert "mailu-flows owns in the zone: 7; this plan updates or deletes 2 of them" in md


def test_a_provider_option_alone_is_a_change() -> None:
    want = [r.with_options("cloudflare", proxied=False) if r.type == "A" else r for r in desired()]
    a = next(r for r in want if r.type == "A")
    proxied = a.with_options("cloudflare", proxied=True)
    existing = [r for r in want if r != a] + [proxied]
    p = plan(want, existing, existing, zone=ZONE)
    assert [(c.kind, c.old) for c in p.changes] == [("update", proxied)]
    # a zone listed by a provider without that option shows no difference
    plain = Record(a.name, "A", a.ttl, a.values)
    assert plan(want, [*[r for r in want if r != a], plain], want, zone=ZONE).changes == ()


def test_foreign_record_at_the_same_name_survives() -> None:
    want = desired()
    p = plan(want, [VERIFY, WEB], [], zone=ZONE)
    assert all(c.kind == "create" for c in p.changes)
    assert not any(c.record in (VERIFY, WEB) for c in p.changes)
    assert not p.conflicts
    # and once ours exist, the foreign TXT is still neither updated nor deleted
    p2 = plan([], [*want, VERIFY, WEB], want, zone=ZONE)
    assert {c.record for c in p2.deletes} == set(want)


def test_foreign_spf_is_a_conflict_with_a_fix_never_overwritten() -> None:
    want = desired()
    foreign_spf = Record(ZONE, "TXT", 300, ("v=spf1 include:_spf.google.com -all",))
    p = plan(want, [foreign_spf, VERIFY], [], zone=ZONE)
    assert not any(c.record.key == foreign_spf.key for c in p.changes)
    (conflict,) = p.conflicts
    assert conflict.existing == (foreign_spf,)
    assert "SPF" in conflict.reason and "dns.spf" in conflict.fix
    assert "Conflicts" in p.render_markdown()
    # adopt takes it over, explicitly
    p2 = plan(want, [foreign_spf], [], zone=ZONE, adopt=True)
    (upd,) = [c for c in p2.changes if c.record.key == foreign_spf.key]
    assert upd.kind == "update" and upd.adopt and upd.old == foreign_spf


def test_foreign_cname_blocks_our_records_at_that_name() -> None:
    cname = Record("mail.inlock.ai", "CNAME", 300, ("elsewhere.example.net",))
    p = plan(desired(), [cname], [], zone=ZONE)
    assert {c.desired.type for c in p.conflicts} == {"A", "AAAA"}
    assert "CNAME" in p.conflicts[0].reason


def test_apex_ns_and_soa_are_never_touched() -> None:
    p = plan([], [SOA, NS, WEB], [SOA, NS, WEB], zone=ZONE)
    assert [c.record for c in p.changes] == [WEB]
    with pytest.raises(ValueError, match="SOA/apex NS"):
        plan([Record(ZONE, "NS", 300, ("evil.example.net",))], [NS], [], zone=ZONE)
    with pytest.raises(ValueError, match="outside zone"):
        plan([Record("mail.example.net", "A", 300, ("192.0.2.1",))], [], [], zone=ZONE)
    # a delegation below the apex is an ordinary record
    sub_ns = Record("lab.inlock.ai", "NS", 300, ("ns.lab.inlock.ai",))
    assert [c.kind for c in plan([], [sub_ns], [sub_ns], zone=ZONE).changes] == ["delete"]


def test_threshold_counts_our_records_not_the_zone() -> None:
    """Deleting all our records of a big shared zone is refused: 6 of 6 owned, not 6 of 106 in the zone."""
    want = desired()
    foreign = [Record(f"h{i}.inlock.ai", "A", 300, (f"198.51.100.{i}",)) for i in range(100)]
    p = plan([], [SOA, NS, *want, *foreign], want, zone=ZONE)
    assert p.owned_count == len(want) == 6 and len(p.deletes) == 6
    with pytest.raises(TooMuchChange) as err:
        p.raise_if_unsafe()
    msg = str(err.value)
    assert "0 update(s) + 6 delete(s) = 6 of the 6 records mailu-flows owns in the zone (100%)" in msg
    assert "over the limit of 2 (30% of 6, dns.max_change_fraction, but at least 2)" in msg
    assert "nothing was changed" in msg and "--force" in msg and "force=true" in msg
    assert (err.value.updates, err.value.deletes, err.value.limit) == (0, 6, 2)
    p.raise_if_unsafe(force=True)
    p.raise_if_unsafe(1.0)


def test_threshold_applies_to_a_small_mail_zone() -> None:
    """octoDNS would skip a zone under 10 records; a Mailu zone is that small, so it is checked, with
    two updates+deletes always allowed."""
    want = desired()  # A, AAAA, MX, SPF, DMARC, DKIM: 6 owned, the whole zone
    moved = {"A": "192.0.2.20", "AAAA": "2001:db8::20"}
    new_ips = [
        Record(r.name, r.type, r.ttl, (moved[r.type],), r.provider_options) if r.type in moved else r
        for r in want
    ]
    p = plan(new_ips, want, want, zone=ZONE)
    assert len(p.updates) == 2
    p.raise_if_unsafe()  # a new server address (A + AAAA) is routine
    # a renamed mail domain: MX, SPF, DMARC and DKIM of the old one deleted (4 > 2)
    renamed = desired_records(
        example_config(domain="mx.inlock.ai", public_ipv6="2001:db8::10"), {"dkim": "v=DKIM1; k=rsa; p=AAAA"}
    )
    p2 = plan(renamed, want, want, zone=ZONE)
    assert len(p2.deletes) == 4
    with pytest.raises(TooMuchChange, match=r"of the 6 records mailu-flows owns in the zone"):
        p2.raise_if_unsafe()
    # one change in a 4-record zone passes; three do not
    small = [r for r in want if r.type in ("A", "MX", "TXT") and "_domainkey" not in r.name]
    assert len(small) == 4
    dropped = plan([r for r in small if r.type != "MX"], small, small, zone=ZONE)
    assert dropped.change_limit() == 2
    dropped.raise_if_unsafe()
    with pytest.raises(TooMuchChange, match=r"0 update\(s\) \+ 3 delete\(s\) = 3 of the 4"):
        plan(small[:1], small, small, zone=ZONE).raise_if_unsafe()


def test_threshold_fraction_takes_over_for_many_domains() -> None:
    """With many domains the fraction of what we own decides: a DMARC edit of every domain passes."""
    domains = [f"d{i}.inlock.ai" for i in range(10)]
    cfg = example_config(alternative_domains=domains)
    want = desired_records(cfg, {"dkim": "v=DKIM1; k=rsa; p=AAAA"})
    assert len(want) == 1 + 11 * 4  # one A, then MX, SPF, DMARC, DKIM per domain
    strict = [
        Record(r.name, r.type, r.ttl, (r.value.replace("p=", "p=reject; x=", 1),))
        if "_dmarc" in r.name
        else r
        for r in want
    ]
    p = plan(strict, want, want, zone=ZONE)
    assert len(p.updates) == 11 and p.change_limit() == 13  # floor(0.3 * 45)
    p.raise_if_unsafe()
    with pytest.raises(TooMuchChange, match=r"over the limit of 9 \(20% of 45"):
        p.raise_if_unsafe(0.2)
    # the limit rounds down, and a bad fraction is refused rather than silently never firing
    assert plan([], want[:10], want[:10], zone=ZONE).change_limit(0.29) == 2
    assert plan([], want[:10], want[:10], zone=ZONE).change_limit(0.3) == 3
    with pytest.raises(ValueError, match="max_change_fraction"):
        p.raise_if_unsafe(0.0)


def test_threshold_ignores_creates_and_counts_adoption() -> None:
    want = desired()
    foreign = [Record(f"h{i}.inlock.ai", "A", 300, (f"198.51.100.{i}",)) for i in range(6)]
    first = plan(want, foreign, [], zone=ZONE)
    assert first.owned_count == 0 and len(first.creates) == len(want)
    first.raise_if_unsafe()  # a first publish creates everything
    # taking over three foreign records in our slots is three updates of someone else's records
    theirs = [
        Record(r.name, r.type, r.ttl, ("v=spf1 -all",) if r.key[2] == "spf1" else r.values) for r in want
    ]
    theirs = [
        r
        for r in theirs
        if r.type in ("A", "AAAA", "TXT") and "_dmarc" not in r.name and "_domainkey" not in r.name
    ]
    adopt = plan(want, theirs, [], zone=ZONE, adopt=True)
    assert len([c for c in adopt.updates if c.adopt]) == 3
    with pytest.raises(TooMuchChange, match=r"3 update\(s\) \+ 0 delete\(s\)"):
        adopt.raise_if_unsafe()
    # apex SOA/NS are never counted as ours
    assert plan([], [SOA, NS], [SOA, NS], zone=ZONE).owned_count == 0


def test_apply_order_writes_a_first_mx_last_deletes_mx_first() -> None:
    want = desired()
    old_mx = Record("old.inlock.ai", "MX", 600, ("10 mail.old.inlock.ai",))
    old_a = Record("mail.old.inlock.ai", "A", 600, ("192.0.2.5",))
    p = plan(want, [old_mx, old_a], [old_mx, old_a], zone=ZONE)
    kinds = [(c.kind, c.record.type) for c in p.changes]
    assert kinds[0] == ("create", "A") and kinds[len(want) - 1] == ("create", "MX")
    assert kinds[len(want) :] == [("delete", "MX"), ("delete", "A")]
    assert apply_order(reversed(p.changes)) == list(p.changes)
