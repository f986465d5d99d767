"""The deploy, as plain functions over one SSH connection: read the host (one round trip of facts),
plan (`plan.py`, a pure function of the rendered stack and those facts), apply, check, return to the
last good release. The Prefect flow (flows/deploy.py) wraps these in tasks; nothing here knows Prefect.

Idempotence comes from reading the host first: a file is written only when its sha256 or mode
differs, `docker compose up` runs only when a file changed or a service is not running its image,
and a run that changes nothing says "no changes" after one round trip to the host (its checks read
from the same batch, its probes run while the batch does).
"""

from __future__ import annotations

import secrets as pysecrets
import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_core.render import RenderedStack, render_stack
from mailu_flows import dockercmd
from mailu_flows.deploy.certificates import certificate_present, uses_acme, waiting_check
from mailu_flows.deploy.hoststate import Fact, HostState, deploy_facts, gather, host_state_from
from mailu_flows.deploy.monitoring import (
    prometheus_checks,
    prometheus_facts,
    reload_prometheus,
    reload_quietly,
)
from mailu_flows.deploy.plan import (
    DeployFacts,
    DeployPlan,
    FileChange,
    files_to_keep,
    load_yaml,
    managed_paths,
    plan_deploy,
    release_files,
    sha256,
    wanted_services,
    with_diffs,
)
from mailu_flows.deploy.preflight import Check
from mailu_flows.deploy.releases import (
    RecordsRead,
    Release,
    StackReleases,
    adopt_legacy_records,
    last_good,
    list_releases,
    new_release_id,
    parse_records,
    prune_releases,
    read_stack_records,
    release_file,
    replaced_file_path,
    save_release,
    start_release,
)
from mailu_flows.host import Host
from mailu_flows.remote import TMP_SUFFIX, CommandFailed, command_label

__all__ = [
    "DeployError",
    "DeployFacts",
    "DeployPlan",
    "DeployResult",
    "Deployer",
    "FileChange",
    "PreflightFailed",
    "SecretsStore",
    "compose_args",
    "config_checksum",
    "run_deploy",
    "scratch_config",
    "sha256",
]

Log = Callable[[str], None]


class DeployError(MailuFlowsError, RuntimeError):
    """The deploy failed; the message names the step, the service or file, and the fix."""


class PreflightFailed(DeployError):
    pass


def config_checksum(cfg: StackConfig) -> str:
    return sha256(cfg.model_dump_json().encode())


def compose_args(cfg: StackConfig) -> list[str]:
    """The stack's compose base (`dockercmd.stack_compose`), kept under its old name for callers."""
    return dockercmd.stack_compose(cfg)


@dataclass
class DeployResult:
    changed: bool
    release_id: str | None
    summary: str
    plan: DeployPlan
    checks: list[Check] = field(default_factory=list)
    created_accounts: list[str] = field(default_factory=list)
    # An ACME flavor's first certificate cannot exist before the DNS step: the flow waits for it after.
    awaiting_certificate: bool = False


@dataclass(frozen=True)
class FirstRead:
    state: HostState
    records: RecordsRead
    prometheus: dict[str, Any]


