"""RFC 2136 dynamic updates signed with TSIG, as a `Provider` (BIND, Knot, PowerDNS; the lab runs Knot).

Why these choices:
- The zone is read by AXFR from the primary, signed with the block's TSIG key (so the primary can allow
  transfers to that key only). If the transfer is refused, the provider queries the names it knows
  instead: those in its ownership record plus the names the caller passes (`list_records(names=...)`),
  so conflicts there are still seen.
- Every read is signed, and every answer must carry a valid TSIG of the same key (dnspython checks it
  when the request carries a keyring; the first and last message of a transfer included): what we
  plan from decides what we delete, so an unsigned or forged answer (a spoofed or tampered response,
  a middlebox) is refused with a `DnsAuthError` naming the server and the key, never planned from.
- Ownership lives in the zone, in one TXT record at `_mailu-flows-owner.<zone>`: one rdata per owner
  (stack), whose character-strings are `owner=<name>` followed by one `<relative name> <TYPE>[ <slot>]`
  per record slot it manages (TXT slots are the `v=` tag, e.g. `@ TXT spf1`). A server has no
  per-record metadata, and an explicit list outside the zone would be lost with the machine running
  the flows; keeping it in the zone makes ownership travel with the zone, like octoDNS's `_owner` TXT,
  but in one record per stack instead of one per record.
- A plan is one signed UPDATE: records and the ownership record change atomically, so a failed
  update leaves the zone as it was (the result reports nothing applied) and the next run converges.
  Creates of non-TXT RRsets carry an "RRset does not exist" prerequisite, so a concurrent writer
  makes the update fail (re-plan) instead of being merged into.
- An RRset has one TTL in DNS: adding our TXT beside a foreign TXT with another TTL changes that
  record's TTL too (Knot and BIND both do this). The listing reports the RRset's TTL for each value.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone
from pydantic import SecretStr

from mailu_core.dns import Change, Plan, Record, normalize_name, relative_name, split_rrset
from mailu_flows.dns._rdata import rdata_from_value, value_from_rdata
from mailu_flows.dns.provider import (
    DEFAULT_OWNER,
    ApplyResult,
    DnsAuthError,
    DnsConnectionError,
    DnsError,
    PlanOutdatedError,
    ProviderRecord,
    ProviderSupport,
    check_in_zone,
)
from mailu_flows.dns.registry import ProviderPlugin

if TYPE_CHECKING:
    from mailu_core.config import StackConfig
    from mailu_flows.blocks.dns import Rfc2136Dns

__all__ = ["OWNERSHIP_LABEL", "PLUGIN", "SUPPORT", "Rfc2136Provider"]

SUPPORT = ProviderSupport(
    record_types=frozenset({"A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS"}),
    features=frozenset({"atomic-apply", "ownership-in-zone", "tsig"}),
)

OWNERSHIP_LABEL = "_mailu-flows-owner"
log = logging.getLogger(__name__)
_SKIP_TYPES = {"SOA", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY", "ZONEMD"}
_QUERY_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA")
_OUTDATED = {dns.rcode.YXRRSET, dns.rcode.NXRRSET, dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN}


class Rfc2136Provider:
    """A zone on a primary nameserver that accepts TSIG-signed updates; see the module docstring."""

    name = "rfc2136"
    support = SUPPORT

    def __init__(
        self,
        zone: str,
        server: str,
        tsig_key_name: str,
        tsig_secret: str | SecretStr,
        *,
        tsig_algorithm: str = "hmac-sha256",
        port: int = 53,
        owner: str = DEFAULT_OWNER,
        timeout_s: float = 10.0,
        ownership_ttl: int = 3600,
    ) -> None:
        secret = tsig_secret.get_secret_value() if isinstance(tsig_secret, SecretStr) else tsig_secret
        self._zone = normalize_name(zone)
        self.server = server
        self.port = port
        self.owner = owner
        self.timeout_s = timeout_s
        self.ownership_ttl = ownership_ttl
        self.key_name = dns.name.from_text(tsig_key_name)
        self.tsig_algorithm = tsig_algorithm
        self._keyring: dict[dns.name.Name, dns.tsig.Key] = dns.tsigkeyring.from_text(
            {tsig_key_name: (tsig_algorithm, secret)}
        )

    @classmethod
    def from_block(cls, block: Rfc2136Dns, zone: str, **kwargs: Any) -> Rfc2136Provider:
        """From the `Rfc2136Dns` Prefect block (server, port, TSIG key)."""
        return cls(
            zone,
            str(block.server),
            block.tsig_key_name,
            block.tsig_secret,
            tsig_algorithm=block.tsig_algorithm,
            port=block.port,
            **kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"Rfc2136Provider(zone={self._zone!r}, server={self.where!r}, "
            f"key={self.key_name.to_text(omit_final_dot=True)!r}, owner={self.owner!r})"
        )

    @property
    def zone(self) -> str:
        return self._zone

    @property
    def where(self) -> str:
        return f"{self.server}:{self.port}"

    @property
    def ownership_name(self) -> str:
        return f"{OWNERSHIP_LABEL}.{self._zone}"

    def _key_text(self) -> str:
        return repr(self.key_name.to_text(omit_final_dot=True))

    # --- transport ---------------------------------------------------------------------------------

    @contextmanager
    def _exchange(self, what: str) -> Iterator[None]:
        """Map transport and TSIG failures of one signed exchange to errors naming the server and key."""
        key = self._key_text()
        where = f"({what} in zone {self._zone})"
        try:
            yield
        except dns.tsig.PeerBadKey as e:
            raise DnsAuthError(f"nameserver {self.where} does not know TSIG key {key} {where}") from e
        except dns.tsig.PeerBadSignature as e:
            raise DnsAuthError(
                f"nameserver {self.where} rejected the signature of TSIG key {key} {where}: "
                "wrong TSIG secret or algorithm"
            ) from e
        except dns.tsig.PeerBadTime as e:
            raise DnsAuthError(
                f"nameserver {self.where} rejected the time of TSIG key {key} {where}: "
                "this machine's clock and the server's differ by more than the allowed fudge"
            ) from e
        except dns.tsig.PeerError as e:
            raise DnsAuthError(
                f"nameserver {self.where} refused TSIG key {key} {where}: {type(e).__name__}"
            ) from e
        except (
            dns.tsig.BadSignature,
            dns.tsig.BadKey,
            dns.tsig.BadAlgorithm,
            dns.message.UnknownTSIGKey,
        ) as e:
            raise DnsAuthError(
                f"the answer of nameserver {self.where} {where} does not verify with TSIG key {key} "
                f"({type(e).__name__}): refused; it was altered on the way or not signed by the server "
                "that holds the key"
            ) from e
        except dns.tsig.BadTime as e:
            raise DnsAuthError(
                f"the answer of nameserver {self.where} {where} carries a TSIG time outside the fudge of "
                f"key {key}: refused (clock skew, or a replayed answer)"
            ) from e
        except dns.exception.FormError as e:
            # dnspython: "response requires a TSIG but does not have one" / "missing TSIG" (transfers)
            if "TSIG" not in str(e):
                raise DnsError(f"nameserver {self.where} sent a malformed answer {where}: {e}") from e
            raise DnsAuthError(
                f"the answer of nameserver {self.where} {where} is not signed with TSIG key {key}: "
                "refused (the server does not sign with that key, or something on the way stripped it)"
            ) from e
        except (dns.exception.Timeout, OSError, EOFError) as e:
            raise DnsConnectionError(
                f"cannot reach nameserver {self.where} to {what} in zone {self._zone}: "
                f"{type(e).__name__}: {e}"
            ) from e

    def _tcp(self, msg: dns.message.Message, what: str) -> dns.message.Message:
        with self._exchange(what):
            resp = dns.query.tcp(msg, self.server, port=self.port, timeout=self.timeout_s)
        return resp

    def _query(self, name: str, rdtype: str) -> dns.message.Message:
        """A signed, non-recursive query; the answer's TSIG is verified (unsigned answers refused)."""
        q = dns.message.make_query(name, rdtype)
        q.flags &= ~dns.flags.RD
        q.use_tsig(self._keyring, keyname=self.key_name, algorithm=self.tsig_algorithm)
        return self._tcp(q, f"query {name} {rdtype}")

    # --- ownership ---------------------------------------------------------------------------------

    def _entry(self, rec: Record) -> str:
        name, rtype, slot = rec.key
        rel = relative_name(name, self._zone)
        return f"{rel} {rtype} {slot}" if slot else f"{rel} {rtype}"

    def _ownership(self) -> tuple[set[str], Any]:
        """(our entries, our rdata in the ownership record or None)."""
        resp = self._query(self.ownership_name, "TXT")
        for rrset in resp.answer:
            if rrset.rdtype != dns.rdatatype.TXT:
                continue
            for rd in rrset:
                strings = [s.decode("utf-8", errors="replace") for s in rd.strings]
                if strings and strings[0] == f"owner={self.owner}":
                    return set(strings[1:]), rd
        return set(), None

    def _ownership_rdata(self, entries: set[str]) -> Any:
        strings = [f"owner={self.owner}".encode()] + [e.encode() for e in sorted(entries)]
        too_long = [s for s in strings if len(s) > 255]
        if too_long:
            raise DnsError(f"ownership entry longer than 255 bytes: {too_long[0][:80]!r}…")
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)

    # --- reading -----------------------------------------------------------------------------------

    def _rrsets(self, names: Collection[str], owned: set[str]) -> list[tuple[str, str, int, list[str]]]:
        """(name, type, ttl, values) of the zone: by signed AXFR, else by signed queries of known names."""
        try:
            with self._exchange("AXFR"):
                zone = dns.zone.from_xfr(
                    dns.query.xfr(
                        self.server,
                        self._zone,
                        port=self.port,
                        lifetime=self.timeout_s,
                        relativize=False,
                        keyring=self._keyring,
                        keyname=self.key_name,
                        keyalgorithm=self.tsig_algorithm,
                    ),
                    relativize=False,
                )
        except dns.xfr.TransferError as e:
            log.info(
                "signed AXFR of %s from %s refused (%s); querying known names", self._zone, self.where, e
            )
            return self._rrsets_by_query(names, owned)
        out = []
        for name, rdataset in zone.iterate_rdatasets():
            out.append(
                (
                    normalize_name(name.to_text()),
                    dns.rdatatype.to_text(rdataset.rdtype),
                    int(rdataset.ttl),
                    [value_from_rdata(rd) for rd in rdataset],
                )
            )
        return out

    def _rrsets_by_query(
        self, names: Collection[str], owned: set[str]
    ) -> list[tuple[str, str, int, list[str]]]:
        known = {normalize_name(n) for n in names} | {self._zone}
        for entry in owned:
            rel = entry.split()[0]
            known.add(self._zone if rel == "@" else f"{rel}.{self._zone}")
        out = []
        for name in sorted(known):
            for rtype in _QUERY_TYPES:
                resp = self._query(name, rtype)
                for rrset in resp.answer:
                    if (
                        rrset.rdtype == dns.rdatatype.from_text(rtype)
                        and normalize_name(rrset.name.to_text()) == name
                    ):
                        out.append((name, rtype, int(rrset.ttl), [value_from_rdata(rd) for rd in rrset]))
        return out

    def list_records(self, names: Collection[str] = ()) -> list[ProviderRecord]:
        """Every record but apex SOA/NS, DNSSEC and the ownership record; `owned` from the latter."""
        entries, _ = self._ownership()
        out: list[ProviderRecord] = []
        for name, rtype, ttl, values in self._rrsets(names, entries):
            if rtype in _SKIP_TYPES or (rtype == "NS" and name == self._zone) or name == self.ownership_name:
                continue
            for rec in split_rrset(name, rtype, ttl, values):
                out.append(ProviderRecord(rec, self._entry(rec) in entries))
        return sorted(out, key=lambda p: p.record.key)

    # --- writing -----------------------------------------------------------------------------------

    def _build_update(
        self, changes: list[Change], entries: set[str], own_rd: Any
    ) -> dns.update.UpdateMessage:
        u = dns.update.UpdateMessage(
            self._zone + ".", keyring=self._keyring, keyname=self.key_name, keyalgorithm=self.tsig_algorithm
        )
        new_entries = set(entries)
        for ch in changes:
            if ch.old is not None:
                for v in ch.old.values:
                    u.delete(ch.old.name + ".", rdata_from_value(ch.old.type, v))
                new_entries.discard(self._entry(ch.old))
            if ch.new is not None:
                if ch.kind == "create" and ch.new.type != "TXT":
                    u.absent(ch.new.name + ".", ch.new.type)
                rds = [rdata_from_value(ch.new.type, v) for v in ch.new.values]
                u.add(ch.new.name + ".", ch.new.ttl, *rds)
                new_entries.add(self._entry(ch.new))
        if new_entries != entries:
            if own_rd is not None:
                u.delete(self.ownership_name + ".", own_rd)
            if new_entries:
                u.add(self.ownership_name + ".", self.ownership_ttl, self._ownership_rdata(new_entries))
        return u

    def apply(self, plan: Plan) -> ApplyResult:
        """All changes (and the ownership record) in one signed UPDATE; an empty plan sends nothing.

        Atomic: on failure nothing was applied, and the error carries `.result` saying so.
        """
        if plan.empty:
            return ApplyResult(self._zone)
        changes = list(plan.changes)
        check_in_zone([c.record for c in changes], self._zone)
        try:
            entries, own_rd = self._ownership()
            update = self._build_update(changes, entries, own_rd)
            log.info("rfc2136 %s: one UPDATE with %d change(s) to %s", self._zone, len(changes), self.where)
            resp = self._tcp(update, "update")
            rcode = resp.rcode()
            if rcode in _OUTDATED:
                raise PlanOutdatedError(
                    f"nameserver {self.where} rejected the update of zone {self._zone} "
                    f"({dns.rcode.to_text(rcode)}): the zone changed since the plan was made; plan again"
                )
            if rcode in (dns.rcode.NOTAUTH, dns.rcode.REFUSED):
                raise DnsAuthError(
                    f"nameserver {self.where} refused the update of zone {self._zone} signed with TSIG key "
                    f"{self._key_text()} ({dns.rcode.to_text(rcode)}): the key may not update this zone, "
                    "or the server is not its primary"
                )
            if rcode != dns.rcode.NOERROR:
                raise DnsError(
                    f"nameserver {self.where} answered {dns.rcode.to_text(rcode)} "
                    f"to the update of zone {self._zone}"
                )
        except DnsError as e:
            raise e.with_result(ApplyResult(self._zone, (), None, str(e), tuple(changes))) from e.__cause__
        return ApplyResult(self._zone, tuple(changes))


def _connect(config: StackConfig, owner: str) -> Rfc2136Provider:
    """From the config's `blocks.dns_provider` (a mailu-rfc2136 block); its TSIG secret is redacted."""
    from mailu_flows import redact
    from mailu_flows.blocks import Rfc2136Dns, load_block

    block = load_block(Rfc2136Dns, config.blocks.dns_provider)
    redact.register_secret(block.tsig_secret.get_secret_value())
    return Rfc2136Provider.from_block(block, config.dns.zone, owner=owner)


def _block_type() -> type[Any]:
    from mailu_flows.blocks import Rfc2136Dns

    return Rfc2136Dns


PLUGIN = ProviderPlugin(
    "rfc2136",
    "RFC 2136 updates signed with TSIG (a mailu-rfc2136 block)",
    SUPPORT,
    _connect,
    _block_type,
)
