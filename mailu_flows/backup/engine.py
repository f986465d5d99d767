"""Making a backup: per source, `tar` in a throwaway read-only container on the host, streamed
over the flow's SSH connection into gpg and into the destination, checked on the way.

Consistency (documented choice): Redis is asked to `SAVE` first when its container runs, so the
redis volume holds a fresh dump; Maildir and Mailu's SQLite are copied live (Mailu's maintainers
call that safe: Dovecot and SQLite lock their files), unless `pause_services` names services to
`docker pause` while the volumes are read. A managed PostgreSQL is dumped with `pg_dump -Fc`.

A file that changes while a live copy reads it (rspamd rewrites its state files at any moment) is
not an error: GNU tar still writes a complete archive and exits 1. The backup keeps that copy,
lists the files in the manifest (`changed_while_read`) and in `consistency`, and logs a warning,
so a possibly torn file is never silent; pausing the service (`pause_services`) avoids it. Any
other tar complaint fails the backup.

Volumes are mounted with `--mount type=volume`, which takes only a volume name: even a hostile
name could never become a bind mount of a host path (`mailu_flows.dockercmd` spells every command
line and checks its operands).

Each backup's manifest is signed with the signing-key block's key (`manifest.sig`); retention
considers only signed backups of this stack, so files planted in the destination are never
counted as backups and never push real ones out.

The helper containers run with `--network none` and `--log-driver none`: the default json-file
log driver would otherwise write the plaintext tar (the container's stdout) to the host's disk.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath

from mailu_core.backup import (
    PG_DUMP,
    STACK_FILES,
    ArchiveEntry,
    ArchiveKind,
    BackupInfo,
    Manifest,
    RetentionPlan,
    archive_file_name,
    backup_id_for,
    select_retention,
    sign_manifest,
)
from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_flows import dockercmd
from mailu_flows.backup.destination import Destination, Staging
from mailu_flows.backup.gpg import CipherStats, Keyring, encrypt_stream, encryption_keyring
from mailu_flows.backup.signing import BackupNotAuthentic, authentic_manifest
from mailu_flows.backup.stream import CHUNK, TarInspector, stream_out
from mailu_flows.blocks.gpg import GpgBackupPublicKey
from mailu_flows.host import Host
from mailu_flows.remote import command_label

Log = Callable[[str], None]


class BackupError(MailuFlowsError, RuntimeError):
    """A backup could not be made; nothing that looks like a backup was left behind."""


@dataclass(frozen=True)
class Source:
    """One thing to archive: a volume, the stack's files, or a database dump."""

    name: str
    kind: ArchiveKind
    command: str


@dataclass
class BackupOutcome:
    manifest: Manifest
    removed_partials: list[str] = field(default_factory=list)
    seconds: float = 0.0


def helper_image(config: StackConfig) -> str:
    """The image whose `tar`/`sh` the helper containers use: the stack's pinned Redis image (a full
    userland with GNU tar, and always present on the host because the stack runs it)."""
    return config.images.redis


def helper_run(image: str, name: str, mounts: Sequence[str], entrypoint: str, args: Sequence[str],
               *, stdin: bool = False) -> str:  # fmt: skip
    """`docker run` of a throwaway helper (`dockercmd.helper_run`), as one shell command: helpers run
    as streams over a channel."""
    return shlex.join(dockercmd.helper_run(image, name, mounts, entrypoint, args, stdin=stdin))


def volume_source(volume: str, image: str, name: str) -> Source:
    command = helper_run(
        image, name, [dockercmd.volume_mount(volume, "/v", read_only=True)], "tar",
        ["-C", "/v", "--numeric-owner", "-cf", "-", "."],
    )  # fmt: skip
    return Source(volume, "volume", command)


OUTSIDE_ROOT = "host-root"  # archive prefix of files the config places outside host.stack_root


