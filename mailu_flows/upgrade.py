"""A guarded Mailu upgrade, as plain functions over the flow's one SSH connection (the Prefect flow in
flows/upgrade.py wraps it; nothing here knows Prefect).

The steps, each a precondition of the next:

1. refuse before anything when the upgrade could not be undone: the host runs other images than the
   config (the return would not land where the operator thinks), no release yet, or admin's database
   outside the stack's volumes (a shared PostgreSQL);
2. a backup of every volume, then its verification: nothing is deployed from an unverified backup;
3. the deploy (`run_deploy`) of the config pinned to the new digests, with its post-deploy checks;
4. the mail canary, when the stack has one.

On a failure after the deploy started, the stack goes back to the release it ran before. Mailu's admin
migrates its database when it starts, and older code must not run on a newer schema: when admin's
image changed, admin (and a managed PostgreSQL) is stopped, its volumes are restored from the
pre-upgrade backup, and only then does the previous config's deploy start the old images again. If
that restore fails, admin stays stopped and the run says so (a later deploy of the new release, or a
restore, brings it back); it never starts old code on the migrated data. Volumes are never removed.

run_deploy returns to the previous release on its own when its checks fail, so the old admin may run
for a moment on migrated data before it is stopped here; Mailu's admin refuses to start on a schema
it does not know (`flask db upgrade` finds no such revision), so that moment writes nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_core.services import SERVICES
from mailu_core.upgrade import UpgradePlan, mailu_images
from mailu_flows.deploy.engine import DeployResult, PreflightFailed, compose_args
from mailu_flows.deploy.releases import Release, last_good, list_releases, save_release
from mailu_flows.host import Host

__all__ = [
    "ConfirmationRefused",
    "Row",
    "Upgrade",
    "UpgradeFailed",
    "UpgradeRefused",
    "UpgradeResult",
    "UpgradeSteps",
    "admin_data_volumes",
    "check_confirmation",
    "services_mounting",
]

Log = Callable[[str], None]


class UpgradeRefused(MailuFlowsError, RuntimeError):
    """The upgrade did not start (or stopped before its deploy): nothing on the stack changed."""


class ConfirmationRefused(UpgradeRefused, ValueError):
    """The type-to-confirm parameter does not name the stack's mail hostname: nothing was touched."""


class UpgradeFailed(MailuFlowsError, RuntimeError):
    """The upgrade failed after its deploy started; the message says where the stack is now."""


def _norm_host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def check_confirmation(cfg: StackConfig, confirm: str | None, tag: str) -> None:
    """Type-to-confirm: `confirm` must be the mail hostname (DNS case and a trailing dot aside)."""
    if not confirm or _norm_host(confirm) != _norm_host(cfg.hostname):
        got = "nothing" if not confirm else repr(confirm[:80])
        raise ConfirmationRefused(
            f"confirm: got {got}; type the mail hostname {cfg.hostname!r} (mailu.hostnames[0] of stack "
            f"{cfg.name!r}) to confirm the upgrade to {tag}. Nothing was done on the host."
        )


def admin_data_volumes(cfg: StackConfig) -> tuple[list[str], str | None]:
    """The volumes holding admin's data (what a return to older images restores), or why they cannot
    be restored from a backup of the stack."""
    db = cfg.database
    if db.flavor == "postgresql" and not db.managed:
        return [], (
            "admin's database is a shared PostgreSQL outside the stack: a failed upgrade could not put its "
            "schema back. Back that database up yourself, then upgrade with the deploy flow"
        )
    wanted = [cfg.volumes.admin]
    if db.flavor == "postgresql":
        wanted.append(cfg.volumes.postgres)
    missing = [v for v in wanted if v not in cfg.backup.volumes]
    if db.flavor == "postgresql" and missing == [cfg.volumes.admin]:
        return [cfg.volumes.postgres], None  # admin's volume then holds no database, only its instance id
    if missing:
        return [], (
            f"backup.volumes lacks {', '.join(missing)} (admin's data): the pre-upgrade backup could not "
            "restore it after a failed upgrade; add it to backup.volumes"
        )
    return wanted, None


def services_mounting(cfg: StackConfig, volumes: list[str]) -> list[str]:
    """The services of the stack whose containers mount any of `volumes` (to stop them for a restore)."""
    names = cfg.volumes.model_dump()
    out = []
    for spec in SERVICES:
        if spec.runs(cfg) and any(names.get(m.volume) in volumes for m in spec.mounts):
            out.append(spec.name)
    return out


