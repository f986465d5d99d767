"""Both DNS providers against the lab: the Knot primary (RFC 2136) and the Cloudflare emulator (which
writes into the same Knot zone). Every check of what is published queries the Knot primary directly.

Each test works under its own label (`t-<random>.inlock.test`) with its own owner name, and removes
every name under the label and its ownership entry afterwards, so it can share the lab with other work.
"""

from __future__ import annotations

import secrets
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.update
import dns.zone
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.dns import TSIG_ALGORITHM, read_tsig_secret, soa_serial, tsig_keyring
from lab.endpoints import DNS_PORT, DNS_PRIMARY, TSIG_KEY_NAME, ZONE
from mailu_core.config import StackConfig, stack_config_from_mapping
from mailu_core.dns import Record, TooMuchChange, desired_records, dkim_txt_value
from mailu_flows.dns.cloudflare import CloudflareProvider
from mailu_flows.dns.provider import (
    DnsAuthError,
    DnsError,
    Provider,
    RecordOutsideZoneError,
    ZoneNotFoundError,
    plan_for,
)
from mailu_flows.dns.rfc2136 import OWNERSHIP_LABEL, Rfc2136Provider
from tests.core.dns.provider_contract import ProviderContract

pytestmark = pytest.mark.lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inlock.ai.yaml"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


# --- helpers -----------------------------------------------------------------------------------------


def lab_config(label: str, alternatives: tuple[str, ...] = ()) -> StackConfig:
    """The example config moved to `<label>.inlock.test` (zone inlock.test), with IPv4 and IPv6."""
    data = yaml.safe_load(EXAMPLE.read_text())
    domain = f"{label}.{ZONE}"
    host = f"mail.{domain}"
    data["mailu"].update(
        domain=domain,
        hostnames=[host],
        alternative_domains=[f"{a}.{domain}" for a in alternatives],
        public_ipv4="192.0.2.10",
        public_ipv6="2001:db8::10",
    )
    data["traefik"].update(admin_host=host, webmail_host=host)
    data["dns"].update(zone=ZONE, spf=None, ttl=60, dkim_ttl=60)
    data["dns"]["dmarc"]["rua"] = f"mailto:admin@{domain}"
    return stack_config_from_mapping(data, source="test")


def dkim_2048() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return dkim_txt_value(pem)


def primary_zone() -> dns.zone.Zone:
    """The zone as the Knot primary serves it, by a signed AXFR (it refuses unsigned ones)."""
    xfr = dns.query.xfr(
        DNS_PRIMARY,
        ZONE,
        port=DNS_PORT,
        relativize=False,
        keyring=tsig_keyring(),
        keyname=TSIG_KEY_NAME,
        keyalgorithm=TSIG_ALGORITHM,
    )
    return dns.zone.from_xfr(xfr, relativize=False)


def primary_records(suffix: str) -> set[Record]:
    """What the Knot primary holds at and below `suffix`, by AXFR, as records (TXT split per value)."""
    z = primary_zone()
    out: set[Record] = set()
    for name, rdataset in z.iterate_rdatasets():
        n = name.to_text(omit_final_dot=True)
        if n != suffix and not n.endswith("." + suffix):
            continue
        t = dns.rdatatype.to_text(rdataset.rdtype)
        if t == "TXT":
            out |= {Record(n, t, rdataset.ttl, (b"".join(rd.strings).decode(),)) for rd in rdataset}
        else:
            out.add(Record(n, t, rdataset.ttl, tuple(rd.to_text() for rd in rdataset)))
    return out


def served_txt_strings(name: str) -> list[list[int]]:
    q = dns.message.make_query(name + ".", "TXT")
    q.flags &= ~dns.flags.RD
    resp, _ = dns.query.udp_with_fallback(q, DNS_PRIMARY, port=DNS_PORT, timeout=2)
    return [[len(s) for s in rd.strings] for rrset in resp.answer for rd in rrset]


def raw_update(build: Callable[[dns.update.UpdateMessage], None]) -> None:
    u = dns.update.UpdateMessage(
        f"{ZONE}.", keyring=tsig_keyring(), keyname=dns.name.from_text(TSIG_KEY_NAME)
    )
    build(u)
    resp = dns.query.tcp(u, DNS_PRIMARY, port=DNS_PORT, timeout=5)
    assert resp.rcode() == 0, resp


