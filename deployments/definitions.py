"""Every deployment, defined once. Two ways to run them, built from this one table:

- `mailu-flows serve --config FILE`: one long-running process serving them all (`prefect.serve`);
- `mailu-flows deployments prefect-yaml --config FILE > prefect.yaml`, then `prefect deploy --all`
  onto a process work pool.

Each deployment takes the stack config model as its `config` parameter, with the file's values as
defaults, so the UI shows a form with descriptions and choices, and the server rejects a bad value
when a run is created (`enforce_parameter_schema`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from mailu_core.config import StackConfig

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow, its schedule (none = manual trigger only), its fixed parameters."""

    name: str
    entrypoint: str  # "flows/deploy.py:deploy"
    description: str
    cron: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ("mailu",)

    @property
    def flow_name(self) -> str:
        return self.name

    def load_flow(self) -> Flow[..., Any]:
        path, func = self.entrypoint.split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow: Flow[..., Any] = getattr(module, func)
        return flow


# The nightly backup runs first; the daily verification comes after it.
BACKUP_CRON = "15 2 * * *"
VERIFY_CRON = "45 4 * * *"

DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        "deploy",
        "flows/deploy.py:deploy",
        "Converge the Mailu stack on the host (idempotent); returns to the last good release on failure.",
    ),
    DeploymentSpec(
        "dkim-publish",
        "flows/dkim_publish.py:dkim_publish",
        "Ensure the DKIM key exists (never overwritten), publish its TXT, wait for propagation.",
    ),
    DeploymentSpec(
        "dns-propagation-wait",
        "flows/dns_wait.py:dns_propagation_wait",
        "Query every authoritative nameserver until all serve the desired records.",
    ),
    DeploymentSpec(
        "backup",
        "flows/backup.py:backup",
        "Nightly: GPG-encrypted backups of every Mailu volume and the stack files.",
        cron=BACKUP_CRON,
    ),
    DeploymentSpec(
        "backup-verify",
        "flows/backup_verify.py:backup_verify",
        "Daily: prove the newest backup decrypts, reads and restores (drill in scratch volumes).",
        cron=VERIFY_CRON,
    ),
    DeploymentSpec(
        "accounts",
        "flows/accounts.py:accounts",
        "Keep Mailu's domains, users, aliases and relays as the config's accounts section says.",
    ),
    DeploymentSpec(
        "rollback",
        "flows/rollback.py:rollback",
        "Manual only: previous-release or teardown; needs confirm = the mail hostname.",
        parameters={"confirm": ""},
    ),
)


def deployment_id(spec: DeploymentSpec) -> str:
    """`<flow name>/<deployment name>`: how `run_deployment` and the CLI name it."""
    return f"{spec.flow_name}/{spec.name}"


def default_parameters(spec: DeploymentSpec, config: StackConfig) -> dict[str, Any]:
    return {"config": config.model_dump(mode="json"), **spec.parameters}


def build_deployments(config: StackConfig, timezone: str = "UTC") -> list[RunnerDeployment]:
    """The RunnerDeployments `serve` runs, with the config file's values as parameter defaults."""
    from prefect.schedules import Cron

    out = []
    for spec in DEPLOYMENTS:
        flow = spec.load_flow()
        schedules = [Cron(spec.cron, timezone=timezone)] if spec.cron else None
        out.append(
            cast(
                "RunnerDeployment",
                flow.to_deployment(
                    spec.name,
                    schedules=schedules,
                    parameters=default_parameters(spec, config),
                    description=spec.description,
                    tags=list(spec.tags),
                    enforce_parameter_schema=True,
                ),
            )
        )
    return out


def prefect_yaml(
    config: StackConfig, work_pool: str = "mailu-process", timezone: str = "UTC"
) -> dict[str, Any]:
    """A prefect.yaml for `prefect deploy --all` onto a process work pool, from the same table."""
    deployments = []
    for spec in DEPLOYMENTS:
        item: dict[str, Any] = {
            "name": spec.name,
            "entrypoint": spec.entrypoint,
            "description": spec.description,
            "tags": list(spec.tags),
            "parameters": default_parameters(spec, config),
            "enforce_parameter_schema": True,
            "work_pool": {"name": work_pool},
            "schedules": [{"cron": spec.cron, "timezone": timezone}] if spec.cron else [],
        }
        deployments.append(item)
    return {
        "name": "mailu-flows",
        "prefect-version": "3.9.1",
        "pull": [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $MAILU_FLOWS_DIR }}"}}
        ],
        "deployments": deployments,
    }
