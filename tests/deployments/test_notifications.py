"""Which run events the notification automations react to, judged by the Prefect server's own trigger
matching (no server needed): every terminal failure state and Late of a deployment run of our flows;
never a subflow (it fails inside its parent, whose own failure is the one notification), never
another project's flow, never a success. The lab tests send real ones (tests/lab/test_deployments.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from mailu_core.config import StackConfig, load_stack_config, stack_config_from_mapping
from mailu_flows.notifications import (
    CANARY,
    NOTIFIED_STATES,
    VERIFY,
    failure_automation,
    overdue_automation,
    overdue_rules,
    span,
    verify_overdue_automation,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inlock.ai.yaml"


def _with_canary(name: str, scheduled: bool = True, limit_minutes: int = 60) -> StackConfig:
    """The example as stack `name`, with the mail canary on (password block, mailbox in accounts)."""
    data = load_stack_config(EXAMPLE).model_dump(mode="json")
    data["name"] = name
    data["blocks"]["canary_password"] = "canary-password"
    mailbox = f"canary@{data['mailu']['domain']}"
    data["accounts"]["users"] = [
        *data["accounts"]["users"],
        {"address": mailbox, "password_block": "canary-password"},
    ]
    data["canary"] = {"scheduled": scheduled, "no_success_alert_minutes": limit_minutes}
    return stack_config_from_mapping(data, source="test")


def _server_trigger(automation: Any) -> Any:
    from prefect.server.events.schemas.automations import EventTrigger

    return EventTrigger.model_validate(automation.trigger.model_dump(mode="json"))


def _event(state: str, flow: str, deployment: bool, subflow: bool = False, stack: str | None = None) -> Any:
    """A flow-run state-change event with the related resources the server gives it
    (prefect.server.models.events.flow_run_state_change_event)."""
    from prefect.server.events.schemas.events import ReceivedEvent

    related: list[dict[str, str]] = [
        {
            "prefect.resource.id": f"prefect.flow.{uuid4()}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": flow,
        }
    ]
    if deployment:
        related.append(
            {"prefect.resource.id": f"prefect.deployment.{uuid4()}", "prefect.resource.role": "deployment",
             "prefect.resource.name": flow.removeprefix("mailu-")}
        )  # fmt: skip
    if subflow:  # a subflow's run has its parent's task run, never a deployment of its own
        related.append(
            {"prefect.resource.id": f"prefect.task-run.{uuid4()}", "prefect.resource.role": "task-run",
             "prefect.resource.name": "dns-propagation-wait-0"}
        )  # fmt: skip
    related.append({"prefect.resource.id": "prefect.tag.mailu", "prefect.resource.role": "tag"})
    if stack is not None:  # every deployment of a stack carries its tag, and so do the runs it creates
        related.append(
            {"prefect.resource.id": f"prefect.tag.mailu-stack:{stack}", "prefect.resource.role": "tag"}
        )
    return ReceivedEvent(
        event=f"prefect.flow-run.{state}",
        resource={"prefect.resource.id": f"prefect.flow-run.{uuid4()}", "prefect.resource.name": "run",
                  "prefect.state-name": state},
        related=related,
        id=uuid4(),
        occurred=datetime.now(UTC),
    )  # fmt: skip


@pytest.mark.parametrize("state", ["Failed", "Crashed", "TimedOut", "Late"])
def test_every_failure_state_and_late_of_a_deployment_run_notifies(state: str) -> None:
    trigger = _server_trigger(failure_automation(uuid4()))
    assert trigger.covers(_event(state, "mailu-dkim-publish", deployment=True))


@pytest.mark.parametrize("state", ["Completed", "Running", "Scheduled", "Cancelled", "Pending"])
def test_other_states_do_not_notify(state: str) -> None:
    trigger = _server_trigger(failure_automation(uuid4()))
    assert not trigger.covers(_event(state, "mailu-backup", deployment=True))


def test_a_failing_subflow_notifies_once_through_its_parent() -> None:
    trigger = _server_trigger(failure_automation(uuid4()))
    parent = _event("TimedOut", "mailu-dkim-publish", deployment=True)
    child = _event("TimedOut", "mailu-dns-propagation-wait", deployment=False, subflow=True)
    assert [trigger.covers(e) for e in (parent, child)] == [True, False]


def test_other_projects_flows_do_not_notify() -> None:
    trigger = _server_trigger(failure_automation(uuid4()))
    assert not trigger.covers(_event("Failed", "etl-nightly", deployment=True))
    assert set(NOTIFIED_STATES) == {"Failed", "Crashed", "TimedOut", "Late"}


def test_the_verify_rule_is_proactive_and_counts_completed_verify_runs_only() -> None:
    from prefect.events.schemas.automations import Posture

    automation = verify_overdue_automation(uuid4())
    assert automation.trigger.posture == Posture.Proactive
    assert automation.trigger.within == timedelta(hours=26)
    assert "26 h" in automation.actions[0].subject
    trigger = _server_trigger(automation)
    assert trigger.covers(_event("Completed", "mailu-backup-verify", deployment=True))
    assert not trigger.covers(_event("Failed", "mailu-backup-verify", deployment=True))
    assert not trigger.covers(_event("Completed", "mailu-backup", deployment=True))


def test_durations_read_as_a_person_says_them() -> None:
    assert [span(timedelta(seconds=s)) for s in (15, 45 * 60, 26 * 3600)] == ["15 s", "45 min", "26 h"]


def test_a_stacks_verify_rule_counts_only_that_stacks_verify_runs() -> None:
    """In a fleet, one stack's daily verify must not hide another's that stopped."""
    automation = verify_overdue_automation(uuid4(), stack="mx-a")
    assert automation.name.endswith("(stack mx-a)") and "of stack mx-a" in automation.actions[0].subject
    trigger = _server_trigger(automation)
    assert trigger.covers(_event("Completed", "mailu-backup-verify", deployment=True, stack="mx-a"))
    assert not trigger.covers(_event("Completed", "mailu-backup-verify", deployment=True, stack="mx-b"))
    assert not trigger.covers(_event("Completed", "mailu-backup-verify", deployment=True))
    assert not trigger.covers(_event("Completed", "mailu-backup-verify", deployment=True, stack="mx-a-2"))


def test_setup_makes_one_verify_rule_per_stack_block_and_removes_the_rest(prefect_server: str) -> None:
    """On the session's throwaway server: with no stack, the server-wide rule; by default one rule per
    stack block (the server-wide one gone); a stack whose block is gone loses its rule; named stacks
    are added without removing the others; a second run changes nothing."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    from mailu_flows.blocks import MailuStack, push_stack_config
    from mailu_flows.notifications import (
        FAILURE_AUTOMATION,
        _stack_names,
        ensure_notification_automations,
        verify_overdue_name,
    )

    def rules() -> set[str]:
        with get_client(sync_client=True) as client:
            return {a.name for a in client.read_automations() if a.name.startswith("mailu-flows:")}

    def per_stack(*extra: str) -> set[str]:  # the session's other tests may have made stack blocks
        return {FAILURE_AUTOMATION} | {verify_overdue_name(n) for n in [*_stack_names(), *extra]}

    webhook = CustomWebhookNotificationBlock(name="rules-test", url="http://127.0.0.1:9/notify")
    webhook.save("rules-test", overwrite=True)
    block = "custom-webhook/rules-test"
    ensure_notification_automations(block, stacks=[])
    assert rules() == {FAILURE_AUTOMATION, verify_overdue_name(None)}

    example = load_stack_config(EXAMPLE)
    for name in ("rules-a", "rules-b"):
        push_stack_config(example.model_copy(update={"name": name}))
    made = ensure_notification_automations(block)
    assert set(made) == rules() == per_stack()
    assert {verify_overdue_name("rules-a"), verify_overdue_name("rules-b")} <= rules()
    assert verify_overdue_name(None) not in rules()
    assert ensure_notification_automations(block) == made  # again: the same rules, updated in place

    MailuStack.delete("rules-b")
    ensure_notification_automations(block)
    assert rules() == per_stack() and verify_overdue_name("rules-b") not in rules()

    ensure_notification_automations(block, stacks=["rules-c"])
    assert rules() == per_stack("rules-c")
    MailuStack.delete("rules-a")