@dataclass(frozen=True)
class UpgradeSteps:
    """What the upgrade does through the other engines, wired by the flow on its connection (and by
    the unit tests with fakes).

    backup: take a backup of every volume, return its id. verify: the failed checks of that backup
    (empty: it restores). deploy: `run_deploy` of a config on the host. restore: restore the named
    volumes from a backup (the stack's users of them stopped), return what was done. canary: the
    failed steps of one mail round trip through a config's stack (empty: mail flows); None: the stack
    has no canary, or the run turned it off.
    """

    backup: Callable[[], str]
    verify: Callable[[str], list[str]]
    deploy: Callable[[StackConfig], DeployResult]
    restore: Callable[[str, list[str]], str]
    canary: Callable[[StackConfig], list[str]] | None = None


@dataclass(frozen=True)
class Row:
    step: str
    result: str  # done | ok | skipped | FAILED | refused
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"step": self.step, "result": self.result, "detail": self.detail}


@dataclass
class UpgradeResult:
    tag: str
    backup_id: str | None
    release_id: str | None
    changed: bool
    rows: list[Row] = field(default_factory=list)

    def summary(self) -> str:
        if not self.changed:
            return f"nothing to do: the stack already runs {self.tag}'s images"
        return f"upgraded to {self.tag}: release {self.release_id}; pre-upgrade backup {self.backup_id}"


