"""Which run events the notification automations react to, judged by the Prefect server's own trigger
matching (no server needed): every terminal failure state and Late of a deployment run of our flows;
never a subflow (it fails inside its parent, whose own failure is the one notification), never
another project's flow, never a success. The lab tests send real ones (tests/lab/test_deployments.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from mailu_flows.notifications import NOTIFIED_STATES, failure_automation, span, verify_overdue_automation


def _server_trigger(automation: Any) -> Any:
    from prefect.server.events.schemas.automations import EventTrigger

    return EventTrigger.model_validate(automation.trigger.model_dump(mode="json"))


def _event(state: str, flow: str, deployment: bool, subflow: bool = False) -> Any:
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
