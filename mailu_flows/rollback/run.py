"""Running a rollback plan on the host (the caller holds the stack's lock): the journal is written
first, then each step is checked and, unless already done, applied; the journal records every step
finished before the next one starts, so a re-run finishes an interrupted rollback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailu_core.config import StackConfig
from mailu_flows.deploy.releases import Release, adopt_legacy_records, list_releases, read_stack_records
from mailu_flows.dns.provider import Provider
from mailu_flows.host import Host
from mailu_flows.rollback.journal import Journal, now, read_journal, save_journal
from mailu_flows.rollback.plan import Mode, RollbackPlan, make_plan
from mailu_flows.rollback.steps import Log, Restore, RestoreBackup, RollbackContext, Row

__all__ = ["Rollback", "RollbackResult"]


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
    """One rollback of `cfg` on `host`, holding the host lock (the caller takes it). `rows` is what
    was done and checked so far (also when a step fails)."""

    def __init__(
        self,
        cfg: StackConfig,
        host: Host,
        run: str,
        log: Log = lambda _m: None,
        restore: Restore | None = None,
        provider: Callable[[], Provider] | None = None,
        wait_s: float = 30.0,
    ) -> None:
        self.cfg, self.host, self.run_name, self.log = cfg, host, run, log
        self.paths = cfg.paths  # this stack's releases and journal, apart from other stacks in the root
        self.restore, self.provider, self.wait_s = restore, provider, wait_s
        self.rows: list[Row] = []

    def read_plan(
        self, mode: Mode, restore_backup: str | None, release: str | None = None, *, adopt: bool = False
    ) -> tuple[RollbackPlan, list[Release], Journal | None]:
        """The plan from the host's records, with the releases and the journal it was made from.
        `adopt` (only under the stack's lock): first move this stack's records from the legacy shared
        place; without it legacy records are read in place, so the plan shown before the lock is the
        plan run under it."""
        if adopt:
            adopt_legacy_records(self.host, self.cfg, self.log)
            releases = list_releases(self.host, self.paths)
            journal = read_journal(self.host, self.paths.journal_file)
        else:
            records = read_stack_records(self.host, self.cfg)
            releases, journal = records.releases, read_journal(self.host, records.journal_file)
        return make_plan(self.cfg, mode, releases, journal, restore_backup, release), releases, journal

    def execute(self, plan: RollbackPlan, releases: list[Release], journal: Journal | None) -> RollbackResult:
        """Run `plan` (made from `releases` and `journal`, as `read_plan` returns them): check each step
        and apply the ones not done; the journal records each finished step before the next starts."""
        if plan.journal_applies and journal is not None:
            jr = journal
            jr.finished = None
        else:
            jr = Journal(
                plan.mode, plan.from_release, plan.to_release, plan.restore_backup, self.run_name, now()
            )
        if jr.restore_backup != plan.restore_backup and plan.restore_backup:
            jr.restore_backup = plan.restore_backup
            jr.done = [d for d in jr.done if d != RestoreBackup.key]
        save_journal(self.host, self.paths.journal_file, jr)
        ctx = RollbackContext(
            self.cfg,
            self.host,
            self.run_name,
            journal=jr,
            releases=releases,
            log=self.log,
            restore=self.restore,
            provider_factory=self.provider,
            wait_s=self.wait_s,
            rows=self.rows,
        )
        for step in plan.steps:
            if step.check(ctx):
                step.already(ctx)
            else:
                step.apply(ctx)
            if step.key not in jr.done:
                jr.done.append(step.key)
                save_journal(self.host, self.paths.journal_file, jr)
        jr.finished = now()
        save_journal(self.host, self.paths.journal_file, jr)
        return RollbackResult(plan.mode, plan.from_release, plan.to_release, self.rows, plan.journal_applies)
