"""The rollback, as plain functions over the flow's one SSH connection (the Prefect flow in
flows/rollback.py wraps them; nothing here knows Prefect).

Two modes:
- **previous-release** puts the last good release before the current one back: its files (from the
  release record), its image digests and containers (`docker compose up -d --wait`), checks them, and
  marks the release it left as `rolled-back` (so "current" = the newest `good` release, as the deploy
  already assumes when it picks its `previous`).
- **teardown** follows the seed's rollback plan: `docker compose down` keeping every volume, delete the
  MX and the mail host's A/AAAA (SPF, DKIM and DMARC stay), remove the files the deploy's releases
  wrote under Traefik's and monitoring's directories (every other route stays), then check through
  Traefik's API. Release records stay, so a later deploy comes back.

Every step reads the host first and is a no-op when already done, so a second run is safe. A journal
on the host (`StackConfig.paths.journal_file`, `.mailu-flows/stacks/<name>/rollback.json`, one per
stack, like its release records and lock) names the rollback in progress (mode, from, to, backup) and
the steps done: an interrupted run is finished by running it again, the one non-idempotent step
(restoring a backup) is not repeated, and a finished previous-release run is not stacked into a
second step back (name `release` for that).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Literal

from mailu_core.config import StackConfig
from mailu_core.dns import Change, Plan, Record, apply_order
from mailu_core.errors import MailuFlowsError
from mailu_core.render import front_alias, render_stack
from mailu_core.render.monitoring import monitoring_file_paths, monitoring_paths
from mailu_flows.deploy.engine import Deployer, _traefik_names, compose_args, sha256
from mailu_flows.deploy.monitoring import reload_prometheus
from mailu_flows.deploy.preflight import Check
from mailu_flows.deploy.releases import (
    Release,
    adopt_legacy_records,
    last_good,
    list_releases,
    read_stack_records,
    release_file,
    save_release,
)
from mailu_flows.dns.provider import Provider, ProviderRecord
from mailu_flows.host import Host

Mode = Literal["previous-release", "teardown"]
MODES: tuple[Mode, ...] = ("previous-release", "teardown")
Log = Callable[[str], None]
Restore = Callable[[str], str]  # backup id -> one line saying what was restored (and the safety backup)

KEPT_TXT_SLOTS = ("spf1", "dmarc1", "dkim1")


class RollbackError(MailuFlowsError, RuntimeError):
    """The rollback cannot start or did not finish; the message says why and what to do."""


class ConfirmationRefused(RollbackError, ValueError):
    """The type-to-confirm parameter does not name the stack's mail hostname: nothing was touched."""


class NoPreviousRelease(RollbackError):
    """previous-release: there is no good release to go back to."""


# --- confirmation --------------------------------------------------------------------------------


def _norm_host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def check_confirmation(cfg: StackConfig, mode: str, confirm: str | None) -> None:
    """Type-to-confirm: `confirm` must be the mail hostname (DNS case and a trailing dot aside).
    Called before anything reaches the host."""
    if mode not in MODES:
        raise RollbackError(f"mode: {mode!r} is not one of {', '.join(MODES)}; nothing was done")
    if not confirm or _norm_host(confirm) != _norm_host(cfg.hostname):
        got = "nothing" if not confirm else repr(confirm[:80])
        raise ConfirmationRefused(
            f"confirm: got {got}; type the mail hostname {cfg.hostname!r} (mailu.hostnames[0] of stack "
            f"{cfg.name!r}) to confirm the {mode} rollback. Nothing was done on the host."
        )


# --- journal -------------------------------------------------------------------------------------


@dataclass
class Journal:
    """The rollback in progress (or the last one) on the host."""

    mode: str
    from_release: str | None
    to_release: str | None
    restore_backup: str | None
    run: str
    started: str
    done: list[str] = field(default_factory=list)
    finished: str | None = None


def read_journal(host: Host, path: str) -> Journal | None:
    """The journal at `path` (a stack's `paths.journal_file`), or None."""
    data = host.read_file(path)
    if not data:
        return None
    try:
        raw = json.loads(data)
        return Journal(**{k: raw[k] for k in Journal.__dataclass_fields__ if k in raw})
    except (ValueError, TypeError):
        return None  # an unreadable journal is treated as none: every step checks the host anyway