def test_a_stacks_canary_rule_counts_only_that_stacks_canary_runs() -> None:
    automation = overdue_automation(CANARY, uuid4(), timedelta(minutes=45), stack="mx-a")
    assert automation.name == "mailu-flows: notify when no mail canary completes in time (stack mx-a)"
    assert (
        automation.actions[0].subject == "mailu-flows: no mailu-mail-canary of stack mx-a completed in 45 min"
    )
    assert "section 'mail-canary'" in automation.actions[0].body
    trigger = _server_trigger(automation)
    assert trigger.covers(_event("Completed", "mailu-mail-canary", deployment=True, stack="mx-a"))
    assert not trigger.covers(_event("Completed", "mailu-mail-canary", deployment=True, stack="mx-b"))
    assert not trigger.covers(_event("Completed", "mailu-backup-verify", deployment=True, stack="mx-a"))
    assert not trigger.covers(_event("Failed", "mailu-mail-canary", deployment=True, stack="mx-a"))


def test_a_canary_rule_only_for_a_stack_whose_canary_is_scheduled() -> None:
    """Within: the canary's own no-success limit. No canary, or an unscheduled one (it runs only when
    started): nothing to expect. A stack whose block does not load still has its verify rule."""
    day = timedelta(hours=26)
    plain = load_stack_config(EXAMPLE)
    rules = overdue_rules(
        {
            "plain": plain,
            "canary": _with_canary("canary", limit_minutes=90),
            "manual": _with_canary("manual", scheduled=False),
            "unreadable": None,
        },
        day,
    )
    assert rules == [
        (VERIFY, "plain", day),
        (VERIFY, "canary", day),
        (CANARY, "canary", timedelta(minutes=90)),
        (VERIFY, "manual", day),
        (VERIFY, "unreadable", day),
    ]
    assert overdue_rules({}, day) == [(VERIFY, None, day)]


