"""The deploy's steps after a good release: accounts as code, and one mail-canary round trip.

- The accounts step runs the accounts engine (`mailu_flows.accounts.run_accounts`) on the deploy's own
  connection while the deploy still holds the host lock (the accounts flow takes that lock itself, so
  the deploy cannot run it as a subflow). Never forced: a plan deleting more than the delete limit is
  refused and the run fails, the release staying. A plan with no changes makes no API write.
- The canary step is the mail canary's round trip (`mailu_flows.canary.run_canary`), once, through the
  stack's public entrypoints. A release that does not deliver mail fails like any failed post-deploy
  check: the deploy returns to the previous good release (the rollback engine's previous-release, under
  the host lock) and fails naming the failed steps. With no earlier good release (a first deploy), or
  when the deploy changed nothing, there is nothing to return to: the run fails and the release stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mailu_core.accounts import Plan
from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_flows import redact
from mailu_flows.accounts import AccountsApi, MailuAccountsApi, PasswordStore, run_accounts
from mailu_flows.blocks import MailuSecrets, load_block
from mailu_flows.canary import CanaryReport, run_canary
from mailu_flows.flows.naming import artifact_key
from mailu_flows.host import Host
from mailu_flows.rollback import NoPreviousRelease, Rollback
from mailu_flows.tasks.host import host_session

__all__ = [
    "AccountsStepFailed",
    "CanaryOutcome",
    "DeployCanaryFailed",
    "accounts_after_release",
    "accounts_failure",
    "apply_accounts",
    "canary_after_release",
    "canary_round_trip",
    "canary_skip_reason",
    "dry_run_accounts_plan",
    "return_to_previous_release",
]


class AccountsStepFailed(MailuFlowsError, RuntimeError):
    """The release is good and stays; applying the accounts section after it failed or was refused."""


class DeployCanaryFailed(MailuFlowsError, RuntimeError):
    """The mail round trip after the release failed; the message says whether the release was undone."""


def _plan_artifact(config: StackConfig) -> Callable[[Plan], None]:
    def show(plan: Plan) -> None:
        create_markdown_artifact(
            plan.render_markdown(),
            key=artifact_key("accounts-plan", config.name),
            description="Accounts plan (the deploy's accounts step)",
        )

    return show


def apply_accounts(
    config: StackConfig,
    api: AccountsApi,
    passwords: PasswordStore,
    log: Callable[[str], None],
    on_plan: Callable[[Plan], None] = lambda _p: None,
) -> dict[str, Any]:
    """The accounts engine as a deploy runs it: never forced (the delete limit applies), never adopting;
    what it did as the deploy's result shows it. A plan with no changes makes no API write."""
    result = run_accounts(config, api, passwords, log=log, on_plan=on_plan)
    if result.writes == 0:
        summary = "no changes: Mailu already holds what the config declares (no API write)"
    else:
        summary = f"{result.summary} ({result.writes} API write(s))"
    log(f"accounts: {summary}")
    return {
        "summary": summary,
        "writes": result.writes,
        "creates": result.creates,
        "updates": result.updates,
        "deletes": result.deletes,
        "passwords_generated": result.passwords_generated,
    }


@task(name="accounts", cache_policy=NO_CACHE)
def accounts_after_release(config: StackConfig, host: Host, passwords: PasswordStore) -> dict[str, Any]:
    """`apply_accounts` through Mailu's API on the deploy's connection, the plan as an artifact. The
    caller holds the host lock."""
    token = load_block(MailuSecrets, config.blocks.mailu_secrets).api_token.get_secret_value()
    if not token:
        raise AccountsStepFailed(f"the {config.blocks.mailu_secrets!r} block has no api_token")
    redact.register_secret(token)
    api = MailuAccountsApi(config, host, token)
    return apply_accounts(config, api, passwords, get_run_logger().info, _plan_artifact(config))


def dry_run_accounts_plan(config: StackConfig, host: Host, passwords: PasswordStore) -> str:
    """The accounts plan as markdown for `mailu-flows plan` (reads Mailu, writes nothing); shown as not
    available when Mailu cannot be asked (a first deploy: no admin, no token yet)."""
    try:
        token = load_block(MailuSecrets, config.blocks.mailu_secrets).api_token.get_secret_value()
        if not token:
            return "# Accounts plan\n\nNot available: no API token yet (the first deploy makes one).\n"
        redact.register_secret(token)
        api = MailuAccountsApi(config, host, token)
        result = run_accounts(config, api, passwords, dry_run=True)
    except (MailuFlowsError, OSError) as exc:
        return f"# Accounts plan\n\nNot available: {exc}\n"
    return f"# Accounts plan\n\n{result.plan_markdown}"