def stack_files_source(config: StackConfig, image: str, name: str) -> Source:
    """The rendered compose/env files, Traefik's Mailu file, the monitoring files, the secrets and
    certificates directories (those present on the host).

    Paths under the stack root are archived relative to it (`compose/mailu.yml`). A path the config
    makes absolute elsewhere (Traefik's directory in /etc/traefik, secrets in /etc/mailu) is archived
    as `host-root/<its absolute path>`: its directory is mounted read-only at that place in the helper,
    so it is never silently left out."""
    from mailu_core.render import render_stack

    layout = config.host
    root = PurePosixPath(layout.stack_root)
    files = [layout.resolve(rel) for rel in sorted(render_stack(config).files)]
    dirs = [layout.resolve(layout.secrets_dir)]
    if layout.certs_dir is not None:
        dirs.append(layout.resolve(layout.certs_dir))
    inside: list[str] = []
    outside: list[str] = []
    mounts = [dockercmd.bind_mount(str(root), "/s")]
    mounted: set[PurePosixPath] = set()
    for path, is_dir in [*((f, False) for f in files), *((d, True) for d in dirs)]:
        if path.is_relative_to(root):
            inside.append(str(path.relative_to(root)))
            continue
        directory = path if is_dir else path.parent
        if directory not in mounted:
            mounted.add(directory)
            mounts.append(dockercmd.bind_mount(str(directory), f"/{OUTSIDE_ROOT}{directory}"))
        outside.append(f"{OUTSIDE_ROOT}{path}")
    # keep the paths that exist: relative to /s first; after `--`, relative to / (tar's `-C /`)
    script = (
        'cd /s && base= && for p in "$@"; do '
        'if [ "$p" = -- ]; then base=/; set -- "$@" -C /; elif [ -e "$base$p" ]; then set -- "$@" "$p"; fi; '
        "shift; done; "
        'exec tar --numeric-owner -cf - -T /dev/null "$@"'
    )
    args = [*inside, *(["--", *outside] if outside else [])]
    command = helper_run(image, name, mounts, "sh", ["-c", script, "stack-files", *args])
    return Source(STACK_FILES, "stack-files", command)


def _compose_container(host: Host, config: StackConfig, service: str) -> str | None:
    argv = dockercmd.ps(
        dockercmd.project_filter(config.mailu.compose_project), dockercmd.service_filter(service)
    )
    out = host.run(argv).text()
    ids = out.split()
    return ids[0] if ids else None


def missing_volumes(host: Host, volumes: Sequence[str]) -> list[str]:
    """Volumes that do not exist (`docker run -v` would silently create an empty one)."""
    existing = set(host.run(dockercmd.volume_ls()).text().split())
    return [v for v in volumes if v not in existing]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def archive_source(host: Host, keyring: Keyring, staging: Staging, source: Source) -> ArchiveEntry:
    """Stream one source through gpg into the staging area; the tar is checked as it passes."""
    file = archive_file_name(source.name, source.kind)
    inspector = TarInspector() if source.kind != "pg-dump" else None
    read_fd, write_fd = os.pipe()
    outcome: dict[str, CipherStats | BaseException] = {}
    writer = staging.open_writer(file)

    def encrypt() -> None:
        reader = os.fdopen(read_fd, "rb", buffering=CHUNK)
        try:
            outcome["stats"] = encrypt_stream(keyring, reader, writer)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc
        finally:
            reader.close()  # a dead gpg must turn our writes into EPIPE, not a hang

    thread = threading.Thread(target=encrypt, name=f"gpg-{source.name}", daemon=True)
    thread.start()
    plain = 0

    def sink(data: bytes) -> None:
        nonlocal plain
        plain += len(data)
        _write_all(write_fd, data)
        if inspector is not None:
            inspector.feed(data)

    result = None
    try:
        result = stream_out(host, source.command, sink)
    except (OSError, EOFError) as exc:
        raise BackupError(f"{source.name}: the stream broke: {exc}") from None
    finally:
        os.close(write_fd)
        report = inspector.close() if inspector is not None else None
        thread.join()
        writer.close()
    changed: list[str] = []
    if result.returncode == 1 and source.kind != "pg-dump":
        changed = changed_while_read(result.stderr)
    if result.returncode != 0 and not changed:
        why = "the SSH connection was lost" if result.returncode == -1 else f"exited {result.returncode}"
        raise BackupError(f"{source.name}: `{command_label(result.command)}` {why}: {result.stderr[-1500:]}")
    if isinstance(outcome.get("error"), BaseException):
        raise BackupError(f"{source.name}: encryption failed: {outcome['error']}")
    stats = outcome.get("stats")
    assert isinstance(stats, CipherStats)
    if report is not None:
        if report.error or not report.ends_with_marker:
            raise BackupError(f"{source.name}: the tar stream is not a complete archive: {report.error}")
        digest = report.listing
        entries, files, listing = digest.entries, digest.file_count, digest.hexdigest()
    else:
        if plain == 0:
            raise BackupError(f"{source.name}: the dump is empty")
        entries, files, listing = 0, 0, ""
    return ArchiveEntry(
        name=source.name,
        kind=source.kind,
        file=file,
        plain_bytes=plain,
        entries=entries,
        file_count=files,
        listing_sha256=listing,
        cipher_bytes=stats.bytes,
        cipher_sha256=stats.sha256,
        changed_while_read=changed,
    )


_TAR_CHANGED = re.compile(
    r"^tar: (?:\./)?(?P<path>.+?): (?:file changed as we read it|File removed before we read it"
    r"|File shrank by \d+ bytes; padding with zeros)$"
)


