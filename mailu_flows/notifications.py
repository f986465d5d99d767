"""Notifications: server-side automations that send a notification block's message, so that a run that
crashed, or never started, is still reported (a crashed process cannot notify for itself, the server
can).

- Every terminal failure of a run of our deployments (`Failed`, `Crashed`, `TimedOut`: our timeout
  errors subclass `TimeoutError`, so a propagation wait that gives up ends `TimedOut`) and every `Late`
  run (a scheduled backup whose runner is down never starts).
- One incident, one notification: only runs of a deployment notify. A subflow (dkim-publish's
  propagation wait, deploy's dkim-publish) has no deployment; it fails inside its parent, whose own
  failure is the notification. A local run (`--local`) reports to the terminal that started it.
- Proactive rules per stack: no Completed backup-verify of that stack (its runs carry the stack's
  tag) within its expected interval notifies, and, for a stack with a scheduled canary, no Completed
  mail canary within the canary's no-success limit; whatever the reason (never scheduled, runner
  down, stuck, failing every time). One rule for the whole server would let one stack's runs hide
  another's that stopped. With no stack known yet, one server-wide backup-verify rule stands in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mailu_flows.flows.naming import FLOW_PREFIX, flow_name

if TYPE_CHECKING:
    from mailu_core.config import StackConfig

FAILURE_AUTOMATION = "mailu-flows: notify on failed, crashed, timed-out or late runs"
VERIFY_OVERDUE_AUTOMATION = "mailu-flows: notify when no backup-verify completes in time"
CANARY_OVERDUE_AUTOMATION = "mailu-flows: notify when no mail canary completes in time"
LEGACY_AUTOMATIONS = ("mailu-flows: notify on failed or crashed runs",)  # replaced, removed on setup
NOTIFIED_STATES = ("Failed", "Crashed", "TimedOut", "Late")
# The daily verification, plus the time a backup and a drill may take, plus slack for a slow night.
VERIFY_INTERVAL = timedelta(hours=26)

SUBJECT = "mailu-flows: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
BODY = (
    "Flow {{ flow.name }}, run {{ flow_run.name }} (id {{ flow_run.id }}): {{ flow_run.state.name }}.\n"
    "{% if flow_run.state.name == 'Late' %}The run has not started at its scheduled time: is the process "
    "serving the deployments (mailu-flows serve, or the work pool's worker) running?\n{% endif %}"
    "{{ flow_run.state.message }}\n"
    "Runbook: docs/runbook.md, section '{{ flow.name | replace('mailu-', '', 1) }}'."
)


def span(duration: timedelta) -> str:
    """`26 h`, `90 min`, `15 s`: a duration as a person reads it."""
    seconds = duration.total_seconds()
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _our_deployment_runs() -> list[dict[str, str]]:
    """`match_related` for runs of our flows (`mailu-*`) created from a deployment: every listed
    resource must be related to the run's event."""
    return [
        {"prefect.resource.role": "flow", "prefect.resource.name": f"{FLOW_PREFIX}*"},
        {"prefect.resource.role": "deployment"},
    ]


def failure_automation(block_document_id: Any) -> Any:
    """The automation for failed, crashed, timed-out and late runs (not yet saved)."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=FAILURE_AUTOMATION,
        description="One message per failed, crashed, timed-out or late run of a mailu-flows deployment "
        "(subflows fail with their parent, which notifies).",
        trigger=EventTrigger(
            expect={f"prefect.flow-run.{state}" for state in NOTIFIED_STATES},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_our_deployment_runs(),
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=SUBJECT, body=BODY)],
    )


@dataclass(frozen=True)
class Overdue:
    """A flow that must complete every so often, and what its absence means."""

    flow: str  # the deployment's flow, without the prefix
    automation: str  # the rule's name (a stack's adds " (stack <name>)")
    meaning: str  # what no completion means, for the message
    look_for: str  # where to look first


VERIFY = Overdue(
    "backup-verify",
    VERIFY_OVERDUE_AUTOMATION,
    "the newest backup is not proven to restore",
    "failed or late backup and backup-verify runs",
)
CANARY = Overdue(
    "mail-canary",
    CANARY_OVERDUE_AUTOMATION,
    "mail may not be flowing, and nothing has checked",
    "failed or late mail-canary runs, and the canary's mailbox",
)


def overdue_name(overdue: Overdue, stack: str | None) -> str:
    """A proactive rule's name: one per stack, or the server-wide one."""
    return f"{overdue.automation} (stack {stack})" if stack else overdue.automation


def verify_overdue_name(stack: str | None) -> str:
    return overdue_name(VERIFY, stack)


