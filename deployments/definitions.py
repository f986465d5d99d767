"""Every deployment, defined once. Two ways to run them, built from this one table:

- `mailu-flows serve --config FILE`: one long-running process serving them all (`prefect.serve`);
- `mailu-flows deployments prefect-yaml --config FILE > prefect.yaml`, then `prefect deploy --all`
  onto a process work pool.

Each deployment's `config` parameter defaults to the stack's block (`MailuStack`, named after the
stack, which `serve`, `prefect-yaml` and `mailu-flows config push` write from the file): every run
reads the config from that one place when it starts, the UI shows a block picker, and a run may be
given a whole config instead. The server checks parameters when a run is created
(`enforce_parameter_schema`). Flows are named `mailu-<deployment name>`, so a
deployment is `mailu-deploy/deploy`; backup-verify also runs when a backup of the same stack completes
(an event trigger), its schedule staying as the safety net.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from mailu_core.config import StackConfig
from mailu_flows.flows.naming import flow_name

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow, its schedule (none = manual trigger only), its fixed parameters,
    and the flow whose completion (on the same stack) also starts it."""

    name: str
    entrypoint: str  # "mailu_flows.flows.deploy:deploy"
    description: str
    cron: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ("mailu",)
    after: str | None = None  # deployment name: run when a run of its flow completes
    concurrency_limit: int | None = None  # runs of this deployment at once (more wait their turn)
    # Set by the config rather than fixed: the schedule (cron or none) and whether the stack has it at all.
    cron_from: Callable[[StackConfig], str | None] | None = None
    wanted: Callable[[StackConfig], bool] | None = None

    def cron_for(self, config: StackConfig) -> str | None:
        return self.cron_from(config) if self.cron_from is not None else self.cron

    def wanted_by(self, config: StackConfig) -> bool:
        return self.wanted is None or self.wanted(config)

    @property
    def flow_name(self) -> str:
        return flow_name(self.name)

    def load_flow(self) -> Flow[..., Any]:
        path, func = self.entrypoint.split(":")
        module = importlib.import_module(path)
        flow: Flow[..., Any] = getattr(module, func)
        return flow


# The nightly backup runs first; the verification follows its completion (event trigger), and runs
# daily at VERIFY_CRON whatever happens to the backup (so a dead backup still shows as a failed verify).
BACKUP_CRON = "15 2 * * *"
VERIFY_CRON = "45 4 * * *"

DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        "deploy",
        "mailu_flows.flows.deploy:deploy",
        "Converge the Mailu stack on the host (idempotent); returns to the last good release on failure.",
    ),
    DeploymentSpec(
        "dkim-publish",
        "mailu_flows.flows.dkim_publish:dkim_publish",
        "Ensure the DKIM key exists (never overwritten), publish its TXT, wait for propagation.",
    ),
    DeploymentSpec(
        "dns-propagation-wait",
        "mailu_flows.flows.dns_wait:dns_propagation_wait",
        "Query every authoritative nameserver until all serve the desired records.",
    ),
    DeploymentSpec(
        "backup",
        "mailu_flows.flows.backup:backup",
        "Nightly: GPG-encrypted backups of every Mailu volume and the stack files.",
        cron=BACKUP_CRON,
    ),
    DeploymentSpec(
        "backup-verify",
        "mailu_flows.flows.backup_verify:backup_verify",
        "Daily: prove the newest backup decrypts, reads and restores (drill in scratch volumes).",
        cron=VERIFY_CRON,
        after="backup",
        concurrency_limit=1,  # the trigger and the schedule may meet; drills must not overlap
    ),
    DeploymentSpec(
        "accounts",
        "mailu_flows.flows.accounts:accounts",
        "Keep Mailu's domains, users, aliases and relays as the config's accounts section says.",
    ),
    DeploymentSpec(
        "mail-canary",
        "mailu_flows.flows.canary:mail_canary",
        "Every 15 minutes by default: a probe each way through the stack, judged (DKIM, alignment, rspamd).",
        cron_from=lambda cfg: cfg.canary.cron() if cfg.canary.scheduled else None,
        wanted=lambda cfg: cfg.blocks.canary_password is not None,
    ),
    DeploymentSpec(
        "upgrade",
        "mailu_flows.flows.upgrade:upgrade",
        "Manual only: a newer Mailu release (backup, verify, deploy, canary; back with admin's data on "
        "failure); needs confirm = the mail hostname.",
    ),
    DeploymentSpec(
        "rollback",
        "mailu_flows.flows.rollback:rollback",
        "Manual only: previous-release or teardown; needs confirm = the mail hostname.",
    ),
    DeploymentSpec(
        "rollback-review",
        "mailu_flows.flows.rollback:rollback_review",
        "Manual only, from the UI: shows the rollback plan, then pauses and asks for the mail hostname.",
    ),
)