class Upgrade:
    """One upgrade of the stack from `plan`'s old config (the one the host runs) to its new one."""

    def __init__(
        self,
        current: StackConfig,
        plan: UpgradePlan,
        tag: str,
        host: Host,
        steps: UpgradeSteps,
        log: Log = lambda _m: None,
    ) -> None:
        self.current, self.plan, self.tag, self.host, self.steps, self.log = (
            current,
            plan,
            tag,
            host,
            steps,
            log,
        )
        self.rows: list[Row] = []

    def row(self, step: str, result: str, detail: str) -> None:
        self.rows.append(Row(step, result, detail))
        self.log(f"{step}: {result} ({detail})")

    # --- before anything -----------------------------------------------------------------------

    def preconditions(self) -> list[str]:
        """The volumes a return restores (empty when admin's image does not change); refuses, with the
        reason, an upgrade that could not be undone. Reads the host's release records only."""
        restore: list[str] = []
        if self.plan.admin_changes:
            restore, why = admin_data_volumes(self.current)
            if why:
                raise UpgradeRefused(f"upgrade to {self.tag} refused, nothing was done: {why}")
        releases = list_releases(self.host, self.current.paths)
        running = last_good(releases)
        if running is None:
            raise UpgradeRefused(
                f"upgrade to {self.tag} refused, nothing was done: stack {self.current.name} has no good "
                "release on the host to return to; deploy the config first"
            )
        differ = sorted(
            service
            for service, image in mailu_images(self.current).items()
            if running.images.get(service) != image
        )
        if differ:
            raise UpgradeRefused(
                f"upgrade to {self.tag} refused, nothing was done: the host runs release {running.id}, whose "
                f"images of {', '.join(differ)} are not the config's; deploy the config first, so that a "
                "failed upgrade returns to the release the config describes"
            )
        restores = ", ".join(restore) if restore else "no volume (admin's image does not change)"
        self.row(
            "preconditions",
            "ok",
            f"running release {running.id} is the config's; a return restores {restores}",
        )
        return restore

    # --- the upgrade ---------------------------------------------------------------------------

    def run(self) -> UpgradeResult:
        """Back up, verify, deploy, check, canary; on a failure after the deploy started, return."""
        if not any(change.changed for change in self.plan.changes):
            self.row("plan", "skipped", f"every Mailu image already is {self.tag}'s")
            return UpgradeResult(self.tag, None, None, False, self.rows)
        restore = self.preconditions()
        backup_id = self.steps.backup()
        self.row("backup", "done", f"{backup_id} (every volume and the stack files)")
        failed = self.steps.verify(backup_id)
        if failed:
            self.row("verify backup", "FAILED", "; ".join(failed))
            raise UpgradeRefused(
                f"upgrade to {self.tag} stopped before its deploy, nothing on the stack changed: the "
                f"pre-upgrade backup {backup_id} failed verification: {'; '.join(failed)}"
            )
        self.row("verify backup", "ok", f"{backup_id} decrypts, reads and restores")
        try:
            result = self.steps.deploy(self.plan.config)
        except PreflightFailed as exc:
            self.row("deploy", "refused", str(exc))
            raise UpgradeRefused(
                f"upgrade to {self.tag}: the deploy's preflight refused it, nothing on the stack "
                f"changed: {exc}"
            ) from None
        except Exception as exc:
            self.row("deploy", "FAILED", _short(exc))
            self.return_to_previous(f"the deploy failed: {_short(exc)}", backup_id, restore, None)
        self.row("deploy", "done", f"release {result.release_id}: {result.summary}")
        failed_checks = [c for c in result.checks if not c.ok and c.blocking]
        if failed_checks:  # run_deploy raises on these; a result that carries them is not a good release
            reason = "; ".join(f"{c.name}: {c.detail}" for c in failed_checks)
            self.return_to_previous(
                f"post-deploy checks failed: {reason}", backup_id, restore, result.release_id
            )
        self.row("post-deploy checks", "ok", f"{len(result.checks)} check(s) passed")
        if self.steps.canary is None:
            self.row("mail canary", "skipped", "no canary on this stack, or turned off for this run")
        else:
            try:
                canary_failed = self.steps.canary(self.plan.config)
            except Exception as exc:
                canary_failed = [f"the canary could not run: {_short(exc)}"]
            if canary_failed:
                self.row("mail canary", "FAILED", "; ".join(canary_failed))
                self.return_to_previous(
                    "the mail canary failed: " + "; ".join(canary_failed),
                    backup_id,
                    restore,
                    result.release_id,
                )
            self.row("mail canary", "ok", "a probe each way was delivered and judged")
        return UpgradeResult(self.tag, backup_id, result.release_id, True, self.rows)

    # --- the return ----------------------------------------------------------------------------

    def return_to_previous(
        self, reason: str, backup_id: str, restore: list[str], failed_release: str | None
    ) -> NoReturn:
        """Go back to the previous config's release, admin's data first; always raises UpgradeFailed."""
        why = f"upgrade to {self.tag} failed ({reason})"
        restored = "admin's image did not change: no data restored"
        if restore:
            stop = services_mounting(self.current, restore)
            try:
                self._stop(stop)
                self.row("stop", "done", f"{', '.join(stop)} stopped (volumes kept)")
                restored = self.steps.restore(backup_id, restore)
            except Exception as exc:
                self.row("restore admin's data", "FAILED", _short(exc))
                stays = f"{', '.join(stop)} {'stays' if len(stop) == 1 else 'stay'} stopped"
                raise UpgradeFailed(
                    f"{why}; restoring admin's data ({', '.join(restore)}) from the pre-upgrade backup "
                    f"{backup_id} FAILED: {_short(exc)}. {stays} so that the older "
                    f"images never run on data the newer admin migrated. Either restore {backup_id} into "
                    f"{', '.join(restore)} (rollback flow, restore_backup) and deploy the config, or deploy "
                    f"the {self.tag} images again"
                ) from None
            self.row("restore admin's data", "done", restored)
        try:
            back = self.steps.deploy(self.current)
        except Exception as exc:
            self.row("return to the previous release", "FAILED", _short(exc))
            raise UpgradeFailed(
                f"{why}; {restored}; returning to the previous release ALSO failed: {_short(exc)}"
            ) from None
        self.row(
            "return to the previous release",
            "done",
            f"release {back.release_id}: the images it ran before the upgrade, checks passed",
        )
        if failed_release is not None:
            self._mark_rolled_back(failed_release, reason)
        raise UpgradeFailed(
            f"{why}; the stack is back on the previous release ({back.release_id}), healthy; {restored}"
        )

    def _stop(self, services: list[str]) -> None:
        compose_file = str(self.current.host.resolve(self.current.host.compose_file))
        command = shlex.join([*compose_args(self.current), "stop", "-t", "30", *services])
        self.host.run(f"[ ! -f {shlex.quote(compose_file)} ] || {command}", timeout=600)

    def _mark_rolled_back(self, release_id: str, reason: str) -> None:
        """The upgrade's release passed the deploy's checks (so it was saved good) but the upgrade
        failed after: mark it, so that a previous-release rollback never picks it."""
        releases: list[Release] = list_releases(self.host, self.current.paths)
        failed = next((r for r in releases if r.id == release_id), None)
        if failed is None or failed.status != "good":
            return
        failed.status = "rolled-back"
        failed.note = f"upgrade to {self.tag} failed after this release: {reason[:300]}"
        save_release(self.host, self.current.paths, failed)
        self.row("mark release", "done", f"{release_id} -> rolled-back")


def _short(exc: BaseException, limit: int = 600) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
