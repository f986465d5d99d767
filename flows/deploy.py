"""The deploy flow: converge a hardened Mailu stack over SSH, idempotently, with automatic return to
the last good release. A thin Prefect layer over `mailu_flows.deploy.engine`."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field, SecretStr

from mailu_core.config import StackConfig
from mailu_core.dns import Record
from mailu_core.errors import MailuFlowsError
from mailu_flows import redact
from mailu_flows.blocks import MailuSecrets, StackParameter, load_block
from mailu_flows.deploy.engine import DeployPlan, DeployResult, SecretsStore, run_deploy
from mailu_flows.deploy.preflight import Check
from mailu_flows.dns.provider import DnsError
from mailu_flows.flows.accounts import SecretBlockPasswords
from mailu_flows.flows.canary import canary_password
from mailu_flows.flows.naming import artifact_key, flow_name, run_namer
from mailu_flows.remote import RemoteError, RemoteHost
from mailu_flows.session import stack_lock
from mailu_flows.tasks.dns import DkimSelectors, desired_for, dkim_txt_for, dns_plan, publish_records
from mailu_flows.tasks.host import connect_host
from mailu_flows.tasks.post_deploy import (
    accounts_after_release,
    accounts_failure,
    canary_after_release,
    canary_round_trip,
    dry_run_accounts_plan,
    return_to_previous_release,
)


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
        create_markdown_artifact(
            plan.markdown(), key=artifact_key("deploy-plan", config.name), description="What the deploy does"
        )
        logger.info(
            "plan: %d file(s), %d secret file(s), services to start: %s, to recreate: %s",
            len(plan.files),
            len(plan.secret_files),
            ", ".join(plan.services_not_running) or "none",
            ", ".join(plan.services_to_recreate) or "none",
        )

    return run_deploy(
        config,
        host,
        BlockSecretsStore(config.blocks.mailu_secrets),
        dry_run=dry_run,
        log=logger.info,
        on_plan=show_plan,
    )


@flow(name=flow_name("deploy"), flow_run_name=run_namer("deploy"), log_prints=False)
def deploy(
    config: StackParameter,
    dry_run: bool = False,
    lock_wait_s: Annotated[int, Field(ge=0, le=3600)] = 60,
    publish_dns: bool = True,
    canary: bool = True,
) -> dict[str, Any]:
    """Render, preflight, write only what differs, `compose up` only when needed, check through
    Traefik; on failure put the last good release back and fail with the reason. Still under the host
    lock, apply the accounts section (never forced; a failure keeps the release). Then (unless
    `publish_dns` is off) the DNS step: a DNS failure fails the run but keeps the good release. Last,
    one mail-canary round trip: a release that does not deliver mail is undone like a failed check.

    Args:
        config: The stack: host, Mailu settings, images, DNS, backup (its stack block).
        dry_run: Show the plan (files, services, accounts, DNS) and change nothing.
        lock_wait_s: Seconds to wait for the host lock held by another run (0 to 3600).
        publish_dns: After a good release, publish DNS, then run dkim-publish and the propagation wait.
        canary: After a good release, send and fetch one mail-canary message (when blocks.canary_password
            is set); a failure returns to the previous good release and fails the run.
    """
    from prefect.runtime import flow_run

    redact.install()
    host = connect_host(config)
    dkim: DkimSelectors | None = None
    dkim_error: Exception | None = None
    dns_plan_md: str | None = None
    accounts_plan_md = ""
    accounts: dict[str, Any] | None = None
    accounts_error: Exception | None = None
    holder = f"deploy (flow run {flow_run.get_name() or flow_run.get_id()})"
    try:
        if dry_run:
            result = converge(config, host, True)
            accounts_plan_md = dry_run_accounts_plan(config, host, SecretBlockPasswords())
            if publish_dns:
                dns_plan_md = dry_run_dns_plan(config, host)
        else:
            with stack_lock(host, config, holder, lock_wait_s):
                result = converge(config, host, False)
                try:  # the engine, not the accounts flow: that flow would wait for this lock
                    accounts = accounts_after_release(config, host, SecretBlockPasswords())
                except Exception as exc:  # after a good release: reported at the end, never undone
                    accounts_error = exc
            if publish_dns:
                try:
                    dkim = dkim_txt_for(config, host)
                except Exception as exc:  # after a good release: reported by the DNS step, never undone
                    dkim_error = exc
    finally:
        host.close()
    if result.checks:
        create_table_artifact(
            checks_table(result.checks),
            key=artifact_key("deploy-checks", config.name),
            description="Post-deploy checks",
        )
    get_run_logger().info("deploy: %s", result.summary)
    try:
        dns = (
            run_dns_step(config, result, dkim, dkim_error, lock_wait_s)
            if publish_dns and not dry_run
            else None
        )
    except DnsStepFailed as exc:
        if accounts_error is None:
            raise
        raise DnsStepFailed(f"{exc}; the accounts step failed too: {accounts_error}") from exc
    certificate = None
    if result.awaiting_certificate and not dry_run:
        certificate = certificates(config)  # raises at its deadline; the release stays
    mail = None
    if not dry_run:
        if accounts_error is not None:
            raise accounts_failure(result.release_id, accounts_error) from accounts_error
        mail = canary_after_release(
            config,
            enabled=canary,
            release=result.release_id,
            changed=result.changed,
            round_trip=lambda: canary_round_trip(config, canary_password),
            go_back=lambda: return_to_previous_release(config, str(result.release_id), lock_wait_s, holder),
            log=get_run_logger().info,
        ).as_dict()
    plan = None
    if dry_run:
        plan = result.plan.markdown() + f"\n{accounts_plan_md}" + (f"\n{dns_plan_md}" if dns_plan_md else "")
    return {
        "changed": result.changed,
        "release": result.release_id,
        "summary": result.summary,
        "created_accounts": result.created_accounts,
        "failed_checks": [c.name for c in result.checks if not c.ok],
        "plan": plan,
        "dns": dns,
        "waits_for": result.plan.waits_for,
        "certificate": certificate,
        "accounts": accounts,
        "canary": mail,
    }


@task(name="certificates", cache_policy=NO_CACHE)
def certificates(config: StackConfig) -> str:
    """An ACME flavor's first certificate: wait for Mailu's certbot (deadline `certificate_wait_s`),
    restart front so that its Dovecot starts, then run the mail and web checks that waited for it."""
    from mailu_flows.deploy.certificates import wait_for_certificate
    from mailu_flows.deploy.engine import Deployer, probes

    logger = get_run_logger()
    host = connect_host(config)
    try:
        deployer = Deployer(config, host, logger.info)
        outcome = wait_for_certificate(host, config, deployer.compose, logger.info)
        checks = probes(config)
    finally:
        host.close()
    create_table_artifact(
        checks_table(checks),
        key=artifact_key("certificate-checks", config.name),
        description="Checks after the first certificate",
    )
    failed = [c for c in checks if not c.ok]
    if failed:
        raise RuntimeError(
            f"{outcome}, but checks fail: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
        )
    logger.info("certificates: %s", outcome)
    return outcome


class DnsStepFailed(MailuFlowsError, RuntimeError):
    """The release is good and stays; publishing or checking DNS failed after it."""


def dry_run_dns_plan(config: StackConfig, host: RemoteHost) -> str:
    """The DNS plan as markdown for `mailu-flows plan` (writes nothing); a DNS problem is shown."""
    try:
        dkim = dkim_txt_for(config, host)
        plan, existing = dns_plan(config, desired_for(config, dkim.txt))
    except (DnsError, RemoteError) as exc:
        return f"# DNS plan\n\nNot available: {exc}\n"
    notes = "".join(f"- {n}\n" for n in dkim.notes)
    return f"# DNS plan\n\n{plan.render_markdown()}\nZone records now: {existing}.\n" + (
        f"\n{notes}" if notes else ""
    )


@task(name="dns-in-place", cache_policy=NO_CACHE)
def dns_in_place(config: StackConfig, records: list[Record]) -> bool:
    """One concurrent query of every record on every authoritative server: all already as desired?"""
    from mailu_flows.dns.propagation import check_propagation, nameservers_for

    table = check_propagation(records, nameservers_for(config, None), zone=config.dns.zone)
    if not table.ok:
        get_run_logger().info("DNS not yet in place everywhere: %d cell(s) pending", len(table.pending()))
    return table.ok


def run_dns_step(
    config: StackConfig,
    result: DeployResult,
    dkim: DkimSelectors | None,
    dkim_error: Exception | None,
    lock_wait_s: int,
) -> dict[str, Any]:
    """Publish the records (A/AAAA first, MX last), then dkim-publish (which waits for propagation as
    a subflow and verifies the served key). Runs only after a good release, which it never undoes."""
    from mailu_flows.flows.dkim_publish import dkim_publish

    try:
        if dkim is None:
            raise dkim_error or RuntimeError("the DKIM keys on the host could not be read")
        records = desired_for(config, dkim.txt)
        published = publish_records(config, records)
        if (
            published["writes"] == 0
            and config.dns.dkim.selector in dkim.txt
            and dns_in_place(config, records)
        ):
            # Nothing written and every authoritative server already serves every record, the DKIM
            # key on disk included: dkim-publish (and its propagation wait) would find nothing to do.
            return {
                "publish": published,
                "in_place": True,
                "dkim": "in place: every authoritative server serves every record and the key on disk",
            }
        dkim_result = dkim_publish(config=config, wait=True, lock_wait_s=lock_wait_s)
    except Exception as exc:
        raise DnsStepFailed(
            f"release {result.release_id or '(unchanged)'} is deployed and healthy and stays in place; "
            f"the DNS step failed: {exc}"
        ) from exc
    return {"publish": published, "in_place": False, "dkim": dkim_result}