def accounts_failure(release: str | None, exc: Exception) -> AccountsStepFailed:
    """The run's error when the accounts step failed after a good release (which stays)."""
    return AccountsStepFailed(
        f"release {release or '(unchanged)'} is deployed and healthy and stays in place; the accounts step "
        f"failed (nothing is forced from a deploy: run the accounts flow, with force if the deletes are "
        f"meant): {exc}"
    )


def canary_skip_reason(config: StackConfig, enabled: bool) -> str | None:
    """Why the deploy runs no canary round trip (None: it runs one)."""
    if not enabled:
        return "off (deploy parameter canary: false)"
    if config.blocks.canary_password is None:
        return "not configured (blocks.canary_password is not set)"
    return None


@dataclass
class CanaryOutcome:
    """The canary step of a deploy, as its result shows it."""

    status: str  # ok | FAILED | skipped
    detail: str
    steps: list[dict[str, object]] = field(default_factory=list)
    latency_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "steps": self.steps,
            "latency_s": self.latency_s,
        }


@task(name="mail-canary-round-trip", cache_policy=NO_CACHE)
def canary_round_trip(config: StackConfig, password_for: Callable[[StackConfig], str]) -> CanaryReport:
    """One mail round trip through the stack's entrypoints; a table artifact of every step."""
    report = run_canary(config, password_for(config))
    create_table_artifact(
        [step.row() for step in report.steps],
        key=artifact_key("deploy-canary", config.name),
        description=f"mail canary after the deploy of {config.name}: "
        + ("every step passed" if report.ok else "FAILED"),
    )
    return report


@task(name="return-to-previous-release", cache_policy=NO_CACHE)
def return_to_previous_release(config: StackConfig, release: str, lock_wait_s: int, holder: str) -> str:
    """Under the host lock: the rollback engine's previous-release from `release` (only if it is still
    the current one); one sentence saying where the stack is now."""
    logger = get_run_logger()
    with host_session(config, "deploy", lock_wait_s, holder=holder) as host:
        engine = Rollback(config, host, holder, log=logger.info)
        try:
            plan, releases, journal = engine.read_plan("previous-release", None, adopt=True)
        except NoPreviousRelease:
            return f"there is no good release before {release} to return to: {release} stays"
        if plan.from_release != release:
            return (
                f"not returned: the current release is {plan.from_release}, not {release} (a deploy "
                "since?); the stack is left as it is"
            )
        try:
            engine.execute(plan, releases, journal)
        finally:
            if engine.rows:
                create_table_artifact(
                    [{"step": r.step, "result": r.result, "detail": r.detail} for r in engine.rows],
                    key=artifact_key("rollback-result", config.name),
                    description="Return to the previous release after a failed mail canary",
                )
        return f"returned to release {plan.to_release}, which is healthy again"


def canary_after_release(
    config: StackConfig,
    *,
    enabled: bool,
    release: str | None,
    changed: bool,
    round_trip: Callable[[], CanaryReport],
    go_back: Callable[[], str],
    log: Callable[[str], None],
) -> CanaryOutcome:
    """Run the round trip once when enabled and configured; on failure `go_back` to the previous
    release when this deploy made a new one, then raise `DeployCanaryFailed` saying where the stack is."""
    skipped = canary_skip_reason(config, enabled)
    if skipped is not None:
        log(f"mail canary: {skipped}")
        return CanaryOutcome("skipped", skipped)
    try:
        report = round_trip()
    except Exception as exc:  # no verdict on the release (a missing block, a crash): it stays
        raise DeployCanaryFailed(
            f"the mail canary could not run: {type(exc).__name__}: {exc}; release {release or 'none'} "
            "stays (only a round trip that ran and failed undoes a release)"
        ) from exc
    rows = [step.row() for step in report.steps]
    if report.ok:
        detail = "mail delivered: " + ", ".join(f"{d} {s:.1f}s" for d, s in sorted(report.latency_s.items()))
        log(f"mail canary: {detail}")
        return CanaryOutcome("ok", detail, rows, dict(report.latency_s))
    failed = " | ".join(report.failures())
    if changed and release is not None:
        log(f"mail canary failed ({failed}); returning to the previous good release")
        try:
            where = go_back()
        except Exception as exc:  # the canary's failure stays the reason; the undo's is added
            where = f"returning to the previous good release ALSO failed: {exc}"
        raise DeployCanaryFailed(
            f"deploy failed: the mail canary after release {release} failed: {failed}; {where}"
        )
    raise DeployCanaryFailed(
        f"the mail canary failed: {failed}; this deploy changed nothing (release {release or 'none'}), "
        "so there is no release to return from: the stack was not delivering mail before it either"
    )
