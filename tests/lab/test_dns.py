"""The lab's Knot primary/secondary behave like real authoritative DNS: AA answers, TSIG-only updates,
NOTIFY-driven propagation that can be held back, journal across restarts."""

from __future__ import annotations

import os
import stat
import time
import uuid
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone
import pytest

from lab.dns import (
    TSIG_ALGORITHM,
    dns_status,
    ensure_dns,
    read_tsig_secret,
    refresh_secondary,
    set_notify,
    soa_serial,
    stop_dns,
)
from lab.endpoints import DNS_PORT, DNS_PRIMARY, DNS_SECONDARY, TSIG_KEY_NAME, ZONE
from lab.procs import running_pid

pytestmark = pytest.mark.lab


def _query(server: str, name: str, rdtype: str) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    q.flags &= ~dns.flags.RD
    resp, _ = dns.query.udp_with_fallback(q, server, port=DNS_PORT, timeout=2)
    return resp


def _a(server: str, name: str) -> list[str]:
    resp = _query(server, name, "A")
    return sorted(rd.address for rrset in resp.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset)


def _signed_update(info, name: str, address: str) -> dns.message.Message:
    u = dns.update.UpdateMessage(
        f"{ZONE}.", keyring=info.keyring(), keyname=dns.name.from_text(TSIG_KEY_NAME)
    )
    u.replace(name, 300, "A", address)
    return dns.query.tcp(u, DNS_PRIMARY, port=DNS_PORT, timeout=5)


def _unique() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _cleanup(info, name: str) -> None:
    u = dns.update.UpdateMessage(
        f"{ZONE}.", keyring=info.keyring(), keyname=dns.name.from_text(TSIG_KEY_NAME)
    )
    u.delete(name)
    dns.query.tcp(u, DNS_PRIMARY, port=DNS_PORT, timeout=5)


@pytest.mark.parametrize("server", [DNS_PRIMARY, DNS_SECONDARY])
def test_soa_and_ns_are_authoritative(lab_dns, server: str) -> None:
    for rdtype in ("SOA", "NS"):
        resp = _query(server, f"{ZONE}.", rdtype)
        assert resp.rcode() == dns.rcode.NOERROR
        assert resp.flags & dns.flags.AA, f"{server} {rdtype} not authoritative"
        assert any(r.rdtype == dns.rdatatype.from_text(rdtype) for r in resp.answer)
    ns = {rd.target.to_text() for rrset in _query(server, f"{ZONE}.", "NS").answer for rd in rrset}
    assert ns == {f"ns1.{ZONE}.", f"ns2.{ZONE}."}


def test_nameserver_discovery_from_the_zone(lab_dns) -> None:
    """Zone -> NS -> addresses, all answered by the zone itself: the NS set is reachable and agrees."""
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [DNS_PRIMARY]
    r.port = DNS_PORT
    targets = sorted(str(rd.target) for rd in r.resolve(f"{ZONE}.", "NS"))
    addrs = [rd.address for t in targets for rd in r.resolve(t, "A")]
    assert addrs == [DNS_PRIMARY, DNS_SECONDARY]
    # Earlier updates reach the secondary by NOTIFY within about a second: wait for them to agree.
    deadline = time.monotonic() + 10
    serials = {soa_serial(a) for a in addrs}
    while (len(serials) != 1 or None in serials) and time.monotonic() < deadline:
        time.sleep(0.2)
        serials = {soa_serial(a) for a in addrs}
    assert len(serials) == 1 and None not in serials, serials


def test_signed_update_is_visible_on_primary(lab_dns) -> None:
    name = _unique()
    try:
        resp = _signed_update(lab_dns, name, "192.0.2.10")
        assert resp.rcode() == dns.rcode.NOERROR and resp.had_tsig
        assert _a(DNS_PRIMARY, f"{name}.{ZONE}.") == ["192.0.2.10"]
    finally:
        _cleanup(lab_dns, name)


def test_unsigned_update_is_refused(lab_dns) -> None:
    name = _unique()
    u = dns.update.UpdateMessage(f"{ZONE}.")
    u.replace(name, 300, "A", "192.0.2.11")
    resp = dns.query.tcp(u, DNS_PRIMARY, port=DNS_PORT, timeout=5)
    assert resp.rcode() == dns.rcode.NOTAUTH
    assert _query(DNS_PRIMARY, f"{name}.{ZONE}.", "A").rcode() == dns.rcode.NXDOMAIN


