"""The rollback's plan (pure, no I/O): from the config, the host's release records and its rollback
journal (read beforehand) to the ordered step objects of `mailu_flows.rollback.steps`.

Two modes:
- **previous-release** puts the last good release before the current one back: its files (from the
  release record), its image digests and containers (`docker compose up -d --wait`), checks them, and
  marks the release it left as `rolled-back` (so "current" = the newest `good` release, as the deploy
  already assumes when it picks its `previous`).
- **teardown** follows the seed's rollback plan: `docker compose down` keeping every volume, delete the
  MX and the mail host's A/AAAA (SPF, DKIM and DMARC stay), remove the files the deploy's releases
  wrote under Traefik's and monitoring's directories (every other route stays), then check through
  Traefik's API. Release records stay, so a later deploy comes back.

The journal decides whether this is a new rollback or the same one again (an interrupted run is
finished, a finished previous-release is not stacked into a second step back), and whether another
rollback must be finished first; a journal of a mode this version does not know is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mailu_core.config import StackConfig
from mailu_flows.deploy.releases import Release, last_good
from mailu_flows.rollback.errors import ConfirmationRefused, NoPreviousRelease, RollbackError
from mailu_flows.rollback.journal import Journal
from mailu_flows.rollback.steps import (
    CheckRelease,
    ComposeDown,
    DnsTeardown,
    MarkReleases,
    PutFilesBack,
    RemoveFiles,
    RestoreBackup,
    StartRelease,
    Step,
    StopContainers,
    TeardownChecks,
)
from mailu_flows.rollback.teardown import norm_host, teardown_files

__all__ = [
    "MODES",
    "Mode",
    "RollbackPlan",
    "blocking_journal",
    "check_confirmation",
    "make_plan",
    "select_releases",
]

Mode = Literal["previous-release", "teardown"]
MODES: tuple[Mode, ...] = ("previous-release", "teardown")


# --- confirmation --------------------------------------------------------------------------------


def check_confirmation(cfg: StackConfig, mode: str, confirm: str | None) -> None:
    """Type-to-confirm: `confirm` must be the mail hostname (DNS case and a trailing dot aside).
    Called before anything reaches the host."""
    if mode not in MODES:
        raise RollbackError(f"mode: {mode!r} is not one of {', '.join(MODES)}; nothing was done")
    if not confirm or norm_host(confirm) != norm_host(cfg.hostname):
        got = "nothing" if not confirm else repr(confirm[:80])
        raise ConfirmationRefused(
            f"confirm: got {got}; type the mail hostname {cfg.hostname!r} (mailu.hostnames[0] of stack "
            f"{cfg.name!r}) to confirm the {mode} rollback. Nothing was done on the host."
        )


# --- the plan ------------------------------------------------------------------------------------


@dataclass
class RollbackPlan:
    """What the rollback will do, step by step; `journal_applies` says the host's journal describes
    this same rollback (to resume or re-run it)."""

    mode: Mode
    current: str | None
    from_release: str | None
    to_release: str | None
    restore_backup: str | None
    steps: list[Step]
    journal_applies: bool
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
    if journal is not None and journal.mode not in MODES:
        return (
            f"the rollback journal names mode {journal.mode!r} (run {journal.run}), which this version "
            f"does not know ({', '.join(MODES)}); finish that rollback with the version that started it, "
            "or move the journal aside if it is stale"
        )
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
        and cur in (journal.from_release, journal.to_release)
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


def make_plan(
    cfg: StackConfig,
    mode: Mode,
    releases: list[Release],
    journal: Journal | None,
    restore_backup: str | None = None,
    release: str | None = None,
) -> RollbackPlan:
    """The rollback's steps, in order, from the host's release records and journal (pure)."""
    current = last_good(releases)
    blocked = blocking_journal(journal, mode, current)
    if blocked:
        raise RollbackError(blocked)
    notes: list[str] = []
    frm: Release | None
    to: Release | None
    if mode == "previous-release":
        frm, to, applies = select_releases(releases, journal, release)
        what = "same rollback as run {run} ({state}): its steps are checked and finished"
    else:
        frm, to = current, None
        applies = _journal_applies(journal, "teardown", current, None)
        what = "same teardown as run {run} ({state}): every step is checked again"
    if applies:
        assert journal is not None
        notes.append(what.format(run=journal.run, state="finished" if journal.finished else "interrupted"))
    skip_restore = bool(
        restore_backup
        and applies
        and journal is not None
        and journal.restore_backup == restore_backup
        and RestoreBackup.key in journal.done
    )
    restore = [RestoreBackup(restore_backup, skip_restore)] if restore_backup else []
    project = cfg.mailu.compose_project
    steps: list[Step]
    remove: list[str] = []
    if mode == "previous-release":
        assert frm is not None and to is not None
        stop: list[Step] = [StopContainers(project)] if restore_backup else []
        steps = [
            *stop,
            *restore,
            PutFilesBack(frm, to),
            StartRelease(frm, to),
            CheckRelease(to),
            MarkReleases(frm, to),
        ]
    else:
        remove = teardown_files(cfg, releases)
        steps = [
            ComposeDown(project),
            *restore,
            DnsTeardown(tuple(cfg.mail_domains), cfg.hostname),
            RemoveFiles(tuple(remove)),
            TeardownChecks(),
        ]
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