def save_journal(host: Host, path: str, journal: Journal) -> None:
    host.run(["mkdir", "-p", "-m", "700", str(PurePosixPath(path).parent)])
    host.write_file(path, json.dumps(asdict(journal), sort_keys=True).encode() + b"\n", mode=0o600)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the plan (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    detail: str = ""


@dataclass
class RollbackPlan:
    """What the rollback will do, step by step; `journal` is the one to write (new or resumed)."""

    mode: Mode
    current: str | None
    from_release: str | None
    to_release: str | None
    restore_backup: str | None
    steps: list[Step]
    journal_applies: bool  # the host's journal describes this same rollback (resume / re-run)
    skip_restore: bool
    notes: list[str] = field(default_factory=list)
    remove_files: list[str] = field(default_factory=list)  # teardown: stack-relative paths

    def identity(self) -> tuple[Any, ...]:
        """What must not change between the plan shown and the plan run under the lock."""
        return (self.mode, self.from_release, self.to_release, self.restore_backup, tuple(self.remove_files))

    def markdown(self, hostname: str) -> str:
        title = {"previous-release": "previous release", "teardown": "teardown"}[self.mode]
        lines = [f"# Rollback plan: {title} of `{hostname}`", ""]
        lines.append(f"- current release: `{self.current or 'none'}`")
        if self.mode == "previous-release":
            lines.append(f"- going back from `{self.from_release}` to `{self.to_release}`")
        if self.restore_backup:
            state = " (already restored by an earlier run: skipped)" if self.skip_restore else ""
            lines.append(f"- restore volumes from backup `{self.restore_backup}`{state}")
        lines += [f"- note: {n}" for n in self.notes]
        lines += ["", "| # | step | what |", "|---|---|---|"]
        lines += [f"| {i} | {s.title} | {_cell(s.detail)} |" for i, s in enumerate(self.steps, 1)]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _journal_applies(
    journal: Journal | None, mode: Mode, current: Release | None, release: str | None
) -> bool:
    """Does the host's journal describe the rollback asked for now (to resume or re-run it)?"""
    if journal is None or journal.mode != mode:
        return False
    cur = current.id if current else None
    if mode == "teardown":
        return journal.from_release == cur  # no deploy since
    if release is not None and journal.to_release != release:
        return False
    if journal.finished:
        return cur == journal.to_release
    return cur in (journal.from_release, journal.to_release)


def blocking_journal(journal: Journal | None, mode: Mode, current: Release | None) -> str | None:
    """Why another rollback on the host must be finished first (None when nothing blocks)."""
    if journal is None or journal.mode == mode or mode == "teardown":
        return None  # teardown is the big hammer: it may follow anything
    cur = current.id if current else None
    if journal.mode == "teardown" and journal.from_release == cur:
        what = "finished" if journal.finished else "was interrupted"
        return (
            f"the stack was torn down by rollback run {journal.run} ({what}); bring it back with the deploy "
            "flow (which publishes DNS and the Traefik routes again), not with previous-release"
        )
    if (
        journal.mode == "previous-release"
        and not journal.finished
        and cur
        in (
            journal.from_release,
            journal.to_release,
        )
    ):
        return (
            f"rollback run {journal.run} (previous-release {journal.from_release} -> {journal.to_release}) "
            "was interrupted; run previous-release again to finish it first"
        )
    return None


def select_releases(
    releases: list[Release], journal: Journal | None, release: str | None = None
) -> tuple[Release, Release, bool]:
    """(from, to, resumed) for previous-release: the current release (newest good) and the newest good
    one before it, or the ones the host's journal names when it describes this rollback."""
    by_id = {r.id: r for r in releases}
    current = last_good(releases)
    if current is None:
        raise NoPreviousRelease(
            f"previous-release: the host has no good release at all ({_release_list(releases)}); deploy first"
        )
    if _journal_applies(journal, "previous-release", current, release):
        assert journal is not None and journal.from_release and journal.to_release
        frm, to = by_id.get(journal.from_release), by_id.get(journal.to_release)
        if frm is not None and to is not None:
            return frm, to, True
    if release is not None:
        target = by_id.get(release)
        if target is None:
            raise NoPreviousRelease(
                f"release: {release!r} is not a release on the host ({_release_list(releases)})"
            )
        if target.id == current.id:
            raise NoPreviousRelease(f"release: {release!r} is already the current release; nothing to do")
        if target.status != "good":
            raise NoPreviousRelease(
                f"release: {release!r} is {target.status}, not good; choose a good one "
                f"({_release_list(releases)})"
            )
        return current, target, False
    before = [r for r in releases if r.status == "good" and r.id < current.id]
    if not before:
        raise NoPreviousRelease(
            f"previous-release: no good release before the current {current.id} "
            f"({_release_list(releases)}); nothing to go back to (teardown removes the stack instead)"
        )
    return current, before[-1], False


def _release_list(releases: list[Release]) -> str:
    return "releases: " + (", ".join(f"{r.id} {r.status}" for r in releases) or "none")


def managed_dirs(cfg: StackConfig) -> list[str]:
    """Stack-relative directories whose files the deploy's releases wrote and a teardown removes:
    Traefik's dynamic directory and every monitoring file's directory."""
    dirs = {cfg.host.traefik_dynamic_dir}
    dirs |= {str(PurePosixPath(p).parent) for p in monitoring_file_paths(cfg).values()}
    return sorted(dirs)


def teardown_files(cfg: StackConfig, releases: Iterable[Release]) -> list[str]:
    """Every file a release recorded (or this config renders) under Traefik's or monitoring's
    directories: Mailu's routes file and the Prometheus/Grafana files, never the host's own."""
    root = PurePosixPath(cfg.host.stack_root)
    dirs = [cfg.host.resolve(d) for d in managed_dirs(cfg)]
    rendered = render_stack(cfg)
    candidates = {rendered.traefik_file, *monitoring_paths(cfg)}
    for r in releases:
        candidates |= set(r.files)
    out = []
    for rel in candidates:
        path = root / rel
        if any(path.parent == d or path.is_relative_to(d) for d in dirs):
            out.append(rel)
    return sorted(out)


def is_monitoring_file(cfg: StackConfig, path: str) -> bool:
    """A teardown file (stack-relative or absolute) outside Traefik's directory: a monitoring one."""
    return not cfg.host.resolve(path).is_relative_to(cfg.host.resolve(cfg.host.traefik_dynamic_dir))


def make_plan(
    cfg: StackConfig,
    mode: Mode,
    releases: list[Release],
    journal: Journal | None,
    restore_backup: str | None = None,
    release: str | None = None,
) -> RollbackPlan:
    """The rollback's steps from the host's release records and journal (pure)."""
    current = last_good(releases)
    blocked = blocking_journal(journal, mode, current)
    if blocked:
        raise RollbackError(blocked)
    notes: list[str] = []
    steps: list[Step] = []
    frm: Release | None
    to: Release | None
    if mode == "previous-release":
        frm, to, resumed = select_releases(releases, journal, release)
        applies = resumed
        if resumed:
            assert journal is not None
            state = "finished" if journal.finished else "interrupted"
            notes.append(f"same rollback as run {journal.run} ({state}): its steps are checked and finished")
    else:
        frm, to = current, None
        applies = _journal_applies(journal, "teardown", current, None)
        if applies:
            assert journal is not None
            state = "finished" if journal.finished else "interrupted"
            notes.append(f"same teardown as run {journal.run} ({state}): every step is checked again")
    skip_restore = bool(
        restore_backup
        and applies
        and journal is not None
        and journal.restore_backup == restore_backup
        and "restore" in journal.done
    )
    project = cfg.mailu.compose_project
    remove: list[str] = []
    if mode == "previous-release":
        assert frm is not None and to is not None
        if restore_backup:
            steps.append(Step("stop", "stop containers", f"`docker compose stop` (project {project})"))
            steps.append(_restore_step(restore_backup, skip_restore))
        gone = sorted(set(frm.files) - set(to.files))
        steps.append(
            Step(
                "files",
                "put files back",
                f"{len(to.files)} file(s) of release {to.id} written where they differ"
                + (f"; remove {', '.join(gone)}" if gone else ""),
            )
        )
        changed = sorted(s for s in to.images if frm.images.get(s) != to.images[s])
        steps.append(
            Step(
                "containers",
                "containers",
                "`docker compose up -d --wait` with the release's image digests"
                + (f" (images that differ from {frm.id}: {', '.join(changed)})" if changed else ""),
            )
        )
        steps.append(Step("checks", "check", "containers running, healthy, on the release's images; Traefik"))
        steps.append(
            Step("mark", "mark releases", f"{frm.id} -> rolled-back; {to.id} is the current good release")
        )
    else:
        remove = teardown_files(cfg, releases)
        steps.append(
            Step(
                "stop", "compose down", f"`docker compose down` (project {project}); volumes kept (never -v)"
            )
        )
        if restore_backup:
            steps.append(_restore_step(restore_backup, skip_restore))
        domains = ", ".join(cfg.mail_domains)
        steps.append(
            Step(
                "dns",
                "DNS",
                f"delete the MX of {domains} and the A/AAAA of {cfg.hostname} (this stack's own records "
                "only); SPF, DKIM and DMARC stay",
            )
        )
        steps.append(
            Step("files", "Traefik and monitoring files", "remove " + (", ".join(remove) or "nothing"))
        )
        steps.append(
            Step(
                "checks",
                "check",
                "Traefik routes nothing to Mailu; the other routers are still enabled; volumes kept",
            )
        )
        notes.append("release records are kept: the deploy flow brings the stack back")
    return RollbackPlan(
        mode=mode,
        current=current.id if current else None,
        from_release=frm.id if frm else None,
        to_release=to.id if to else None,
        restore_backup=restore_backup,
        steps=steps,
        journal_applies=applies,
        skip_restore=skip_restore,
        notes=notes,
        remove_files=remove,
    )


def _restore_step(backup_id: str, skip: bool) -> Step:
    if skip:
        return Step("restore", "restore volumes", f"backup {backup_id}: already restored by this rollback")
    return Step(
        "restore",
        "restore volumes",
        f"verify backup {backup_id}, take a safety backup of the current volumes, restore (stack stopped)",
    )


def dns_teardown_plan(
    cfg: StackConfig, zone: str, listed: Iterable[ProviderRecord]
) -> tuple[Plan, list[str]]:
    """Deletes of this stack's MX (at every mail domain) and the mail host's A/AAAA; nothing else.
    Returns the plan and notes about foreign records left in those slots."""
    domains = {_norm_host(d) for d in cfg.mail_domains}
    host = _norm_host(cfg.hostname)
    changes: list[Change] = []
    notes: list[str] = []
    for p in listed:
        r = p.record
        target = (r.type == "MX" and r.name in domains) or (r.type in ("A", "AAAA") and r.name == host)
        if not target:
            continue
        if p.owned:
            changes.append(Change("delete", old=r))
        else:
            notes.append(f"{r.name} {r.type} {r.short(60)} is not managed by this stack: left in place")
    return Plan(zone=zone, changes=tuple(apply_order(changes))), notes


def kept_records(cfg: StackConfig, listed: Iterable[ProviderRecord]) -> list[Record]:
    """The SPF, DMARC and DKIM TXT records at the stack's domains (what a teardown must keep)."""
    from mailu_core.dns import txt_slot

    domains = {_norm_host(d) for d in cfg.mail_domains}
    out = []
    for p in listed:
        r = p.record
        if r.type != "TXT":
            continue
        slot = txt_slot(r.name, r.value)
        base = r.name.split("._domainkey.", 1)[-1].removeprefix("_dmarc.")
        if slot in KEPT_TXT_SLOTS and base in domains:
            out.append(r)
    return sorted(out, key=lambda r: (r.name, r.key))


def dns_names(cfg: StackConfig) -> set[str]:
    names = {cfg.hostname, *cfg.mail_domains}
    names |= {f"_dmarc.{d}" for d in cfg.mail_domains}
    selectors = [cfg.dns.dkim.selector, *(s.selector for s in cfg.dns.dkim.retired_selectors)]
    names |= {f"{s}._domainkey.{d}" for s in selectors for d in cfg.mail_domains}
    return names


# --- Traefik (pure) ------------------------------------------------------------------------------

ROUTER_SECTIONS = ("routers", "tcpRouters", "udpRouters")


def mailu_objects(raw: dict[str, Any], names: Collection[tuple[str, str]], front: str) -> list[str]:
    """Objects in Traefik's rawdata that belong to Mailu: our file's names, any service whose servers
    point at Mailu's front, and any router using such a service."""
    found = []
    for section, name in names:
        if f"{name}@file" in (raw.get(section) or {}):
            found.append(f"{section} {name}@file")
    mailu_services: set[str] = set()
    for section in ("services", "tcpServices"):
        for key, svc in (raw.get(section) or {}).items():
            servers = ((svc or {}).get("loadBalancer") or {}).get("servers") or []
            if any(front in str(s.get("url", "")) + str(s.get("address", "")) for s in servers):
                mailu_services.add(key.split("@", 1)[0])
                found.append(f"{section} {key}")
    for section in ROUTER_SECTIONS:
        for key, router in (raw.get(section) or {}).items():
            if str((router or {}).get("service", "")).split("@", 1)[0] in mailu_services:
                found.append(f"{section} {key}")
    return sorted(set(found))


def other_routers(raw: dict[str, Any] | None, mailu: Collection[str]) -> dict[str, str]:
    """'section name' -> status of every router that is not Mailu's."""
    out: dict[str, str] = {}
    for section in ROUTER_SECTIONS:
        for key, router in ((raw or {}).get(section) or {}).items():
            label = f"{section} {key}"
            if label not in mailu:
                out[label] = str((router or {}).get("status"))
    return out


# --- running it ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table: a step done (or found done) or a check."""

    step: str
    result: str  # done | already | skipped | ok | FAILED
    detail: str


@dataclass
class RollbackResult:
    mode: Mode
    from_release: str | None
    to_release: str | None
    rows: list[Row]
    resumed: bool

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.result == "FAILED"]

    def summary(self) -> str:
        if self.mode == "previous-release":
            return f"rolled back from {self.from_release} to {self.to_release}"
        return "torn down (volumes and release records kept)"