class Deployer:
    """One deploy of `cfg` on `host`."""

    def __init__(self, cfg: StackConfig, host: Host, log: Log = lambda _m: None) -> None:
        self.cfg, self.host, self.log = cfg, host, log
        self.root = str(cfg.host.stack_root)
        self.paths = cfg.paths  # this stack's release records, apart from other stacks in the root
        self.rendered: RenderedStack = render_stack(cfg)
        self.secret_values: dict[str, str] = {}
        self.awaiting_certificate = False
        self._wanted: dict[str, str] | None = None

    # --- reading -------------------------------------------------------------------------------

    def abs(self, rel: str) -> str:
        return str(PurePosixPath(self.root) / rel)

    def _facts(self) -> list[Fact[Any]]:
        return deploy_facts(
            managed_paths(self.cfg, self.rendered),
            self.cfg.mailu.compose_project,
            str(self.cfg.traefik.api_url),
            images=self.cfg.images.model_dump(exclude_none=True).values(),
        )

    def read_state(self) -> HostState:
        return host_state_from(gather(self.host, self._facts()))

    def read_first(self) -> FirstRead:
        """The deploy's first look, in one round trip: the host facts, plus this stack's release records
        and Prometheus' targets and rules (what a no-op deploy checks), read under the same batch."""
        extra: list[Fact[Any]] = [StackReleases(self.paths.releases_dir), *prometheus_facts(self.cfg)]
        values = gather(self.host, [*self._facts(), *extra])
        prometheus = {f.name: values[f.name] for f in extra if f.name != "releases"}
        return FirstRead(host_state_from(values), values["releases"], prometheus)

    def wanted_services(self) -> dict[str, str]:
        """service -> pinned image, for the services the rendered compose runs (parsed once)."""
        if self._wanted is None:
            self._wanted = wanted_services(self.cfg, self.rendered)
        return dict(self._wanted)

    def plan(self, facts: DeployFacts) -> DeployPlan:
        """The pure plan (plan.py), with the diffs of the files it updates read from the host."""
        plan = plan_deploy(self.cfg, self.rendered, facts)
        updated = [c.path for c in plan.files if c.action == "update"]
        old = {rel: self.host.read_file(self.abs(rel)) or b"" for rel in updated}
        self.awaiting_certificate = plan.awaiting_certificate
        return with_diffs(plan, self.rendered, old)

    # --- writing -------------------------------------------------------------------------------

    def write_changes(
        self, plan: DeployPlan, release: Release, state: HostState, previous: Release | None
    ) -> list[str]:
        """Write changed files and secret files atomically; returns the paths created by this run.

        A file we did not write ourselves (not in the previous release) is copied into the release's
        `replaced/` first, so that it can be restored."""
        changed = {c.path for c in plan.files}
        replaced = files_to_keep(plan, previous)
        start_release(
            self.host,
            self.paths,
            release,
            {rel: rf.content for rel, rf in self.rendered.files.items()},
            replaced,
        )
        dirs = {str(PurePosixPath(self.abs(rel)).parent) for rel in changed}
        secret_dirs = {str(PurePosixPath(s.host_path).parent) for s in self.rendered.secrets}
        cmds = []
        if dirs:
            cmds.append("mkdir -p " + " ".join(shlex.quote(d) for d in sorted(dirs)))
        if secret_dirs:
            cmds.append("mkdir -p -m 700 " + " ".join(shlex.quote(d) for d in sorted(secret_dirs)))
        # temp files of uploads cut by a dead connection (write_file's fixed names), for every file we own
        ours_now = [self.abs(r) for r in self.rendered.files] + [x.host_path for x in self.rendered.secrets]
        cmds.append("rm -f " + " ".join(shlex.quote(f"{path}{TMP_SUFFIX}") for path in sorted(ours_now)))
        if cmds:
            self.host.run(" && ".join(cmds))
        created: list[str] = []
        for change in plan.files:
            rf = self.rendered.files[change.path]
            self.host.write_file(self.abs(change.path), rf.content, mode=rf.mode)
            if change.action == "create":
                created.append(self.abs(change.path))
            self.log(f"wrote {change.path} ({change.action})")
        for spec in self.rendered.secrets:
            if spec.name in plan.secret_files:
                if spec.host_path not in state.files:
                    created.append(spec.host_path)
                # With a group to set, the file stays 0600 until it has that group: never readable
                # by the deploy user's own group, not even for a moment.
                self.host.write_file(
                    spec.host_path,
                    self.secret_values[spec.block_field].encode(),
                    mode=spec.mode if spec.gid is None else 0o600,
                )
                if spec.gid is not None:
                    self._set_group(spec.host_path, spec.gid, spec.mode)
                self.log(f"wrote secret file {spec.name} ({oct(spec.mode)[2:].zfill(4)})")
        return created

    def _set_group(self, path: str, gid: int, mode: int) -> None:
        """Give a secret file the group its unprivileged reader has, then its group-readable mode. The
        deploy user may not belong to that group, so a root container from the stack's own admin image
        does it (no network, the file alone mounted); the owner stays the deploy user."""
        script = f"chgrp {gid} /secret && chmod {mode:o} /secret"
        argv = dockercmd.run(
            self.cfg.images.admin,
            ["-c", script],
            user="0:0",
            entrypoint="/bin/sh",
            mounts=[dockercmd.bind_mount(path, "/secret", read_only=False)],
        )
        self.host.run(shlex.join(argv), timeout=120)

    def compose(self, *args: str, timeout: float = 600) -> str:
        """`docker compose` of this stack with `args` (its project and compose file first)."""
        return self.run_argv([*dockercmd.stack_compose(self.cfg), *args], timeout=timeout)

    def run_argv(self, argv: list[str], timeout: float = 600) -> str:
        """A `dockercmd` command line on the host; its stdout."""
        return self.host.run(shlex.join(argv), timeout=timeout).text()

    def compose_dry_run(self) -> str:
        """What `docker compose up --dry-run` would do with the new files, without touching the live ones:
        the files are rendered for a scratch directory on the host, under the same project name."""
        tmp = self.host.run("mktemp -d /tmp/mailu-flows-plan.XXXXXX").text().strip()
        try:
            scratch = scratch_config(self.cfg, tmp)
            rendered = render_stack(scratch)
            # Every file lands inside the scratch directory, those the config places by absolute path
            # (Traefik's directory, secrets) too: a dry run never writes a live file.
            writes = {str(PurePosixPath(tmp) / rel): rf.content for rel, rf in rendered.files.items()}
            writes |= {s.host_path: b"" for s in rendered.secrets}  # compose needs them to exist, not values
            outside = [p for p in writes if not p.startswith(tmp + "/")]
            if outside:
                raise DeployError(f"dry run would write outside its scratch directory: {', '.join(outside)}")
            dirs = {str(PurePosixPath(p).parent) for p in writes}
            if scratch.host.certs_dir is not None:  # the live certificates, mounted read-only
                dirs.add(str(scratch.host.resolve(scratch.host.certs_dir)))
            self.host.run("mkdir -p " + " ".join(shlex.quote(d) for d in sorted(dirs)))
            for path, content in writes.items():
                self.host.write_file(path, content, mode=0o600)
            up = dockercmd.compose_up(dockercmd.stack_compose(scratch), wait_timeout_s=None, dry_run=True)
            result = self.host.run(shlex.join(up), check=False)
            text = (result.stdout + result.stderr).decode(errors="replace")
            return "\n".join(line for line in text.splitlines() if "DRY-RUN MODE" in line or "rror" in line)
        finally:
            self.host.run(["rm", "-rf", tmp])

    def converge_containers(self, plan: DeployPlan | None = None) -> None:
        """`compose up`, then recreate the running services whose secret files this run rewrote: compose
        compares only its own config, and Mailu reads a secret file once, at start."""
        base = dockercmd.stack_compose(self.cfg)
        self.run_argv(dockercmd.compose_config(base))
        if self.awaiting_certificate:
            self._up_without_front_health()
        else:
            self.run_argv(dockercmd.compose_up(base), timeout=900)
        stale = plan.services_to_recreate if plan else []
        if stale:
            self.log(f"recreating {', '.join(stale)}: their secret files changed")
            up = dockercmd.compose_up(base, *stale, force_recreate=True, no_deps=True)
            self.run_argv(up, timeout=900)

    def _up_without_front_health(self, limit_s: float = 240.0) -> None:
        """`compose up`, then wait for every service's health except front's, which cannot pass before
        its first certificate exists (certificates.py): front need only be running."""
        import time

        self.run_argv(
            dockercmd.compose_up(dockercmd.stack_compose(self.cfg), wait_timeout_s=None), timeout=900
        )
        deadline = time.monotonic() + limit_s
        while True:
            bad = [c for c in self.relaxed_container_checks(self.read_state()) if not c.ok]
            if not bad:
                return
            if time.monotonic() > deadline:
                raise DeployError("services not healthy: " + "; ".join(f"{c.name}: {c.detail}" for c in bad))
            time.sleep(2)

    def relaxed_container_checks(self, state: HostState) -> list[Check]:
        """Container checks; while the first certificate is awaited, front passes when it runs."""
        rows = self.container_checks(state)
        if not self.awaiting_certificate:
            return rows
        front = state.by_service().get("front")
        running = front is not None and front.state == "running"
        return [
            Check(c.name, running, f"{c.detail} (health waits for the certificate)")
            if c.name == "container front"
            else c
            for c in rows
        ]

    # --- checks --------------------------------------------------------------------------------

    def container_checks(self, state: HostState) -> list[Check]:
        rows = []
        running = state.by_service()
        for service, image in self.wanted_services().items():
            c = running.get(service)
            if c is None:
                rows.append(Check(f"container {service}", False, "no container"))
                continue
            healthy = c.state == "running" and c.health in (None, "healthy") and c.image == image
            detail = f"{c.state}, health {c.health or 'n/a'}" + (
                "" if c.image == image else f", image {c.image}"
            )
            rows.append(Check(f"container {service}", healthy, detail))
        return rows

    def container_checks_for(self, release: Release, state: HostState) -> list[Check]:
        """Container checks against the images a given release runs."""
        rows = []
        running = state.by_service()
        for service, image in release.images.items():
            c = running.get(service)
            ok = c is not None and c.state == "running" and c.health in (None, "healthy") and c.image == image
            rows.append(Check(f"container {service}", ok, "ok" if ok else f"{c.state if c else 'missing'}"))
        return rows

    def traefik_checks(self, state: HostState) -> list[Check]:
        raw = state.traefik_rawdata or {}
        ours = traefik_names(self.rendered.files[self.rendered.traefik_file].content)
        rows = []
        for section, name in ours:
            obj = (raw.get(section) or {}).get(f"{name}@file")
            ok = obj is not None and obj.get("status") == "enabled"
            detail = (
                "enabled"
                if ok
                else ("not loaded" if obj is None else f"{obj.get('status')}: {obj.get('error')}")
            )
            rows.append(Check(f"traefik {section} {name}", ok, detail))
        return rows