_TAR_SOCKET = re.compile(r"^tar: .+: socket ignored$")  # a warning only: a socket holds no data


def changed_while_read(stderr: str) -> list[str]:
    """The files GNU tar reports as changed under it, if that is ALL it reports besides skipped
    sockets (exit status 1); otherwise [] (the caller then treats the exit status as a failure)."""
    lines = [line for line in stderr.splitlines() if line.strip() and not _TAR_SOCKET.match(line)]
    found = [_TAR_CHANGED.match(line) for line in lines]
    if not lines or not all(found):
        return []
    return sorted({m["path"] for m in found if m is not None})


def _new_backup_id(destination: Destination, stack: str, tag: str | None) -> tuple[str, datetime]:
    existing = set(destination.list_backups())
    while True:
        now = datetime.now(UTC).replace(microsecond=0)
        backup_id = backup_id_for(stack, now, tag)
        if backup_id not in existing:
            return backup_id, now
        time.sleep(1.05 - datetime.now(UTC).microsecond / 1e6)


def run_backup(
    host: Host,
    config: StackConfig,
    destination: Destination,
    public_key: GpgBackupPublicKey,
    signing_key: bytes,
    *,
    volumes: Sequence[str] | None = None,
    include_stack_files: bool = True,
    tag: str | None = None,
    pause_services: Sequence[str] = (),
    log: Log = lambda _msg: None,
    warn: Log | None = None,
) -> BackupOutcome:
    """Make one complete backup or none: archives land under a temporary name, renamed at the end.
    The manifest is signed with `signing_key`; `warn` gets what an operator must see (default: log)."""
    warn = warn or log
    started = time.monotonic()
    targets = list(volumes if volumes is not None else config.backup.volumes)
    image = helper_image(config)
    with destination.lock():
        removed = destination.clean_partials()
        if removed:
            log(f"removed leftovers of interrupted runs: {', '.join(removed)}")
        for leftover in clean_host_leftovers(host, config):
            warn(f"WARNING a run that died left {leftover}; cleaned up")
        absent = missing_volumes(host, targets)
        if absent:
            raise BackupError(
                f"volume(s) {', '.join(absent)} do not exist on {host.label}; "
                "backup.volumes lists them (is the stack deployed?)"
            )
        consistency = _prepare_consistency(host, config, targets, log)
        run_tag = uuid.uuid4().hex[:8]
        sources = [volume_source(v, image, f"mailu-backup-{run_tag}-{i}") for i, v in enumerate(targets)]
        if include_stack_files:
            sources.append(stack_files_source(config, image, f"mailu-backup-{run_tag}-files"))
            consistency.append("stack files: rendered compose/env, Traefik file and secrets directory")
        pg = _pg_dump_source(host, config) if volumes is None else None
        if pg is not None:
            sources.append(pg)
            consistency.append("postgresql: pg_dump -Fc (a consistent snapshot of the database)")
        backup_id, created = _new_backup_id(destination, config.name, tag)
        staging = destination.begin(backup_id)
        try:
            with encryption_keyring(public_key) as keyring:
                paused = _pause(host, config, pause_services, log)
                try:
                    entries = []
                    for source in sources:
                        began = time.monotonic()
                        entry = archive_source(host, keyring, staging, source)
                        log(
                            f"{source.name}: {entry.plain_bytes} bytes, {entry.file_count} files, "
                            f"{time.monotonic() - began:.1f}s"
                        )
                        if entry.changed_while_read:
                            note = live_copy_note(entry)
                            consistency.append(note)
                            warn(f"WARNING {note}")
                        entries.append(entry)
                finally:
                    _unpause(host, paused)
            manifest = Manifest(
                backup_id=backup_id,
                stack=config.name,
                tag=tag,
                created=created,
                finished=datetime.now(UTC),
                mailu_version=config.mailu.version,
                images={k: v for k, v in config.images.model_dump().items() if v},
                key_fingerprint=public_key.fingerprint,
                consistency=consistency,
                archives=entries,
            )
            manifest_bytes = manifest.model_dump_json(indent=2).encode()
            staging.commit(manifest_bytes, sign_manifest(signing_key, manifest_bytes))
        except BaseException:
            staging.abort()
            _cleanup_containers(host, run_tag)
            raise
    return BackupOutcome(manifest, removed, time.monotonic() - started)


def live_copy_note(entry: ArchiveEntry) -> str:
    """The manifest's and the log's words for files that changed while a live copy read them."""
    shown = ", ".join(entry.changed_while_read[:5]) + (" …" if len(entry.changed_while_read) > 5 else "")
    return (
        f"{entry.name}: {len(entry.changed_while_read)} file(s) changed while being copied live ({shown}); "
        "their copies may be torn. The rest of the volume is intact; pause the service that writes them "
        "(pause_services) for a consistent copy"
    )


