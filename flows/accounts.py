"""The `accounts` flow: keep Mailu's domains, users, aliases and relays as the stack config's `accounts`
section declares them, through Mailu's REST API. A thin Prefect layer over `mailu_flows.accounts`.

The plan is an artifact (creates, updates, deletes with old and new values; conflicts with their fix)
before anything is written; `dry_run` stops there. Initial passwords live in Prefect `Secret` blocks
(`prefect.blocks.system.Secret`), one per user, generated and saved there when missing; their values
are registered for redaction and never logged. Takes the host lock (a deploy or restore recreating
admin must not happen mid-apply).
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field, SecretStr

from mailu_core.accounts import Plan
from mailu_flows import redact
from mailu_flows.accounts import MailuAccountsApi, PasswordStore, run_accounts
from mailu_flows.blocks import MailuSecrets, StackParameter, load_block
from mailu_flows.flows.naming import artifact_key, flow_name, run_namer
from mailu_flows.session import host_session


class SecretBlockPasswords(PasswordStore):
    """Initial passwords in Prefect's own `Secret` blocks (type slug `secret`)."""

    def load(self, name: str) -> str | None:
        from prefect.blocks.system import Secret

        try:
            block = Secret.load(name, _sync=True)  # type: ignore[call-arg]
        except ValueError as exc:
            if "Unable to find block document" in str(exc):
                return None
            raise
        assert isinstance(block, Secret)
        raw = block.value.get_secret_value()
        if not isinstance(raw, str):
            raise ValueError(f"the Secret block {name!r} holds a JSON value; a password is a string")
        redact.register_secret(raw)
        return raw

    def save(self, name: str, value: str) -> None:
        from prefect.blocks.system import Secret

        redact.register_secret(value)
        Secret(value=SecretStr(value)).save(name, overwrite=False, _sync=True)  # type: ignore[call-arg]


@flow(name=flow_name("accounts"), flow_run_name=run_namer("accounts"), log_prints=False)
def accounts(
    config: StackParameter,
    dry_run: bool = False,
    force: bool = False,
    adopt: bool = False,
    lock_wait_s: Annotated[int, Field(ge=0, le=3600)] = 60,
) -> dict[str, Any]:
    """Plan the accounts section against Mailu, then (unless dry_run) apply it.

    Args:
        config: The stack: host, Mailu settings and its accounts section (its stack block).
        dry_run: Show the plan only; write nothing.
        force: Apply even when the plan deletes more than the accounts delete limit.
        adopt: Take over declared objects Mailu holds without this stack's mark.
        lock_wait_s: Seconds to wait for the host lock held by another run (0 to 3600).
    """
    redact.install()
    logger = get_run_logger()
    secrets_block = load_block(MailuSecrets, config.blocks.mailu_secrets)
    token = secrets_block.api_token.get_secret_value()
    if not token:
        raise RuntimeError(
            f"the {config.blocks.mailu_secrets!r} block has no api_token: run a deploy first (it makes one)"
        )
    redact.register_secret(token)

    def show(plan: Plan) -> None:
        create_markdown_artifact(
            plan.render_markdown(),
            key=artifact_key("accounts-plan", config.name),
            description="Accounts plan",
        )

    with host_session(config, "accounts", lock_wait_s, lock=not dry_run) as host:  # a dry run writes nothing
        api = MailuAccountsApi(config, host, token)
        result = run_accounts(
            config,
            api,
            SecretBlockPasswords(),
            dry_run=dry_run,
            force=force,
            adopt=adopt and not dry_run,  # as before: a dry run plans without adopting
            log=logger.info,
            on_plan=show,
        )
    logger.info("accounts: %s (%d API write(s))", result.summary, result.writes)
    return {
        "summary": result.summary,
        "applied": result.applied,
        "writes": result.writes,
        "creates": result.creates,
        "updates": result.updates,
        "deletes": result.deletes,
        "conflicts": result.conflicts,
        "passwords_generated": result.passwords_generated,
        "plan": result.plan_text,
    }