def traefik_names(content: bytes) -> list[tuple[str, str]]:
    doc = load_yaml(content)
    names: list[tuple[str, str]] = []
    for proto, prefix in (("http", ""), ("tcp", "tcp")):
        part = doc.get(proto) or {}
        for kind in ("routers", "services", "middlewares"):
            section = f"{prefix}{kind.capitalize()}" if prefix else kind
            names += [(section, n) for n in (part.get(kind) or {})]
    return names


def generate_missing_secrets(current: dict[str, str], needed: list[str]) -> dict[str, str]:
    """Values for the needed block fields that are empty: generated once, never again."""
    out = {}
    for name in needed:
        if not current.get(name):
            out[name] = pysecrets.token_urlsafe(32)
    return out


class SecretsStore:
    """Where the Mailu secrets live (the block): read all, save generated ones. The flow supplies it."""

    def load(self) -> dict[str, str]:
        raise NotImplementedError

    def save(self, values: dict[str, str]) -> None:
        raise NotImplementedError


def needed_secret_fields(rendered: RenderedStack) -> list[str]:
    """Block fields the stack needs: every secret file's field, plus the admin password and API token
    (the admin account and API calls use them)."""
    fields = {spec.block_field for spec in rendered.secrets} | {"admin_password", "api_token"}
    return sorted(fields)