def _prepare_consistency(host: Host, config: StackConfig, targets: Sequence[str], log: Log) -> list[str]:
    notes = [f"{v}: copied live from a read-only mount" for v in targets]
    if config.volumes.redis in targets:
        redis = _compose_container(host, config, "redis")
        if redis is None:
            notes.append("redis: no running redis container; its volume copied as it is on disk")
        else:
            host.run(dockercmd.exec_(redis, ["redis-cli", "SAVE"]), timeout=300)
            notes.append("redis: SAVE completed before the copy (dump.rdb is current)")
            log("redis: SAVE done")
    return notes


def _pg_dump_source(host: Host, config: StackConfig) -> Source | None:
    db = config.database
    if db.flavor != "postgresql":
        return None
    if not db.managed:
        # TODO(issue 5): dump a shared PostgreSQL server (needs a client container on the internal
        # network and the password from the mailu-secrets block).
        return None
    from mailu_flows.backup.postgres import PG_SERVICE, dump_command

    container = _compose_container(host, config, PG_SERVICE)  # the service; db.host is its network alias
    if container is None:
        raise BackupError(
            f"the database is a managed postgresql but no running {PG_SERVICE!r} container was found "
            f"in compose project {config.mailu.compose_project!r}"
        )
    return Source(PG_DUMP, "pg-dump", dump_command(container, config))


def _pause(host: Host, config: StackConfig, services: Sequence[str], log: Log) -> list[str]:
    paused = []
    for service in services:
        container = _compose_container(host, config, service)
        if container is not None:
            host.run(dockercmd.pause(container))
            paused.append(container)
            log(f"paused {service} while the volumes are read")
    return paused


def _unpause(host: Host, containers: Sequence[str]) -> None:
    for container in containers:
        host.run(dockercmd.unpause(container), check=False)


def clean_host_leftovers(host: Host, config: StackConfig) -> list[str]:
    """Undo what a backup or restore of this stack killed midway left on the host (its `finally` never
    ran): stack containers it paused, and throwaway PostgreSQL servers of a restore. Called with the
    stack's host lock held, so no live backup or restore of this stack owns any of them. (Helper
    containers end by themselves: their SSH channel is gone, so their pipes are.)"""
    from mailu_flows.backup.postgres import ROLE_LABEL, STACK_LABEL

    found: list[str] = []
    project = dockercmd.project_filter(config.mailu.compose_project)
    paused = host.run(dockercmd.ps(project, "status=paused")).text().split()
    for container in paused:
        host.run(dockercmd.unpause(container), check=False)
        found.append(f"paused container {container}")
    stack, role = (
        dockercmd.label_filter(STACK_LABEL, config.name),
        dockercmd.label_filter(ROLE_LABEL, "restore"),
    )
    servers = host.run(dockercmd.ps(stack, role, all_states=True)).text().split()
    for container in servers:
        host.run(dockercmd.rm(container), check=False)
        found.append(f"throwaway PostgreSQL {container}")
    return found


def _cleanup_containers(host: Host, run_tag: str) -> None:
    """Best effort: stop helper containers of a failed run (the connection may be gone)."""
    try:
        ids = host.run(dockercmd.ps(f"name=mailu-backup-{run_tag}-"), check=False).text().split()
        if ids:
            host.run(dockercmd.rm(*ids), check=False)
    except Exception:  # a dead transport raises paramiko's own types, or AttributeError
        pass


def prune(
    destination: Destination,
    config: StackConfig,
    signing_key: bytes,
    log: Log = lambda _msg: None,
    now: datetime | None = None,
) -> RetentionPlan:
    """Apply retention (last N daily + M weekly; never the newest or the newest verified backup).

    Only signed backups of this stack, not dated in the future, take part: anything else in the
    destination is neither counted nor deleted, and is reported (`ignored`)."""
    now = now or datetime.now(UTC)
    with destination.lock():
        infos, ignored = [], {}
        for backup_id in destination.list_backups():
            try:
                manifest = authentic_manifest(destination, backup_id, signing_key, config.name, now)
            except BackupNotAuthentic as exc:
                ignored[backup_id] = str(exc)
                log(f"retention: ignoring {backup_id}: {exc}")
                continue
            record = destination.read_record(backup_id)
            infos.append(BackupInfo(backup_id, manifest.created, record.ok if record else None))
        plan = select_retention(infos, config.backup.retention_daily, config.backup.retention_weekly)
        plan = RetentionPlan(keep=plan.keep, delete=plan.delete, ignored=ignored)
        for backup_id in plan.delete:
            destination.delete(backup_id)
            log(f"retention: deleted {backup_id}")
    return plan
