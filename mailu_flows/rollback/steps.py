"""The rollback's steps, one class each. `check(ctx)` reads the host and says whether the step's work is
already done (then the step only reports `already`, and a re-run of an interrupted rollback skips
it); `apply(ctx)` does it and reports what it did. The checking steps (`CheckRelease`,
`TeardownChecks`) are never done in advance: they check every time.

Each step's `key` is its name in the journal's `done` list (the journal's format on the host, shared
with older versions); nothing dispatches on it. The host is read through the deploy's facts
(`mailu_flows.deploy.hoststate`): containers, files, volumes and Traefik's rawdata.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar

from mailu_core.config import StackConfig
from mailu_core.dns import Plan, Record
from mailu_core.render import front_alias, render_stack
from mailu_core.render.monitoring import monitoring_file_paths
from mailu_core.stack_paths import StackPaths
from mailu_flows import dockercmd
from mailu_flows.deploy.engine import Deployer, sha256, traefik_names
from mailu_flows.deploy.hoststate import (
    Container,
    Containers,
    Fact,
    Files,
    HostState,
    RemoteFile,
    TraefikApi,
    Volumes,
    gather,
)
from mailu_flows.deploy.monitoring import reload_prometheus
from mailu_flows.deploy.preflight import Check
from mailu_flows.deploy.releases import Release, release_file, save_release
from mailu_flows.dns.provider import Provider
from mailu_flows.host import Host
from mailu_flows.rollback.errors import RollbackError
from mailu_flows.rollback.journal import Journal, now
from mailu_flows.rollback.teardown import (
    dns_names,
    dns_teardown_plan,
    is_monitoring_file,
    kept_records,
    mailu_objects,
    other_routers,
)

__all__ = [
    "CheckRelease",
    "ComposeDown",
    "DnsTeardown",
    "MarkReleases",
    "PutFilesBack",
    "RemoveFiles",
    "RestoreBackup",
    "RollbackContext",
    "Row",
    "StartRelease",
    "Step",
    "StopContainers",
    "TeardownChecks",
]

Log = Callable[[str], None]
Restore = Callable[[str], str]  # backup id -> one line saying what was restored (and the safety backup)
STOPPED = ("exited", "created", "dead")  # container states `compose stop` leaves alone


@dataclass
class Row:
    """One line of the result table: a step done (or found done) or a check."""

    step: str
    result: str  # done | already | skipped | ok | FAILED
    detail: str


@dataclass
class RollbackContext:
    """What the steps of one rollback run share: the host, the config, the journal being written, the
    wired-in restore and DNS provider, the rows reported, and what an earlier step saw that a later
    check compares against (the volumes before `compose down`, Traefik's rawdata before the files
    went)."""

    cfg: StackConfig
    host: Host
    run_name: str
    journal: Journal
    releases: list[Release]  # the host's release records the plan was made from
    log: Log = lambda _m: None
    restore: Restore | None = None
    provider_factory: Callable[[], Provider] | None = None
    wait_s: float = 30.0  # how long the checks wait for Traefik to load or drop the routes
    rows: list[Row] = field(default_factory=list)
    volumes_before: set[str] | None = None
    traefik_before: dict[str, Any] | None = None
    files_written: list[str] = field(default_factory=list)
    _deployer: Deployer | None = field(default=None, init=False, repr=False)
    _provider: Provider | None = field(default=None, init=False, repr=False)

    @property
    def paths(self) -> StackPaths:
        return self.cfg.paths

    @property
    def deployer(self) -> Deployer:
        """The deploy engine, for the container checks of a release."""
        if self._deployer is None:
            self._deployer = Deployer(self.cfg, self.host, self.log)
        return self._deployer

    def provider(self) -> Provider:
        if self._provider is None:
            if self.provider_factory is None:
                raise RollbackError("teardown needs the DNS provider, and none was wired in")
            self._provider = self.provider_factory()
        return self._provider

    def row(self, step: str, result: str, detail: str) -> None:
        self.rows.append(Row(step, result, detail))
        self.log(f"{step}: {result}: {detail}")

    def abs(self, rel: str) -> str:
        return str(PurePosixPath(self.cfg.host.stack_root) / rel)

    @property
    def compose_file(self) -> str:
        return str(self.cfg.host.resolve(self.cfg.host.compose_file))

    def compose(self, argv: list[str], timeout: float = 600) -> None:
        """A compose command line of `dockercmd` (on the stack's compose base)."""
        self.host.run(argv, timeout=timeout)

    # --- facts (one round trip each) ----------------------------------------------------------

    def facts(self, *facts: Fact[Any]) -> dict[str, Any]:
        return gather(self.host, facts)

    def containers_fact(self) -> Containers:
        return Containers(self.cfg.mailu.compose_project)

    def rawdata_fact(self) -> TraefikApi:
        return TraefikApi(str(self.cfg.traefik.api_url), "/api/rawdata", name="rawdata")

    def containers(self) -> list[Container]:
        found: list[Container] = self.facts(self.containers_fact())["containers"]
        return found

    def traefik_rawdata(self) -> dict[str, Any] | None:
        raw: dict[str, Any] | None = self.facts(self.rawdata_fact())["rawdata"]
        return raw

    def stack_volumes(self, present: set[str]) -> set[str]:
        """The config's volumes among `present` (the host's)."""
        return set(self.cfg.volumes.model_dump().values()) & present

    def compose_file_exists(self) -> bool:
        return self.host.run(["test", "-f", self.compose_file], check=False).ok

    def reload_prometheus(self) -> None:
        check = reload_prometheus(self.host, self.cfg, self.log)
        if check is not None:
            self.row("prometheus reload", "ok" if check.ok else "FAILED", check.detail)


def _names(containers: list[Container]) -> str:
    return ", ".join(f"{c.name} {c.state}" for c in containers)


class Step:
    """One step of a rollback: `key` names it in the journal, `title` and `detail` in the plan."""

    key: ClassVar[str]
    title: ClassVar[str]

    @property
    def detail(self) -> str:
        raise NotImplementedError

    def check(self, ctx: RollbackContext) -> bool:
        """True when the step's work is already done on the host (then `already` reports it)."""
        return False

    def already(self, ctx: RollbackContext) -> None:
        """Report the step found done (what `check` saw)."""
        ctx.row(self.title, "already", "nothing to do")

    def apply(self, ctx: RollbackContext) -> None:
        raise NotImplementedError


# --- steps of either mode ------------------------------------------------------------------------


@dataclass
class RestoreBackup(Step):
    """Restore the volumes from a backup (after a safety backup, the stack stopped): the one step that
    is not idempotent, so only the journal can say it is done (by this rollback, with this backup)."""

    backup_id: str
    restored_before: bool = False  # the plan read a journal saying so

    key: ClassVar[str] = "restore"
    title: ClassVar[str] = "restore volumes"

    @property
    def detail(self) -> str:
        if self.restored_before:
            return f"backup {self.backup_id}: already restored by this rollback"
        return (
            f"verify backup {self.backup_id}, take a safety backup of the current volumes, restore "
            "(stack stopped)"
        )

    def check(self, ctx: RollbackContext) -> bool:
        return ctx.journal.restore_backup == self.backup_id and self.key in ctx.journal.done

    def already(self, ctx: RollbackContext) -> None:
        ctx.row(self.title, "already", f"backup {self.backup_id} restored by run {ctx.journal.run}")

    def apply(self, ctx: RollbackContext) -> None:
        if ctx.restore is None:
            raise RollbackError("restore_backup was given but this run has no restore step wired in")
        ctx.row(self.title, "done", ctx.restore(self.backup_id))


# --- previous-release ----------------------------------------------------------------------------


@dataclass
class StopContainers(Step):
    """`docker compose stop` before a restore, so the volumes are not written meanwhile."""

    project: str
    no_compose_file: bool = field(default=False, init=False)

    key: ClassVar[str] = "stop"
    title: ClassVar[str] = "stop containers"

    @property
    def detail(self) -> str:
        return f"`docker compose stop` (project {self.project})"

    def check(self, ctx: RollbackContext) -> bool:
        self.no_compose_file = not ctx.compose_file_exists()
        return self.no_compose_file or all(c.state in STOPPED for c in ctx.containers())

    def already(self, ctx: RollbackContext) -> None:
        if self.no_compose_file:
            ctx.row(self.title, "skipped", "no compose file on the host")
        else:
            ctx.row(self.title, "already", "0 were running")

    def apply(self, ctx: RollbackContext) -> None:
        running = [c for c in ctx.containers() if c.state not in STOPPED]
        ctx.compose(dockercmd.compose_stop(dockercmd.stack_compose(ctx.cfg), timeout_s=30))
        ctx.row(self.title, "done", f"{len(running)} were running")


@dataclass
class PutFilesBack(Step):
    """Write the release's files (its stored copies) where the live ones differ; remove the files the
    release rolled back from wrote and the target did not."""

    frm: Release
    to: Release
    live: dict[str, RemoteFile] = field(default_factory=dict, init=False, repr=False, compare=False)

    key: ClassVar[str] = "files"
    title: ClassVar[str] = "put files back"

    @property
    def gone(self) -> list[str]:
        return sorted(set(self.frm.files) - set(self.to.files))

    @property
    def detail(self) -> str:
        gone = self.gone
        return f"{len(self.to.files)} file(s) of release {self.to.id} written where they differ" + (
            f"; remove {', '.join(gone)}" if gone else ""
        )

    def _differs(self, ctx: RollbackContext, rel: str) -> bool:
        have = self.live.get(ctx.abs(rel))
        want = self.to.files[rel]
        return have is None or (have.mode, have.sha256) != (int(want["mode"]), want["sha256"])

    def check(self, ctx: RollbackContext) -> bool:
        paths = [ctx.abs(rel) for rel in [*sorted(self.to.files), *self.gone]]
        self.live = ctx.facts(Files(paths))["files"]
        present_gone = [rel for rel in self.gone if ctx.abs(rel) in self.live]
        return not present_gone and not any(self._differs(ctx, rel) for rel in self.to.files)

    def already(self, ctx: RollbackContext) -> None:
        ctx.row(self.title, "already", f"all {len(self.to.files)} file(s) already matched")

    def apply(self, ctx: RollbackContext) -> None:
        contents: dict[str, bytes] = {}
        for rel in sorted(self.to.files):
            data = release_file(ctx.host, ctx.paths, self.to.id, rel)
            if data is None:
                raise RollbackError(
                    f"release {self.to.id} has no stored copy of {rel} (pruned?); nothing was written. "
                    "Choose another release (parameter `release`) or deploy the config you want"
                )
            if sha256(data) != self.to.files[rel]["sha256"]:
                raise RollbackError(
                    f"release {self.to.id}: the stored copy of {rel} does not match its record"
                )
            contents[rel] = data
        written = []
        for rel, data in contents.items():
            if self._differs(ctx, rel):
                path = ctx.abs(rel)
                ctx.host.run(["mkdir", "-p", str(PurePosixPath(path).parent)])
                ctx.host.write_file(path, data, mode=int(self.to.files[rel]["mode"]))
                written.append(rel)
        removed = [ctx.abs(rel) for rel in self.gone if ctx.abs(rel) in self.live]
        if removed:
            ctx.host.run(["rm", "-f", *removed])
        ctx.files_written += [ctx.abs(rel) for rel in written] + removed
        detail = f"wrote {', '.join(written)}" if written else f"all {len(contents)} file(s) already matched"
        if removed:
            detail += f"; removed {', '.join(removed)}"
        ctx.row(self.title, "done" if written or removed else "already", detail)
        monitoring = {str(ctx.cfg.host.resolve(p)) for p in monitoring_file_paths(ctx.cfg).values()}
        if monitoring & set(ctx.files_written):
            ctx.reload_prometheus()


@dataclass
class StartRelease(Step):
    """`docker compose up -d --wait` on the release's compose file (its image digests). Done already
    when this rollback's journal says so, no file was written by this run, and every service of the
    release runs healthy on its image."""

    frm: Release
    to: Release

    key: ClassVar[str] = "containers"
    title: ClassVar[str] = "containers"

    @property
    def detail(self) -> str:
        changed = sorted(s for s in self.to.images if self.frm.images.get(s) != self.to.images[s])
        return "`docker compose up -d --wait` with the release's image digests" + (
            f" (images that differ from {self.frm.id}: {', '.join(changed)})" if changed else ""
        )

    def check(self, ctx: RollbackContext) -> bool:
        if self.key not in ctx.journal.done or ctx.journal.to_release != self.to.id or ctx.files_written:
            return False
        checks = ctx.deployer.container_checks_for(self.to, HostState(containers=ctx.containers()))
        return all(c.ok for c in checks)

    def already(self, ctx: RollbackContext) -> None:
        ctx.row(self.title, "already", "every container already ran the release")

    def apply(self, ctx: RollbackContext) -> None:
        base = dockercmd.stack_compose(ctx.cfg)
        ctx.compose(dockercmd.compose_config(base))
        before = {c.service: c.container_id for c in ctx.containers()}
        ctx.compose(dockercmd.compose_up(base, wait_timeout_s=240, remove_orphans=True), timeout=900)
        after = {c.service: c.container_id for c in ctx.containers()}
        changed = sorted(s for s in after if before.get(s) != after[s])
        ctx.row(
            self.title,
            "done" if changed else "already",
            ("recreated: " + ", ".join(changed)) if changed else "every container already ran the release",
        )


@dataclass
class CheckRelease(Step):
    """The release's containers run, healthy, on its images, and Traefik has loaded its routes; a
    failure stops the rollback (a re-run checks again)."""

    to: Release

    key: ClassVar[str] = "checks"
    title: ClassVar[str] = "check"

    @property
    def detail(self) -> str:
        return "containers running, healthy, on the release's images; Traefik"

    def apply(self, ctx: RollbackContext) -> None:
        state = HostState(containers=ctx.containers())
        checks = ctx.deployer.container_checks_for(self.to, state)
        prefix = ctx.cfg.host.traefik_dynamic_dir + "/"
        traefik_rel = next((r for r in self.to.files if r.startswith(prefix)), None)
        if traefik_rel is not None:
            names = traefik_names(release_file(ctx.host, ctx.paths, self.to.id, traefik_rel) or b"")
            deadline = time.monotonic() + ctx.wait_s
            while True:
                raw = ctx.traefik_rawdata() or {}
                tchecks = [_traefik_check(raw, section, name) for section, name in names]
                if all(c.ok for c in tchecks) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            checks += tchecks
        for c in checks:
            ctx.row(c.name, "ok" if c.ok else "FAILED", c.detail)
        bad = [c for c in checks if not c.ok]
        if bad:
            raise RollbackError(
                f"release {self.to.id} is back but NOT healthy: "
                + "; ".join(f"{c.name}: {c.detail}" for c in bad)
                + ". Run the rollback again once fixed, or restore a backup"
            )


def _traefik_check(raw: dict[str, Any], section: str, name: str) -> Check:
    status = (raw.get(section) or {}).get(f"{name}@file", {}).get("status")
    return Check(f"traefik {section} {name}", status == "enabled", str(status or "not loaded"))


@dataclass
class MarkReleases(Step):
    """The release rolled back from becomes `rolled-back` and the target `good`, so the current release
    (the newest good one) is the target, as the deploy assumes when it picks its previous."""

    frm: Release
    to: Release

    key: ClassVar[str] = "mark"
    title: ClassVar[str] = "mark releases"

    @property
    def detail(self) -> str:
        return f"{self.frm.id} -> rolled-back; {self.to.id} is the current good release"

    def check(self, ctx: RollbackContext) -> bool:
        return self.frm.status == "rolled-back" and self.to.status == "good"

    def already(self, ctx: RollbackContext) -> None:
        ctx.row(self.title, "already", f"{self.frm.id} already rolled-back; current release: {self.to.id}")

    def apply(self, ctx: RollbackContext) -> None:
        changed = []
        if self.frm.status != "rolled-back":
            self.frm.status = "rolled-back"
            self.frm.note = f"rolled back to {self.to.id} by rollback run {ctx.run_name} at {now()}"
            save_release(ctx.host, ctx.paths, self.frm)
            changed.append(f"{self.frm.id} -> rolled-back")
        if self.to.status != "good":
            self.to.status = "good"
            save_release(ctx.host, ctx.paths, self.to)
            changed.append(f"{self.to.id} -> good")
        ctx.row(self.title, "done", ", ".join(changed) + f"; current release: {self.to.id}")


# --- teardown ------------------------------------------------------------------------------------


@dataclass
class ComposeDown(Step):
    """`docker compose down --remove-orphans`, never `-v`: every volume stays. Remembers the stack's
    volumes first, for the check that none went."""

    project: str
    before: list[Container] = field(default_factory=list, init=False, repr=False, compare=False)

    key: ClassVar[str] = "stop"
    title: ClassVar[str] = "compose down"

    @property
    def detail(self) -> str:
        return f"`docker compose down` (project {self.project}); volumes kept (never -v)"

    def check(self, ctx: RollbackContext) -> bool:
        seen = ctx.facts(ctx.containers_fact(), Volumes())
        ctx.volumes_before = ctx.stack_volumes(seen["volumes"])
        self.before = seen["containers"]
        return not self.before

    def already(self, ctx: RollbackContext) -> None:
        ctx.row(self.title, "already", "no containers of the project")

    def apply(self, ctx: RollbackContext) -> None:
        # without its file compose works from the project's containers alone
        base = (
            dockercmd.stack_compose(ctx.cfg) if ctx.compose_file_exists() else dockercmd.compose(self.project)
        )
        ctx.compose(dockercmd.compose_down(base, timeout_s=30))  # never -v
        left = ctx.containers()
        if left:
            raise RollbackError(f"compose down left containers of {self.project}: {_names(left)}")
        ctx.row(self.title, "done", f"removed {len(self.before)} container(s); volumes kept")


@dataclass
class DnsTeardown(Step):
    """Delete this stack's MX and the mail host's A/AAAA (its own records only; SPF, DKIM and DMARC
    stay), then check the zone: nothing of those left, the kept TXT records unchanged."""

    domains: tuple[str, ...]
    hostname: str
    changes: Plan | None = field(default=None, init=False, repr=False, compare=False)
    notes: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    kept_before: list[Record] = field(default_factory=list, init=False, repr=False, compare=False)

    key: ClassVar[str] = "dns"
    title: ClassVar[str] = "DNS"

    @property
    def detail(self) -> str:
        return (
            f"delete the MX of {', '.join(self.domains)} and the A/AAAA of {self.hostname} (this stack's "
            "own records only); SPF, DKIM and DMARC stay"
        )

    def check(self, ctx: RollbackContext) -> bool:
        provider = ctx.provider()
        listed = provider.list_records(names=dns_names(ctx.cfg))
        self.kept_before = kept_records(ctx.cfg, listed)
        self.changes, self.notes = dns_teardown_plan(ctx.cfg, provider.zone, listed)
        return self.changes.empty

    def already(self, ctx: RollbackContext) -> None:
        self._report(ctx, "already")

    def apply(self, ctx: RollbackContext) -> None:
        assert self.changes is not None, "apply after check"
        result = ctx.provider().apply(self.changes)
        if not result.complete:
            raise RollbackError(f"DNS teardown stopped part-way; run again to finish:\n{result.summary()}")
        self._report(ctx, "done")

    def _report(self, ctx: RollbackContext, result: str) -> None:
        assert self.changes is not None, "report after check"
        for n in self.notes:
            ctx.row(self.title, "skipped", n)
        ctx.row(
            self.title,
            result,
            "; ".join(str(c) for c in self.changes.changes)
            or "no MX or mail-host A/AAAA of this stack in the zone",
        )
        provider = ctx.provider()
        after = provider.list_records(names=dns_names(ctx.cfg))
        left, _ = dns_teardown_plan(ctx.cfg, provider.zone, after)
        ctx.row(
            "check DNS removed",
            "ok" if left.empty else "FAILED",
            "no MX/A/AAAA of this stack left"
            if left.empty
            else "; ".join(str(c.record) for c in left.changes),
        )
        kept_after = kept_records(ctx.cfg, after)
        ctx.row(
            "check SPF/DKIM/DMARC kept",
            "ok" if kept_after == self.kept_before else "FAILED",
            ", ".join(f"{r.name} TXT" for r in kept_after) or "none were published",
        )


@dataclass
class RemoveFiles(Step):
    """Remove the files the deploy's releases wrote under Traefik's and monitoring's directories
    (every other route stays); remembers Traefik's rawdata first, for the check that the other
    routers are still enabled."""

    files: tuple[str, ...]  # stack-relative
    present: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    key: ClassVar[str] = "files"
    title: ClassVar[str] = "Traefik and monitoring files"

    @property
    def detail(self) -> str:
        return "remove " + (", ".join(self.files) or "nothing")

    def check(self, ctx: RollbackContext) -> bool:
        paths = [str(ctx.cfg.host.resolve(r)) for r in self.files]
        facts: list[Fact[Any]] = [ctx.rawdata_fact()]
        if paths:
            facts.append(Files(paths))
        seen = ctx.facts(*facts)
        ctx.traefik_before = seen["rawdata"]
        self.present = [p for p in paths if p in seen.get("files", {})]
        return not self.present

    def already(self, ctx: RollbackContext) -> None:
        ctx.row(self.title, "already", "none of them on the host")

    def apply(self, ctx: RollbackContext) -> None:
        ctx.host.run(["rm", "-f", *self.present])
        ctx.row(self.title, "done", "removed " + ", ".join(self.present))
        if any(is_monitoring_file(ctx.cfg, p) for p in self.present):
            ctx.reload_prometheus()


@dataclass
class TeardownChecks(Step):
    """Traefik routes nothing to Mailu and the other routers are still enabled, no Mailu container is
    left, every volume is kept; any FAILED row of the run fails the teardown (a re-run checks again)."""

    key: ClassVar[str] = "checks"
    title: ClassVar[str] = "check"

    @property
    def detail(self) -> str:
        return "Traefik routes nothing to Mailu; the other routers are still enabled; volumes kept"

    def mailu_names(self, ctx: RollbackContext) -> set[tuple[str, str]]:
        """Every router, service and middleware name of Mailu's Traefik file: rendered now, and as
        each release wrote it."""
        rendered = render_stack(ctx.cfg)
        names = set(traefik_names(rendered.files[rendered.traefik_file].content))
        prefix = ctx.cfg.host.traefik_dynamic_dir + "/"
        for r in ctx.releases:
            for rel in r.files:
                if rel.startswith(prefix):
                    data = release_file(ctx.host, ctx.paths, r.id, rel)
                    if data:
                        names |= set(traefik_names(data))
        return names

    def apply(self, ctx: RollbackContext) -> None:
        names = self.mailu_names(ctx)
        front = front_alias(ctx.cfg)
        deadline = time.monotonic() + ctx.wait_s
        while True:
            raw = ctx.traefik_rawdata()
            mailu = mailu_objects(raw, names, front) if raw is not None else ["(Traefik API unreachable)"]
            if not mailu or time.monotonic() > deadline:
                break
            time.sleep(1)
        ctx.row(
            "check Traefik routes nothing to Mailu",
            "ok" if not mailu else "FAILED",
            "no Mailu router, service or middleware loaded"
            if not mailu
            else "still loaded: " + ", ".join(mailu),
        )
        before = ctx.traefik_before
        mailu_before = mailu_objects(before or {}, names, front)
        others_before = other_routers(before, mailu_before) if before is not None else None
        others_now = other_routers(raw, mailu)
        bad = []
        for label, status in sorted((others_before or others_now).items()):
            now_status = others_now.get(label)
            if now_status != "enabled":
                bad.append(f"{label}: {now_status or 'gone'} (was {status})")
        ctx.row(
            "check other routers still enabled",
            "ok" if not bad else "FAILED",
            f"{len(others_now)} router(s) enabled: " + ", ".join(sorted(others_now))
            if not bad
            else "; ".join(bad),
        )
        seen = ctx.facts(ctx.containers_fact(), Volumes())
        left: list[Container] = seen["containers"]
        ctx.row("check no Mailu container", "ok" if not left else "FAILED", _names(left) if left else "none")
        vols_now = ctx.stack_volumes(seen["volumes"])
        lost = sorted((vols_now if ctx.volumes_before is None else ctx.volumes_before) - vols_now)
        ctx.row(
            "check volumes kept",
            "ok" if not lost else "FAILED",
            ", ".join(sorted(vols_now)) if not lost else "missing: " + ", ".join(lost),
        )
        failed = [r for r in ctx.rows if r.result == "FAILED"]
        if failed:
            raise RollbackError(
                "teardown checks failed: "
                + "; ".join(f"{r.step}: {r.detail}" for r in failed)
                + ". Run the teardown again to finish"
            )