def run_deploy(
    cfg: StackConfig,
    host: Host,
    store: SecretsStore,
    *,
    dry_run: bool = False,
    log: Log = lambda _m: None,
    on_plan: Callable[[DeployPlan], None] = lambda _p: None,
) -> DeployResult:
    """Plan; stop on a failed preflight (nothing written); apply; check; on failure put the last good
    release back and fail with the original reason."""
    deployer = Deployer(cfg, host, log)
    # Side by side: the host's one round trip, the secrets block's, and the probes a no-op deploy checks
    # (their rows are used only if nothing changes; a deploy that changes something probes again after).
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        reading = pool.submit(deployer.read_first)
        probing = pool.submit(probes, cfg) if not dry_run and not uses_acme(cfg) else None
        current = store.load()
        first = reading.result()
    finally:
        pool.shutdown(wait=False)
    needed = needed_secret_fields(deployer.rendered)
    generated = generate_missing_secrets(current, needed)
    values = {**current, **generated}
    state = first.state
    present = certificate_present(host, cfg) if uses_acme(cfg) else None
    plan = deployer.plan(DeployFacts(state, values, sorted(generated), present))
    on_plan(plan)
    failures = plan.preflight_failures
    if failures:
        raise PreflightFailed(
            "preflight failed, nothing was changed on the host:\n"
            + "\n".join(f"- {c.name}: {c.detail}" for c in failures)
        )
    if dry_run:
        pending = read_stack_records(host, cfg).pending  # refuses unattributable legacy records
        for note in pending.notes if pending else ():
            log(f"on the next deploy: {note}")
        if plan.changes:
            plan.compose_dry_run = deployer.compose_dry_run()
        return DeployResult(
            False, None, "dry run: " + ("changes planned" if plan.changes else "no changes"), plan
        )
    if not first.records.dir_exists:  # the stack's own records are not there yet: adopt the legacy ones
        adopt_legacy_records(host, cfg, log)  # before anything else changes: it may refuse
    if generated:
        store.save(values)  # the block is the source of truth: saved before any file is written
        log(f"generated and saved to the secrets block: {', '.join(sorted(generated))}")
    deployer.secret_values = values

    if first.records.dir_exists:  # read with the facts, under this run's lock: still what is there
        releases = parse_records(host.label, first.records.output)
    else:
        releases = list_releases(host, deployer.paths)
    previous = last_good(releases)
    if not plan.changes:
        waited = _wait_while_starting(deployer, state, log)
        checks = deployer.relaxed_container_checks(waited) + deployer.traefik_checks(waited)
        if deployer.awaiting_certificate:
            checks.append(waiting_check(cfg))
        else:  # probed while the facts were read, unless containers were starting then
            checks += probing.result() if probing is not None and waited is state else probes(cfg)
        checks += prometheus_checks(host, cfg, first=first.prometheus)
        failed = [c for c in checks if not c.ok and c.blocking]
        if failed:
            raise DeployError(
                "no changes to apply, but checks fail: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
            )
        return DeployResult(
            False,
            previous.id if previous else None,
            "no changes" + monitoring_note(checks, log),
            plan,
            checks,
            awaiting_certificate=deployer.awaiting_certificate,
        )

    release = Release(
        id=new_release_id(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        config_sha256=config_checksum(cfg),
        images=deployer.wanted_services(),
        files=release_files(deployer.rendered),
        previous_good=previous.id if previous else None,
    )
    created: list[str] = []
    try:
        created = deployer.write_changes(plan, release, state, previous)
        deployer.converge_containers(plan)
        reloaded = _reload_monitoring(deployer, plan)
        accounts = _ensure_accounts(deployer, values)
        checks = reloaded + _post_checks(deployer)
        failed = [c for c in checks if not c.ok and c.blocking]
        if failed:
            raise DeployError(
                "post-deploy checks failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
            )
    except Exception as exc:
        reason = _failure_reason(deployer, exc)
        log(f"deploy failed ({reason}); returning to the previous good release")
        try:
            back = _return_to(deployer, previous, release, created)
        except Exception as undo:  # the reason the deploy failed must not be replaced by the undo's
            why = (
                f"{command_label(undo.result.command)}: {undo.last_line()}"
                if isinstance(undo, CommandFailed)
                else str(undo)
            )
            raise DeployError(
                f"deploy failed: {reason}; returning to the previous good release ALSO failed: {why[-500:]}"
            ) from None
        if plan.monitoring_reload:
            reload_quietly(host, cfg, log)
        raise DeployError(f"deploy failed: {reason}; {back}") from None
    release.status = "good"
    save_release(host, deployer.paths, release)
    prune_releases(host, deployer.paths, [*releases, release])
    summary = (
        f"release {release.id}: {len(plan.files)} file(s), {len(plan.secret_files)} secret file(s) written"
        + monitoring_note(checks, log)
    )
    return DeployResult(
        True, release.id, summary, plan, checks, accounts, awaiting_certificate=deployer.awaiting_certificate
    )


def monitoring_note(checks: list[Check], log: Log) -> str:
    """The summary's warning when a non-blocking (monitoring) check failed; empty when none did."""
    failed = [c for c in checks if not c.ok and not c.blocking]
    if not failed:
        return ""
    text = "; ".join(f"{c.name}: {c.detail}" for c in failed)
    log(f"WARNING monitoring is not working (the mail release stays): {text}")
    return f"; WARNING monitoring is not working (the mail release stays): {text}"


def _wait_while_starting(deployer: Deployer, state: HostState, log: Log, limit_s: float = 300.0) -> HostState:
    """Containers just (re)started (a host reboot, `compose start`) report health `starting` until their
    healthcheck passes: wait for the verdict, as `compose up --wait` would, instead of failing on it."""
    import time

    deadline = time.monotonic() + limit_s
    while any(c.health == "starting" for c in state.containers) and time.monotonic() < deadline:
        starting = sorted(c.service for c in state.containers if c.health == "starting")
        log(f"waiting for the health of {', '.join(starting)} (starting)")
        time.sleep(2)
        state = deployer.read_state()
    return state


def probes(cfg: StackConfig) -> list[Check]:
    """Mail and web probes, the two groups side by side (each is a handful of TLS handshakes)."""
    from concurrent.futures import ThreadPoolExecutor

    from mailu_flows.deploy.probes import mail_checks, web_checks

    with ThreadPoolExecutor(max_workers=2) as pool:
        mail, web = pool.submit(mail_checks, cfg), pool.submit(web_checks, cfg)
        return mail.result() + web.result()


def _ensure_accounts(deployer: Deployer, values: dict[str, str]) -> list[str]:
    from mailu_flows.deploy.mailu_api import ensure_domains_and_admin

    cfg = deployer.cfg
    return ensure_domains_and_admin(
        deployer.host,
        dockercmd.stack_compose(cfg),
        cfg.mailu.api_path,
        values["api_token"],
        cfg.mail_domains,
        f"{cfg.mailu.postmaster}@{cfg.mailu.domain}",
        values["admin_password"],
    )


def _post_checks(deployer: Deployer, traefik_wait_s: float = 20.0) -> list[Check]:
    """Containers healthy, Traefik has loaded and enabled every Mailu object, probes pass."""
    import time

    deadline = time.monotonic() + traefik_wait_s
    while True:
        state = deployer.read_state()
        traefik = deployer.traefik_checks(state)
        if all(c.ok for c in traefik) or time.monotonic() > deadline:
            break
        time.sleep(1)
    waiting = deployer.awaiting_certificate
    return (
        deployer.relaxed_container_checks(state)
        + traefik
        + ([waiting_check(deployer.cfg)] if waiting else probes(deployer.cfg))
        + prometheus_checks(deployer.host, deployer.cfg)
    )


def _reload_monitoring(deployer: Deployer, plan: DeployPlan) -> list[Check]:
    """Ask Prometheus to reload when a monitoring file changed (rules are read only on reload)."""
    if not plan.monitoring_reload:
        return []
    check = reload_prometheus(deployer.host, deployer.cfg, deployer.log)
    return [check] if check is not None else []


def _failure_reason(deployer: Deployer, exc: Exception) -> str:
    """The original error, plus which services are not healthy (named), when any."""
    try:
        state = deployer.read_state()
        bad = [c for c in deployer.container_checks(state) if not c.ok]
    except Exception:
        bad = []
    named = "; ".join(f"{c.name.removeprefix('container ')}: {c.detail}" for c in bad)
    text = str(exc).strip()
    if isinstance(exc, CommandFailed):  # compose prints progress lines; its verdict is the last one
        text = f"{command_label(exc.result.command)}: {exc.last_line()}"
    return text[-800:] + (f" [unhealthy services: {named}]" if named else "")


def scratch_config(cfg: StackConfig, tmp: str) -> StackConfig:
    """`cfg` re-rooted in a scratch directory: the stack root, and every host path the config gives as
    absolute (secrets, compose file, Traefik's directory), move under `tmp`; the live certificates stay
    where they are (mounted read-only, never written)."""
    data = cfg.model_dump(mode="json")
    host = data["host"]
    host["stack_root"] = tmp
    for key in ("compose_file", "traefik_dynamic_dir", "secrets_dir"):
        if str(host[key]).startswith("/"):
            host[key] = str(PurePosixPath(tmp) / str(host[key]).lstrip("/"))
    if host.get("certs_dir") and not str(host["certs_dir"]).startswith("/"):
        host["certs_dir"] = str(cfg.host.resolve(str(host["certs_dir"])))
    return type(cfg).model_validate(data)


def _restore_replaced(deployer: Deployer, release: Release, rels: list[str]) -> None:
    """Put back the files that were on the host before `release` replaced them (kept in `replaced/`)."""
    for rel in rels:
        kept = replaced_file_path(deployer.paths, release.id, rel)
        data = deployer.host.read_file(kept)
        if data is not None:  # with its own mode: `cp -p` kept it, and a private file must stay private
            mode = deployer.host.file_mode(kept)
            deployer.host.write_file(deployer.abs(rel), data, mode=0o600 if mode is None else mode)


def _return_to(deployer: Deployer, previous: Release | None, failed: Release, created: list[str]) -> str:
    """Put the previous good release back (files, then containers) and check it is healthy; on a first
    deploy, stop only the containers and remove only the files this run created."""
    host, paths = deployer.host, deployer.paths
    failed.status = "rolled-back"
    try:
        if previous is not None:
            for rel in previous.files:
                data = release_file(host, paths, previous.id, rel)
                if data is not None:
                    host.write_file(deployer.abs(rel), data, mode=int(previous.files[rel]["mode"]))
            # files the failed release added: put back what was there before it, remove the rest
            added = [rel for rel in failed.files if rel not in previous.files]
            _restore_replaced(deployer, failed, [rel for rel in added if rel in failed.replaced])
            gone = [deployer.abs(rel) for rel in added if rel not in failed.replaced]
            if gone:
                host.run(["rm", "-f", *gone])
            deployer.run_argv(dockercmd.compose_up(dockercmd.stack_compose(deployer.cfg)), timeout=900)
            state = deployer.read_state()
            bad = [c for c in deployer.container_checks_for(previous, state) if not c.ok]
            if bad:
                return f"returned to release {previous.id} but it is NOT healthy: " + "; ".join(
                    f"{c.name}: {c.detail}" for c in bad
                )
            return f"returned to release {previous.id}, which is healthy again"
        compose_file = deployer.abs(deployer.cfg.host.compose_file)
        host.run(
            f"[ -f {shlex.quote(compose_file)} ] && "
            f"{shlex.join(dockercmd.compose_stop(dockercmd.stack_compose(deployer.cfg)))} || true",
            timeout=600,
        )
        if created:
            host.run(["rm", "-f", *created])
        _restore_replaced(deployer, failed, failed.replaced)
        return "first deploy: stopped its containers and removed the files it created (volumes kept)"
    finally:
        save_release(host, paths, failed)
