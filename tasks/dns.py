"""DNS steps shared by the deploy, dkim-publish and dns-propagation-wait flows.

The provider comes from the provider registry (`mailu_flows.dns.registry`, by `dns.provider`) with the
block the config names (`blocks.dns_provider`); its secret is registered for log redaction as soon as
it is loaded. Every publish applies the *whole* desired record set
(the plan deletes owned records that are no longer desired, e.g. a retired DKIM selector after its
grace date), so every caller computes the same DKIM selectors through `dkim_txt_for`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import Task

from mailu_core.config import StackConfig
from mailu_core.dns import Plan, Record, desired_records
from mailu_flows.dns.dkim import DkimKey
from mailu_flows.dns.provider import (
    DEFAULT_OWNER,
    DnsConnectionError,
    DnsError,
    PlanOutdatedError,
    Provider,
    plan_for,
)
from mailu_flows.dns.registry import connect_provider
from mailu_flows.dns.selectors import DkimSelectors, dkim_selectors
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


def dkim_txt_for(
    cfg: StackConfig,
    host: Host,
    current: DkimKey | None = None,
    provider: Provider | None = None,
) -> DkimSelectors:
    """The DKIM TXT values to publish (`mailu_flows.dns.selectors.dkim_selectors`); the zone is asked,
    through the configured provider unless one is given, only when a retired selector's key is gone."""
    return dkim_selectors(cfg, host, current, lambda: provider or dns_provider(cfg))


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
