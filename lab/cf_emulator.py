"""A Cloudflare API v4 emulator whose DNS writes land in the lab's real Knot primary.

It serves the subset of `/client/v4` that the official `cloudflare` SDK uses for DNS (zones list/get,
dns_records list/get/create/edit/update/delete, user/tokens/verify), with Cloudflare's envelope and
error bodies. The zone's records are not kept here: every read is an AXFR from the Knot primary and
every write is an RFC 2136 update signed with the lab's TSIG key, so DNS answers are real and records
put into the zone by other means show up too. Only Cloudflare's own metadata (record ids, comments,
tags, proxied, the TTL as requested, timestamps, TXT content as sent) lives in `lab_dir()/cf/state.json`.

Choices where Cloudflare is vague or cannot be mirrored:
- Apex SOA/NS and the address records of the in-zone nameservers (ns1/ns2) are Cloudflare-managed:
  not listed, and writes to them are refused (400), so a flow that prunes "unmanaged" records cannot
  break the lab's delegation.
- TXT: content made of quoted character-strings (`"a" "b"`) is parsed as such; anything else is taken
  as one raw value. Strings longer than 255 bytes are split into 255-byte strings in DNS. The API
  echoes a record's content exactly as it was sent (Cloudflare keeps quotes literally); TXT records
  created by other means are listed as their joined value without quotes. Filters and duplicate checks
  compare the logical (joined) value, so quoting does not matter there.
- `ttl: 1` (automatic) is served as 300 s and listed back as 1.
- `proxied` is stored and echoed (A/AAAA/CNAME only); DNS always answers with the origin.
- A name must be `@`, the zone or inside it; anything else is a 400 (Cloudflare would append the zone).
- Auth: no `Authorization: Bearer` header gives 401 (code 10000); an unknown token 403 (code 9109,
  "Invalid access token"); a read-only token writing gives 403 (code 10000, "Authentication error").

Lab controls (no auth, loopback only; not counted as API calls): `GET /__lab/health`,
`POST/GET/DELETE /__lab/faults` (make the next N API calls fail with a status, optional
`retry_after`, `retry_after_ms`, `method`, `path_contains`; or, with `stall_s` and no status, apply
the next N calls and then hold the answer `stall_s` seconds: a client that times out never learns its
write was applied), `GET/DELETE /__lab/requests`
(sequence-numbered log of API calls: method, path, query, status, retry count; never headers).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update
import dns.zone

from lab.dns import TSIG_ALGORITHM, ensure_dns, tsig_keyring
from lab.endpoints import CF_BASE_URL, CF_EMULATOR_PORT, DNS_PORT, DNS_PRIMARY, REPO_ROOT, ZONE, lab_dir
from lab.files import write_atomic
from lab.procs import LabError, running_pid, start_daemon, stop_daemon

NAME = "cf-emulator"
HOST = "127.0.0.1"
API_PREFIX = "/client/v4"
ZONE_ID = hashlib.md5(f"mailu-lab-zone:{ZONE}".encode()).hexdigest()
ACCOUNT_ID = hashlib.md5(b"mailu-lab-account").hexdigest()
AUTO_TTL = 300
SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
SUPPORTED_TYPES = ("A", "AAAA", "CAA", "CNAME", "MX", "NS", "PTR", "SRV", "TXT")
PROXIABLE_TYPES = ("A", "AAAA", "CNAME")
_ZONE_ORIGIN = dns.name.from_text(ZONE)

Json = dict[str, Any]


# --- tokens ------------------------------------------------------------------------------------------


def token_file(readonly: bool = False) -> Path:
    return lab_dir() / "secrets" / ("cf-token-readonly" if readonly else "cf-token")


def ensure_tokens() -> None:
    """Generate the DNS-edit and the read-only API token once (40 chars, like Cloudflare's), 0600."""
    for readonly in (False, True):
        path = token_file(readonly)
        if not path.exists():
            write_atomic(path, secrets.token_urlsafe(30)[:40] + "\n")
        os.chmod(path, 0o600)


def read_token(readonly: bool = False) -> str:
    """The lab's API token (DNS edit, or read-only), for `Cloudflare(api_token=...)`."""
    return token_file(readonly).read_text().strip()


# --- errors and envelopes ----------------------------------------------------------------------------


class ApiError(Exception):
    """An error Cloudflare would answer with: HTTP status plus its `errors` list."""

    def __init__(self, status: int, code: int, message: str, chain: list[Json] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error: Json = {"code": code, "message": message}
        if chain:
            self.error["error_chain"] = chain


def _validation(message: str, code: int = 9000) -> ApiError:
    return ApiError(400, 1004, "DNS Validation Error", [{"code": code, "message": message}])


def envelope(result: Any, info: Json | None = None) -> Json:
    body: Json = {"success": True, "errors": [], "messages": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return body


def error_envelope(errors: list[Json]) -> Json:
    return {"success": False, "errors": errors, "messages": [], "result": None}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- names and rdata ---------------------------------------------------------------------------------


def fqdn(name: Any) -> str:
    """Cloudflare's record name (lowercase, no trailing dot) for `name`, or a 400 if outside the zone."""
    if not isinstance(name, str) or not name.strip():
        raise _validation("DNS name is invalid.")
    n = name.strip().rstrip(".").lower()
    if n == "@":
        return ZONE
    if n != ZONE and not n.endswith("." + ZONE):
        raise _validation(f"Record name {name!r} is not in zone {ZONE}.", 9000)
    try:
        dns.name.from_text(n)
    except Exception as e:
        raise _validation(f"DNS name is invalid: {e}") from e
    return n


def _host(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _validation(f"{what} must be a valid hostname.", 9007)
    h = value.strip().rstrip(".").lower()
    try:
        dns.name.from_text(h)
    except Exception as e:
        raise _validation(f"{what} {value!r} is not a valid hostname.", 9007) from e
    return h


_QUOTED = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*', re.S)


def _unescape(s: str) -> bytes:
    out = bytearray()
    i = 0
    raw = s.encode()
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):  # backslash
            if raw[i + 1 : i + 4].isdigit() and len(raw[i + 1 : i + 4]) == 3:
                out.append(int(raw[i + 1 : i + 4]) & 0xFF)
                i += 4
                continue
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def txt_strings(content: str) -> list[bytes]:
    """The DNS character-strings for TXT `content`: quoted strings as given, else one raw value;
    each longer than 255 bytes is split into 255-byte pieces."""
    pieces: list[bytes] = []
    pos = 0
    quoted = bool(content.strip())
    while pos < len(content):
        m = _QUOTED.match(content, pos)
        if not m:
            quoted = False
            break
        pieces.append(_unescape(m.group(1)))
        pos = m.end()
    if not quoted:
        pieces = [content.encode()]
    out: list[bytes] = []
    for p in pieces:
        out.extend(p[i : i + 255] for i in range(0, len(p), 255))
    return out or [b""]


def txt_value(content: str) -> str:
    """The logical (joined) value of TXT content, for comparisons."""
    return b"".join(txt_strings(content)).decode(errors="surrogateescape")


def _txt_rdata(strings: list[bytes]) -> dns.rdata.Rdata:
    def q(b: bytes) -> str:
        return (
            '"'
            + "".join(
                chr(c)
                if 0x20 <= c < 0x7F and c not in (0x22, 0x5C)
                else (f"\\{chr(c)}" if c in (0x22, 0x5C) else f"\\{c:03d}")
                for c in b
            )
            + '"'
        )

    rd: dns.rdata.Rdata = dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.TXT, " ".join(q(s) for s in strings)
    )
    return rd


def _int_field(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise _validation(f"{what} must be a number between {lo} and {hi}.", 9100)
    v = int(value)
    if not lo <= v <= hi:
        raise _validation(f"{what} must be a number between {lo} and {hi}.", 9100)
    return v


def build_rdata(rtype: str, content: Any, priority: Any, data: Any) -> dns.rdata.Rdata:
    """Cloudflare fields to the DNS rdata Knot will serve (400 on what Cloudflare would reject)."""
    content_s = content if isinstance(content, str) else None
    data_d: Json = data if isinstance(data, dict) else {}

    def mk(text: str) -> dns.rdata.Rdata:
        rd: dns.rdata.Rdata = dns.rdata.from_text(dns.rdataclass.IN, rtype, text)
        return rd

    if rtype in ("A", "AAAA"):
        try:
            ip = ipaddress.ip_address((content_s or "").strip())
        except ValueError as e:
            raise _validation(f"Content for {rtype} record is invalid.", 9005) from e
        if (rtype == "A") != (ip.version == 4):
            raise _validation(f"Content for {rtype} record is invalid.", 9005)
        return mk(str(ip))
    if rtype in ("CNAME", "NS", "PTR"):
        return mk(_host(content_s, "Content") + ".")
    if rtype == "MX":
        if priority is None:
            raise _validation("priority is required for MX records.", 9101)
        prio = _int_field(priority, "priority", 0, 65535)
        return mk(f"{prio} {_host(content_s, 'Content')}.")
    if rtype == "TXT":
        if content_s is None:
            raise _validation("Content for TXT record is invalid.", 9005)
        return _txt_rdata(txt_strings(content_s))
    if rtype == "SRV":
        if data_d:
            p = _int_field(data_d.get("priority", priority), "priority", 0, 65535)
            w = _int_field(data_d.get("weight"), "weight", 0, 65535)
            port = _int_field(data_d.get("port"), "port", 0, 65535)
            target = _host(data_d.get("target"), "target")
        else:
            parts = (content_s or "").split()
            if len(parts) != 3 or priority is None:
                raise _validation("SRV needs data {priority, weight, port, target}.", 9101)
            p = _int_field(priority, "priority", 0, 65535)
            w = _int_field(int(parts[0]) if parts[0].isdigit() else None, "weight", 0, 65535)
            port = _int_field(int(parts[1]) if parts[1].isdigit() else None, "port", 0, 65535)
            target = _host(parts[2], "target")
        return mk(f"{p} {w} {port} {target}.")
    if rtype == "CAA":
        text = (
            f'{data_d.get("flags", 0)} {data_d.get("tag", "")} "{data_d.get("value", "")}"'
            if data_d
            else (content_s or "")
        )
        try:
            return mk(text)
        except Exception as e:
            raise _validation("Content for CAA record is invalid.", 9005) from e
    raise _validation(f"Record type {rtype!r} is not supported by the lab.", 9008)


def rdata_fields(rd: dns.rdata.Rdata) -> Json:
    """DNS rdata to Cloudflare's `content` (+ `priority`/`data`)."""
    t = dns.rdatatype.to_text(rd.rdtype)
    a: Any = rd
    if t in ("A", "AAAA"):
        return {"content": str(a.address)}
    if t in ("CNAME", "NS", "PTR"):
        return {"content": a.target.to_text(omit_final_dot=True).lower()}
    if t == "MX":
        return {"content": a.exchange.to_text(omit_final_dot=True).lower(), "priority": int(a.preference)}
    if t == "TXT":
        return {"content": b"".join(a.strings).decode(errors="surrogateescape")}
    if t == "SRV":
        target = a.target.to_text(omit_final_dot=True).lower()
        return {
            "content": f"{a.weight} {a.port} {target}",
            "priority": int(a.priority),
            "data": {"priority": a.priority, "weight": a.weight, "port": a.port, "target": target},
        }
    if t == "CAA":
        return {
            "content": rd.to_text(),
            "data": {"flags": a.flags, "tag": a.tag.decode(), "value": a.value.decode()},
        }
    return {"content": rd.to_text()}


def rdata_key(name: str, rd: dns.rdata.Rdata) -> str:
    """Identity of one record: name, type, and the value (TXT: joined, so splitting does not matter)."""
    t = dns.rdatatype.to_text(rd.rdtype)
    a: Any = rd
    value = b"".join(a.strings).hex() if t == "TXT" else rd.to_digestable(dns.name.root).hex()
    return f"{name}|{t}|{value}"


# --- the zone as Knot serves it ----------------------------------------------------------------------


@dataclass
class ZoneRecord:
    """One RR of the zone as AXFR delivered it."""

    name: str
    type: str
    ttl: int
    rdata: dns.rdata.Rdata

    @property
    def key(self) -> str:
        return rdata_key(self.name, self.rdata)


class Zone:
    """Reads the zone from the Knot primary and writes it with signed RFC 2136 updates."""

    def __init__(self) -> None:
        self.keyring = tsig_keyring()

    def axfr(self) -> tuple[list[ZoneRecord], set[str], list[str]]:
        """(records Cloudflare would list, names it manages, apex NS targets)."""
        z = dns.zone.from_xfr(
            dns.query.xfr(
                DNS_PRIMARY,
                ZONE,
                port=DNS_PORT,
                relativize=False,
                lifetime=10,
                keyring=self.keyring,  # the primary allows signed transfers only (lab/dns.py)
                keyname=next(iter(self.keyring)),
                keyalgorithm=TSIG_ALGORITHM,
            ),
            relativize=False,
        )
        apex_ns: list[str] = []
        ns_set: Any = z.get_rdataset(_ZONE_ORIGIN, dns.rdatatype.NS) or []
        for rd in ns_set:
            apex_ns.append(rd.target.to_text(omit_final_dot=True).lower())
        reserved = {n for n in apex_ns if n.endswith("." + ZONE)}
        out: list[ZoneRecord] = []
        for owner, ttl, rd in z.iterate_rdatas():
            name = owner.to_text(omit_final_dot=True).lower()
            t = dns.rdatatype.to_text(rd.rdtype)
            if name == ZONE and t in ("SOA", "NS"):
                continue
            if name in reserved and t in ("A", "AAAA"):
                continue
            if t in ("RRSIG", "NSEC", "NSEC3", "DNSKEY", "NSEC3PARAM"):
                continue
            out.append(ZoneRecord(name, t, int(ttl), rd))
        return out, reserved, apex_ns

    def update(
        self, deletes: Iterable[tuple[str, dns.rdata.Rdata]], adds: Iterable[tuple[str, int, dns.rdata.Rdata]]
    ) -> None:
        """One atomic signed UPDATE: delete exact RRs, then add RRs."""
        u = dns.update.UpdateMessage(
            ZONE, keyring=self.keyring, keyname=next(iter(self.keyring)), keyalgorithm=TSIG_ALGORITHM
        )
        for name, rd in deletes:
            u.delete(dns.name.from_text(name), rd)
        for name, ttl, rd in adds:
            u.add(dns.name.from_text(name), ttl, rd)
        resp = dns.query.tcp(u, DNS_PRIMARY, port=DNS_PORT, timeout=10)
        if resp.rcode() != dns.rcode.NOERROR:
            raise ApiError(
                400,
                1004,
                "DNS Validation Error",
                [{"code": 9999, "message": f"the DNS server answered {dns.rcode.to_text(resp.rcode())}"}],
            )


# --- Cloudflare's view: records with metadata --------------------------------------------------------


class Store:
    """Cloudflare metadata (ids, comments, timestamps) joined to the live zone; one lock for writes."""

    def __init__(self, path: Path, zone: Zone) -> None:
        self.path = path
        self.zone = zone
        self.lock = threading.RLock()
        self.created_on = _now()

    def _load(self) -> dict[str, Json]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        records = data.get("records", {})
        return records if isinstance(records, dict) else {}

    def _save(self, records: dict[str, Json]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"zone_id": ZONE_ID, "records": records}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def sync(self) -> tuple[list[tuple[str, ZoneRecord, Json]], set[str]]:
        """The zone's records with ids: known ones keep theirs, new ones (written by other means) get one."""
        with self.lock:
            rrs, reserved, _ = self.zone.axfr()
            meta = self._load()
            by_key = {m.get("key"): rid for rid, m in meta.items()}
            seen: dict[str, Json] = {}
            out: list[tuple[str, ZoneRecord, Json]] = []
            changed = False
            for rr in rrs:
                rid = by_key.get(rr.key)
                if rid is None or rid in seen:
                    now = _now()
                    rid = uuid.uuid4().hex
                    meta[rid] = {"key": rr.key, "created_on": now, "modified_on": now}
                    changed = True
                seen[rid] = meta[rid]
                out.append((rid, rr, meta[rid]))
            if changed or seen.keys() != meta.keys():
                self._save(seen)
            return out, reserved

    def render(self, rid: str, rr: ZoneRecord, m: Json) -> Json:
        f = rdata_fields(rr.rdata)
        content = f["content"]
        sent = m.get("content")
        if rr.type == "TXT" and isinstance(sent, str) and txt_value(sent) == content:
            content = sent
        ttl = rr.ttl
        if m.get("ttl") == 1 and rr.ttl == AUTO_TTL:
            ttl = 1
        rec: Json = {
            "id": rid,
            "zone_id": ZONE_ID,
            "zone_name": ZONE,
            "name": rr.name,
            "type": rr.type,
            "content": content,
            "proxiable": rr.type in PROXIABLE_TYPES,
            "proxied": bool(m.get("proxied", False)),
            "ttl": ttl,
            "settings": m.get("settings") or {},
            "meta": {"auto_added": False, "managed_by_apps": False, "managed_by_argo_tunnel": False},
            "comment": m.get("comment"),
            "tags": m.get("tags") or [],
            "created_on": m["created_on"],
            "modified_on": m["modified_on"],
        }
        if "priority" in f:
            rec["priority"] = f["priority"]
        if "data" in f:
            rec["data"] = f["data"]
        if m.get("comment_modified_on"):
            rec["comment_modified_on"] = m["comment_modified_on"]
        return rec

    def records(self) -> list[Json]:
        out, _ = self.sync()
        return [self.render(rid, rr, m) for rid, rr, m in out]

    def get(self, rid: str) -> Json:
        out, _ = self.sync()
        for r, rr, m in out:
            if r == rid:
                return self.render(r, rr, m)
        raise ApiError(404, 81044, "Record does not exist.")

    # writes

    def _validate(self, body: Json, current: Json | None) -> tuple[str, str, int, dns.rdata.Rdata, Json]:
        """Merged request fields to (name, type, dns ttl, rdata, metadata)."""
        merged: Json = dict(current or {})
        merged.update(body)
        for req in ("name", "type"):
            if merged.get(req) in (None, ""):
                raise _validation(f"{req} is required.", 9101)
        rtype = str(merged["type"]).upper()
        if rtype not in SUPPORTED_TYPES:
            raise _validation(f"Record type {rtype!r} is not supported by the lab.", 9008)
        name = fqdn(merged["name"])
        ttl_req = merged.get("ttl", 1)
        if ttl_req != 1:
            ttl_req = _int_field(ttl_req, "ttl", 60, 86400) if ttl_req is not None else 1
        if merged.get("content") is None and not merged.get("data"):
            raise _validation("content is required.", 9101)
        rd = build_rdata(rtype, merged.get("content"), merged.get("priority"), merged.get("data"))
        proxied = merged.get("proxied", False)
        if not isinstance(proxied, bool):
            raise _validation("proxied must be a boolean.", 9003)
        if proxied and rtype not in PROXIABLE_TYPES:
            raise ApiError(400, 9004, "This record type cannot be proxied.")
        if rtype == "NS" and name == ZONE:
            raise _validation("Apex NS records are managed by Cloudflare.", 9000)
        comment = merged.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise _validation("comment must be a string.", 9000)
        tags = merged.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _validation("tags must be a list of strings.", 9000)
        settings = merged.get("settings") or {}
        meta: Json = {
            "key": rdata_key(name, rd),
            "ttl": int(ttl_req),
            "proxied": proxied,
            "comment": comment,
            "tags": tags,
            "settings": settings if isinstance(settings, dict) else {},
            "content": merged.get("content") if rtype == "TXT" else None,
        }
        return name, rtype, (AUTO_TTL if ttl_req == 1 else int(ttl_req)), rd, meta

    def _conflicts(
        self,
        existing: list[tuple[str, ZoneRecord, Json]],
        reserved: set[str],
        name: str,
        rtype: str,
        key: str,
        skip: str | None,
    ) -> None:
        if name in reserved and rtype in ("A", "AAAA"):
            raise _validation(f"{name} is the lab's nameserver and is managed by Cloudflare.", 9000)
        for rid, rr, _ in existing:
            if rid == skip or rr.name != name:
                continue
            if rr.key == key:
                raise ApiError(400, 81058, "An identical record already exists.")
            if (rtype == "CNAME") != (rr.type == "CNAME"):
                raise ApiError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")

    def create(self, body: Json) -> Json:
        with self.lock:
            for req in ("name", "type", "ttl"):
                if req not in body:
                    raise _validation(f"{req} is required.", 9101)
            name, rtype, ttl, rd, meta = self._validate(body, None)
            existing, reserved = self.sync()
            self._conflicts(existing, reserved, name, rtype, meta["key"], None)
            now = _now()
            meta.update(created_on=now, modified_on=now)
            if meta["comment"] is not None:
                meta["comment_modified_on"] = now
            rid = uuid.uuid4().hex
            records = self._load()
            records[rid] = meta
            self._save(records)
            try:
                self.zone.update([], [(name, ttl, rd)])
            except Exception:
                records.pop(rid, None)
                self._save(records)
                raise
            return self.get(rid)

    def change(self, rid: str, body: Json, replace: bool) -> Json:
        """PATCH merges into the record; PUT replaces it (unsent optional fields reset)."""
        with self.lock:
            existing, reserved = self.sync()
            found = [(rr, m) for r, rr, m in existing if r == rid]
            if not found:
                raise ApiError(404, 81044, "Record does not exist.")
            rr, old_meta = found[0]
            if replace:
                for req in ("name", "type", "ttl"):
                    if req not in body:
                        raise _validation(f"{req} is required.", 9101)
                current = None
            else:
                current = self.render(rid, rr, old_meta)
                if "content" in body or "data" in body:
                    current.pop("data", None)
            name, rtype, ttl, rd, meta = self._validate(body, current)
            self._conflicts(existing, reserved, name, rtype, meta["key"], rid)
            now = _now()
            meta.update(created_on=old_meta["created_on"], modified_on=now)
            if meta["comment"] != old_meta.get("comment"):
                meta["comment_modified_on"] = now
            elif old_meta.get("comment_modified_on"):
                meta["comment_modified_on"] = old_meta["comment_modified_on"]
            records = self._load()
            records[rid] = meta
            self._save(records)
            if meta["key"] != rr.key or ttl != rr.ttl:
                try:
                    self.zone.update([(rr.name, rr.rdata)], [(name, ttl, rd)])
                except Exception:
                    records[rid] = old_meta
                    self._save(records)
                    raise
            return self.get(rid)

    def delete(self, rid: str) -> Json:
        with self.lock:
            existing, _ = self.sync()
            found = [rr for r, rr, _ in existing if r == rid]
            if not found:
                raise ApiError(404, 81044, "Record does not exist.")
            self.zone.update([(found[0].name, found[0].rdata)], [])
            records = self._load()
            records.pop(rid, None)
            self._save(records)
            return {"id": rid}

    def zone_obj(self) -> Json:
        _, _, apex_ns = self.zone.axfr()
        return {
            "id": ZONE_ID,
            "name": ZONE,
            "status": "active",
            "paused": False,
            "type": "full",
            "development_mode": 0,
            "name_servers": apex_ns,
            "original_name_servers": None,
            "original_registrar": None,
            "original_dnshost": None,
            "vanity_name_servers": [],
            "created_on": self.created_on,
            "modified_on": self.created_on,
            "activated_on": self.created_on,
            "account": {"id": ACCOUNT_ID, "name": "mailu-lab"},
            "owner": {"id": None, "type": "user", "email": None},
            "permissions": ["#dns_records:read", "#dns_records:edit", "#zone:read"],
            "plan": {
                "id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
                "name": "Free Website",
                "price": 0,
                "currency": "USD",
                "frequency": "",
                "is_subscribed": False,
                "can_subscribe": False,
                "legacy_id": "free",
                "legacy_discount": False,
                "externally_managed": False,
            },
            "meta": {
                "step": 2,
                "custom_certificate_quota": 0,
                "page_rule_quota": 3,
                "phishing_detected": False,
            },
        }


# --- list helpers ------------------------------------------------------------------------------------


def _page(
    items: list[Json], query: dict[str, str], default_per_page: int, max_per_page: int
) -> tuple[list[Json], Json]:
    """Slice one page; past the end it is empty (the SDK stops only on an empty page)."""
    try:
        page = max(1, int(float(query.get("page", "1"))))
        per_page = int(float(query.get("per_page", str(default_per_page))))
    except ValueError as e:
        raise ApiError(400, 1001, "Invalid page or per_page.") from e
    per_page = min(max(1, per_page), max_per_page)
    chunk = items[(page - 1) * per_page : page * per_page]
    total = len(items)
    info = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": total,
        "total_pages": (total + per_page - 1) // per_page if total else 1,
    }
    return chunk, info


def _str_match(value: str | None, op: str, want: str) -> bool:
    v = (value or "").lower()
    w = want.lower()
    return {
        "exact": v == w,
        "contains": w in v,
        "startswith": v.startswith(w),
        "endswith": v.endswith(w),
    }.get(op, False)


_FILTER_FIELDS = ("name", "content", "comment", "type", "proxied")


def _record_filters(query: dict[str, str]) -> list[tuple[str, str, str]]:
    """(field, operator, value) for the list filters Cloudflare supports that the lab implements."""
    out: list[tuple[str, str, str]] = []
    for key, want in query.items():
        field, _, op = key.partition(".")
        if field in _FILTER_FIELDS:
            out.append((field, op or "exact", want))
    return out


def _record_matches(r: Json, field: str, op: str, want: str) -> bool:
    if field == "name":
        target = want.rstrip(".").lower()
        return _str_match(r["name"], op, ZONE if target == "@" else target)
    if field == "content":
        if r["type"] == "TXT":
            return _str_match(txt_value(r["content"]), op, txt_value(want))
        return _str_match(r["content"], op, want.rstrip(".") if op == "exact" else want)
    if field == "comment" and op in ("present", "absent"):
        return (r.get("comment") is not None) == (op == "present")
    if field == "comment":
        return _str_match(r.get("comment"), op, want)
    if field == "type":
        return bool(r["type"] == want.upper())
    if field == "proxied":
        return bool(r["proxied"] == (want.lower() == "true"))
    return True


# --- HTTP --------------------------------------------------------------------------------------------


@dataclass
class Fault:
    status: int  # 0 with `stall_s`: the call is applied normally, only its answer is late
    count: int
    retry_after: str | None = None
    retry_after_ms: str | None = None
    method: str | None = None
    path_contains: str | None = None
    stall_s: float | None = None


class Emulator:
    """Shared state of the server: tokens, store, faults, request log."""

    def __init__(self) -> None:
        self.tokens = {read_token(False): "edit", read_token(True): "read"}
        self.store = Store(lab_dir() / "cf" / "state.json", Zone())
        self.faults: list[Fault] = []
        self.log: list[Json] = []
        self.seq = 0
        self.lock = threading.Lock()

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.count <= 0:
                    continue
                if f.method and f.method.upper() != method:
                    continue
                if f.path_contains and f.path_contains not in path:
                    continue
                f.count -= 1
                return f
            return None

    def record(self, entry: Json) -> None:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.append(entry)
            del self.log[:-5000]

    def auth(self, header: str | None) -> str:
        if not header or not header.startswith("Bearer "):
            raise ApiError(401, 10000, "Authentication error")
        given = header[len("Bearer ") :].strip().encode()
        for token, perm in self.tokens.items():
            if hmac.compare_digest(token.encode(), given):
                return perm
        raise ApiError(403, 9109, "Invalid access token")


_REC_RE = re.compile(r"^/zones/([^/]+)/dns_records(?:/([^/]+))?$")
_ZONE_RE = re.compile(r"^/zones/([^/]+)$")


class Handler(BaseHTTPRequestHandler):
    """Routes `/client/v4/...` and `/__lab/...`; HTTP/1.1 keep-alive as httpx expects."""

    protocol_version = "HTTP/1.1"
    # One buffered write per response (flushed by http.server) and no Nagle: otherwise headers and body
    # leave as two segments and delayed ACKs add ~40 ms to every call.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server_version = "cf-lab-emulator"
    sys_version = ""
    emulator: Emulator

    def log_message(self, format: str, *args: Any) -> None:
        """Log method, path and status only (never headers, so never tokens)."""
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError(400, 9207, "Request body is invalid.") from e

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            body = self._body()
        except ApiError as e:
            self._send(e.status, error_envelope([e.error]))
            return
        if url.path.startswith("/__lab/"):
            self._lab(method, url.path, query, body)
            return
        entry: Json = {
            "method": method,
            "path": url.path,
            "query": url.query,
            "retry_count": self.headers.get("x-stainless-retry-count"),
            "time": time.time(),
        }
        status, payload, headers, stall_s = self._api(method, url.path, query, body)
        entry["status"] = status
        if stall_s:
            entry["stalled_s"] = stall_s
        self.emulator.record(entry)
        if stall_s:
            time.sleep(stall_s)  # applied already; the client has given up by the time this answers
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it left while we stalled
            self._send(status, payload, headers)

    def _api(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str], float]:
        em = self.emulator
        fault = em.take_fault(method, path)
        if fault is not None and fault.stall_s:
            return (*self._apply(method, path, query, body), fault.stall_s)
        if fault is not None:
            headers: dict[str, str] = {}
            if fault.retry_after is not None:
                headers["retry-after"] = fault.retry_after
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = fault.retry_after_ms
            if fault.status == 429:
                err = {"code": 971, "message": "Please wait and consider throttling your request speed"}
            else:
                err = {"code": 10000 + fault.status, "message": f"lab fault: HTTP {fault.status}"}
            return fault.status, error_envelope([err]), headers, 0.0
        return (*self._apply(method, path, query, body), 0.0)

    def _apply(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        em = self.emulator
        try:
            if not path.startswith(API_PREFIX + "/"):
                raise ApiError(404, 7000, "No route for that URI")
            perm = em.auth(self.headers.get("Authorization"))
            if method != "GET" and perm != "edit":
                raise ApiError(403, 10000, "Authentication error")
            if body is not None and not isinstance(body, dict):
                raise ApiError(400, 9207, "Request body is invalid.")
            status, result = self._route(method, path[len(API_PREFIX) :], query, body or {})
            return status, result, {}
        except ApiError as e:
            return e.status, error_envelope([e.error]), {}
        except Exception as e:  # a bug or Knot down: say so, as a 500 the SDK would retry
            sys.stderr.write(f"internal error on {method} {path}: {e!r}\n")
            return 500, error_envelope([{"code": 10001, "message": f"internal error: {e}"}]), {}

    def _route(self, method: str, path: str, query: dict[str, str], body: Json) -> tuple[int, Json]:
        store = self.emulator.store
        if path == "/user/tokens/verify" and method == "GET":
            return 200, envelope({"id": "lab", "status": "active"})
        if path == "/zones":
            if method != "GET":
                raise ApiError(405, 10000, "Method not allowed")
            zones = [store.zone_obj()]
            for key, want in query.items():
                if key == "name":
                    op, sep, val = want.partition(":")
                    if not sep or op not in ("equal", "not_equal", "contains", "starts_with", "ends_with"):
                        op, val = "equal", want
                    ok = {
                        "equal": val.lower() == ZONE,
                        "not_equal": val.lower() != ZONE,
                        "contains": val.lower() in ZONE,
                        "starts_with": ZONE.startswith(val.lower()),
                        "ends_with": ZONE.endswith(val.lower()),
                    }[op]
                    zones = zones if ok else []
                elif (key == "status" and want != "active") or (key == "account.id" and want != ACCOUNT_ID):
                    zones = []
            chunk, info = _page(zones, query, 20, 50)
            return 200, envelope(chunk, info)
        m = _ZONE_RE.match(path)
        if m:
            self._zone_id(m.group(1))
            if method != "GET":
                raise ApiError(405, 10000, "Method not allowed")
            return 200, envelope(store.zone_obj())
        m = _REC_RE.match(path)
        if m:
            self._zone_id(m.group(1))
            rid = m.group(2)
            if rid is None:
                if method == "GET":
                    return 200, self._list(query)
                if method == "POST":
                    return 200, envelope(store.create(body))
                raise ApiError(405, 10000, "Method not allowed")
            if method == "GET":
                return 200, envelope(store.get(rid))
            if method == "PATCH":
                return 200, envelope(store.change(rid, body, replace=False))
            if method == "PUT":
                return 200, envelope(store.change(rid, body, replace=True))
            if method == "DELETE":
                return 200, envelope(store.delete(rid))
            raise ApiError(405, 10000, "Method not allowed")
        raise ApiError(404, 7000, "No route for that URI")

    @staticmethod
    def _zone_id(zid: str) -> None:
        if zid != ZONE_ID:
            raise ApiError(
                404, 7003, f"Could not route to /zones/{zid}, perhaps your object identifier is invalid?"
            )

    def _list(self, query: dict[str, str]) -> Json:
        records = self.emulator.store.records()
        checks = _record_filters(query)
        if checks:
            combine = any if query.get("match", "all") == "any" else all
            records = [r for r in records if combine(_record_matches(r, *c) for c in checks)]
        order = query.get("order")
        if order in ("type", "name", "content", "ttl", "proxied"):
            records.sort(key=lambda r: (r[order], r["name"], r["type"], r["content"]))
        else:
            records.sort(key=lambda r: (r["type"], r["name"], r["content"]))
        if query.get("direction") == "desc":
            records.reverse()
        chunk, info = _page(records, query, 100, 5_000_000)
        return envelope(chunk, info)

    def _lab(self, method: str, path: str, query: dict[str, str], body: Any) -> None:
        em = self.emulator
        if path == "/__lab/health":
            self._send(200, {"ok": True, "version": SOURCE_HASH, "pid": os.getpid(), "zone_id": ZONE_ID})
        elif path == "/__lab/faults" and method == "POST":
            try:
                stall = body.get("stall_s")
                f = Fault(
                    status=int(body["status"]) if stall is None else int(body.get("status", 0)),
                    count=int(body.get("count", 1)),
                    retry_after=None if body.get("retry_after") is None else str(body["retry_after"]),
                    retry_after_ms=None
                    if body.get("retry_after_ms") is None
                    else str(body["retry_after_ms"]),
                    method=body.get("method"),
                    path_contains=body.get("path_contains"),
                    stall_s=None if stall is None else float(stall),
                )
                if f.stall_s is not None and not 0 < f.stall_s <= 120:
                    raise ValueError("stall_s must be in (0, 120]")
            except (KeyError, TypeError, ValueError) as e:
                self._send(400, {"ok": False, "error": f"bad fault spec: {e!r}"})
                return
            with em.lock:
                em.faults.append(f)
            self._send(200, {"ok": True, "pending": self._pending()})
        elif path == "/__lab/faults" and method == "DELETE":
            with em.lock:
                em.faults.clear()
            self._send(200, {"ok": True, "pending": []})
        elif path == "/__lab/faults" and method == "GET":
            self._send(200, {"ok": True, "pending": self._pending()})
        elif path == "/__lab/requests" and method == "GET":
            since = int(query.get("since", "0") or 0)
            with em.lock:
                items = [e for e in em.log if e["seq"] > since]
                last = em.seq
            self._send(200, {"count": len(items), "last_seq": last, "requests": items})
        elif path == "/__lab/requests" and method == "DELETE":
            with em.lock:
                em.log.clear()
                last = em.seq
            self._send(200, {"count": 0, "last_seq": last, "requests": []})
        else:
            self._send(404, {"ok": False, "error": "no such lab endpoint"})

    def _pending(self) -> list[Json]:
        with self.emulator.lock:
            return [f.__dict__.copy() for f in self.emulator.faults if f.count > 0]


def serve(host: str = HOST, port: int = CF_EMULATOR_PORT) -> None:
    """Run the emulator in the foreground until SIGTERM."""
    emulator = Emulator()
    handler = type("BoundHandler", (Handler,), {"emulator": emulator})
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    httpd = ThreadingHTTPServer((host, port), handler)
    sys.stderr.write(
        f"cf emulator {SOURCE_HASH} on http://{host}:{port}{API_PREFIX} zone {ZONE} ({ZONE_ID})\n"
    )
    sys.stderr.flush()
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()


# --- lifecycle ---------------------------------------------------------------------------------------


def lab_url(path: str) -> str:
    return f"http://{HOST}:{CF_EMULATOR_PORT}{path}"


def lab_call(method: str, path: str, body: Json | None = None, timeout: float = 5.0) -> Json:
    """Call a `/__lab/...` control endpoint (tests use it for faults and the request log)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        lab_url(path), data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        result: Json = json.loads(resp.read())
    return result


def _health() -> Json | None:
    try:
        return lab_call("GET", "/__lab/health", timeout=1.0)
    except (OSError, ValueError, urllib.error.URLError):
        return None


def ensure_cf_emulator() -> str:
    """Start the emulator (and the DNS it writes to) unless it already runs this code; return the base URL.

    A running emulator whose source differs from this file (checked by hash) is restarted.
    """
    ensure_dns()
    ensure_tokens()
    (lab_dir() / "cf").mkdir(parents=True, exist_ok=True)
    if running_pid(NAME) is not None:
        h = _health()
        if h is not None and h.get("version") == SOURCE_HASH:
            return CF_BASE_URL
        stop_daemon(NAME)
    start_daemon(
        NAME,
        [sys.executable, "-m", "lab.cf_emulator", "serve", "--port", str(CF_EMULATOR_PORT)],
        cwd=REPO_ROOT,
        ready=lambda: (_health() or {}).get("version") == SOURCE_HASH,
        timeout=20.0,
    )
    return CF_BASE_URL


def stop_cf_emulator() -> bool:
    """Stop the emulator (only the pid the lab recorded)."""
    return stop_daemon(NAME)


def cf_emulator_status() -> Json:
    pid = running_pid(NAME)
    health = _health() if pid is not None else None
    return {
        "running": pid is not None and health is not None,
        "pid": pid,
        "base_url": CF_BASE_URL,
        "zone_id": ZONE_ID,
        "current_code": health is not None and health.get("version") == SOURCE_HASH,
        "token_files": [str(token_file(False)), str(token_file(True))],
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.cf_emulator serve|up|down|status`."""
    p = argparse.ArgumentParser(prog="python -m lab.cf_emulator")
    p.add_argument("command", choices=["serve", "up", "down", "status"])
    p.add_argument("--host", default=HOST)
    p.add_argument("--port", type=int, default=CF_EMULATOR_PORT)
    a = p.parse_args(argv)
    if a.command == "serve":
        serve(a.host, a.port)
        return 0
    if a.command == "up":
        print(ensure_cf_emulator())
    elif a.command == "down":
        stop_cf_emulator()
    print(json.dumps(cf_emulator_status(), indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LabError as e:
        sys.stderr.write(f"{e}\n")
        sys.exit(1)
