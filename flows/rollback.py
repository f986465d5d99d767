"""The rollback flow (manual trigger only): put the previous good release back, or tear the stack down
as the seed's rollback plan says, keeping every volume. A thin Prefect layer over
`mailu_flows.rollback` (the plan, its steps, the runner): type-to-confirm first, then the plan as an
artifact, then the host lock, then the steps, and a table of what was done and checked.
`rollback-review` is the same rollback as a person starts it from the UI: the plan first, then a paused
run asking for the hostname."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.input import RunInput
from pydantic import Field

from mailu_core.config import StackConfig
from mailu_core.fields import BackupId, ConfirmText, ReleaseId
from mailu_flows import redact
from mailu_flows.blocks import StackParameter
from mailu_flows.dns.provider import Provider
from mailu_flows.flows.naming import artifact_key, flow_name, run_namer
from mailu_flows.remote import RemoteHost
from mailu_flows.rollback import Mode, Rollback, RollbackError, RollbackPlan, check_confirmation
from mailu_flows.session import host_session, lock_holder, stack_lock


@flow(name=flow_name("rollback"), flow_run_name=run_namer("rollback", "mode"), log_prints=False)
def rollback(
    config: StackParameter,
    mode: Literal["previous-release", "teardown"],
    confirm: Annotated[ConfirmText, Field(min_length=1)],
    restore_backup: BackupId | None = None,
    release: ReleaseId | None = None,
    lock_wait_s: Annotated[int, Field(ge=0, le=3600)] = 60,
) -> dict[str, Any]:
    """Refuse unless `confirm` names the mail hostname (before anything reaches the host); show the
    plan; take the host lock; run each step (idempotent; a re-run finishes an interrupted one).

    Args:
        config: The stack: host, Mailu settings, DNS (its stack block).
        mode: previous-release: put the last good release before the current one back; teardown:
            compose down (volumes kept), remove MX and the mail host's A/AAAA, remove Mailu's
            Traefik routes and monitoring files.
        confirm: Type the mail hostname (mailu.hostnames[0]) to confirm the rollback; required.
        restore_backup: Backup id to restore the volumes from (after a safety backup of the current
            volumes, with the stack stopped); empty: volumes untouched.
        release: previous-release only: the release id to go back to; empty: the last good release
            before the current one.
        lock_wait_s: Seconds to wait for the host lock held by another run (0 to 3600).
    """
    check_confirmation(config, mode, confirm)
    return _rollback(config, mode, restore_backup, release, lock_wait_s, seen=None)


class HostnameConfirmation(RunInput):
    """What a paused rollback-review run asks for, after its plan is shown."""

    hostname: ConfirmText = Field(
        min_length=1,
        description="Type the mail hostname (mailu.hostnames[0]) to run the rollback shown in the plan "
        "artifact; anything else stops the run with nothing done.",
    )


@flow(name=flow_name("rollback-review"), flow_run_name=run_namer("rollback-review", "mode"), log_prints=False)
def rollback_review(
    config: StackParameter,
    mode: Literal["previous-release", "teardown"],
    restore_backup: BackupId | None = None,
    release: ReleaseId | None = None,
    lock_wait_s: Annotated[int, Field(ge=0, le=3600)] = 60,
    answer_within_s: Annotated[int, Field(ge=60, le=86_400)] = 3600,
) -> dict[str, Any]:
    """The rollback as a person starts it from the UI: the plan first (an artifact), then the run pauses
    and asks for the mail hostname; only the right hostname, with the host unchanged since the plan,
    lets it proceed (as `rollback` does after its own confirmation).

    Args:
        config: The stack: host, Mailu settings, DNS (its stack block).
        mode: previous-release: put the last good release before the current one back; teardown:
            compose down (volumes kept), remove MX and the mail host's A/AAAA, remove Mailu's
            Traefik routes and monitoring files.
        restore_backup: Backup id to restore the volumes from (after a safety backup of the current
            volumes, with the stack stopped); empty: volumes untouched.
        release: previous-release only: the release id to go back to; empty: the last good release
            before the current one.
        lock_wait_s: Seconds to wait for the host lock held by another run, once confirmed (0 to 3600).
        answer_within_s: Seconds the paused run waits for the hostname before it fails, nothing done
            (60 to 86400).
    """
    from prefect.flow_runs import pause_flow_run

    shown = _show_plan(config, mode, restore_backup, release)
    get_run_logger().info(
        "paused: read the plan artifact %s, then resume with the mail hostname to run it",
        artifact_key("rollback-plan", config.name),
    )
    answer = pause_flow_run(wait_for_input=HostnameConfirmation, timeout=answer_within_s, poll_interval=2)
    check_confirmation(config, mode, answer.hostname)
    return _rollback(config, mode, restore_backup, release, lock_wait_s, seen=shown)


def _engine(config: StackConfig, host: RemoteHost, run_label: str) -> Rollback:
    """The rollback engine on an open connection, with the backup restore and the DNS provider."""

    def restore(backup_id: str) -> str:
        from mailu_flows.tasks.backup import restore_backup_task

        res = restore_backup_task(host, config, backup_id, run_label, lock_held=True)
        return (
            f"restored {', '.join(res.volumes)} from {backup_id}; "
            f"safety backup of the volumes before: {res.safety_backup_id or 'none (no volume existed)'}"
        )

    def provider() -> Provider:
        from mailu_flows.tasks.dns import dns_provider

        return dns_provider(config)

    return Rollback(config, host, run_label, log=get_run_logger().info, restore=restore, provider=provider)


def _run_label() -> str:
    """`rollback flow run <name>`: the lock's holder text, the restore's and the release note's."""
    return lock_holder("rollback")