def test_wrong_secret_fails(lab_dns) -> None:
    name = _unique()
    bad = dns.tsigkeyring.from_text(
        {TSIG_KEY_NAME: ("hmac-sha256", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")}
    )
    u = dns.update.UpdateMessage(f"{ZONE}.", keyring=bad, keyname=dns.name.from_text(TSIG_KEY_NAME))
    u.replace(name, 300, "A", "192.0.2.12")
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.tcp(u, DNS_PRIMARY, port=DNS_PORT, timeout=5)
    assert _query(DNS_PRIMARY, f"{name}.{ZONE}.", "A").rcode() == dns.rcode.NXDOMAIN


def test_notify_off_keeps_secondary_stale_until_refresh(lab_dns, dns_notify_restored) -> None:
    name = _unique()
    set_notify(False)
    assert dns_status()["notify"] is False
    try:
        assert _signed_update(lab_dns, name, "192.0.2.13").rcode() == dns.rcode.NOERROR
        time.sleep(2.5)  # Knot sends NOTIFY ~1 s after a change; nothing may arrive now
        assert _a(DNS_PRIMARY, f"{name}.{ZONE}.") == ["192.0.2.13"]
        assert _query(DNS_SECONDARY, f"{name}.{ZONE}.", "A").rcode() == dns.rcode.NXDOMAIN
        assert (soa_serial(DNS_SECONDARY) or 0) < (soa_serial(DNS_PRIMARY) or 0)
        assert refresh_secondary() == soa_serial(DNS_PRIMARY)
        assert _a(DNS_SECONDARY, f"{name}.{ZONE}.") == ["192.0.2.13"]
    finally:
        _cleanup(lab_dns, name)


def test_notify_on_secondary_catches_up(lab_dns) -> None:
    assert dns_status()["notify"] is True
    name = _unique()
    try:
        t0 = time.monotonic()
        assert _signed_update(lab_dns, name, "192.0.2.14").rcode() == dns.rcode.NOERROR
        while time.monotonic() - t0 < 5:
            if _a(DNS_SECONDARY, f"{name}.{ZONE}.") == ["192.0.2.14"]:
                break
            time.sleep(0.1)
        assert _a(DNS_SECONDARY, f"{name}.{ZONE}.") == ["192.0.2.14"], "secondary did not catch up in 5 s"
        assert soa_serial(DNS_SECONDARY) == soa_serial(DNS_PRIMARY)
    finally:
        _cleanup(lab_dns, name)


def test_ensure_dns_is_idempotent_and_fast(lab_dns) -> None:
    pids = (running_pid("knot-primary"), running_pid("knot-secondary"))
    t0 = time.monotonic()
    again = ensure_dns()
    assert time.monotonic() - t0 < 2
    assert again == lab_dns
    assert (running_pid("knot-primary"), running_pid("knot-secondary")) == pids


def test_secret_stays_private(lab_dns) -> None:
    secret = read_tsig_secret()
    assert secret not in repr(lab_dns)
    files = [lab_dns.tsig_secret_file, *Path(lab_dns.tsig_secret_file).parent.parent.glob("dns/*/knot.conf")]
    assert len(files) == 3
    for f in files:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    for name in ("knot-primary", "knot-secondary"):
        pid = running_pid(name)
        assert pid is not None
        assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_updates_survive_restart(lab_dns) -> None:
    """The journal keeps dynamic updates: stop both servers, start again, the record is still served."""
    name = _unique()
    try:
        assert _signed_update(lab_dns, name, "192.0.2.15").rcode() == dns.rcode.NOERROR
        serial = soa_serial(DNS_PRIMARY)
        assert stop_dns()
        assert soa_serial(DNS_PRIMARY, timeout=0.3) is None
        ensure_dns()
        assert soa_serial(DNS_PRIMARY) == serial
        assert soa_serial(DNS_SECONDARY) == serial
        assert _a(DNS_PRIMARY, f"{name}.{ZONE}.") == ["192.0.2.15"]
        assert _a(DNS_SECONDARY, f"{name}.{ZONE}.") == ["192.0.2.15"]
    finally:
        _cleanup(lab_dns, name)


def _axfr(keyring: dict[dns.name.Name, dns.tsig.Key] | None) -> dns.zone.Zone:
    xfr = dns.query.xfr(
        DNS_PRIMARY,
        ZONE,
        port=DNS_PORT,
        relativize=False,
        lifetime=5,
        keyring=keyring,
        keyname=TSIG_KEY_NAME if keyring else None,
        keyalgorithm=TSIG_ALGORITHM,
    )
    return dns.zone.from_xfr(xfr, relativize=False)


def test_zone_transfer_needs_the_tsig_key(lab_dns) -> None:
    """The primary refuses unsigned and wrongly signed AXFR of the lab zone, serves signed ones, and the
    secondary's own (signed) transfers keep it in sync."""
    with pytest.raises(dns.xfr.TransferError) as err:
        _axfr(None)
    assert err.value.rcode in (dns.rcode.NOTAUTH, dns.rcode.REFUSED)
    bad = dns.tsigkeyring.from_text(
        {TSIG_KEY_NAME: (TSIG_ALGORITHM, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")}
    )
    with pytest.raises(dns.tsig.PeerBadSignature):
        _axfr(bad)
    zone = _axfr(lab_dns.keyring())
    assert zone.get_rdataset(f"{ZONE}.", "SOA") is not None
    assert zone.get_rdataset(f"ns2.{ZONE}.", "A") is not None

    name = _unique()
    try:
        assert _signed_update(lab_dns, name, "192.0.2.16").rcode() == dns.rcode.NOERROR
        assert refresh_secondary() == soa_serial(DNS_PRIMARY)
        assert _a(DNS_SECONDARY, f"{name}.{ZONE}.") == ["192.0.2.16"]
    finally:
        _cleanup(lab_dns, name)
