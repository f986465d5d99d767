"""Notifications: server-side automations that send a notification block's message, so that a run that
crashed, or never started, is still reported (a crashed process cannot notify for itself, the server
can).

- Every terminal failure of a run of our deployments (`Failed`, `Crashed`, `TimedOut`: our timeout
  errors subclass `TimeoutError`, so a propagation wait that gives up ends `TimedOut`) and every `Late`
  run (a scheduled backup whose runner is down never starts).
- One incident, one notification: only runs of a deployment notify. A subflow (dkim-publish's
  propagation wait, deploy's dkim-publish) has no deployment; it fails inside its parent, whose own
  failure is the notification. A local run (`--local`) reports to the terminal that started it.
- A proactive rule per stack: no Completed backup-verify of that stack (its runs carry the stack's
  tag) within its expected interval notifies, whatever the reason (never scheduled, runner down,
  stuck, failing every day). One rule for the whole server would let one stack's daily verify hide
  another's that stopped. With no stack known yet, one server-wide rule stands in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from mailu_flows.flows.naming import FLOW_PREFIX, flow_name

FAILURE_AUTOMATION = "mailu-flows: notify on failed, crashed, timed-out or late runs"
VERIFY_OVERDUE_AUTOMATION = "mailu-flows: notify when no backup-verify completes in time"
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


def verify_overdue_name(stack: str | None) -> str:
    """The proactive rule's name: one per stack, or the server-wide one."""
    return f"{VERIFY_OVERDUE_AUTOMATION} (stack {stack})" if stack else VERIFY_OVERDUE_AUTOMATION


def verify_overdue_automation(
    block_document_id: Any, within: timedelta = VERIFY_INTERVAL, stack: str | None = None
) -> Any:
    """The proactive rule: no Completed backup-verify deployment run (of `stack`, by its tag; of any
    stack when None) within `within` notifies."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    from mailu_flows.deployments.definitions import STACK_TAG_PREFIX

    limit = span(within)
    verify = flow_name("backup-verify")
    related = [
        {"prefect.resource.role": "flow", "prefect.resource.name": verify},
        {"prefect.resource.role": "deployment"},
    ]
    of = ""
    if stack:
        related.append(
            {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{STACK_TAG_PREFIX}{stack}"}
        )
        of = f" of stack {stack}"
    return Automation(
        name=verify_overdue_name(stack),
        description=f"No {verify} run{of} completed within {limit}: the newest backup is not proven.",
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
                subject=f"mailu-flows: no {verify}{of} completed in {limit}",
                body=f"No run of {verify}{of} completed within {limit}: the newest backup is not proven "
                "to restore. Look for failed or late backup and backup-verify runs, and check that the "
                "process serving the deployments runs. Runbook: docs/runbook.md, section 'backup-verify'.",
            )
        ],
    )


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


def _delete_verify_rules(keep: set[str], only: set[str] | None) -> None:
    """Delete our verify rules not named in `keep` (of those named in `only`, when given)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for rule in client.read_automations():
            if not rule.name.startswith(VERIFY_OVERDUE_AUTOMATION) or rule.name in keep:
                continue
            if only is None or rule.name in only:
                client.delete_automation(rule.id)


def ensure_notification_automations(
    block_ref: str, verify_within: timedelta = VERIFY_INTERVAL, stacks: Sequence[str] | None = None
) -> dict[str, str]:
    """Create or update the automations (idempotent): failed runs, and one verify rule per stack.
    `stacks` None means every stack with a block on the server, and then the verify rules of stacks
    without one are removed; with no stack at all, one server-wide verify rule stands in. Rules that
    would notify a second time (earlier versions' names, the server-wide rule once stacks have their
    own) are removed. `block_ref` names any notification block as `<block type slug>/<name>` (e.g.
    `slack-webhook/ops`, `custom-webhook/lab-notify`). Returns the automations' ids by name."""
    from prefect.blocks.core import Block

    block: Any = Block.load(block_ref, _sync=True)  # type: ignore[call-arg]
    block_id = block._block_document_id
    if block_id is None:
        raise ValueError(f"notification block {block_ref!r}: it has no document id; save it first")
    every_stack = stacks is None
    names = _stack_names() if stacks is None else list(dict.fromkeys(stacks))
    wanted = {verify_overdue_name(stack) for stack in names} or {verify_overdue_name(None)}
    _delete_verify_rules(wanted, None if every_stack else {verify_overdue_name(None)})
    for legacy in LEGACY_AUTOMATIONS:
        old = _read(legacy)
        if old is not None:
            old.delete()
    out = {FAILURE_AUTOMATION: _upsert(failure_automation(block_id))}
    for stack in names or [""]:  # "": the server-wide rule
        rule = verify_overdue_automation(block_id, verify_within, stack or None)
        out[rule.name] = _upsert(rule)
    return out
