"""Classification of what each nameserver serves."""

from __future__ import annotations

from mailu_core.dns import Answer, Nameserver, PropagationTimeout, Record, Status, build_table, mx_a_warnings

PRIMARY = Nameserver("ns1.inlock.test", "127.0.0.2")
SECONDARY = Nameserver("ns2.inlock.test", "127.0.0.3")
SPF = Record("inlock.test", "TXT", 60, ("v=spf1 mx -all",))
A = Record("mail.inlock.test", "A", 60, ("192.0.2.1",))
MX = Record("inlock.test", "MX", 60, ("10 mail.inlock.test",))


def test_statuses() -> None:
    answers = {
        (SPF, PRIMARY): Answer.of("TXT", ["v=spf1 mx -all", "other=1"]),
        (SPF, SECONDARY): Answer.of("TXT", ["other=1"]),
        (A, PRIMARY): Answer.of("A", ["192.0.2.9"]),
        (A, SECONDARY): Answer(error="Timeout"),
        (MX, PRIMARY): Answer.of("MX", []),
        (MX, SECONDARY): Answer.of("MX", []),
    }
    t = build_table([SPF, A, MX], [PRIMARY, SECONDARY], answers, {PRIMARY: 5, SECONDARY: 4})
    assert t.status(SPF, PRIMARY) is Status.OK  # foreign TXT beside ours is fine
    assert t.status(SPF, SECONDARY) is Status.STALE
    assert t.status(A, PRIMARY) is Status.WRONG
    assert t.status(A, SECONDARY) is Status.UNREACHABLE
    assert t.status(MX, PRIMARY) is Status.MISSING
    assert not t.ok
    assert "stale" in t.render_markdown() and "serial 4" in t.render_markdown()
    err = PropagationTimeout(t, 3.0)
    assert err.table is t and "stale" in str(err)


def test_all_ok_and_mx_a_warnings() -> None:
    answers = {(r, ns): Answer.of(r.type, r.values) for r in (A, MX) for ns in (PRIMARY, SECONDARY)}
    t = build_table([A, MX], [PRIMARY, SECONDARY], answers, {PRIMARY: 5, SECONDARY: 5})
    assert t.ok and t.counts()[Status.OK] == 4
    assert mx_a_warnings([A, MX], t) == []
    assert "no A/AAAA" in mx_a_warnings([MX])[0]
    bad = build_table([A, MX], [PRIMARY], {(MX, PRIMARY): Answer.of("MX", MX.values)}, {PRIMARY: 5})
    assert "points at mail.inlock.test" in mx_a_warnings([A, MX], bad)[0]
