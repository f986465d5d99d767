"""The Cloudflare API emulator, driven through the official SDK, writes into the real Knot primary.

Every test uses names under its own random label and deletes what it created, so tests can run
against a lab that other work also uses.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import cloudflare
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.cf_emulator import ZONE_ID, lab_call
from lab.endpoints import CF_BASE_URL, DNS_PORT, DNS_PRIMARY, TSIG_KEY_NAME, ZONE

pytestmark = pytest.mark.lab


# --- helpers -----------------------------------------------------------------------------------------


def _answer(name: str, rdtype: str) -> tuple[int, list[Any], int | None]:
    """(rcode, rdatas, ttl) for name/type as the Knot primary serves it, authoritatively."""
    q = dns.message.make_query(name, rdtype)
    q.flags &= ~dns.flags.RD
    resp, _ = dns.query.udp_with_fallback(q, DNS_PRIMARY, port=DNS_PORT, timeout=2)
    assert resp.flags & dns.flags.AA
    for rrset in resp.answer:
        if rrset.rdtype == dns.rdatatype.from_text(rdtype):
            return resp.rcode(), list(rrset), rrset.ttl
    return resp.rcode(), [], None


def _txt_values(name: str) -> list[str]:
    _, rds, _ = _answer(name, "TXT")
    return sorted(b"".join(rd.strings).decode() for rd in rds)


@pytest.fixture
def cf(cf_base_url: str, cf_token: str) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=cf_token, base_url=cf_base_url)


@pytest.fixture
def zone_id(cf: Any) -> str:
    return str(next(iter(cf.zones.list(name=ZONE))).id)


@pytest.fixture
def sub(cf: Any, zone_id: str) -> Iterator[str]:
    """A fresh subdomain for this test; every record under it is deleted afterwards."""
    label = f"t{uuid.uuid4().hex[:8]}.{ZONE}"
    yield label
    for rec in cf.dns.records.list(zone_id=zone_id, name={"endswith": label}, per_page=500):
        with contextlib.suppress(cloudflare.NotFoundError):
            cf.dns.records.delete(rec.id, zone_id=zone_id)


# --- zones -------------------------------------------------------------------------------------------


def test_zone_lookup_by_name_ends_pagination(cf: Any, cf_requests) -> None:
    zones = list(cf.zones.list(name=ZONE))
    assert [(z.id, z.name, z.status) for z in zones] == [(ZONE_ID, ZONE, "active")]
    assert zones[0].name_servers == [f"ns1.{ZONE}", f"ns2.{ZONE}"]
    pages = [r["query"] for r in cf_requests() if r["path"].endswith("/zones")]
    assert len(pages) == 2, pages  # page 1, then the empty page that ends the SDK's iteration
    assert list(cf.zones.list(name="other.test")) == []
    assert cf.zones.get(zone_id=ZONE_ID).name == ZONE
    with pytest.raises(cloudflare.NotFoundError):
        cf.zones.get(zone_id="0" * 32)


# --- records -----------------------------------------------------------------------------------------


def test_a_record_lifecycle_lands_in_knot(cf: Any, zone_id: str, sub: str) -> None:
    name = f"www.{sub}"
    rec = cf.dns.records.create(
        zone_id=zone_id, type="A", name=name, content="192.0.2.20", ttl=300, proxied=False, comment="lab"
    )
    assert (rec.type, rec.name, rec.content, rec.ttl, rec.comment) == ("A", name, "192.0.2.20", 300, "lab")
    assert type(rec).__name__ == "ARecord" and rec.proxiable is True
    rcode, rds, ttl = _answer(name, "A")
    assert rcode == dns.rcode.NOERROR and [rd.address for rd in rds] == ["192.0.2.20"] and ttl == 300

    listed = list(cf.dns.records.list(zone_id=zone_id, name=name, type="A"))
    assert [r.id for r in listed] == [rec.id]
    assert [r.id for r in cf.dns.records.list(zone_id=zone_id, name={"exact": name})] == [rec.id]
    assert [r.id for r in cf.dns.records.list(zone_id=zone_id, content="192.0.2.20", name=name)] == [rec.id]

    edited = cf.dns.records.edit(rec.id, zone_id=zone_id, type="A", name=name, content="192.0.2.21", ttl=300)
    assert edited.id == rec.id and edited.content == "192.0.2.21" and edited.comment == "lab"
    assert [rd.address for rd in _answer(name, "A")[1]] == ["192.0.2.21"]

    updated = cf.dns.records.update(
        rec.id, zone_id=zone_id, type="A", name=name, content="192.0.2.22", ttl=600
    )
    assert updated.ttl == 600 and updated.comment is None  # PUT replaces: the comment is gone
    _, rds, ttl = _answer(name, "A")
    assert [rd.address for rd in rds] == ["192.0.2.22"] and ttl == 600
    assert cf.dns.records.get(rec.id, zone_id=zone_id).content == "192.0.2.22"

    assert cf.dns.records.delete(rec.id, zone_id=zone_id).id == rec.id
    assert _answer(name, "A")[0] == dns.rcode.NXDOMAIN
    with pytest.raises(cloudflare.NotFoundError):
        cf.dns.records.get(rec.id, zone_id=zone_id)


def test_mx_record_needs_priority_and_lands_in_knot(cf: Any, zone_id: str, sub: str) -> None:
    with pytest.raises(cloudflare.BadRequestError):
        cf.dns.records.create(zone_id=zone_id, type="MX", name=sub, content=f"mx1.{sub}", ttl=300)
    rec = cf.dns.records.create(
        zone_id=zone_id, type="MX", name=sub, content=f"mx1.{sub}", priority=10, ttl=300
    )
    assert type(rec).__name__ == "MXRecord" and rec.priority == 10 and rec.proxiable is False
    _, rds, _ = _answer(sub, "MX")
    assert [(rd.preference, rd.exchange.to_text()) for rd in rds] == [(10, f"mx1.{sub}.")]
    cf.dns.records.edit(
        rec.id, zone_id=zone_id, type="MX", name=sub, content=f"mx2.{sub}", priority=20, ttl=300
    )
    _, rds, _ = _answer(sub, "MX")
    assert [(rd.preference, rd.exchange.to_text()) for rd in rds] == [(20, f"mx2.{sub}.")]
    with pytest.raises(cloudflare.BadRequestError):
        cf.dns.records.create(
            zone_id=zone_id, type="MX", name=sub, content="x", priority=1, ttl=1, proxied=True
        )


def test_txt_quoted_and_unquoted(cf: Any, zone_id: str, sub: str) -> None:
    spf = cf.dns.records.create(zone_id=zone_id, type="TXT", name=sub, content='"v=spf1 mx -all"', ttl=300)
    dmarc = cf.dns.records.create(
        zone_id=zone_id, type="TXT", name=f"_dmarc.{sub}", content="v=DMARC1; p=none", ttl=1
    )
    assert type(spf).__name__ == "TXTRecord"
    assert spf.content == '"v=spf1 mx -all"'  # echoed as sent
    assert dmarc.content == "v=DMARC1; p=none" and dmarc.ttl == 1
    assert _txt_values(sub) == ["v=spf1 mx -all"]
    assert _txt_values(f"_dmarc.{sub}") == ["v=DMARC1; p=none"]
    assert _answer(f"_dmarc.{sub}", "TXT")[2] == 300  # ttl 1 = automatic = 300 s in DNS
    # Filters compare the logical value, so quoting does not matter.
    assert [r.id for r in cf.dns.records.list(zone_id=zone_id, type="TXT", content="v=spf1 mx -all")] == [
        spf.id
    ]
    with pytest.raises(cloudflare.BadRequestError) as dup:
        cf.dns.records.create(zone_id=zone_id, type="TXT", name=sub, content="v=spf1 mx -all", ttl=300)
    assert dup.value.body["errors"][0]["code"] == 81058  # type: ignore[index]


def _dkim_value() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def test_dkim_2048_txt_round_trips_without_drift(cf: Any, zone_id: str, sub: str) -> None:
    value = _dkim_value()
    assert len(value) > 255
    name = f"dkim._domainkey.{sub}"
    rec = cf.dns.records.create(zone_id=zone_id, type="TXT", name=name, content=value, ttl=300)
    _, rds, _ = _answer(name, "TXT")
    assert [len(s) for s in rds[0].strings] == [255, len(value) - 255]
    assert _txt_values(name) == [value]
    again = cf.dns.records.list(zone_id=zone_id, name=name, type="TXT").result
    assert [(r.id, r.content) for r in again] == [(rec.id, value)]

    # The SDK's documented form (quoted 255-byte strings) lands identically and is echoed as sent.
    quoted = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    rec2 = cf.dns.records.create(
        zone_id=zone_id, type="TXT", name=f"s2._domainkey.{sub}", content=quoted, ttl=300
    )
    assert rec2.content == quoted
    assert _txt_values(f"s2._domainkey.{sub}") == [value]


def test_pagination_over_more_records_than_per_page(cf: Any, zone_id: str, sub: str, cf_requests) -> None:
    for i in range(7):
        cf.dns.records.create(
            zone_id=zone_id, type="A", name=f"h{i}.{sub}", content=f"192.0.2.{100 + i}", ttl=300
        )
    before = len(cf_requests())
    names = [r.name for r in cf.dns.records.list(zone_id=zone_id, name={"endswith": sub}, per_page=3)]
    assert sorted(names) == [f"h{i}.{sub}" for i in range(7)]
    lists = [r for r in cf_requests()[before:] if r["method"] == "GET"]
    assert len(lists) == 4  # pages 1-3, then an empty page 4
    page = cf.dns.records.list(zone_id=zone_id, name={"endswith": sub}, per_page=3, page=3)
    assert len(page.result) == 1 and page.result_info.total_count == 7


def test_apex_soa_ns_are_not_listed(cf: Any, zone_id: str) -> None:
    records = list(cf.dns.records.list(zone_id=zone_id, name=ZONE, per_page=5000))
    assert not [r for r in records if r.type in ("SOA", "NS")]
    assert not list(cf.dns.records.list(zone_id=zone_id, name=f"ns1.{ZONE}"))
    with pytest.raises(cloudflare.BadRequestError):
        cf.dns.records.create(zone_id=zone_id, type="NS", name=ZONE, content="ns9.example.net", ttl=300)


def test_records_written_by_other_means_show_up(cf: Any, zone_id: str, sub: str, lab_dns) -> None:
    name = f"foreign.{sub}"
    u = dns.update.UpdateMessage(
        f"{ZONE}.", keyring=lab_dns.keyring(), keyname=dns.name.from_text(TSIG_KEY_NAME)
    )
    u.add(f"{name}.", 120, "A", "192.0.2.30")
    assert dns.query.tcp(u, DNS_PRIMARY, port=DNS_PORT, timeout=5).rcode() == dns.rcode.NOERROR
    listed = cf.dns.records.list(zone_id=zone_id, name=name).result
    assert [(r.type, r.content, r.ttl) for r in listed] == [("A", "192.0.2.30", 120)]
    rid = listed[0].id
    assert cf.dns.records.list(zone_id=zone_id, name=name).result[0].id == rid  # the id is stable
    cf.dns.records.delete(rid, zone_id=zone_id)
    assert _answer(name, "A")[0] == dns.rcode.NXDOMAIN


def test_name_outside_zone_is_rejected(cf: Any, zone_id: str) -> None:
    with pytest.raises(cloudflare.BadRequestError):
        cf.dns.records.create(zone_id=zone_id, type="A", name="www.example.org", content="192.0.2.1", ttl=300)


def test_second_run_makes_no_writes(cf: Any, zone_id: str, sub: str, cf_requests) -> None:
    """The kind of check flows rely on: an idempotent 'ensure' only reads when nothing changed."""

    def ensure(name: str, content: str) -> None:
        have = cf.dns.records.list(zone_id=zone_id, name=name, type="A").result
        if [r.content for r in have] != [content]:
            for r in have:
                cf.dns.records.delete(r.id, zone_id=zone_id)
            cf.dns.records.create(zone_id=zone_id, type="A", name=name, content=content, ttl=300)

    ensure(f"app.{sub}", "192.0.2.40")
    mark = len(cf_requests())
    ensure(f"app.{sub}", "192.0.2.40")
    second = cf_requests()[mark:]
    assert second and all(r["method"] == "GET" for r in second)


# --- faults, retries, auth ---------------------------------------------------------------------------


def test_429_with_retry_after_then_success(cf: Any, zone_id: str, cf_faults, cf_requests) -> None:
    cf_faults(status=429, count=1, retry_after="0.1")
    t0 = time.monotonic()
    cf.dns.records.list(zone_id=zone_id, name=f"nothing.{ZONE}")
    assert time.monotonic() - t0 < 2
    calls = cf_requests()
    assert [r["status"] for r in calls] == [429, 200]
    assert calls[1]["retry_count"] == "1"


def test_5xx_then_success(cf: Any, zone_id: str, cf_faults, cf_requests) -> None:
    cf_faults(status=503, count=1)
    cf.dns.records.list(zone_id=zone_id, name=f"nothing.{ZONE}")
    assert [r["status"] for r in cf_requests()] == [503, 200]


def test_5xx_without_retries_raises(cf: Any, zone_id: str, cf_faults, cf_requests) -> None:
    cf_faults(status=500, count=1)
    with pytest.raises(cloudflare.InternalServerError):
        cf.with_options(max_retries=0).dns.records.list(zone_id=zone_id)
    assert [r["status"] for r in cf_requests()] == [500]


def test_readonly_token_cannot_write(cf_base_url: str, cf_readonly_token: str, sub: str) -> None:
    ro: Any = cloudflare.Cloudflare(api_token=cf_readonly_token, base_url=cf_base_url)
    zid = next(iter(ro.zones.list(name=ZONE))).id
    assert ro.dns.records.list(zone_id=zid, name=sub).result == []
    with pytest.raises(cloudflare.PermissionDeniedError) as err:
        ro.dns.records.create(zone_id=zid, type="A", name=f"ro.{sub}", content="192.0.2.50", ttl=300)
    assert err.value.body["errors"][0] == {"code": 10000, "message": "Authentication error"}  # type: ignore[index]
    assert _answer(f"ro.{sub}", "A")[0] == dns.rcode.NXDOMAIN


def test_unknown_or_missing_token(cf_base_url: str) -> None:
    bad: Any = cloudflare.Cloudflare(api_token="x" * 40, base_url=cf_base_url, max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError):
        bad.zones.list(name=ZONE).result  # noqa: B018
    req = urllib.request.Request(f"{CF_BASE_URL}/zones")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401
    assert json.loads(err.value.read())["errors"][0]["code"] == 10000


def test_unknown_record_id_is_not_found(cf: Any, zone_id: str) -> None:
    with pytest.raises(cloudflare.NotFoundError) as err:
        cf.dns.records.get("0123456789abcdef0123456789abcdef", zone_id=zone_id)
    assert err.value.body == {
        "success": False,
        "errors": [{"code": 81044, "message": "Record does not exist."}],
        "messages": [],
        "result": None,
    }
    with pytest.raises(cloudflare.NotFoundError):
        cf.dns.records.delete("0123456789abcdef0123456789abcdef", zone_id=zone_id)


def test_request_log_never_holds_tokens(cf: Any, cf_token: str, zone_id: str) -> None:
    cf.dns.records.list(zone_id=zone_id, name=f"nothing.{ZONE}")
    log = json.dumps(lab_call("GET", "/__lab/requests"))
    assert cf_token not in log and "authorization" not in log.lower()