def cleanup(label: str) -> None:
    """Remove every name under the label and the label's entry in the ownership record."""
    suffix = f"{label}.{ZONE}"
    z = primary_zone()
    names = [n for n in z.nodes if n.to_text(omit_final_dot=True).endswith(suffix)]
    own = z.get_rdataset(f"{OWNERSHIP_LABEL}.{ZONE}.", "TXT")
    ours = [rd for rd in (own or []) if rd.strings and rd.strings[0] == f"owner={label}".encode()]
    if not names and not ours:
        return

    def build(u: dns.update.UpdateMessage) -> None:
        for n in names:
            u.delete(n)
        for rd in ours:
            u.delete(f"{OWNERSHIP_LABEL}.{ZONE}.", rd)

    raw_update(build)


@pytest.fixture
def label() -> Iterator[str]:
    name = f"t-{secrets.token_hex(5)}"
    try:
        yield name
    finally:
        cleanup(name)


def make_rfc2136(owner: str, **kw: Any) -> Rfc2136Provider:
    return Rfc2136Provider(
        ZONE, DNS_PRIMARY, TSIG_KEY_NAME, read_tsig_secret(), port=DNS_PORT, owner=owner, **kw
    )


@pytest.fixture(params=["rfc2136", "cloudflare"])
def provider_factory(request: pytest.FixtureRequest, lab_dns: Any) -> Callable[[str], Provider]:
    """A function owner -> provider, for each of the two providers."""
    if request.param == "rfc2136":
        return make_rfc2136
    base_url = request.getfixturevalue("cf_base_url")
    token = request.getfixturevalue("cf_token")
    return lambda owner: CloudflareProvider(ZONE, token, base_url, owner=owner)


def writes(requests: list[dict[str, object]]) -> list[dict[str, object]]:
    return [r for r in requests if r["method"] in WRITES]


# --- both providers ----------------------------------------------------------------------------------


class TestProviderContract(ProviderContract):
    """The provider contract that the in-memory provider passes in the unit tests, here on RFC 2136
    against Knot and on Cloudflare against the emulator (`provider_factory` runs both)."""

    @pytest.fixture
    def zone(self) -> str:
        return ZONE

    @pytest.fixture
    def label(self, label: str) -> Iterator[str]:
        try:
            yield label
        finally:
            cleanup(f"{label}-b")  # the contract's second owner: its ownership entry in the zone


def test_first_apply_creates_exactly_the_desired_records_second_writes_nothing(
    provider_factory: Callable[[str], Provider],
    label: str,
    cf_requests: Callable[[], list[dict[str, object]]],
) -> None:
    provider = provider_factory(label)
    cfg = lab_config(label)
    dkim = dkim_2048()
    want = desired_records(cfg, {"dkim": dkim}, autoconfig=True, mta_sts_id="20250101")

    plan, _ = plan_for(provider, want)
    assert [c.kind for c in plan.changes] == ["create"] * len(want) and not plan.conflicts
    result = provider.apply(plan)
    assert result.complete and len(result.applied) == len(want)

    on_primary = primary_records(f"{label}.{ZONE}")
    assert {(r.name, r.type, r.ttl, r.values) for r in on_primary} == {
        (r.name, r.type, r.ttl, r.values) for r in want
    }
    # the 2048-bit DKIM value is served as several <=255-byte strings that join to the value
    assert served_txt_strings(f"dkim._domainkey.{label}.{ZONE}")[0][0] == 255

    serial = soa_serial(DNS_PRIMARY)
    seen = len(cf_requests())
    again, _ = plan_for(provider, want)
    assert again.empty and not again.conflicts, again.render_text()  # no drift, DKIM included
    assert provider.apply(again).applied == ()
    assert soa_serial(DNS_PRIMARY) == serial
    assert writes(cf_requests()[seen:]) == []
    # a different owner sees the same records as foreign: conflicts, no writes
    other, _ = plan_for(provider_factory(label + "-other"), want)
    assert other.empty and len(other.conflicts) == len(want)


