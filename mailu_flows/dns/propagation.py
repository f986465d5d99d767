"""Is every desired record served by every authoritative nameserver? Ask each one directly.

Why directly: a recursive resolver answers from its cache and lies for a TTL (the "DNS checks that
don't lie" ask, chatmail #144). So the zone's NS set is discovered (NS at the apex, then each target's
A/AAAA, through a bootstrap resolver: the system resolver, or an address such as the lab's primary),
or taken from the config (`dns.nameservers`, for hidden primaries); then every server gets every
question with RD unset, over UDP with a TCP retry on truncation (2048-bit DKIM), all concurrently.
The pure classification (ok / stale / missing / wrong value / unreachable) is in
`mailu_core.dns.propagation`.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename

from mailu_core.config import StackConfig
from mailu_core.dns import (
    Answer,
    Nameserver,
    PropagationTable,
    PropagationTimeout,
    Record,
    build_table,
    normalize_name,
)
from mailu_flows.dns._rdata import value_from_rdata
from mailu_flows.dns.provider import DnsError

__all__ = [
    "ProgressCallback",
    "check_propagation",
    "check_propagation_async",
    "discover_nameservers",
    "nameservers_for",
    "reverse_dns_warnings",
    "wait_for_propagation",
    "wait_for_propagation_async",
]

ProgressCallback = Callable[[PropagationTable, int, float], Any]
"""Called after every check with (table, attempt number from 1, seconds elapsed); may be async."""


def _resolver(bootstrap: str | None, port: int, timeout_s: float) -> dns.resolver.Resolver:
    if bootstrap is None:
        r = dns.resolver.Resolver()
    else:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [bootstrap]
        r.port = port
    r.lifetime = timeout_s
    return r


def discover_nameservers(
    zone: str, bootstrap: str | None = None, port: int = 53, timeout_s: float = 5.0
) -> list[Nameserver]:
    """The zone's authoritative servers: NS at the apex, then each target's A and AAAA addresses.

    `bootstrap` is the resolver to ask (None: the system resolver). The servers are later queried on
    `port` too. Raises `DnsError` naming the zone or the NS target that could not be resolved.
    """
    r = _resolver(bootstrap, port, timeout_s)
    apex = normalize_name(zone) + "."
    via = bootstrap or "the system resolver"
    try:
        targets = sorted({rd.target.to_text() for rd in r.resolve(apex, "NS")})
    except dns.exception.DNSException as e:
        raise DnsError(f"cannot find the NS records of zone {zone} via {via}: {type(e).__name__}: {e}") from e
    out: list[Nameserver] = []
    for target in targets:
        addresses: list[str] = []
        for rtype in ("A", "AAAA"):
            try:
                addresses += [rd.address for rd in r.resolve(target, rtype)]
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except dns.exception.DNSException as e:
                raise DnsError(f"cannot resolve nameserver {target} of zone {zone} via {via}: {e}") from e
        if not addresses:
            raise DnsError(f"nameserver {target} of zone {zone} has no A/AAAA address (via {via})")
        out += [Nameserver(normalize_name(target), a, port) for a in addresses]
    return out


def nameservers_for(cfg: StackConfig, bootstrap: str | None = None) -> list[Nameserver]:
    """The config's `dns.nameservers` override if set, else the zone's discovered NS set."""
    if cfg.dns.nameservers:
        return [Nameserver(a, a, cfg.dns.nameserver_port) for a in cfg.dns.nameservers]
    return discover_nameservers(cfg.dns.zone, bootstrap, cfg.dns.nameserver_port)


async def _ask(ns: Nameserver, qname: str, rdtype: str, timeout_s: float) -> dns.message.Message:
    q = dns.message.make_query(qname, rdtype)
    q.flags &= ~dns.flags.RD
    resp = await dns.asyncquery.udp(q, ns.address, port=ns.port, timeout=timeout_s)
    if resp.flags & dns.flags.TC:
        resp = await dns.asyncquery.tcp(q, ns.address, port=ns.port, timeout=timeout_s)
    return resp


async def _answer(ns: Nameserver, rec: Record, timeout_s: float) -> Answer:
    try:
        resp = await _ask(ns, rec.name + ".", rec.type, timeout_s)
    except (dns.exception.DNSException, OSError) as e:
        return Answer(error=f"{type(e).__name__}: {e}".rstrip(": "))
    rcode = resp.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return Answer(error=f"answered {dns.rcode.to_text(rcode)}")
    if not resp.flags & dns.flags.AA:
        return Answer(error="not authoritative for the zone (lame delegation?)")
    want = dns.rdatatype.from_text(rec.type)
    qname = dns.name.from_text(rec.name + ".")
    values = [
        value_from_rdata(rd)
        for rrset in resp.answer
        if rrset.rdtype == want and rrset.name == qname
        for rd in rrset
    ]
    return Answer.of(rec.type, values)


async def _serial(ns: Nameserver, zone: str, timeout_s: float) -> int | None:
    try:
        resp = await _ask(ns, normalize_name(zone) + ".", "SOA", timeout_s)
    except (dns.exception.DNSException, OSError):
        return None
    for rrset in resp.answer:
        if rrset.rdtype == dns.rdatatype.SOA and resp.flags & dns.flags.AA:
            return int(rrset[0].serial)
    return None


async def check_propagation_async(
    records: Sequence[Record],
    nameservers: Sequence[Nameserver],
    zone: str | None = None,
    timeout_s: float = 2.0,
) -> PropagationTable:
    """One round: every record on every server (and each server's SOA serial), all at once."""
    recs = list(records)
    servers = list(nameservers)
    if zone is None:
        zone = min((r.name for r in recs), key=len) if recs else "."
    pairs = [(r, ns) for r in recs for ns in servers]
    answers, serials = await asyncio.gather(
        asyncio.gather(*(_answer(ns, r, timeout_s) for r, ns in pairs)),
        asyncio.gather(*(_serial(ns, zone, timeout_s) for ns in servers)),
    )
    return build_table(
        recs, servers, dict(zip(pairs, answers, strict=True)), dict(zip(servers, serials, strict=True))
    )


def check_propagation(
    records: Sequence[Record],
    nameservers: Sequence[Nameserver],
    zone: str | None = None,
    timeout_s: float = 2.0,
) -> PropagationTable:
    """`check_propagation_async` for synchronous callers (not from inside a running event loop)."""
    return asyncio.run(check_propagation_async(records, nameservers, zone, timeout_s))


async def wait_for_propagation_async(
    records: Sequence[Record],
    nameservers: Sequence[Nameserver],
    deadline_s: float,
    initial_delay: float = 0.0,
    backoff: float = 1.5,
    *,
    interval_s: float = 1.0,
    max_interval_s: float = 30.0,
    zone: str | None = None,
    timeout_s: float = 2.0,
    on_progress: ProgressCallback | None = None,
) -> PropagationTable:
    """Check until every cell is ok; pauses start at `interval_s` and grow by `backoff` up to
    `max_interval_s`. Returns the final table or raises `PropagationTimeout` carrying the last one.
    """
    start = time.monotonic()
    if not nameservers:
        raise DnsError("no nameservers to check propagation on")
    if initial_delay > 0:
        await asyncio.sleep(min(initial_delay, deadline_s))
    pause = interval_s
    attempt = 0
    while True:
        attempt += 1
        table = await check_propagation_async(records, nameservers, zone, timeout_s)
        elapsed = time.monotonic() - start
        if on_progress is not None:
            result = on_progress(table, attempt, elapsed)
            if inspect.isawaitable(result):
                await result
        if table.ok:
            return table
        remaining = deadline_s - elapsed
        if remaining <= 0:
            raise PropagationTimeout(table, elapsed)
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * backoff, max_interval_s)


