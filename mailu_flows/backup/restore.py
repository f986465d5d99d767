"""Restoring a backup into the stack's volumes (used by the rollback flow).

Order, each step a precondition of the next: take the host lock; verify the chosen backup (its
signature, id and stack first, then sha256, decryption, tar read-through, listings) and refuse it if
anything fails; refuse while a running container uses a target volume (the stack must be stopped);
take a safety backup of the current volumes; then empty each volume and extract the archive into it,
comparing every file's hash with the archive. A managed PostgreSQL's volume is rebuilt from the
backup's `pg_dump` instead (backup/postgres.py). The stack files are not restored here: a rollback
to a release puts them back.

The volumes restored into come from the stack config (`backup.volumes`), never from the manifest:
a backup can only be restored into volumes this stack declares, mounted by name (`type=volume`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailu_core.backup import PG_DUMP, CheckResult
from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_flows import dockercmd
from mailu_flows.backup.destination import Destination
from mailu_flows.backup.engine import clean_host_leftovers, helper_image, missing_volumes, run_backup
from mailu_flows.backup.gpg import decryption_keyring
from mailu_flows.backup.postgres import db_password_file, empty_volume
from mailu_flows.backup.signing import BackupNotAuthentic, authentic_manifest
from mailu_flows.backup.verify import drill_pg_dump, read_archive, verify_backup
from mailu_flows.blocks.gpg import GpgBackupPrivateKey, GpgBackupPublicKey
from mailu_flows.host import Host
from mailu_flows.remote import HostLock


class RestoreRefused(MailuFlowsError, RuntimeError):
    """The restore did not start: the backup failed verification, or the stack is running."""


class RestoreFailed(MailuFlowsError, RuntimeError):
    """A volume could not be restored exactly; the safety backup holds the previous state."""


@dataclass
class RestoreResult:
    backup_id: str
    safety_backup_id: str | None
    volumes: list[str]
    checks: list[CheckResult] = field(default_factory=list)


def volumes_in_use(host: Host, volumes: Sequence[str]) -> dict[str, list[str]]:
    """Running containers (names) per volume."""
    busy: dict[str, list[str]] = {}
    for volume in volumes:
        cmd = dockercmd.ps(f"volume={dockercmd.name(volume, 'Docker volume')}", format="{{.Names}}")
        names = host.run(cmd).text().split()
        if names:
            busy[volume] = names
    return busy


def restore_backup(
    host: Host,
    config: StackConfig,
    destination: Destination,
    public_key: GpgBackupPublicKey,
    private_key: GpgBackupPrivateKey,
    signing_key: bytes,
    backup_id: str,
    *,
    holder: str,
    volumes: Sequence[str] | None = None,
    lock_wait_s: float = 0.0,
    safety_backup: bool = True,
    lock_held: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> RestoreResult:
    """Restore `backup_id` into the stack's volumes (every volume of `backup.volumes`, or `volumes`,
    which must be among them).

    `lock_held`: the caller (the rollback flow) already holds the host lock over this connection's
    host; a second `flock` on it would only find the host busy."""
    declared = list(config.backup.volumes)
    undeclared = [v for v in volumes or () if v not in declared]
    if undeclared:
        raise RestoreRefused(
            f"volumes: {', '.join(undeclared)} not in backup.volumes of stack {config.name} "
            f"({', '.join(declared)}); a restore writes only into volumes the stack config declares"
        )
    lock = HostLock(host, config.paths.lock_file, holder)
    if not lock_held:
        lock.acquire(wait_s=lock_wait_s)
    try:
        record = verify_backup(
            host, config, destination, private_key, signing_key, backup_id=backup_id, drill=False,
            check_age=False, write_record=False,
        )  # fmt: skip
        failed = [row.message() for row in record.checks if not row.ok]
        if failed:
            raise RestoreRefused(
                f"backup {backup_id} fails verification, not restoring it: " + "; ".join(failed)
            )
        try:  # read again, authenticated: what was verified is what is restored
            manifest = authentic_manifest(
                destination, backup_id, signing_key, config.name, record.verified_at
            )
        except BackupNotAuthentic as exc:
            raise RestoreRefused(str(exc)) from None
        targets = list(volumes) if volumes is not None else declared
        unknown = [v for v in targets if manifest.archive(v) is None]
        if unknown:
            raise RestoreRefused(f"backup {backup_id} has no archive of {', '.join(unknown)}")
        for leftover in clean_host_leftovers(host, config):
            log(f"WARNING a run that died left {leftover}; cleaned up")
        busy = volumes_in_use(host, targets)
        if busy:
            listed = "; ".join(f"{v} is used by {', '.join(c)}" for v, c in busy.items())
            raise RestoreRefused(f"stop the stack before restoring: {listed}")
        safety_id = None
        present = [v for v in targets if v not in missing_volumes(host, targets)]
        if safety_backup and present:
            outcome = run_backup(
                host, config, destination, public_key, signing_key, volumes=present, tag="safety", log=log
            )
            safety_id = outcome.manifest.backup_id
            log(f"safety backup {safety_id} of {', '.join(present)}")
        result = RestoreResult(backup_id, safety_id, targets)
        image = helper_image(config)
        dump = manifest.archive(PG_DUMP)
        db = config.database
        with decryption_keyring(private_key) as keyring:
            for volume in targets:
                archive = manifest.archive(volume)
                assert archive is not None
                if volume == config.volumes.postgres and dump is not None and db.flavor == "postgresql":
                    # the dump is consistent; the live copy of a running server's files is not
                    empty_volume(host, config, volume)
                    read = drill_pg_dump(
                        host, config, keyring, destination, backup_id, dump, volume,
                        password_file=db_password_file(config), check="restore",
                    )  # fmt: skip
                    log(f"{volume}: rebuilt from the database dump (pg_dump), not from its live file copy")
                else:
                    if volume == config.volumes.postgres:
                        log(f"WARNING {volume}: no database dump in the backup; restoring its live file copy")
                    read = read_archive(
                        host, keyring, destination, backup_id, archive, restore_into=volume, image=image,
                        drill_check="restore",
                    )  # fmt: skip
                result.checks += read.rows
                bad = [row.message() for row in read.rows if not row.ok]
                if bad:
                    raise RestoreFailed(
                        f"restoring {volume} from {backup_id} failed: {'; '.join(bad)}; the state before the "
                        f"restore is in safety backup {safety_id}"
                    )
                log(f"restored {volume}")
        return result
    finally:
        lock.release()