def test_foreign_txt_beside_our_spf_survives_and_foreign_spf_is_a_conflict(
    provider_factory: Callable[[str], Provider], label: str
) -> None:
    provider = provider_factory(label)
    domain = f"{label}.{ZONE}"
    raw_update(lambda u: u.add(f"{domain}.", 60, "TXT", '"site-verification=abc"'))
    want = desired_records(lab_config(label))
    plan, _ = plan_for(provider, want)
    assert not plan.conflicts
    provider.apply(plan)
    apex_txt = {r.value for r in primary_records(domain) if r.name == domain and r.type == "TXT"}
    assert apex_txt == {"site-verification=abc", f"v=spf1 mx a:mail.{domain} ~all"}

    # dropping everything of ours deletes only ours
    cleanup_plan, _ = plan_for(provider, [])
    provider.apply(cleanup_plan)
    assert {(r.name, r.type, r.value) for r in primary_records(domain)} == {
        (domain, "TXT", "site-verification=abc")
    }

    # a foreign SPF where we want ours: reported with the fix, never overwritten
    raw_update(lambda u: u.add(f"{domain}.", 60, "TXT", '"v=spf1 include:elsewhere.example -all"'))
    plan, _ = plan_for(provider, want)
    (conflict,) = plan.conflicts
    assert conflict.desired.key[2] == "spf1" and "dns.spf" in conflict.fix
    provider.apply(plan)
    apex_txt = {r.value for r in primary_records(domain) if r.name == domain and r.type == "TXT"}
    assert apex_txt == {"site-verification=abc", "v=spf1 include:elsewhere.example -all"}


def test_change_threshold_counts_our_records_in_a_shared_zone(
    provider_factory: Callable[[str], Provider], label: str
) -> None:
    """The rail fires for a small Mailu record set in a big zone: 6 of our 6, not 6 of the zone's 30+."""
    provider = provider_factory(label)
    domain = f"{label}.{ZONE}"

    def foreign(u: dns.update.UpdateMessage) -> None:
        for i in range(24):
            u.add(f"h{i}.{domain}.", 60, "A", f"198.51.100.{i}")

    raw_update(foreign)  # another writer's records beside ours
    want = desired_records(lab_config(label), {"dkim": dkim_2048()})  # A, AAAA, MX, SPF, DMARC, DKIM
    assert len(want) == 6
    first, _ = plan_for(provider, want)
    first.raise_if_unsafe()  # creates never count
    provider.apply(first)

    gone, existing = plan_for(provider, [])
    assert gone.owned_count == 6 and len(gone.deletes) == 6 and existing >= 30
    with pytest.raises(TooMuchChange) as err:
        gone.raise_if_unsafe(0.3)
    assert "0 update(s) + 6 delete(s) = 6 of the 6 records mailu-flows owns in the zone (100%)" in str(
        err.value
    )
    assert "over the limit of 2" in str(err.value) and "--force" in str(err.value)
    assert len(primary_records(domain)) == 30  # nothing happened

    # a new server address updates A and AAAA: two changes always pass
    moved = {"A": "192.0.2.20", "AAAA": "2001:db8::20"}
    new_ip = [Record(r.name, r.type, r.ttl, (moved[r.type],)) if r.type in moved else r for r in want]
    move, _ = plan_for(provider, new_ip)
    assert sorted(c.kind for c in move.changes) == ["update", "update"]
    move.raise_if_unsafe(0.3)
    assert provider.apply(move).complete
    assert Record(f"mail.{domain}", "A", 60, ("192.0.2.20",)) in primary_records(domain)

    gone, _ = plan_for(provider, [])
    gone.raise_if_unsafe(0.3, force=True)
    assert provider.apply(gone).complete
    assert {r.name for r in primary_records(domain)} == {f"h{i}.{domain}" for i in range(24)}