def wait_for_propagation(
    records: Sequence[Record],
    nameservers: Sequence[Nameserver],
    deadline_s: float,
    initial_delay: float = 0.0,
    backoff: float = 1.5,
    **kwargs: Any,
) -> PropagationTable:
    """`wait_for_propagation_async` for synchronous callers."""
    return asyncio.run(
        wait_for_propagation_async(records, nameservers, deadline_s, initial_delay, backoff, **kwargs)
    )


def reverse_dns_warnings(
    ips: Sequence[str], hostname: str, resolver: str | None = None, port: int = 53, timeout_s: float = 3.0
) -> list[str]:
    """Warnings unless each IP has a PTR naming `hostname` whose A/AAAA leads back to it (FCrDNS).

    Receivers reject or downgrade mail from IPs without matching reverse DNS; only the IP's owner
    (the hosting provider) can set the PTR, so this is a warning, not a failure.
    """
    r = _resolver(resolver, port, timeout_s)
    host = normalize_name(hostname)
    warnings: list[str] = []
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        try:
            names = [
                normalize_name(rd.target.to_text())
                for rd in r.resolve(dns.reversename.from_address(ip), "PTR")
            ]
        except dns.exception.DNSException as e:
            warnings.append(
                f"no reverse DNS (PTR) for {ip} ({type(e).__name__}); "
                f"ask the IP's provider to set it to {host}"
            )
            continue
        if host not in names:
            warnings.append(f"reverse DNS of {ip} is {', '.join(names)}, not {host}; set the PTR to {host}")
            continue
        rtype = "A" if addr.version == 4 else "AAAA"
        try:
            forward = {ipaddress.ip_address(rd.address) for rd in r.resolve(host + ".", rtype)}
        except dns.exception.DNSException:
            forward = set()
        if addr not in forward:
            warnings.append(
                f"{host} (the PTR of {ip}) does not resolve back to {ip}: forward-confirmed rDNS fails"
            )
    return warnings
