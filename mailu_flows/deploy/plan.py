"""The deploy plan, decided from the rendered stack and the host's facts alone: no host, no I/O.

`plan_deploy` compares every rendered file and secret file with what the facts say the host holds
(sha256, mode, group) and every wanted service with its container, and says what a deploy does: the
files to write (old and new hashes), the secret files to write, the services to start or recreate,
whether `docker compose up` must run, whether Prometheus must reload, and whether there is anything
to do at all ("no changes"). The engine (engine.py) gathers the facts, then applies the plan; the
plan itself is tested on captured facts (tests/core/deploy/test_plan.py).
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Literal

import yaml

from mailu_core.config import StackConfig
from mailu_core.render import RenderedStack
from mailu_flows.deploy.certificates import plan_note, uses_acme
from mailu_flows.deploy.hoststate import HostState
from mailu_flows.deploy.monitoring import monitoring_changed
from mailu_flows.deploy.preflight import Check, preflight_checks
from mailu_flows.deploy.releases import Release

FileAction = Literal["create", "update", "mode"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileChange:
    """One rendered file the deploy writes: `old_sha256` is None when the host has no such file."""

    path: str  # relative to the stack root
    action: FileAction
    diff: str
    mode: int
    old_sha256: str | None = None
    new_sha256: str = ""


@dataclass
class DeployPlan:
    """What a deploy would do: file changes (with diffs), secrets to generate, services to start."""

    files: list[FileChange] = field(default_factory=list)
    secret_files: list[str] = field(default_factory=list)  # names of secret files to (re)write
    secrets_to_generate: list[str] = field(default_factory=list)  # block fields that are empty
    services_not_running: list[str] = field(default_factory=list)
    # running services that mount a secret file this run rewrites: Mailu reads those files at start only
    services_to_recreate: list[str] = field(default_factory=list)
    compose_dry_run: str = ""  # what `docker compose up --dry-run` says it would do
    waits_for: list[str] = field(default_factory=list)  # what the deploy cannot have yet, and its deadline
    preflight: list[Check] = field(default_factory=list)
    # An ACME flavor's first certificate cannot exist before the DNS step: front comes up without it.
    awaiting_certificate: bool = False
    monitoring_reload: bool = False  # a monitoring file changes: Prometheus reads rules on reload only

    @property
    def changes(self) -> bool:
        """False means "no changes": every file, secret file and container already matches."""
        return bool(self.files or self.secret_files or self.secrets_to_generate or self.services_not_running)

    @property
    def compose_must_run(self) -> bool:
        """`docker compose up` runs whenever anything changes: compose decides what to recreate."""
        return self.changes

    @property
    def preflight_failures(self) -> list[Check]:
        return [c for c in self.preflight if c.blocking and not c.ok]

    def markdown(self) -> str:
        lines = ["# Deploy plan", ""]
        if not self.changes:
            lines.append("**No changes**: files and containers already match.")
        lines += ["", "## Preflight", "", "| check | ok | detail |", "|---|---|---|"]
        lines += [f"| {c.name} | {'yes' if c.ok else '**NO**'} | {_cell(c.detail)} |" for c in self.preflight]
        if self.secrets_to_generate:
            lines += ["", "## Secrets to generate (names only)", ""]
            lines += [f"- {name}" for name in self.secrets_to_generate]
        if self.secret_files:
            lines += ["", "## Secret files to write (0600)", ""] + [f"- {n}" for n in self.secret_files]
        if self.services_to_recreate:
            lines += ["", "## Services to recreate (a secret file they read changes)", ""]
            lines += [f"- {s}" for s in self.services_to_recreate]
        if self.services_not_running:
            lines += ["", "## Services to (re)create", ""] + [f"- {s}" for s in self.services_not_running]
        if self.waits_for:
            lines += ["", "## Waits for", ""] + [f"- {w}" for w in self.waits_for]
        if self.compose_dry_run:
            lines += ["", "## docker compose up --dry-run", "", "```", self.compose_dry_run.rstrip(), "```"]
        for change in self.files:
            lines += ["", f"## {change.action}: `{change.path}` (mode {oct(change.mode)})", "", "```diff"]
            lines += [change.diff.rstrip("\n") or "(mode only)", "```"]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


@dataclass(frozen=True)
class DeployFacts:
    """What the plan is decided from besides the rendered stack: the host's snapshot, the secrets
    block's values (generated ones included) and, for an ACME flavor, whether front's certificate
    exists (None: not asked)."""

    state: HostState
    secret_values: Mapping[str, str]
    secrets_to_generate: Sequence[str] = ()
    certificate_present: bool | None = None


def host_path(cfg: StackConfig, rel: str) -> str:
    """A rendered file's path on the host (rendered files are keyed relative to the stack root)."""
    return str(PurePosixPath(str(cfg.host.stack_root)) / rel)


def managed_paths(cfg: StackConfig, rendered: RenderedStack) -> list[str]:
    """Every host path the deploy manages: the rendered files, then the secret files."""
    return [host_path(cfg, rel) for rel in rendered.files] + [s.host_path for s in rendered.secrets]