class Rollback:
    """One rollback of `cfg` on `host`, holding the host lock (the caller takes it)."""

    def __init__(
        self,
        cfg: StackConfig,
        host: Host,
        run: str,
        log: Log = lambda _m: None,
        restore: Restore | None = None,
        provider: Callable[[], Provider] | None = None,
    ) -> None:
        self.cfg, self.host, self.run_name, self.log = cfg, host, run, log
        self.paths = cfg.paths  # this stack's releases and journal, apart from other stacks in the root
        self.restore, self.provider = restore, provider
        self.rows: list[Row] = []

    def read_plan(
        self, mode: Mode, restore_backup: str | None, release: str | None = None, *, adopt: bool = False
    ) -> tuple[RollbackPlan, list[Release], Journal | None]:
        """The plan from the host's records. `adopt` (only under the stack's lock): first move this
        stack's records from the legacy shared place; without it legacy records are read in place,
        so the plan shown before the lock is the plan run under it."""
        if adopt:
            adopt_legacy_records(self.host, self.cfg, self.log)
            releases = list_releases(self.host, self.paths)
            journal = read_journal(self.host, self.paths.journal_file)
        else:
            records = read_stack_records(self.host, self.cfg)
            releases, journal = records.releases, read_journal(self.host, records.journal_file)
        return make_plan(self.cfg, mode, releases, journal, restore_backup, release), releases, journal

    def row(self, step: str, result: str, detail: str) -> None:
        self.rows.append(Row(step, result, detail))
        self.log(f"{step}: {result}: {detail}")

    def execute(self, plan: RollbackPlan, releases: list[Release], journal: Journal | None) -> RollbackResult:
        """Run the plan's steps; the journal records each finished step before the next starts."""
        if plan.journal_applies and journal is not None:
            jr = journal
            jr.finished = None
        else:
            jr = Journal(
                plan.mode, plan.from_release, plan.to_release, plan.restore_backup, self.run_name, now()
            )
        if jr.restore_backup != plan.restore_backup and plan.restore_backup:
            jr.restore_backup = plan.restore_backup
            jr.done = [d for d in jr.done if d != "restore"]
        save_journal(self.host, self.paths.journal_file, jr)
        by_id = {r.id: r for r in releases}
        steps = {
            "previous-release": self._previous_release_steps,
            "teardown": self._teardown_steps,
        }[plan.mode]
        for step in plan.steps:
            if step.key == "restore" and plan.skip_restore:
                self.row(
                    "restore volumes", "already", f"backup {plan.restore_backup} restored by run {jr.run}"
                )
                continue
            steps(step.key, plan, by_id)
            if step.key not in jr.done:
                jr.done.append(step.key)
                save_journal(self.host, self.paths.journal_file, jr)
        jr.finished = now()
        save_journal(self.host, self.paths.journal_file, jr)
        return RollbackResult(plan.mode, plan.from_release, plan.to_release, self.rows, plan.journal_applies)

    # --- shared ------------------------------------------------------------------------------

    def _compose_file(self) -> str:
        return str(self.cfg.host.resolve(self.cfg.host.compose_file))

    def _project_containers(self) -> list[str]:
        project = self.cfg.mailu.compose_project
        out = self.host.run(
            ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "--format",
             "{{.Names}} {{.State}}"]
        ).text()  # fmt: skip
        return [line for line in out.splitlines() if line.strip()]

    def _restore(self, backup_id: str) -> None:
        if self.restore is None:
            raise RollbackError("restore_backup was given but this run has no restore step wired in")
        self.row("restore volumes", "done", self.restore(backup_id))

    def _file_hashes(self, paths: list[str]) -> dict[str, tuple[int, str]]:
        script = (
            "for f in " + " ".join(shlex.quote(p) for p in paths) + "; do "
            '[ -f "$f" ] && echo "$(stat -c %a "$f") $(sha256sum < "$f" | cut -d" " -f1) $f"; done; true'
        )
        out: dict[str, tuple[int, str]] = {}
        for line in self.host.run(["sh", "-c", script]).text().splitlines():
            mode, digest, path = line.split(" ", 2)
            out[path] = (int(mode, 8), digest)
        return out

    def _traefik_raw(self) -> dict[str, Any] | None:
        api = str(self.cfg.traefik.api_url).rstrip("/")
        res = self.host.run(["curl", "-sf", "--max-time", "5", f"{api}/api/rawdata"], check=False)
        if not res.ok:
            return None
        doc: dict[str, Any] = json.loads(res.stdout)
        return doc

    # --- previous-release --------------------------------------------------------------------

    def _previous_release_steps(self, key: str, plan: RollbackPlan, by_id: dict[str, Release]) -> None:
        assert plan.from_release and plan.to_release
        frm, to = by_id[plan.from_release], by_id[plan.to_release]
        dep = Deployer(self.cfg, self.host, self.log)
        if key == "stop":
            if not self.host.run(["test", "-f", self._compose_file()], check=False).ok:
                self.row("stop containers", "skipped", "no compose file on the host")
                return
            running = [c for c in self._project_containers() if c.endswith(" running")]
            dep.compose("stop", "-t", "30", timeout=600)
            self.row("stop containers", "done" if running else "already", f"{len(running)} were running")
        elif key == "restore":
            assert plan.restore_backup
            self._restore(plan.restore_backup)
        elif key == "files":
            self._put_files_back(dep, frm, to)
        elif key == "containers":
            dep.compose("config", "--quiet")
            before = {c.service: c.container_id for c in dep.read_state().containers}
            dep.compose("up", "--detach", "--wait", "--wait-timeout", "240", "--remove-orphans", timeout=900)
            after = {c.service: c.container_id for c in dep.read_state().containers}
            changed = sorted(s for s in after if before.get(s) != after[s])
            self.row(
                "containers",
                "done" if changed else "already",
                ("recreated: " + ", ".join(changed))
                if changed
                else "every container already ran the release",
            )
        elif key == "checks":
            self._check_release(dep, to)
        elif key == "mark":
            self._mark(frm, to)

    def _put_files_back(self, dep: Deployer, frm: Release, to: Release) -> None:
        contents: dict[str, bytes] = {}
        for rel in sorted(to.files):
            data = release_file(self.host, self.paths, to.id, rel)
            if data is None:
                raise RollbackError(
                    f"release {to.id} has no stored copy of {rel} (pruned?); nothing was written. "
                    "Choose another release (parameter `release`) or deploy the config you want"
                )
            if sha256(data) != to.files[rel]["sha256"]:
                raise RollbackError(f"release {to.id}: the stored copy of {rel} does not match its record")
            contents[rel] = data
        paths = {rel: dep.abs(rel) for rel in contents}
        gone = [dep.abs(rel) for rel in sorted(set(frm.files) - set(to.files))]
        have = self._file_hashes([*paths.values(), *gone])
        written = []
        for rel, data in contents.items():
            mode = int(to.files[rel]["mode"])
            if have.get(paths[rel]) != (mode, sha256(data)):
                self.host.run(["mkdir", "-p", str(PurePosixPath(paths[rel]).parent)])
                self.host.write_file(paths[rel], data, mode=mode)
                written.append(rel)
        removed = [p for p in gone if p in have]
        if removed:
            self.host.run(["rm", "-f", *removed])
        detail = f"wrote {', '.join(written)}" if written else f"all {len(contents)} file(s) already matched"
        if removed:
            detail += f"; removed {', '.join(removed)}"
        self.row("put files back", "done" if written or removed else "already", detail)
        monitoring = {str(self.cfg.host.resolve(p)) for p in monitoring_file_paths(self.cfg).values()}
        if monitoring & ({paths[rel] for rel in written} | set(removed)):
            check = reload_prometheus(self.host, self.cfg, self.log)
            if check is not None:
                self.row("prometheus reload", "ok" if check.ok else "FAILED", check.detail)

    def _check_release(self, dep: Deployer, to: Release, traefik_wait_s: float = 30.0) -> None:
        state = dep.read_state()
        checks = dep.container_checks_for(to, state)
        traefik_rel = next(
            (r for r in to.files if r.startswith(self.cfg.host.traefik_dynamic_dir + "/")), None
        )
        if traefik_rel is not None:
            data = release_file(self.host, self.paths, to.id, traefik_rel) or b""
            names = _traefik_names(data)
            deadline = time.monotonic() + traefik_wait_s
            while True:
                raw = self._traefik_raw() or {}
                tchecks = [
                    Check(
                        f"traefik {section} {name}",
                        (raw.get(section) or {}).get(f"{name}@file", {}).get("status") == "enabled",
                        str((raw.get(section) or {}).get(f"{name}@file", {}).get("status", "not loaded")),
                    )
                    for section, name in names
                ]
                if all(c.ok for c in tchecks) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            checks += tchecks
        for c in checks:
            self.row(c.name, "ok" if c.ok else "FAILED", c.detail)
        bad = [c for c in checks if not c.ok]
        if bad:
            raise RollbackError(
                f"release {to.id} is back but NOT healthy: "
                + "; ".join(f"{c.name}: {c.detail}" for c in bad)
                + ". Run the rollback again once fixed, or restore a backup"
            )

    def _mark(self, frm: Release, to: Release) -> None:
        stamp = now()
        changed = []
        if frm.status != "rolled-back":
            frm.status = "rolled-back"
            frm.note = f"rolled back to {to.id} by rollback run {self.run_name} at {stamp}"
            save_release(self.host, self.paths, frm)
            changed.append(f"{frm.id} -> rolled-back")
        if to.status != "good":
            to.status = "good"
            save_release(self.host, self.paths, to)
            changed.append(f"{to.id} -> good")
        self.row(
            "mark releases",
            "done" if changed else "already",
            (", ".join(changed) or f"{frm.id} already rolled-back") + f"; current release: {to.id}",
        )

    # --- teardown ----------------------------------------------------------------------------

    def _teardown_steps(self, key: str, plan: RollbackPlan, by_id: dict[str, Release]) -> None:
        if key == "stop":
            self._compose_down()
        elif key == "restore":
            assert plan.restore_backup
            self._restore(plan.restore_backup)
        elif key == "dns":
            self._dns_teardown()
        elif key == "files":
            self._traefik_before = self._traefik_raw()
            self._remove_files(plan.remove_files)
        elif key == "checks":
            self._teardown_checks(plan, by_id)

    def _volumes(self) -> set[str]:
        wanted = set(self.cfg.volumes.model_dump().values())
        have = set(self.host.run(["docker", "volume", "ls", "-q"]).text().split())
        return wanted & have

    def _compose_down(self) -> None:
        self._volumes_before = self._volumes()
        before = self._project_containers()
        project = self.cfg.mailu.compose_project
        args = ["docker", "compose", "-p", project]
        if self.host.run(["test", "-f", self._compose_file()], check=False).ok:
            args = compose_args(self.cfg)
        if before:
            self.host.run([*args, "down", "--remove-orphans", "-t", "30"], timeout=600)  # never -v
        left = self._project_containers()
        if left:
            raise RollbackError(f"compose down left containers of {project}: {', '.join(left)}")
        self.row(
            "compose down",
            "done" if before else "already",
            f"removed {len(before)} container(s); volumes kept" if before else "no containers of the project",
        )

    def _dns_teardown(self) -> None:
        if self.provider is None:
            raise RollbackError("teardown needs the DNS provider, and none was wired in")
        provider = self.provider()
        listed = provider.list_records(names=dns_names(self.cfg))
        kept_before = kept_records(self.cfg, listed)
        dplan, notes = dns_teardown_plan(self.cfg, provider.zone, listed)
        for n in notes:
            self.row("DNS", "skipped", n)
        if not dplan.empty:
            result = provider.apply(dplan)
            if not result.complete:
                raise RollbackError(
                    f"DNS teardown stopped part-way; run again to finish:\n{result.summary()}"
                )
        self.row(
            "DNS",
            "done" if not dplan.empty else "already",
            "; ".join(str(c) for c in dplan.changes) or "no MX or mail-host A/AAAA of this stack in the zone",
        )
        after = provider.list_records(names=dns_names(self.cfg))
        left, _ = dns_teardown_plan(self.cfg, provider.zone, after)
        self.row(
            "check DNS removed",
            "ok" if left.empty else "FAILED",
            "no MX/A/AAAA of this stack left"
            if left.empty
            else "; ".join(str(c.record) for c in left.changes),
        )
        kept_after = kept_records(self.cfg, after)
        kept_ok = kept_after == kept_before
        self.row(
            "check SPF/DKIM/DMARC kept",
            "ok" if kept_ok else "FAILED",
            ", ".join(f"{r.name} TXT" for r in kept_after) or "none were published",
        )

    def _remove_files(self, rels: list[str]) -> None:
        paths = [str(self.cfg.host.resolve(r)) for r in rels]
        present = list(self._file_hashes(paths)) if paths else []
        if present:
            self.host.run(["rm", "-f", *present])
        self.row(
            "Traefik and monitoring files",
            "done" if present else "already",
            ("removed " + ", ".join(present)) if present else "none of them on the host",
        )
        monitoring = [p for p in present if is_monitoring_file(self.cfg, p)]
        if monitoring:
            check = reload_prometheus(self.host, self.cfg, self.log)
            if check is not None:
                self.row("prometheus reload", "ok" if check.ok else "FAILED", check.detail)

    def _mailu_names(self, by_id: dict[str, Release]) -> set[tuple[str, str]]:
        names: set[tuple[str, str]] = set()
        rendered = render_stack(self.cfg)
        names |= set(_traefik_names(rendered.files[rendered.traefik_file].content))
        for r in by_id.values():
            for rel in r.files:
                if rel.startswith(self.cfg.host.traefik_dynamic_dir + "/"):
                    data = release_file(self.host, self.paths, r.id, rel)
                    if data:
                        names |= set(_traefik_names(data))
        return names

    def _teardown_checks(self, plan: RollbackPlan, by_id: dict[str, Release], wait_s: float = 30.0) -> None:
        names = self._mailu_names(by_id)
        front = front_alias(self.cfg)
        before = getattr(self, "_traefik_before", None)
        deadline = time.monotonic() + wait_s
        while True:
            raw = self._traefik_raw()
            mailu = (
                mailu_objects(raw or {}, names, front) if raw is not None else ["(Traefik API unreachable)"]
            )
            if not mailu or time.monotonic() > deadline:
                break
            time.sleep(1)
        self.row(
            "check Traefik routes nothing to Mailu",
            "ok" if not mailu else "FAILED",
            "no Mailu router, service or middleware loaded"
            if not mailu
            else "still loaded: " + ", ".join(mailu),
        )
        mailu_before = mailu_objects(before or {}, names, front)
        others_before = other_routers(before, mailu_before) if before is not None else None
        others_now = other_routers(raw, mailu)
        bad = []
        for label, status in sorted((others_before or others_now).items()):
            now_status = others_now.get(label)
            if now_status != "enabled":
                bad.append(f"{label}: {now_status or 'gone'} (was {status})")
        self.row(
            "check other routers still enabled",
            "ok" if not bad else "FAILED",
            f"{len(others_now)} router(s) enabled: " + ", ".join(sorted(others_now))
            if not bad
            else "; ".join(bad),
        )
        left = self._project_containers()
        self.row(
            "check no Mailu container",
            "ok" if not left else "FAILED",
            "none" if not left else ", ".join(left),
        )
        vols_now = self._volumes()
        lost = sorted(getattr(self, "_volumes_before", vols_now) - vols_now)
        self.row(
            "check volumes kept",
            "ok" if not lost else "FAILED",
            ", ".join(sorted(vols_now)) if not lost else "missing: " + ", ".join(lost),
        )
        failed = [r for r in self.rows if r.result == "FAILED"]
        if failed:
            raise RollbackError(
                "teardown checks failed: "
                + "; ".join(f"{r.step}: {r.detail}" for r in failed)
                + ". Run the teardown again to finish"
            )
