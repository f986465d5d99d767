"""The dns-propagation-wait flow: wait until every authoritative nameserver serves every desired record.

Asks each server directly (no resolver cache to lie), shows progress as a Prefect progress artifact
and the final record x nameserver table as a table artifact; on timeout the error carries the table.
Reverse DNS (FCrDNS) and MX/A agreement are reported as warnings: they need a human, not a retry.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import aupdate_progress_artifact, create_progress_artifact, create_table_artifact
from pydantic import Field

from mailu_core.config import StackConfig
from mailu_core.dns import PropagationTable, PropagationTimeout, Record, Status, mx_a_warnings
from mailu_core.fields import DkimSelector, DkimTxtValue, IPAny
from mailu_flows import redact
from mailu_flows.blocks import StackParameter
from mailu_flows.dns.propagation import nameservers_for, reverse_dns_warnings, wait_for_propagation
from mailu_flows.flows.naming import artifact_key, flow_name, run_namer
from mailu_flows.tasks.dns import desired_for, dkim_txt_for, torn_down_since, without_mail_routing
from mailu_flows.tasks.host import host_session


def table_rows(table: PropagationTable, width: int = 60) -> list[dict[str, str]]:
    """One row per record, one column per nameserver (status, and why when not ok)."""
    rows = []
    for r in table.records:
        row = {"record": f"{r.name} {r.type}", "value": r.short(width)}
        for ns in table.nameservers:
            c = table.cell(r, ns)
            row[ns.label] = c.status.value + (
                f" ({c.detail})" if c.status is not Status.OK and c.detail else ""
            )
        rows.append(row)
    return rows


def _publish_table(config: StackConfig, table: PropagationTable, ok: bool) -> None:
    create_table_artifact(
        table_rows(table),
        key=artifact_key("dns-propagation", config.name),
        description=("Propagated: " if ok else "NOT propagated: ") + table.summary(),
    )


def _records(
    config: StackConfig, dkim_txt: dict[str, str] | None, mail_routing: bool | None
) -> tuple[list[Record], list[str]]:
    """The desired records; the DKIM TXT comes from the keys on the host unless given; MX and the
    mail host's A/AAAA are left out while a rollback teardown is in effect (unless told)."""
    notes: list[str] = []
    torn_down: str | None = None
    if dkim_txt is None or mail_routing is None:
        with host_session(config, "dns-propagation-wait", 0, lock=False) as host:  # reads only
            if dkim_txt is None:
                selectors = dkim_txt_for(config, host)
                dkim_txt, notes = selectors.txt, list(selectors.notes)
            if mail_routing is None:
                torn_down = torn_down_since(host, config)
                mail_routing = torn_down is None
    records = desired_for(config, dkim_txt)
    if not mail_routing:
        records = without_mail_routing(config, records)
        why = f"torn down by a rollback ({torn_down})" if torn_down else "mail_routing is off"
        notes.append(f"{why}: MX and {config.hostname} A/AAAA not checked")
    return records, notes


@flow(name=flow_name("dns-propagation-wait"), flow_run_name=run_namer("dns-propagation-wait"))
def dns_propagation_wait(
    config: StackParameter,
    deadline_s: Annotated[int | None, Field(ge=0, le=7200)] = None,
    interval_s: Annotated[float | None, Field(gt=0, le=600)] = None,
    bootstrap_resolver: IPAny | None = None,
    dkim_txt: Annotated[dict[DkimSelector, DkimTxtValue] | None, Field(max_length=32)] = None,
    check_reverse_dns: bool = True,
    mail_routing: bool | None = None,
) -> dict[str, Any]:
    """Query every authoritative nameserver until all serve the desired records, or time out with the
    record x nameserver table (ok, stale, missing, wrong value, unreachable).

    Args:
        config: The stack: mail domains, host addresses, DNS zone (its stack block).
        deadline_s: Seconds before giving up (0 to 7200); empty: dns.propagation_timeout_s.
        interval_s: First pause between checks in seconds (grows 1.5x); empty: dns.propagation_interval_s.
        bootstrap_resolver: Resolver address used to find the zone's NS set; empty: the system resolver.
        dkim_txt: DKIM TXT values by selector (at most 32); empty: derived from the keys on the host.
        check_reverse_dns: Also report (as warnings) reverse DNS that does not match the mail hostname.
        mail_routing: Also wait for MX and the mail host's A/AAAA; empty: unless a rollback teardown is
            in effect (read from the host).
    """
    redact.install()
    logger = get_run_logger()
    dns = config.dns
    records, notes = _records(config, dkim_txt, mail_routing)
    for note in notes:
        logger.info("%s", note)
    servers = nameservers_for(config, bootstrap_resolver)
    logger.info("checking %d record(s) on %s", len(records), ", ".join(ns.label for ns in servers))
    progress_id = create_progress_artifact(0.0, description="DNS propagation: cells served as desired")
    assert isinstance(progress_id, UUID)

    seen = {"attempts": 0, "elapsed_s": 0.0}

    async def on_progress(table: PropagationTable, attempt: int, elapsed: float) -> None:
        seen.update(attempts=attempt, elapsed_s=round(elapsed, 3))
        done = table.counts()[Status.OK]
        total = max(len(table.cells), 1)
        await aupdate_progress_artifact(
            progress_id, progress=100.0 * done / total, description=f"check {attempt}: {table.summary()}"
        )
        if not table.ok:
            logger.info("check %d after %.1fs: %s", attempt, elapsed, table.summary())

    pause = interval_s if interval_s is not None else float(dns.propagation_interval_s)
    try:
        table = wait_for_propagation(
            records,
            servers,
            float(deadline_s if deadline_s is not None else dns.propagation_timeout_s),
            interval_s=pause,
            max_interval_s=max(30.0, pause),
            zone=dns.zone,
            on_progress=on_progress,
        )
    except PropagationTimeout as exc:
        _publish_table(config, exc.table, ok=False)
        raise
    _publish_table(config, table, ok=True)

    warnings = mx_a_warnings(records, table)
    if check_reverse_dns:
        ips = [ip for ip in (config.mailu.public_ipv4, config.mailu.public_ipv6) if ip]
        warnings += reverse_dns_warnings(ips, config.hostname, resolver=bootstrap_resolver, timeout_s=2.0)
    for w in warnings:
        logger.warning("%s", w)
    logger.info("propagated: %s", table.summary())
    return {
        "ok": True,
        "summary": table.summary(),
        "nameservers": [ns.label for ns in servers],
        "records": len(records),
        "attempts": seen["attempts"],
        "elapsed_s": seen["elapsed_s"],
        "warnings": warnings,
        "table": table_rows(table),
    }