def load_yaml(content: bytes) -> Any:
    """`yaml.safe_load` through libyaml when PyYAML has it (the rendered compose file is read several
    times a deploy: the C loader takes a tenth of the time)."""
    return yaml.load(content, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def wanted_services(cfg: StackConfig, rendered: RenderedStack) -> dict[str, str]:
    """service -> pinned image, for the services the rendered compose runs."""
    doc = load_yaml(rendered.files[cfg.host.compose_file].content)
    return {name: svc["image"] for name, svc in doc["services"].items()}


def file_changes(cfg: StackConfig, rendered: RenderedStack, state: HostState) -> list[FileChange]:
    """Rendered files whose content or mode differs from the host's (diffs not filled in)."""
    changes = []
    for rel, rf in sorted(rendered.files.items()):
        have = state.files.get(host_path(cfg, rel))
        new = sha256(rf.content)
        action: FileAction | None = None
        if have is None:
            action = "create"
        elif have.sha256 != new:
            action = "update"
        elif have.mode != rf.mode:
            action = "mode"
        if action is not None:
            changes.append(FileChange(rel, action, "", rf.mode, have.sha256 if have else None, new))
    return changes


def secret_files_to_write(rendered: RenderedStack, state: HostState, values: Mapping[str, str]) -> list[str]:
    """Secret files whose value, mode or group differs from the host's."""
    names = []
    for spec in rendered.secrets:
        have = state.files.get(spec.host_path)
        if (
            have is None
            or have.sha256 != sha256(values.get(spec.block_field, "").encode())
            or have.mode != spec.mode
            or (spec.gid is not None and have.gid != spec.gid)
        ):
            names.append(spec.name)
    return names


def services_reading_secrets(
    rendered: RenderedStack, state: HostState, secret_files: Sequence[str]
) -> list[str]:
    """Services that were already running before this run and mount a secret file it rewrites."""
    was_running = {c.service for c in state.containers if c.state == "running"}
    changed = [s for s in rendered.secrets if s.name in secret_files]
    return sorted({svc for spec in changed for svc in spec.services} & was_running)


def services_to_start(cfg: StackConfig, rendered: RenderedStack, state: HostState) -> list[str]:
    """Wanted services with no container, a stopped one, or one of another image."""
    running = state.by_service()
    out = []
    for service, image in wanted_services(cfg, rendered).items():
        c = running.get(service)
        if c is None or c.state != "running" or c.image != image:
            out.append(service)
    return out


def plan_deploy(cfg: StackConfig, rendered: RenderedStack, facts: DeployFacts) -> DeployPlan:
    """The deploy's plan, from the rendered stack and the facts alone (diffs are added by `with_diffs`
    once the old contents of the updated files are read)."""
    state = facts.state
    files = file_changes(cfg, rendered, state)
    secret_files = secret_files_to_write(rendered, state, facts.secret_values)
    awaiting = uses_acme(cfg) and facts.certificate_present is False
    return DeployPlan(
        files=files,
        secret_files=secret_files,
        secrets_to_generate=sorted(facts.secrets_to_generate),
        services_not_running=services_to_start(cfg, rendered, state),
        services_to_recreate=services_reading_secrets(rendered, state, secret_files),
        waits_for=[plan_note(cfg)] if awaiting else [],
        preflight=preflight_checks(cfg, state),
        awaiting_certificate=awaiting,
        monitoring_reload=monitoring_changed(cfg, [c.path for c in files]),
    )


def unified_diff(rel: str, old: bytes, new: bytes) -> str:
    return "".join(
        difflib.unified_diff(
            old.decode(errors="replace").splitlines(keepends=True),
            new.decode(errors="replace").splitlines(keepends=True),
            fromfile=f"a/{rel}",
            tofile=f"b/{rel}",
        )
    )


def with_diffs(plan: DeployPlan, rendered: RenderedStack, old_contents: Mapping[str, bytes]) -> DeployPlan:
    """The plan with each created or updated file's diff against `old_contents` (by stack-relative
    path; a file missing there diffs against empty). A mode-only change has no diff."""
    files = [
        c
        if c.action == "mode"
        else replace(
            c, diff=unified_diff(c.path, old_contents.get(c.path, b""), rendered.files[c.path].content)
        )
        for c in plan.files
    ]
    return replace(plan, files=files)


def files_to_keep(plan: DeployPlan, previous: Release | None) -> list[str]:
    """Files the deploy replaces that it did not write itself (on the host, not in the previous good
    release): kept in the release's `replaced/` first, so that a failed deploy restores them."""
    ours = set(previous.files) if previous else set()
    return sorted(c.path for c in plan.files if c.old_sha256 is not None and c.path not in ours)


def release_files(rendered: RenderedStack) -> dict[str, dict[str, str | int]]:
    """The release record's file table: every rendered file's sha256 and mode."""
    return {rel: {"sha256": sha256(rf.content), "mode": rf.mode} for rel, rf in rendered.files.items()}