def test_update_changes_values_and_ttl_in_place(
    provider_factory: Callable[[str], Provider], label: str
) -> None:
    provider = provider_factory(label)
    cfg = lab_config(label)
    first = desired_records(cfg, {"dkim": dkim_2048()})
    provider.apply(plan_for(provider, first)[0])
    second_key = dkim_2048()
    second = desired_records(cfg, {"dkim": second_key})
    second = [Record(r.name, r.type, 120, r.values) if r.type == "MX" else r for r in second]
    plan, _ = plan_for(provider, second)
    assert sorted((c.kind, c.record.type) for c in plan.changes) == [("update", "MX"), ("update", "TXT")]
    provider.apply(plan)
    on_primary = primary_records(f"{label}.{ZONE}")
    assert Record(f"dkim._domainkey.{label}.{ZONE}", "TXT", 60, (second_key,)) in on_primary
    assert plan_for(provider, second)[0].empty


def test_record_outside_the_zone_is_refused_naming_it(
    provider_factory: Callable[[str], Provider], label: str
) -> None:
    provider = provider_factory(label)
    with pytest.raises(RecordOutsideZoneError, match=r"mail\.example\.net A is outside zone inlock\.test"):
        plan_for(provider, [Record("mail.example.net", "A", 60, ("192.0.2.1",))])


# --- Cloudflare only ---------------------------------------------------------------------------------


@pytest.fixture
def cloudflare(cf_base_url: str, cf_token: str, label: str) -> CloudflareProvider:
    return CloudflareProvider(ZONE, cf_token, cf_base_url, owner=label, sleep=lambda s: None)


def test_cloudflare_retries_429_and_5xx_then_succeeds(
    cloudflare: CloudflareProvider,
    label: str,
    cf_faults: Callable[..., None],
    cf_requests: Callable[[], list[dict[str, object]]],
) -> None:
    recs = [Record(f"r{i}.{label}.{ZONE}", "A", 60, (f"192.0.2.{i}",)) for i in range(3)]
    plan, _ = plan_for(cloudflare, recs)
    cf_faults(status=429, count=1, retry_after="0.1", method="POST")  # the SDK's own retry
    cf_faults(status=503, count=1, method="POST")  # 5xx: retried by the SDK too
    cf_faults(status=429, count=4, retry_after="0", method="POST")  # beyond the SDK's 3 tries: ours
    assert cloudflare.apply(plan).complete
    posts = [r for r in cf_requests() if r["method"] == "POST"]
    assert [r["status"] for r in posts].count(429) == 5
    assert [r["status"] for r in posts].count(503) == 1
    assert [r["status"] for r in posts].count(200) == 3  # each record created exactly once
    assert primary_records(f"{label}.{ZONE}") == {Record(r.name, "A", 60, r.values) for r in recs}


def test_cloudflare_proxied_record_is_an_update(cloudflare: CloudflareProvider, label: str) -> None:
    rec = Record(f"mail.{label}.{ZONE}", "A", 60, ("192.0.2.1",))  # proxied=False: Cloudflare's default
    cloudflare.apply(plan_for(cloudflare, [rec])[0])
    proxied = rec.with_options("cloudflare", proxied=True)
    cloudflare.apply(plan_for(cloudflare, [proxied])[0])  # someone turned the proxy on
    plan, _ = plan_for(cloudflare, [rec])
    assert [(c.kind, c.old) for c in plan.changes] == [("update", proxied)]
    cloudflare.apply(plan)
    assert plan_for(cloudflare, [rec])[0].empty


def test_cloudflare_read_only_token_gives_a_clear_403(
    cf_base_url: str, cf_readonly_token: str, label: str
) -> None:
    ro = CloudflareProvider(ZONE, cf_readonly_token, cf_base_url, owner=label)
    plan, _ = plan_for(ro, [Record(f"mail.{label}.{ZONE}", "A", 60, ("192.0.2.1",))])
    with pytest.raises(DnsAuthError, match=r"lacks DNS edit permission for zone inlock\.test") as err:
        ro.apply(plan)
    assert err.value.result is not None and err.value.result.applied == ()
    assert cf_readonly_token not in str(err.value) and cf_readonly_token not in repr(ro)


def test_cloudflare_unknown_zone_is_named(cf_base_url: str, cf_token: str) -> None:
    with pytest.raises(ZoneNotFoundError, match=r"no zone named 'nope-zone\.test'"):
        CloudflareProvider("nope-zone.test", cf_token, cf_base_url).list_records()


# --- RFC 2136 only -----------------------------------------------------------------------------------


