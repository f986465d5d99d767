"""The deploy flow: converge a hardened Mailu stack over SSH, idempotently, with automatic return to
the last good release. A thin Prefect layer over `mailu_flows.deploy.engine`."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field, SecretStr

from blocks import MailuSecrets, load_block
from mailu_core.config import StackConfig
from mailu_flows import redact
from mailu_flows.deploy.engine import DeployPlan, DeployResult, SecretsStore, run_deploy
from mailu_flows.deploy.preflight import Check
from mailu_flows.remote import HostLock, RemoteHost
from tasks.host import connect_host


class BlockSecretsStore(SecretsStore):
    """The Mailu secrets block: read once, every value registered for log redaction; saved only when
    a deploy generated an empty field."""

    def __init__(self, name: str) -> None:
        self.name = name

    def load(self) -> dict[str, str]:
        block = load_block(MailuSecrets, self.name)
        values = {
            f: getattr(block, f).get_secret_value()
            for f in MailuSecrets.model_fields
            if isinstance(getattr(block, f), SecretStr)
        }
        for value in values.values():
            if value:
                redact.register_secret(value)
        return values

    def save(self, values: dict[str, str]) -> None:
        block = load_block(MailuSecrets, self.name)
        for name, value in values.items():
            redact.register_secret(value)
            setattr(block, name, SecretStr(value))
        block.save(self.name, overwrite=True)


def checks_table(checks: list[Check]) -> list[dict[str, str]]:
    return [{"check": c.name, "result": "ok" if c.ok else "FAILED", "detail": c.detail} for c in checks]


@task(name="converge", cache_policy=NO_CACHE)
def converge(config: StackConfig, host: RemoteHost, dry_run: bool) -> DeployResult:
    logger = get_run_logger()

    def show_plan(plan: DeployPlan) -> None:
        create_markdown_artifact(plan.markdown(), key="mailu-deploy-plan", description="What the deploy does")
        logger.info(
            "plan: %d file(s), %d secret file(s), services to start: %s",
            len(plan.files),
            len(plan.secret_files),
            ", ".join(plan.services_not_running) or "none",
        )

    return run_deploy(
        config,
        host,
        BlockSecretsStore(config.blocks.mailu_secrets),
        dry_run=dry_run,
        log=logger.info,
        on_plan=show_plan,
    )


@flow(name="deploy", log_prints=False)
def deploy(
    config: StackConfig,
    dry_run: bool = False,
    lock_wait_s: Annotated[int, Field(ge=0, le=3600, description="How long to wait for the host lock")] = 60,
) -> dict[str, Any]:
    """Render, preflight, write only what differs, `compose up` only when needed, check through
    Traefik; on failure put the last good release back and fail with the reason."""
    from prefect.runtime import flow_run

    redact.install()
    host = connect_host(config)
    try:
        if dry_run:
            result = converge(config, host, True)
        else:
            lock = HostLock(
                host,
                f"{config.host.stack_root}/.mailu-flows.lock",
                f"deploy (flow run {flow_run.get_name() or flow_run.get_id()})",
            )
            lock.acquire(wait_s=lock_wait_s)
            try:
                result = converge(config, host, False)
            finally:
                lock.release()
    finally:
        host.close()
    if result.checks:
        create_table_artifact(
            checks_table(result.checks), key="mailu-deploy-checks", description="Post-deploy checks"
        )
    get_run_logger().info("deploy: %s", result.summary)
    return {
        "changed": result.changed,
        "release": result.release_id,
        "summary": result.summary,
        "created_accounts": result.created_accounts,
        "failed_checks": [c.name for c in result.checks if not c.ok],
        "plan": result.plan.markdown() if dry_run else None,
    }
