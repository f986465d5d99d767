"""The upgrade flow (manual trigger only): take the stack to a newer Mailu release, guarded. A thin
Prefect layer over `mailu_flows.upgrade`: type-to-confirm first; the plan (each Mailu image's old and
new digest, resolved from the registry the image comes from) as an artifact; then, under the host lock,
a backup and its verification, the deploy of the config pinned to the new digests (the config file is
not written: the run deploys an in-memory copy), the post-deploy checks and the mail canary; on a
failure, the return to the previous release with admin's data from the pre-upgrade backup."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field, StringConstraints

from mailu_core.config import StackConfig
from mailu_core.fields import Checked, ConfirmText, WaitSeconds
from mailu_core.upgrade import UpgradePlan, mailu_images, plan_upgrade, release_reference
from mailu_flows import redact
from mailu_flows.blocks import StackParameter
from mailu_flows.blocks.stack import block_slug, record_upgrade
from mailu_flows.deploy.engine import DeployPlan, DeployResult, run_deploy
from mailu_flows.flows.deploy import BlockSecretsStore
from mailu_flows.flows.naming import artifact_key, flow_name, run_namer
from mailu_flows.registry import resolve_digests
from mailu_flows.remote import RemoteHost
from mailu_flows.session import stack_lock
from mailu_flows.tasks.backup import (
    backup_volumes,
    default_destination,
    restore_backup_task,
    verify_newest_backup,
)
from mailu_flows.tasks.host import connect_host
from mailu_flows.upgrade import Upgrade, UpgradeSteps, check_confirmation

ImageTag = Annotated[
    str,
    StringConstraints(max_length=128),
    Checked(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", "a Mailu release tag such as 2024.06.10"),
]

BACKUP_TAG = "preupgrade"  # the pre-upgrade backup's id ends with it: <stack>-<time>-preupgrade


@task(name="upgrade-plan", cache_policy=NO_CACHE)
def upgrade_plan(config: StackConfig, to: str) -> UpgradePlan:
    """Resolve `to` for each of Mailu's images in its registry; publish old and new digests."""
    wanted = {service: release_reference(ref, to) for service, ref in mailu_images(config).items()}
    plan = plan_upgrade(config, to, resolve_digests(wanted))
    create_markdown_artifact(
        plan_markdown(plan, to),
        key=artifact_key("upgrade-plan", config.name),
        description=f"Upgrade of {config.name} to {to}: old and new digests",
    )
    return plan