def test_rfc2136_reads_are_signed_and_fail_with_the_wrong_secret(
    lab_dns: Any, label: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The primary refuses unsigned transfers (tests/lab/test_dns.py); the provider's are signed, so its
    listing comes from the AXFR, not from the query fallback; a wrong secret fails the read itself."""
    provider = make_rfc2136(label)
    rec = Record(f"mail.{label}.{ZONE}", "A", 60, ("192.0.2.1",))
    provider.apply(plan_for(provider, [rec])[0])
    caplog.set_level("INFO", logger="mailu_flows.dns.rfc2136")
    listed = provider.list_records()  # no names: only a transfer can list the record
    assert rec in {p.record for p in listed if p.owned}
    assert len(listed) > 1 and not [r for r in caplog.records if "querying known names" in r.message]

    bad = Rfc2136Provider(ZONE, DNS_PRIMARY, TSIG_KEY_NAME, "d3Jvbmcgc2VjcmV0IGtleQ==", owner=label)
    wrong = rf"{DNS_PRIMARY}:53 rejected the signature of TSIG key '{TSIG_KEY_NAME}'"
    with pytest.raises(DnsAuthError, match=wrong + r" \(query _mailu-flows-owner\.inlock\.test TXT"):
        plan_for(bad, [rec])
    with pytest.raises(DnsAuthError, match=wrong + r" \(AXFR in zone inlock\.test\)"):
        bad._rrsets((), set())
    unknown = Rfc2136Provider(ZONE, DNS_PRIMARY, "no-such-key", read_tsig_secret(), owner=label)
    with pytest.raises(DnsAuthError, match=f"{DNS_PRIMARY}:53 does not know TSIG key 'no-such-key'"):
        unknown.list_records()


def test_rfc2136_wrong_tsig_secret_names_server_and_key(lab_dns: Any, label: str) -> None:
    plan, _ = plan_for(make_rfc2136(label), [Record(f"mail.{label}.{ZONE}", "A", 60, ("192.0.2.1",))])
    bad = Rfc2136Provider(ZONE, DNS_PRIMARY, TSIG_KEY_NAME, "d3Jvbmcgc2VjcmV0IGtleQ==", owner=label)
    with pytest.raises(
        DnsAuthError, match=rf"{DNS_PRIMARY}:53 rejected the signature of TSIG key '{TSIG_KEY_NAME}'"
    ) as err:
        bad.apply(plan)
    assert err.value.result is not None and not err.value.result.complete
    unknown = Rfc2136Provider(ZONE, DNS_PRIMARY, "no-such-key", read_tsig_secret(), owner=label)
    with pytest.raises(DnsAuthError, match=f"{DNS_PRIMARY}:53 does not know TSIG key 'no-such-key'") as err:
        unknown.apply(plan)
    assert err.value.result is not None and not err.value.result.complete
    assert primary_records(f"{label}.{ZONE}") == set()


class TsigMangler(socketserver.ThreadingTCPServer):
    """A DNS-over-TCP relay on loopback in front of the Knot primary that mangles the answers to one
    query type: `strip` removes their TSIG, `tamper` flips a header bit under it (RA), as a spoofer or
    a middlebox would. Requests pass unchanged."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str, qtype: str) -> None:
        self.mode, self.qtype, self.mangled = mode, dns.rdatatype.from_text(qtype), 0
        super().__init__(("127.0.0.1", 0), _ManglerHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def mangle(self, wire: bytes) -> bytes:
        self.mangled += 1
        if self.mode == "tamper":
            return wire[:3] + bytes([wire[3] ^ 0x80]) + wire[4:]
        msg = dns.message.from_wire(wire, keyring=False, one_rr_per_rrset=True)
        msg.tsig = None
        return msg.to_wire()


def _read_msg(sock: socket.socket) -> bytes | None:
    head = sock.recv(2, socket.MSG_WAITALL)
    if len(head) < 2:
        return None
    (length,) = struct.unpack("!H", head)
    return sock.recv(length, socket.MSG_WAITALL)


class _ManglerHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, TsigMangler)
        client: socket.socket = self.request
        client.settimeout(10)
        request = _read_msg(client)
        if request is None:
            return
        qtype = dns.message.from_wire(request, keyring=False).question[0].rdtype
        with socket.create_connection((DNS_PRIMARY, DNS_PORT), timeout=10) as upstream:
            upstream.sendall(struct.pack("!H", len(request)) + request)
            try:
                while (answer := _read_msg(upstream)) is not None:
                    if qtype == server.qtype:
                        answer = server.mangle(answer)
                    client.sendall(struct.pack("!H", len(answer)) + answer)
            except OSError:
                return  # the client hung up (it refused the answer)


@pytest.mark.parametrize(
    ("mode", "qtype", "what", "refusal"),
    [
        ("strip", "AXFR", "AXFR in zone inlock.test", "is not signed with TSIG key"),
        ("strip", "TXT", "query _mailu-flows-owner.inlock.test TXT in zone inlock.test", "is not signed"),
        ("tamper", "AXFR", "AXFR in zone inlock.test", "does not verify with TSIG key"),
        ("tamper", "TXT", "query _mailu-flows-owner.inlock.test TXT", "does not verify with TSIG key"),
    ],
)
def test_rfc2136_unsigned_or_altered_answers_are_refused(
    lab_dns: Any, label: str, mode: str, qtype: str, what: str, refusal: str
) -> None:
    """Knot's real answers with their TSIG removed or broken on the way: the provider plans from none
    of them (no fallback to another read) and names the server and the key."""
    relay = TsigMangler(mode, qtype)
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        provider = Rfc2136Provider(
            ZONE, "127.0.0.1", TSIG_KEY_NAME, read_tsig_secret(), port=relay.port, owner=label
        )
        with pytest.raises(DnsAuthError) as err:
            provider.list_records(names=[f"mail.{label}.{ZONE}"])
        msg = str(err.value)
        assert f"nameserver 127.0.0.1:{relay.port} ({what}" in msg, msg
        assert refusal in msg and f"'{TSIG_KEY_NAME}'" in msg and "refused" in msg, msg
        assert relay.mangled >= 1
    finally:
        relay.shutdown()
        relay.server_close()
        thread.join(5)
    # the same reads straight from the primary work: the refusal came from the mangling alone
    make_rfc2136(label).list_records(names=[f"mail.{label}.{ZONE}"])


def test_rfc2136_ownership_record_lists_our_slots(lab_dns: Any, label: str) -> None:
    provider = make_rfc2136(label)
    want = desired_records(lab_config(label))
    provider.apply(plan_for(provider, want)[0])
    own = primary_zone()
    rds = own.get_rdataset(f"{OWNERSHIP_LABEL}.{ZONE}.", "TXT")
    assert rds is not None
    (ours,) = [[s.decode() for s in rd.strings] for rd in rds if rd.strings[0] == f"owner={label}".encode()]
    assert f"{label} TXT spf1" in ours and f"mail.{label} A" in ours and f"_dmarc.{label} TXT dmarc1" in ours


def test_cloudflare_partial_apply_is_reported_and_the_next_run_converges(
    cloudflare: CloudflareProvider, label: str
) -> None:
    recs = [Record(f"r{i}.{label}.{ZONE}", "A", 60, (f"192.0.2.{i}",)) for i in range(3)]
    plan, _ = plan_for(cloudflare, recs)
    # another writer adds r1 between plan and apply: its create is refused (identical record exists)
    raw_update(lambda u: u.add(f"r1.{label}.{ZONE}.", 60, "A", "192.0.2.1"))
    with pytest.raises(DnsError, match="PARTIAL apply") as err:
        cloudflare.apply(plan)
    result = err.value.result
    assert result is not None and result.failed is not None and result.error is not None
    assert [c.record.name for c in result.applied] == [f"r0.{label}.{ZONE}"]
    assert result.failed.record.name == f"r1.{label}.{ZONE}" and "identical record" in result.error
    assert [c.record.name for c in result.not_applied] == [f"r2.{label}.{ZONE}"]
    # the next run creates the rest and reports the foreign r1 as a conflict
    again, _ = plan_for(cloudflare, recs)
    assert [c.record.name for c in again.creates] == [f"r2.{label}.{ZONE}"]
    assert [k.desired.name for k in again.conflicts] == [f"r1.{label}.{ZONE}"]
    cloudflare.apply(again)
    assert plan_for(cloudflare, recs)[0].empty