def test_setup_follows_a_stacks_canary(prefect_server: str) -> None:
    """A pushed config with a scheduled canary gets its canary rule; turned off, the next setup removes
    it (by name, the other stacks' rules left)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    from mailu_flows.blocks import MailuStack, push_stack_config
    from mailu_flows.notifications import ensure_notification_automations, overdue_name

    def rules() -> set[str]:
        with get_client(sync_client=True) as client:
            return {a.name for a in client.read_automations()}

    webhook = CustomWebhookNotificationBlock(name="canary-rules", url="http://127.0.0.1:9/notify")
    webhook.save("canary-rules", overwrite=True)
    push_stack_config(_with_canary("canary-rules-a"))
    made = ensure_notification_automations("custom-webhook/canary-rules", stacks=["canary-rules-a"])
    canary_rule = overdue_name(CANARY, "canary-rules-a")
    assert canary_rule in made and canary_rule in rules()
    push_stack_config(_with_canary("canary-rules-a", scheduled=False))
    made = ensure_notification_automations("custom-webhook/canary-rules", stacks=["canary-rules-a"])
    assert canary_rule not in made and canary_rule not in rules()
    assert overdue_name(VERIFY, "canary-rules-a") in rules()
    MailuStack.delete("canary-rules-a")


def test_every_flow_a_message_points_at_has_its_runbook_section() -> None:
    """Messages end with "Runbook: docs/runbook.md, section '<flow>'": every deployed flow has one."""
    import re

    from mailu_flows.deployments.definitions import DEPLOYMENTS

    runbook = (Path(__file__).resolve().parents[2] / "docs" / "runbook.md").read_text()
    sections = set(re.findall(r"^#+ (.+)$", runbook, re.MULTILINE))
    names = {spec.flow_name.removeprefix("mailu-") for spec in DEPLOYMENTS}
    assert names - sections == set()
    assert {CANARY.flow, VERIFY.flow} <= sections