def overdue_automation(
    overdue: Overdue, block_document_id: Any, within: timedelta, stack: str | None = None
) -> Any:
    """The proactive rule: no Completed deployment run of `overdue.flow` (of `stack`, by its tag; of
    any stack when None) within `within` notifies."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    from mailu_flows.deployments.definitions import stack_tag_of

    limit = span(within)
    name = flow_name(overdue.flow)
    related = [
        {"prefect.resource.role": "flow", "prefect.resource.name": name},
        {"prefect.resource.role": "deployment"},
    ]
    of = ""
    if stack:
        tag = f"prefect.tag.{stack_tag_of(stack)}"
        related.append({"prefect.resource.role": "tag", "prefect.resource.id": tag})
        of = f" of stack {stack}"
    return Automation(
        name=overdue_name(overdue, stack),
        description=f"No {name} run{of} completed within {limit}: {overdue.meaning}.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Completed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=related,
            posture=Posture.Proactive,
            threshold=1,
            within=within,
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=f"mailu-flows: no {name}{of} completed in {limit}",
                body=f"No run of {name}{of} completed within {limit}: {overdue.meaning}. Look for "
                f"{overdue.look_for}, and check that the process serving the deployments runs. "
                f"Runbook: docs/runbook.md, section '{overdue.flow}'.",
            )
        ],
    )


def verify_overdue_automation(
    block_document_id: Any, within: timedelta = VERIFY_INTERVAL, stack: str | None = None
) -> Any:
    """The backup-verify rule (see `overdue_automation`)."""
    return overdue_automation(VERIFY, block_document_id, within, stack)


def canary_interval(config: StackConfig) -> timedelta | None:
    """How long a stack may go without a completed canary run before anyone is told: the canary's own
    no-success limit; None when the stack has no scheduled canary (nothing to expect)."""
    if config.blocks.canary_password is None or not config.canary.scheduled:
        return None
    return timedelta(minutes=config.canary.no_success_alert_minutes)


def _read(name: str) -> Any:
    from prefect.automations import Automation

    try:
        return Automation.read(name=name)
    except ValueError:
        return None


def _upsert(automation: Any) -> str:
    """Create the automation, or update the one with its name; returns its id."""
    existing = _read(automation.name)
    if existing is not None:
        automation.id = existing.id
        automation.update()
        return str(existing.id)
    created: Any = automation.create()
    return str(created.id)


def _stack_names() -> list[str]:
    """The stacks this server runs: the names of its stack blocks."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from mailu_flows.blocks.stack import MailuStack

    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type(
                MailuStack.get_block_type_slug(), include_secrets=False
            )
        except ObjectNotFound:  # the type was never registered: no stack yet
            return []
    return sorted(d.name for d in documents if d.name and not d.is_anonymous)


def _stack_config(stack: str) -> StackConfig | None:
    """The config in the stack's block; None when it has none, or one that no longer validates (its
    verify rule stays; a canary rule needs the canary's settings)."""
    from mailu_flows.blocks import MailuStack, load_block

    try:
        return load_block(MailuStack, stack).config
    except Exception:  # missing or invalid: `config push` or the UI says why
        return None


def _delete_overdue_rules(keep: set[str], only: set[str] | None) -> None:
    """Delete our proactive rules not named in `keep` (of those named in `only`, when given)."""
    from prefect.client.orchestration import get_client

    prefixes = (VERIFY.automation, CANARY.automation)
    with get_client(sync_client=True) as client:
        for rule in client.read_automations():
            if not rule.name.startswith(prefixes) or rule.name in keep:
                continue
            if only is None or rule.name in only:
                client.delete_automation(rule.id)


def overdue_rules(
    stacks: dict[str, StackConfig | None], verify_within: timedelta
) -> list[tuple[Overdue, str | None, timedelta]]:
    """(what, stack, within) of each proactive rule: backup-verify for every stack, the mail canary
    for a stack with a scheduled canary; one server-wide backup-verify rule while there is no stack."""
    if not stacks:
        return [(VERIFY, None, verify_within)]
    rules: list[tuple[Overdue, str | None, timedelta]] = []
    for stack, config in stacks.items():
        rules.append((VERIFY, stack, verify_within))
        canary = canary_interval(config) if config is not None else None
        if canary is not None:
            rules.append((CANARY, stack, canary))
    return rules


def ensure_notification_automations(
    block_ref: str, verify_within: timedelta = VERIFY_INTERVAL, stacks: Sequence[str] | None = None
) -> dict[str, str]:
    """Create or update the automations (idempotent): failed runs, and the proactive rules of each
    stack (`overdue_rules`). `stacks` None means every stack with a block on the server, and then the
    rules of stacks without one are removed; named stacks get theirs and the others are left. Rules
    that would notify a second time (earlier versions' names, the server-wide rule once stacks have
    their own) are removed. `block_ref` names any notification block as `<block type slug>/<name>`
    (e.g. `slack-webhook/ops`, `custom-webhook/lab-notify`). Returns the automations' ids by name."""
    from prefect.blocks.core import Block

    block: Any = Block.load(block_ref, _sync=True)  # type: ignore[call-arg]
    block_id = block._block_document_id
    if block_id is None:
        raise ValueError(f"notification block {block_ref!r}: it has no document id; save it first")
    names = _stack_names() if stacks is None else list(dict.fromkeys(stacks))
    rules = overdue_rules({name: _stack_config(name) for name in names}, verify_within)
    wanted = {overdue_name(what, stack) for what, stack, _ in rules}
    mine = {overdue_name(what, stack) for what in (VERIFY, CANARY) for stack in names}
    _delete_overdue_rules(wanted, None if stacks is None else mine | {verify_overdue_name(None)})
    for legacy in LEGACY_AUTOMATIONS:
        old = _read(legacy)
        if old is not None:
            old.delete()
    out = {FAILURE_AUTOMATION: _upsert(failure_automation(block_id))}
    for what, stack, within in rules:
        rule = overdue_automation(what, block_id, within, stack)
        out[rule.name] = _upsert(rule)
    return out
