"""DNS steps shared by the deploy, dkim-publish and dns-propagation-wait flows.

The provider comes from the provider registry (`mailu_flows.dns.registry`, by `dns.provider`) with the
block the config names (`blocks.dns_provider`); its secret is registered for log redaction as soon as
it is loaded. Every publish applies the *whole* desired record set
(the plan deletes owned records that are no longer desired, e.g. a retired DKIM selector after its
grace date), so every caller computes the same DKIM selectors through `dkim_txt_for`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import Task

from mailu_core.config import StackConfig
from mailu_core.dns import Plan, Record, desired_records, dkim_txt_value, txt_slot
from mailu_flows.dns.dkim import DkimKey, read_keys, rotation_state
from mailu_flows.dns.provider import (
    DEFAULT_OWNER,
    DnsConnectionError,
    DnsError,
    PlanOutdatedError,
    Provider,
    plan_for,
)
from mailu_flows.dns.registry import connect_provider
from mailu_flows.dns.teardown import torn_down_since, without_mail_routing
from mailu_flows.host import Host

__all__ = [
    "DkimSelectors",
    "DnsConflicts",
    "desired_for",
    "dkim_txt_for",
    "dns_owner",
    "dns_plan",
    "dns_provider",
    "publish_records",
    "torn_down_since",
    "without_mail_routing",
]

PLAN_ARTIFACT_KEY = "mailu-dns-plan"


class DnsConflicts(DnsError):
    """Foreign records hold slots we want: nothing was written there; the message says how to fix it."""


def dns_owner(cfg: StackConfig) -> str:
    """The ownership name of this stack's records: one per stack, so stacks can share a zone."""
    return f"{DEFAULT_OWNER}-{cfg.name}"


def dns_provider(cfg: StackConfig) -> Provider:
    """The provider the config names (`dns.provider`, looked up in the provider registry), with the
    credentials of its block (registered for redaction)."""
    return connect_provider(cfg, dns_owner(cfg))


def desired_for(cfg: StackConfig, dkim_txt: Mapping[str, str] | None) -> list[Record]:
    """Every record the stack publishes, with the config's options (autoconfig, MTA-STS)."""
    return desired_records(cfg, dkim_txt, autoconfig=cfg.dns.autoconfig, mta_sts_id=cfg.dns.mta_sts_id)


@dataclass(frozen=True)
class DkimSelectors:
    """The DKIM TXT values to publish, by selector, and where each came from."""

    txt: dict[str, str]
    current: DkimKey | None
    from_zone: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


def _zone_dkim_values(provider: Provider, cfg: StackConfig, selectors: Sequence[str]) -> dict[str, str]:
    """The DKIM TXT the zone serves now for each selector at the primary domain (what we keep
    published when a retired selector's key file is gone from the host)."""
    names = {f"{s}._domainkey.{cfg.mailu.domain}": s for s in selectors}
    out: dict[str, str] = {}
    for p in provider.list_records(names=set(names)):
        r = p.record
        if r.type == "TXT" and r.name in names and txt_slot(r.name, r.value) == "dkim1":
            out[names[r.name]] = r.value
    return out


def dkim_txt_for(
    cfg: StackConfig,
    host: Host,
    current: DkimKey | None = None,
    provider: Provider | None = None,
) -> DkimSelectors:
    """The current selector's TXT (from its key on the host, if any) plus every retired selector still in
    its grace period (from its key on the host, else from what the zone serves, else dropped with a note).

    `current` skips re-reading a key the caller just ensured.
    """
    sel = cfg.dns.dkim.selector
    state = rotation_state(cfg.dns.dkim)
    wanted = ([] if current is not None else [sel]) + list(state.keep)
    keys = read_keys(host, cfg, wanted) if wanted else {}
    if current is None:
        current = keys.get(sel)
    txt: dict[str, str] = {}
    notes: list[str] = []
    if current is not None:
        txt[sel] = dkim_txt_value(current.public_pem)
    else:
        notes.append(f"no DKIM key for selector {sel!r} yet: dkim-publish generates it and publishes its TXT")
    no_file = [s for s in state.keep if keys.get(s) is None]
    for s in state.keep:
        key = keys.get(s)
        if key is not None:
            txt[s] = dkim_txt_value(key.public_pem)
    from_zone: dict[str, str] = {}
    if no_file:
        from_zone = _zone_dkim_values(provider or dns_provider(cfg), cfg, no_file)
        txt.update(from_zone)
    lost = tuple(s for s in no_file if s not in from_zone)
    for s in from_zone:
        notes.append(f"retired selector {s!r}: no key file on the host; keeping the TXT the zone serves")
    for s in lost:
        notes.append(f"retired selector {s!r}: no key on the host and no TXT in the zone; nothing to keep")
    for s in state.expired:
        notes.append(f"retired selector {s!r} is past its grace date: its TXT is removed")
    return DkimSelectors(txt, current, tuple(from_zone), lost, state.expired, notes)


def _retry_on_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry when the provider could not be reached or the zone moved under the plan; not otherwise."""
    try:
        state.result()
    except (DnsConnectionError, PlanOutdatedError):
        return True
    except Exception:
        return False
    return False


def _plan_markdown(plan: Plan, existing: int, title: str) -> str:
    return f"# {title}\n\n{plan.render_markdown()}\nZone records before the change: {existing}.\n"


@task(name="dns-plan", cache_policy=NO_CACHE)
def dns_plan(config: StackConfig, records: list[Record]) -> tuple[Plan, int]:
    """The plan for `records` against the zone, shown as a markdown artifact; writes nothing."""
    plan, existing = plan_for(dns_provider(config), records)
    create_markdown_artifact(
        _plan_markdown(plan, existing, "DNS plan (dry run)"),
        key=PLAN_ARTIFACT_KEY,
        description=f"DNS plan for zone {config.dns.zone}",
    )
    return plan, existing


@task(
    name="dns-publish",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_on_transient,
)
def publish_records(config: StackConfig, records: list[Record], force: bool = False) -> dict[str, Any]:
    """Plan (markdown artifact), refuse a too-large change unless `force`, apply in plan order (A/AAAA
    first, MX last); a second run with the same records makes no write. Conflicts fail the task after
    the rest is applied, with the fix for each."""
    logger = get_run_logger()
    provider = dns_provider(config)
    plan, existing = plan_for(provider, records)
    create_markdown_artifact(
        _plan_markdown(plan, existing, "DNS plan"),
        key=PLAN_ARTIFACT_KEY,
        description=f"DNS plan for zone {config.dns.zone}",
    )
    logger.info("%s", plan.render_text())
    plan.raise_if_unsafe(config.dns.max_change_fraction, force=force)
    result = provider.apply(plan)
    logger.info("%s", result.summary())
    if plan.conflicts:
        raise DnsConflicts(
            f"zone {plan.zone}: {len(plan.conflicts)} record(s) not published because foreign records hold "
            "their slots:\n" + "\n".join(f"- {c}" for c in plan.conflicts)
        )
    return {
        "zone": plan.zone,
        "writes": len(result.applied),
        "creates": [str(c) for c in plan.creates],
        "updates": [str(c) for c in plan.updates],
        "deletes": [str(c) for c in plan.deletes],
        "summary": plan.summary(),
    }