def _check_release(mode: str, release: str | None) -> None:
    if release is not None and mode != "previous-release":
        raise RollbackError("release: only previous-release goes back to a named release; nothing was done")


def _publish_plan(config: StackConfig, plan: RollbackPlan) -> None:
    create_markdown_artifact(
        plan.markdown(config.hostname),
        key=artifact_key("rollback-plan", config.name),
        description="What the rollback does",
    )
    get_run_logger().info("plan: %s", "; ".join(f"{s.title}: {s.detail}" for s in plan.steps))


def _show_plan(
    config: StackConfig, mode: Mode, restore_backup: str | None, release: str | None
) -> tuple[Any, ...]:
    """Read the plan (nothing changes on the host), publish it; returns its identity."""
    _check_release(mode, release)
    redact.install()
    with host_session(config, "rollback", 0, lock=False) as host:  # reads the plan only
        shown, _, _ = _engine(config, host, _run_label()).read_plan(mode, restore_backup, release)
    _publish_plan(config, shown)
    return shown.identity()


def _rollback(
    config: StackConfig,
    mode: Mode,
    restore_backup: str | None,
    release: str | None,
    lock_wait_s: int,
    seen: tuple[Any, ...] | None,
) -> dict[str, Any]:
    """Show the plan, take the host lock, check the plan is still the one shown (and, after a review,
    the one the person confirmed), run the steps, publish what was done."""
    _check_release(mode, release)
    redact.install()
    logger = get_run_logger()
    run_label = _run_label()
    with host_session(config, "rollback", 0, lock=False) as host:  # the lock is taken after the plan is shown
        rb = _engine(config, host, run_label)
        shown, _, _ = rb.read_plan(mode, restore_backup, release)
        if seen is not None and shown.identity() != seen:
            raise RollbackError(
                "the host changed while this run waited for the hostname (a deploy?): the plan confirmed "
                "is out of date, nothing was done; run the rollback again"
            )
        _publish_plan(config, shown)
        with stack_lock(host, config, run_label, lock_wait_s):
            plan, releases, journal = rb.read_plan(mode, restore_backup, release, adopt=True)
            if plan.identity() != shown.identity():
                raise RollbackError(
                    "the host changed while this run waited for the lock (a deploy?): the plan shown is "
                    "out of date, nothing was done; run the rollback again"
                )
            try:
                result = rb.execute(plan, releases, journal)
            finally:
                if rb.rows:
                    create_table_artifact(
                        [{"step": r.step, "result": r.result, "detail": r.detail} for r in rb.rows],
                        key=artifact_key("rollback-result", config.name),
                        description=f"Rollback ({mode}): what was done and checked",
                    )
    logger.info("rollback: %s", result.summary())
    return {
        "mode": result.mode,
        "summary": result.summary(),
        "from_release": result.from_release,
        "to_release": result.to_release,
        "resumed": result.resumed,
        "rows": [{"step": r.step, "result": r.result, "detail": r.detail} for r in result.rows],
        "failed_checks": [r.step for r in result.failed],
    }