# Before flows had their `mailu-` prefix, each deployment was `<name>/<name>`: left on a server they keep
# their schedules (runs nobody serves) and crowd the UI, so `serve` removes them.
LEGACY_DEPLOYMENT_IDS = tuple(
    f"{name}/{name}"
    for name in ("deploy", "dkim-publish", "dns-propagation-wait", "backup", "backup-verify", "rollback")
)


def remove_legacy_deployments() -> list[str]:
    """Delete the deployments earlier versions registered under the unprefixed flow names (only those
    tagged `mailu`, as they were); returns the ids removed."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    removed = []
    with get_client(sync_client=True) as client:
        for legacy in LEGACY_DEPLOYMENT_IDS:
            try:
                dep = client.read_deployment_by_name(legacy)
            except ObjectNotFound:
                continue
            if "mailu" in (dep.tags or []):
                client.delete_deployment(dep.id)
                removed.append(legacy)
    return removed


def deployment_name(spec: DeploymentSpec, stack: str | None = None) -> str:
    """`<name>` for a server with one stack; `<name>-<stack>` where several stacks share the server
    (their deployments would otherwise replace each other)."""
    return spec.name if stack is None else f"{spec.name}-{stack}"


def deployment_id(spec: DeploymentSpec, stack: str | None = None) -> str:
    """`<flow name>/<deployment name>`: how `run_deployment` and the CLI name it."""
    return f"{spec.flow_name}/{deployment_name(spec, stack)}"


SPECS_BY_NAME = {spec.name: spec for spec in DEPLOYMENTS}


def deployments_for(config: StackConfig) -> list[DeploymentSpec]:
    """The deployments this stack has (the mail canary only when its password block is named)."""
    return [spec for spec in DEPLOYMENTS if spec.wanted_by(config)]


MAILU_STACK_SLUG = "mailu-stack"  # MailuStack's block type slug (not imported: that would load Prefect)


def stack_ref(block_id: UUID | str) -> dict[str, Any]:
    """The stack's block by id: what the UI's block picker writes and shows as picked; Prefect loads
    the block when a run starts."""
    return {"$ref": {"block_document_id": str(block_id)}}


def stack_slug_ref(config: StackConfig) -> dict[str, Any]:
    """The stack's block by `<type slug>/<name>`, for prefect.yaml: `prefect deploy` replaces an id
    reference by a copy of the block's data (the drift this avoids) and leaves this form alone; the
    run loads the block when it starts, as with an id."""
    return {"$ref": {"block_document_slug": f"{MAILU_STACK_SLUG}/{config.name}"}}


def default_parameters(spec: DeploymentSpec, config_ref: dict[str, Any]) -> dict[str, Any]:
    """The stack's block by reference (loaded when a run starts), plus the spec's fixed values."""
    return {"config": config_ref, **spec.parameters}


def stack_tag_of(stack: str) -> str:
    """The tag every deployment (hence every run it creates) of the stack named `stack` carries."""
    return f"mailu-stack:{stack}"


def stack_tag(config: StackConfig) -> str:
    return stack_tag_of(config.name)


def deployment_tags(spec: DeploymentSpec, config: StackConfig) -> list[str]:
    return [*spec.tags, stack_tag(config)]


def trigger_spec(spec: DeploymentSpec, config: StackConfig) -> dict[str, Any] | None:
    """The event trigger (as in prefect.yaml) that runs `spec` when a deployment run of `spec.after`'s
    flow completes for the same stack (matched by the stack's tag), or None."""
    if spec.after is None:
        return None
    return {
        "type": "event",
        "enabled": True,
        "name": f"{spec.name} after {spec.after} ({config.name})",
        "expect": ["prefect.flow-run.Completed"],
        "match": {"prefect.resource.id": "prefect.flow-run.*"},
        "match_related": [
            {"prefect.resource.role": "flow", "prefect.resource.name": SPECS_BY_NAME[spec.after].flow_name},
            {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{stack_tag(config)}"},
        ],
        "posture": "Reactive",
        "threshold": 1,
        "within": 0,
    }


def build_deployments(
    config: StackConfig, stack_block_id: UUID | str, timezone: str = "UTC"
) -> list[RunnerDeployment]:
    """The RunnerDeployments `serve` runs, reading the config from the stack's block."""
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    out = []
    for spec in deployments_for(config):
        flow = spec.load_flow()
        cron = spec.cron_for(config)
        schedules = [Cron(cron, timezone=timezone)] if cron else None
        trigger = trigger_spec(spec, config)
        triggers = [DeploymentEventTrigger.model_validate(trigger)] if trigger else None
        out.append(
            cast(
                "RunnerDeployment",
                flow.to_deployment(
                    spec.name,
                    schedules=schedules,
                    parameters=default_parameters(spec, stack_ref(stack_block_id)),
                    description=spec.description,
                    tags=deployment_tags(spec, config),
                    triggers=triggers,  # type: ignore[arg-type]
                    concurrency_limit=spec.concurrency_limit,
                    enforce_parameter_schema=True,
                    # the module path, as in prefect.yaml: runs from the installed package
                    entrypoint_type=EntrypointType.MODULE_PATH,
                ),
            )
        )
    return out


def prefect_yaml(
    config: StackConfig,
    work_pool: str = "mailu-process",
    timezone: str = "UTC",
    per_stack_names: bool = False,
) -> dict[str, Any]:
    """A prefect.yaml for `prefect deploy --all` onto a process work pool, from the same table;
    `per_stack_names` names the deployments `<name>-<stack>` (a server shared by several stacks)."""
    return _prefect_yaml_doc(_yaml_deployments(config, work_pool, timezone, per_stack_names))


def check_distinct_stacks(configs: Sequence[StackConfig]) -> None:
    """Two stack configs with one name would share deployments and blocks: refused, naming it."""
    names = [config.name for config in configs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(
            f"two stack configs have the same name: {', '.join(twice)}; give each its own `name`"
        )


def fleet_prefect_yaml(
    configs: Sequence[StackConfig], work_pool: str = "mailu-process", timezone: str = "UTC"
) -> dict[str, Any]:
    """One prefect.yaml for several stacks on one server: every deployment named `<name>-<stack>`."""
    check_distinct_stacks(configs)
    deployments = []
    for config in configs:
        deployments += _yaml_deployments(config, work_pool, timezone, per_stack_names=True)
    return _prefect_yaml_doc(deployments)


def _yaml_deployments(
    config: StackConfig, work_pool: str, timezone: str, per_stack_names: bool
) -> list[dict[str, Any]]:
    deployments = []
    for spec in deployments_for(config):
        cron = spec.cron_for(config)
        item: dict[str, Any] = {
            "name": deployment_name(spec, config.name if per_stack_names else None),
            "entrypoint": spec.entrypoint,
            "description": spec.description,
            "tags": deployment_tags(spec, config),
            "parameters": default_parameters(spec, stack_slug_ref(config)),
            "enforce_parameter_schema": True,
            "work_pool": {"name": work_pool},
            "schedules": [{"cron": cron, "timezone": timezone}] if cron else [],
        }
        trigger = trigger_spec(spec, config)
        if trigger:
            item["triggers"] = [trigger]
        if spec.concurrency_limit is not None:
            item["concurrency_limit"] = spec.concurrency_limit
        deployments.append(item)
    return deployments


def _prefect_yaml_doc(deployments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "mailu-flows",
        "prefect-version": "3.9.1",
        "pull": [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $MAILU_FLOWS_DIR }}"}}
        ],
        "deployments": deployments,
    }
