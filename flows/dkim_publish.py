"""The dkim-publish flow: make sure Mailu's DKIM key exists, publish its TXT, prove the world sees it.

Order, and why: the key is ensured under the host lock (generated only when missing; Mailu's API would
regenerate it, so it is never used); the whole DNS record set is then planned and applied (so the
retired selectors of a rotation stay published until their grace date, and go after it); the
propagation wait runs as a subflow; last, the `p=` every authoritative server serves is compared with
the public half of the key on disk. Running it twice keeps the key and writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from mailu_core.config import StackConfig
from mailu_core.dns import Record, dkim_public_key_der, dkim_txt_value
from mailu_core.errors import MailuFlowsError
from mailu_core.fields import IPAny
from mailu_flows import redact
from mailu_flows.blocks import StackParameter
from mailu_flows.dns.dkim import DkimKey, ensure_key
from mailu_flows.dns.propagation import check_propagation, nameservers_for
from mailu_flows.flows.dns_wait import dns_propagation_wait
from mailu_flows.flows.naming import flow_name, run_namer
from mailu_flows.host import Host
from mailu_flows.session import host_session
from mailu_flows.tasks.dns import (
    DkimSelectors,
    desired_for,
    dkim_txt_for,
    publish_records,
    torn_down_since,
    without_mail_routing,
)


class DkimMismatch(MailuFlowsError, RuntimeError):
    """A nameserver serves a DKIM key other than the one on disk (or none): mail would fail DKIM."""


@task(name="dkim-key", cache_policy=NO_CACHE)
def ensure_dkim_key(config: StackConfig, host: Host, rotate: bool) -> DkimKey:
    """The configured selector's key in the dkim volume: created if missing, replaced only on `rotate`."""
    logger = get_run_logger()
    key = ensure_key(host, config, rotate=rotate)
    verb = (
        "rotated (old key kept as " + str(key.rotated_from) + ")"
        if key.rotated_from
        else ("generated" if key.created else "already present, kept")
    )
    logger.info("DKIM key %s: %s, RSA-%d, mode %s, owner %s", key.path, verb, key.bits, key.mode, key.owner)
    if key.mode and int(key.mode, 8) & 0o077:
        logger.warning(
            "DKIM key %s has mode %s: readable beyond its owner (0600 expected)", key.path, key.mode
        )
    return key


@task(name="dkim-selectors", cache_policy=NO_CACHE)
def dkim_selectors(config: StackConfig, host: Host, current: DkimKey) -> DkimSelectors:
    """The TXT of the current key plus the retired selectors still in their grace period."""
    selectors = dkim_txt_for(config, host, current=current)
    for note in selectors.notes:
        get_run_logger().info("%s", note)
    return selectors


def dkim_records(config: StackConfig, selector: str, value: str) -> list[Record]:
    """The selector's TXT at every mail domain (alternatives are signed with the primary's key)."""
    return [r for r in desired_for(config, {selector: value}) if r.name.startswith(f"{selector}._domainkey.")]


@task(name="dkim-verify", cache_policy=NO_CACHE)
def verify_served_key(
    config: StackConfig, key: DkimKey, bootstrap_resolver: str | None, strict: bool
) -> list[str]:
    """Ask every authoritative server for the selector's TXT at every mail domain and compare its `p=`
    with the public half of the key on disk. `strict` fails on any difference; else they are warnings."""
    records = dkim_records(config, key.selector, dkim_txt_value(key.public_pem))
    servers = nameservers_for(config, bootstrap_resolver)
    table = check_propagation(records, servers, zone=config.dns.zone)
    want = key.public_der
    problems: list[str] = []
    for cell in table.cells:
        where = f"{cell.record.name} on {cell.nameserver.label}"
        if cell.status.value == "unreachable":
            problems.append(f"{where}: unreachable ({cell.detail})")
            continue
        served = [v for v in cell.served if "p=" in v]
        if not served:
            problems.append(f"{where}: serves no DKIM record")
            continue
        for value in served:
            try:
                same = dkim_public_key_der(value) == want
            except ValueError as exc:
                problems.append(f"{where}: unusable DKIM record ({exc})")
                continue
            if not same:
                problems.append(f"{where}: p= is not the public half of {key.path}")
    logger = get_run_logger()
    if problems and strict:
        raise DkimMismatch("DKIM verification failed:\n" + "\n".join(f"- {p}" for p in problems))
    for p in problems:
        logger.warning("DKIM not verified yet: %s", p)
    if not problems:
        logger.info(
            "verified: %d nameserver(s) serve the key on disk for %s",
            len(servers),
            ", ".join(r.name for r in records),
        )
    return problems


@flow(name=flow_name("dkim-publish"), flow_run_name=run_namer("dkim-publish"))
def dkim_publish(
    config: StackParameter,
    rotate: bool = False,
    wait: bool = True,
    force: bool = False,
    deadline_s: Annotated[int | None, Field(ge=0, le=7200)] = None,
    bootstrap_resolver: IPAny | None = None,
    lock_wait_s: Annotated[int, Field(ge=0, le=3600)] = 60,
) -> dict[str, Any]:
    """Ensure the DKIM key (never overwritten unless `rotate`), publish the records, wait, verify.

    Args:
        config: The stack: host, Mailu settings, DNS zone and provider (its stack block).
        rotate: Replace the key of the current selector (prefer a new selector in the config).
        wait: Wait for propagation, then verify the key on every authoritative nameserver.
        force: Apply a DNS plan even if it changes many records.
        deadline_s: Seconds to wait for propagation (0 to 7200); empty: dns.propagation_timeout_s.
        bootstrap_resolver: Resolver address used to find the zone's NS set; empty: the system resolver.
        lock_wait_s: Seconds to wait for the host lock held by another run (0 to 3600).
    """
    redact.install()
    logger = get_run_logger()
    with host_session(config, "dkim-publish", lock_wait_s) as host:
        key = ensure_dkim_key(config, host, rotate)
        selectors = dkim_selectors(config, host, key)
        torn_down = torn_down_since(host, config)

    records = desired_for(config, selectors.txt)
    if torn_down:
        logger.info(
            "the stack was torn down by a rollback (%s): MX and %s's A/AAAA stay unpublished until a deploy",
            torn_down,
            config.hostname,
        )
        records = without_mail_routing(config, records)
    published = publish_records(config, records, force)
    propagation: dict[str, Any] | None = None
    if wait:
        propagation = dns_propagation_wait(
            config=config,
            deadline_s=deadline_s,
            bootstrap_resolver=bootstrap_resolver,
            dkim_txt=selectors.txt,
            mail_routing=torn_down is None,
        )
    problems = verify_served_key(config, key, bootstrap_resolver, strict=wait)
    summary = (
        f"DKIM {key.selector} ({'new key' if key.created else 'key kept'}, RSA-{key.bits}); "
        f"DNS: {published['summary']}, {published['writes']} write(s); "
        + ("verified on every nameserver" if not problems else f"{len(problems)} not verified yet")
    )
    logger.info("dkim-publish: %s", summary)
    return {
        "selector": key.selector,
        "path": key.path,
        "created": key.created,
        "rotated_from": key.rotated_from,
        "bits": key.bits,
        "mode": key.mode,
        "owner": key.owner,
        "txt": selectors.txt[key.selector],
        "published_selectors": sorted(selectors.txt),
        "removed_selectors": list(selectors.expired),
        "dns": published,
        "propagation": propagation,
        "verified": not problems,
        "problems": problems,
        "notes": selectors.notes,
        "summary": summary,
    }