def plan_markdown(plan: UpgradePlan, to: str) -> str:
    import yaml

    images = {c.service: c.new for c in plan.changes}
    lines = [f"# Upgrade plan: Mailu {to}", "", plan.table(), ""]
    if plan.admin_changes:
        lines += [
            "admin's image changes: it migrates its database when it starts, so a failed upgrade goes back "
            "with admin's data restored from the pre-upgrade backup.",
            "",
        ]
    lines += [
        "After a good upgrade the run saves these pins into the stack's block, when the block holds the "
        "config the upgrade started from; `mailu-flows config pull` brings them into the config file:",
        "",
        "```yaml",
    ]
    lines += [yaml.safe_dump({"images": images}, sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


@task(name="deploy-release", cache_policy=NO_CACHE)
def deploy_release(config: StackConfig, host: RemoteHost) -> DeployResult:
    """`run_deploy` of one config on the run's connection (the lock is the flow's)."""
    logger = get_run_logger()

    def show_plan(plan: DeployPlan) -> None:
        logger.info(
            "deploy plan: %d file(s), services to start: %s",
            len(plan.files),
            ", ".join(plan.services_not_running) or "none",
        )

    store = BlockSecretsStore(config.blocks.mailu_secrets)
    return run_deploy(config, host, store, log=logger.info, on_plan=show_plan)


@task(name="record-in-stack-block", cache_policy=NO_CACHE)
def record_in_stack_block(before: StackConfig, after: StackConfig) -> tuple[bool, str]:
    """The upgraded config into the stack's block (see `record_upgrade`). The upgrade is done either
    way: a failure here is reported, and the operator saves the pins."""
    try:
        return record_upgrade(before, after)
    except Exception as exc:  # the release runs; only the record of it is missing
        return False, (
            f"could not save block {block_slug(before.name)} ({type(exc).__name__}: {str(exc)[:300]}); "
            "put the new pins (the plan artifact) into it"
        )


@task(name="upgrade-canary", cache_policy=NO_CACHE)
def canary_round_trip(config: StackConfig) -> list[str]:
    """One mail round trip through the upgraded stack; its failed steps (empty: mail flows)."""
    from mailu_flows.canary import run_canary
    from mailu_flows.flows.canary import canary_password

    report = run_canary(config, canary_password(config))
    create_table_artifact(
        [step.row() for step in report.steps],
        key=artifact_key("upgrade-canary", config.name),
        description=f"mail canary after the upgrade of {config.name}: "
        + ("every step passed" if report.ok else "FAILED"),
    )
    return list(report.failures())


@flow(name=flow_name("upgrade"), flow_run_name=run_namer("upgrade", "to"), log_prints=False)
def upgrade(
    config: StackParameter,
    to: ImageTag,
    confirm: Annotated[ConfirmText, Field(min_length=1)],
    verify_drill: bool = True,
    verify_time_budget_s: WaitSeconds | None = 600.0,
    canary: bool = True,
    lock_wait_s: Annotated[int, Field(ge=0, le=3600)] = 60,
) -> dict[str, Any]:
    """Upgrade Mailu's images to the release `to`: plan, backup, verify, deploy, checks, canary; on a
    failure go back to the previous release (admin's data restored from the pre-upgrade backup).

    Args:
        config: The stack as it runs now (its stack block); its images are upgraded.
        to: The Mailu release tag to upgrade to, e.g. 2024.06.10, resolved in the registry each of
            Mailu's images already comes from.
        confirm: Type the mail hostname (mailu.hostnames[0]) to confirm the upgrade; required.
        verify_drill: Verify the pre-upgrade backup with a restore drill into scratch volumes (off:
            decrypt and read only).
        verify_time_budget_s: Seconds the restore drill may take (0 to 86400; sets its sample);
            empty: every archive.
        canary: After the deploy's checks, send one mail canary round trip when the stack has a
            canary (blocks.canary_password); its failure returns to the previous release.
        lock_wait_s: Seconds to wait for the host lock held by another run (0 to 3600).
    """
    from prefect.runtime import flow_run

    check_confirmation(config, confirm, to)
    redact.install()
    logger = get_run_logger()
    plan = upgrade_plan(config, to)
    holder = f"upgrade (flow run {flow_run.get_name() or flow_run.get_id() or 'local'})"
    destination = default_destination(config)
    host = connect_host(config)
    try:

        def backup() -> str:
            return backup_volumes(host, config, destination, tag=BACKUP_TAG).manifest.backup_id

        def verify(backup_id: str) -> list[str]:
            record = verify_newest_backup(
                host, config, destination, verify_time_budget_s, verify_drill, backup_id=backup_id
            )
            return [row.message() for row in record.checks if not row.ok]

        def restore(backup_id: str, volumes: list[str]) -> str:
            res = restore_backup_task(host, config, backup_id, holder, volumes=volumes, lock_held=True)
            return (
                f"restored {', '.join(res.volumes)} from {backup_id}; safety backup of them before: "
                f"{res.safety_backup_id or 'none'}"
            )

        with_canary = canary and config.blocks.canary_password is not None
        steps = UpgradeSteps(
            backup=backup,
            verify=verify,
            deploy=lambda cfg: deploy_release(cfg, host),
            restore=restore,
            canary=(lambda cfg: canary_round_trip(cfg)) if with_canary else None,
        )
        engine = Upgrade(config, plan, to, host, steps, log=logger.info)
        try:
            with stack_lock(host, config, holder, lock_wait_s):
                result = engine.run()
            if result.changed:
                saved, detail = record_in_stack_block(config, plan.config)
                engine.row("stack block", "saved" if saved else "not saved", detail)
        finally:
            if engine.rows:
                create_table_artifact(
                    [row.as_dict() for row in engine.rows],
                    key=artifact_key("upgrade-result", config.name),
                    description=f"Upgrade of {config.name} to {to}: what was done and checked",
                )
    finally:
        host.close()
    logger.info("upgrade: %s", result.summary())
    images = {c.service: c.new for c in plan.changes} if result.changed else {}
    return {
        "to": to,
        "changed": result.changed,
        "summary": result.summary(),
        "backup": result.backup_id,
        "release": result.release_id,
        "images": images,
        "changes": [{"service": c.service, "old": c.old, "new": c.new} for c in plan.changes],
        "rows": [row.as_dict() for row in result.rows],
    }
