"""Failure notifications: a server-side automation that sends a notification block's message when any
mailu-flows run fails or crashes (a crashed process cannot notify for itself, the server can)."""

from __future__ import annotations

from typing import Any

AUTOMATION_NAME = "mailu-flows: notify on failed or crashed runs"
FLOW_NAMES = ("deploy", "dkim-publish", "dns-propagation-wait", "backup", "backup-verify", "rollback")


def ensure_failure_automation(block_ref: str) -> str:
    """Create or update the automation (idempotent). `block_ref` names any notification block as
    `<block type slug>/<name>` (e.g. `slack-webhook/ops`, `custom-webhook/lab-notify`).
    Returns the automation's id."""
    from prefect.automations import Automation
    from prefect.blocks.core import Block
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    block: Any = Block.load(block_ref, _sync=True)  # type: ignore[call-arg]
    block_id = block._block_document_id
    if block_id is None:
        raise ValueError(f"notification block {block_ref!r} has no document id; save it first")
    automation = Automation(
        name=AUTOMATION_NAME,
        description="Sends the run's state message for every failed or crashed mailu-flows run.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(FLOW_NAMES)},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject="mailu-flows: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}",
                body="Flow {{ flow.name }}, run {{ flow_run.name }}: {{ flow_run.state.name }}.\n"
                "{{ flow_run.state.message }}\nRunbook: docs/runbook.md, section '{{ flow.name }}'.",
            )
        ],
    )
    existing: Any
    try:
        existing = Automation.read(name=AUTOMATION_NAME)
    except ValueError:
        existing = None
    if existing is not None:
        automation.id = existing.id
        automation.update()
        return str(existing.id)
    created: Any = automation.create()
    return str(created.id)
