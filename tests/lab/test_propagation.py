"""Propagation checks against the lab's real Knot primary and secondary, found through the zone's NS."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from lab.dns import refresh_secondary, set_notify
from lab.endpoints import DNS_PORT, DNS_PRIMARY, DNS_SECONDARY, ZONE
from mailu_core.dns import Nameserver, PropagationTimeout, Record, Status, desired_records, mx_a_warnings
from mailu_flows.dns.propagation import (
    check_propagation,
    discover_nameservers,
    nameservers_for,
    reverse_dns_warnings,
    wait_for_propagation,
)
from mailu_flows.dns.provider import plan_for

from .test_dns_providers import cleanup, dkim_2048, lab_config, make_rfc2136

pytestmark = pytest.mark.lab


@pytest.fixture
def label() -> Iterator[str]:
    name = f"t-{secrets.token_hex(5)}"
    try:
        yield name
    finally:
        cleanup(name)


def test_nameservers_are_discovered_from_the_zone_ns_records(lab_dns: Any) -> None:
    found = discover_nameservers(ZONE, bootstrap=DNS_PRIMARY, port=DNS_PORT)
    assert found == [
        Nameserver(f"ns1.{ZONE}", DNS_PRIMARY, DNS_PORT),
        Nameserver(f"ns2.{ZONE}", DNS_SECONDARY, DNS_PORT),
    ]
    # the config's override (hidden primaries) wins over discovery
    cfg = lab_config("x")
    assert nameservers_for(cfg, bootstrap=DNS_PRIMARY) == found
    overridden = cfg.model_copy(update={"dns": cfg.dns.model_copy(update={"nameservers": [DNS_SECONDARY]})})
    assert nameservers_for(overridden) == [Nameserver(DNS_SECONDARY, DNS_SECONDARY, 53)]


def test_stale_secondary_until_refreshed(lab_dns: Any, dns_notify_restored: None, label: str) -> None:
    servers = discover_nameservers(ZONE, bootstrap=DNS_PRIMARY, port=DNS_PORT)
    primary, secondary = servers
    provider = make_rfc2136(label)
    want = desired_records(lab_config(label), {"dkim": dkim_2048()})

    set_notify(False)
    provider.apply(plan_for(provider, want)[0])

    table = check_propagation(want, servers, zone=ZONE)
    for rec in want:
        assert table.status(rec, primary) is Status.OK
        assert table.status(rec, secondary) in (Status.STALE, Status.MISSING)
    assert table.status(want[0], secondary) is Status.STALE  # its SOA serial is behind the primary's

    progress: list[tuple[int, bool]] = []
    with pytest.raises(PropagationTimeout) as err:
        wait_for_propagation(
            want,
            servers,
            deadline_s=1.5,
            interval_s=0.2,
            zone=ZONE,
            on_progress=lambda t, attempt, elapsed: progress.append((attempt, t.ok)),
        )
    assert err.value.table.pending() and all(c.nameserver == secondary for c in err.value.table.pending())
    assert "stale" in str(err.value) and f"{DNS_SECONDARY}" in err.value.table.render_markdown()
    assert len(progress) >= 2 and not any(ok for _, ok in progress)

    assert refresh_secondary() is not None
    final = wait_for_propagation(want, servers, deadline_s=10, interval_s=0.2, zone=ZONE)
    assert final.ok and final.counts()[Status.OK] == len(want) * 2
    assert mx_a_warnings(want, final) == []


def test_wrong_value_and_unreachable_are_told_apart(lab_dns: Any, label: str) -> None:
    provider = make_rfc2136(label)
    rec = Record(f"mail.{label}.{ZONE}", "A", 60, ("192.0.2.1",))
    provider.apply(plan_for(provider, [rec])[0])
    refresh_secondary()
    other = Record(rec.name, "A", 60, ("192.0.2.2",))
    dead = Nameserver("dead", "127.0.0.9", 5399)
    table = check_propagation([other], [Nameserver("ns1", DNS_PRIMARY), dead], zone=ZONE, timeout_s=0.3)
    assert table.status(other, Nameserver("ns1", DNS_PRIMARY)) is Status.WRONG
    assert table.status(other, dead) is Status.UNREACHABLE


def test_reverse_dns_warnings_are_warnings(lab_dns: Any) -> None:
    # Knot is not authoritative for in-addr.arpa: no PTR, so a warning (not an exception)
    warnings = reverse_dns_warnings(["192.0.2.10"], f"mail.{ZONE}", resolver=DNS_PRIMARY, timeout_s=1)
    assert len(warnings) == 1 and "reverse DNS" in warnings[0] and "192.0.2.10" in warnings[0]
