"""Proving a backup restores: every check is one `CheckResult` row naming the check and the file.

Cheap checks (age, volumes, key, ciphertext sha256) cover every archive on every run. Decryption,
the tar read-through and the restore drill read a *sample* when a time budget is set and the data
is too large: archives are taken in rotation (the cursor is stored in the destination), so
successive runs cover everything, as `restic check --read-data-subset` does. The DKIM volume and
the stack files are small and critical, so they are in every sample.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailu_core.backup import (
    FUTURE_SKEW,
    MANIFEST_NAME,
    STACK_FILES,
    ArchiveEntry,
    CheckResult,
    Manifest,
    VerificationRecord,
    choose_sample,
    parse_backup_id,
    signing_key_id,
)
from mailu_core.config import StackConfig
from mailu_flows import dockercmd
from mailu_flows.backup.destination import Destination
from mailu_flows.backup.engine import helper_image, helper_run
from mailu_flows.backup.gpg import GpgError, Keyring, decrypt_stream, decryption_keyring
from mailu_flows.backup.signing import BackupNotAuthentic, authentic_manifest
from mailu_flows.backup.stream import CHUNK, StreamIn, TarInspector, TarReport, stream_out
from mailu_flows.blocks.gpg import GpgBackupPrivateKey
from mailu_flows.host import Host
from mailu_flows.remote import RemoteError

DEFAULT_THROUGHPUT = 50e6  # bytes/s assumed before a run has measured one
STATE = "verify"
SCRATCH_LABEL = "mailu-flows.scratch"  # on the drill's decrypted scratch volumes
DkimDnsCheck = Callable[[str, bytes], CheckResult]


@dataclass
class ArchiveReadResult:
    """What streaming one archive out of the destination (and maybe into a volume) found."""

    rows: list[CheckResult]
    report: TarReport


def restore_command(volume: str, image: str, name: str) -> str:
    """Empty the volume, then extract stdin into it keeping owners and modes (as root in a container)."""
    script = "find /v -mindepth 1 -delete && tar -C /v --numeric-owner -xpf - && cat >/dev/null"
    mount = dockercmd.volume_mount(volume, "/v", read_only=False)
    return helper_run(image, name, [mount], "sh", ["-c", script], stdin=True)


def hash_command(volume: str, image: str, name: str) -> str:
    script = "cd /v && find . -type f -print0 | xargs -0r sha256sum"
    return helper_run(
        image, name, [dockercmd.volume_mount(volume, "/v", read_only=True)], "sh", ["-c", script]
    )


def compare_volume_hashes(
    host: Host, volume: str, image: str, expected: dict[str, str], label: str, check: str
) -> CheckResult:
    """Hash every file in the volume on the host and compare with the hashes read from the archive."""
    remaining = dict(expected)
    mismatched: list[str] = []
    extra: list[str] = []
    pending = b""

    def sink(data: bytes) -> None:
        nonlocal pending
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            digest, _, path = line.decode("utf-8", "surrogateescape").partition("  ")
            path = path.removeprefix("./")
            want = remaining.pop(path, None)
            if want is None:
                extra.append(path)
            elif want != digest:
                mismatched.append(path)

    result = stream_out(host, hash_command(volume, image, f"mailu-verify-{uuid.uuid4().hex[:8]}"), sink)
    if result.returncode != 0:
        detail = f"hashing {volume} failed: {result.stderr}"
        return CheckResult(check=check, file=label, ok=False, detail=detail)
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} file(s) differ from the archive, e.g. {mismatched[:3]}")
    if remaining:
        problems.append(f"{len(remaining)} file(s) missing after restore, e.g. {sorted(remaining)[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected file(s), e.g. {extra[:3]}")
    if problems:
        return CheckResult(check=check, file=label, ok=False, detail="; ".join(problems))
    return CheckResult(
        check=check, file=label, ok=True, detail=f"{len(expected)} files restored into {volume}, hashes match"
    )


def read_archive(
    host: Host | None,
    keyring: Keyring,
    destination: Destination,
    backup_id: str,
    archive: ArchiveEntry,
    *,
    restore_into: str | None = None,
    image: str = "",
    capture: tuple[str, ...] = (),
    drill_check: str = "restore-drill",
    pg_restore: str | None = None,
) -> ArchiveReadResult:
    """Decrypt one archive, read its tar to the end and compare with the manifest; with
    `restore_into`, also extract it into that volume on the host and compare file hashes. A
    database dump is fed to the `pg_restore` command, when given (see backup/postgres.py)."""
    label = destination.label(backup_id, archive.file)
    rows: list[CheckResult] = []
    is_tar = archive.kind != "pg-dump"
    inspector = TarInspector(hash_files=restore_into is not None, capture=capture) if is_tar else None
    plain = hashlib.sha256()
    head = bytearray()
    feeder = None
    if restore_into is not None and host is not None and is_tar:
        feeder = StreamIn(host, restore_command(restore_into, image, f"mailu-restore-{uuid.uuid4().hex[:8]}"))
    elif pg_restore is not None and host is not None and not is_tar:
        feeder = StreamIn(host, pg_restore)
    feed_error: list[str] = []
    size = 0

    def on_plain(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)
        if len(head) < 16:
            head.extend(chunk[:16])
        if inspector is not None:
            inspector.feed(chunk)
        else:
            plain.update(chunk)
        if feeder is not None and not feed_error:
            try:
                feeder.write(chunk)
            except (OSError, EOFError, RemoteError) as exc:
                feed_error.append(str(exc))

    decrypt_error = None
    try:
        with destination.open_reader(backup_id, archive.file) as source:
            decrypt_stream(keyring, source, on_plain)
    except (GpgError, OSError) as exc:
        decrypt_error = str(exc)
    report = inspector.close() if inspector is not None else TarReport(plain_bytes=size)
    rows.append(
        CheckResult(
            check="decrypt",
            file=label,
            ok=decrypt_error is None,
            detail=decrypt_error or f"decrypts with key {keyring.fingerprint}",
        )
    )
    if is_tar:
        complete = (
            report.error is None and report.ends_with_marker and report.plain_bytes == archive.plain_bytes
        )
        rows.append(
            CheckResult(
                check="tar-read",
                file=label,
                ok=complete and decrypt_error is None,
                detail=(
                    f"read {report.plain_bytes} of {archive.plain_bytes} bytes"
                    + (f"; {report.error}" if report.error else "")
                    + ("" if report.ends_with_marker else "; no end-of-archive marker")
                ),
            )
        )
        listing = report.listing
        same = listing.file_count == archive.file_count and listing.hexdigest() == archive.listing_sha256
        rows.append(
            CheckResult(
                check="listing",
                file=label,
                ok=same and listing.entries == archive.entries,
                detail=(
                    f"{listing.file_count} files / {listing.entries} entries "
                    f"(manifest {archive.file_count} / {archive.entries}); listing sha256 "
                    + ("matches" if listing.hexdigest() == archive.listing_sha256 else "DIFFERS")
                ),
            )
        )
    else:
        ok = decrypt_error is None and size == archive.plain_bytes and bytes(head).startswith(b"PGDMP")
        rows.append(
            CheckResult(
                check="dump-read",
                file=label,
                ok=ok,
                detail=f"read {size} of {archive.plain_bytes} bytes; pg_dump custom-format header "
                + ("present" if bytes(head).startswith(b"PGDMP") else "MISSING"),
            )
        )
    if feeder is not None and host is not None:
        result = feeder.finish()
        if feed_error or result.returncode != 0 or decrypt_error is not None:
            program = "tar" if is_tar else "pg_restore"
            failed = f"{program} exited {result.returncode}: {result.stderr[-1500:]}"
            why = decrypt_error or (feed_error[0] if feed_error else failed)
            rows.append(CheckResult(check=drill_check, file=label, ok=False, detail=f"restore failed: {why}"))
        elif restore_into is not None:
            rows.append(
                compare_volume_hashes(host, restore_into, image, report.file_hashes, label, drill_check)
            )
        else:
            rows.append(CheckResult(check=drill_check, file=label, ok=True, detail="pg_restore completed"))
    return ArchiveReadResult(rows, report)


def _dkim_row(
    config: StackConfig, label: str, report: TarReport, name: str, dns_check: DkimDnsCheck | None
) -> list[CheckResult]:
    head = report.captured.get(name.removeprefix("./"))
    if head is None or b"PRIVATE KEY-----" not in head:
        why = "is not in the archive" if head is None else "is not a PEM private key"
        return [CheckResult(check="dkim-key", file=label, ok=False, detail=f"{name} {why}")]
    rows = [CheckResult(check="dkim-key", file=label, ok=True, detail=f"{name} present (PEM private key)")]
    if dns_check is not None:  # hook: compare with the public half published in DNS
        rows.append(dns_check(name, head))
    return rows


def drill_pg_dump(
    host: Host,
    config: StackConfig,
    keyring: Keyring,
    destination: Destination,
    backup_id: str,
    archive: ArchiveEntry,
    volume: str,
    *,
    password_file: str | None = None,
    check: str = "restore-drill",
) -> ArchiveReadResult:
    """Restore a database dump into a throwaway PostgreSQL on `volume` and count its tables (the drill,
    or with the stack's `password_file` and volume, the restore itself)."""
    from mailu_flows.backup.postgres import count_tables, restore_command, throwaway_server

    label = destination.label(backup_id, archive.file)
    try:
        with throwaway_server(host, config, volume, password_file=password_file) as container:
            result = read_archive(
                host, keyring, destination, backup_id, archive, drill_check=check,
                pg_restore=restore_command(container, config),
            )  # fmt: skip
            if all(row.ok for row in result.rows):
                tables = count_tables(host, config, container)
                result.rows[-1] = CheckResult(
                    check=check, file=label, ok=tables > 0,
                    detail=f"pg_restore into a fresh PostgreSQL gave {tables} table(s)"
                    + ("" if tables else ": the dump holds no tables"),
                )  # fmt: skip
            return result
    except (RuntimeError, ValueError) as exc:  # the server did not start; a RemoteError is a RuntimeError
        row = CheckResult(check=check, file=label, ok=False, detail=f"restore failed: {exc}")
        return ArchiveReadResult([row], TarReport())


def _scratch_volume(host: Host, stack: str) -> str:
    from mailu_flows.backup.postgres import STACK_LABEL

    name = f"mailu-drill-{uuid.uuid4().hex[:10]}"
    host.run(dockercmd.volume_create(name, {SCRATCH_LABEL: "restore-drill", STACK_LABEL: stack}))
    return name


def clean_drill_leftovers(host: Host, config: StackConfig) -> list[str]:
    """What a verify of this stack killed midway left (its `finally` never ran): decrypted scratch
    volumes and throwaway PostgreSQL servers. Verify runs of one stack do not overlap (one deployment),
    and nothing else makes these."""
    from mailu_flows.backup.postgres import ROLE_LABEL, STACK_LABEL

    stack = dockercmd.label_filter(STACK_LABEL, config.name)
    found: list[str] = []
    servers = host.run(dockercmd.ps(stack, dockercmd.label_filter(ROLE_LABEL, "drill"), all_states=True))
    for container in servers.text().split():
        host.run(dockercmd.rm(container), check=False)
        found.append(f"throwaway PostgreSQL {container}")
    scratch = dockercmd.label_filter(SCRATCH_LABEL, "restore-drill")
    volumes = host.run(dockercmd.volume_ls(scratch, stack))
    for volume in volumes.text().split():
        host.run(dockercmd.volume_rm(volume), check=False)
        found.append(f"restore-drill volume {volume}")
    return found


def verify_backup(
    host: Host | None,
    config: StackConfig,
    destination: Destination,
    private_key: GpgBackupPrivateKey,
    signing_key: bytes,
    *,
    backup_id: str | None = None,
    now: datetime | None = None,
    time_budget_s: float | None = None,
    budget_bytes: int | None = None,
    drill: bool = True,
    check_age: bool = True,
    write_record: bool = True,
    dkim_dns_check: DkimDnsCheck | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> VerificationRecord:
    """Run every check on one backup (the newest by default); never raises for a failed check.

    Nothing of a backup is decrypted or drilled unless its manifest is signed with `signing_key`
    and belongs to this stack. In newest mode, entries dated in the future are reported (a failed
    check: a forgery or a clock gone wrong) and never taken as the newest."""
    now = now or datetime.now(UTC)
    rows: list[CheckResult] = []
    ids = destination.list_backups()
    root = destination.label("")
    if backup_id is None:
        future = [i for i in ids if (parse_backup_id(i) or now) > now + FUTURE_SKEW]
        rows += [
            CheckResult(
                check="future-dated", file=destination.label(i), ok=False,
                detail="named as made in the future: not a backup of this stack's past (a forgery, or a "
                "clock gone wrong); ignored, remove it",
            )
            for i in future
        ]  # fmt: skip
        ids = [i for i in ids if i not in future]
        if not ids:
            rows.append(
                CheckResult(check="newest-backup", file=root, ok=False, detail="no complete backup found")
            )
            return VerificationRecord(backup_id="", verified_at=now, ok=False, checks=rows)
        backup_id = ids[-1]
    elif backup_id not in ids:
        detail = f"no complete backup {backup_id}"
        rows.append(CheckResult(check="backup-exists", file=root, ok=False, detail=detail))
        return VerificationRecord(backup_id=backup_id, verified_at=now, ok=False, checks=rows)
    manifest_label = destination.label(backup_id, MANIFEST_NAME)
    try:
        manifest = authentic_manifest(destination, backup_id, signing_key, config.name, now)
    except BackupNotAuthentic as exc:
        rows.append(CheckResult(check="signature", file=manifest_label, ok=False, detail=str(exc)))
        return _finish(destination, backup_id, now, rows, [], write_record=False)  # never write into it
    rows.append(
        CheckResult(
            check="signature", file=manifest_label, ok=True,
            detail=f"signed with key {signing_key_id(signing_key)}; id, stack and dates match",
        )
    )  # fmt: skip

    rows += _static_checks(config, destination, manifest, private_key, now, check_age)
    budget = budget_bytes
    state = destination.read_state(STATE)
    if budget is None and time_budget_s is not None:
        budget = int(time_budget_s * float(state.get("throughput", DEFAULT_THROUGHPUT)))
    dkim_volume = config.volumes.dkim if config.volumes.dkim in config.backup.volumes else None
    sample = choose_sample(
        [(a.name, a.cipher_bytes) for a in manifest.archives],
        budget,
        int(state.get("cursor", 0)),
        pinned=[n for n in (dkim_volume, STACK_FILES) if n],
    )
    rows.append(
        CheckResult(
            check="sample",
            file=destination.label(backup_id),
            ok=True,
            detail=f"reading {', '.join(sample.selected) or 'nothing'}"
            + (f"; left for later runs: {', '.join(sample.skipped)}" if sample.skipped else ""),
        )
    )
    image = helper_image(config)
    if drill and host is not None:
        for leftover in clean_drill_leftovers(host, config):
            log(f"WARNING a verify run that died left {leftover}; removed")
    started, read_bytes = time.monotonic(), 0
    try:
        with decryption_keyring(private_key) as keyring:
            for archive in manifest.archives:
                if archive.name not in sample.selected:
                    continue
                label = destination.label(backup_id, archive.file)
                dkim_name = f"./{config.mailu.domain}.{config.dns.dkim.selector}.key"
                capture = (dkim_name,) if archive.name == dkim_volume else ()
                drilled = drill and host is not None
                scratch = _scratch_volume(host, config.name) if drilled and host is not None else None
                try:
                    if archive.kind == "pg-dump" and scratch is not None and host is not None:
                        result = drill_pg_dump(
                            host, config, keyring, destination, backup_id, archive, scratch
                        )
                    else:
                        result = read_archive(
                            host, keyring, destination, backup_id, archive,
                            restore_into=scratch, image=image, capture=capture,
                        )  # fmt: skip
                finally:
                    if scratch is not None and host is not None:
                        host.run(dockercmd.volume_rm(scratch), check=False)
                rows += result.rows
                read_bytes += archive.cipher_bytes
                if capture:
                    rows += _dkim_row(config, label, result.report, dkim_name, dkim_dns_check)
                log(f"{archive.name}: {'ok' if all(r.ok for r in result.rows) else 'FAILED'}")
    except GpgError as exc:
        rows.append(
            CheckResult(check="decrypt", file=destination.label(backup_id), ok=False, detail=f"key: {exc}")
        )
    elapsed = time.monotonic() - started
    if write_record:
        new_state = {"cursor": sample.next_cursor, "throughput": state.get("throughput", DEFAULT_THROUGHPUT)}
        if read_bytes > 10e6 and elapsed > 0:
            new_state["throughput"] = read_bytes / elapsed
        destination.write_state(STATE, new_state)
    return _finish(destination, backup_id, now, rows, sample.selected, write_record)


def _static_checks(
    config: StackConfig,
    destination: Destination,
    manifest: Manifest,
    private_key: GpgBackupPrivateKey,
    now: datetime,
    check_age: bool,
) -> list[CheckResult]:
    rows: list[CheckResult] = []
    bid = manifest.backup_id
    manifest_label = destination.label(bid, MANIFEST_NAME)
    if check_age:
        limit = config.backup.verify_max_age_hours
        age_h = (now - manifest.created).total_seconds() / 3600
        rows.append(
            CheckResult(
                check="age",
                file=manifest_label,
                ok=age_h <= limit,
                detail=f"newest backup created {manifest.created:%Y-%m-%d %H:%M:%SZ}, {age_h:.1f} h ago "
                f"(limit {limit} h)",
            )
        )
    missing = [v for v in config.backup.volumes if manifest.archive(v) is None]
    rows.append(
        CheckResult(
            check="volumes",
            file=manifest_label,
            ok=not missing,
            detail=f"configured volume(s) missing from the backup: {', '.join(missing)}"
            if missing
            else f"all {len(config.backup.volumes)} configured volumes present",
        )
    )
    same_key = manifest.key_fingerprint == private_key.fingerprint
    rows.append(
        CheckResult(
            check="key",
            file=manifest_label,
            ok=same_key,
            detail=f"encrypted to {manifest.key_fingerprint}"
            + ("" if same_key else f", but the private key block holds {private_key.fingerprint}"),
        )
    )
    for archive in manifest.archives:
        label = destination.label(bid, archive.file)
        size = destination.size(bid, archive.file)
        if size is None:
            rows.append(
                CheckResult(check="ciphertext-sha256", file=label, ok=False, detail="file is missing")
            )
            continue
        digest = hashlib.sha256()
        with destination.open_reader(bid, archive.file) as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        ok = digest.hexdigest() == archive.cipher_sha256 and size == archive.cipher_bytes
        rows.append(
            CheckResult(
                check="ciphertext-sha256",
                file=label,
                ok=ok,
                detail="matches the manifest"
                if ok
                else f"{size} bytes, sha256 {digest.hexdigest()[:16]}…; manifest says {archive.cipher_bytes} "
                f"bytes, {archive.cipher_sha256[:16]}…",
            )
        )
    return rows


def _finish(
    destination: Destination,
    backup_id: str,
    now: datetime,
    rows: list[CheckResult],
    sampled: list[str],
    write_record: bool,
) -> VerificationRecord:
    record = VerificationRecord(
        backup_id=backup_id, verified_at=now, ok=all(r.ok for r in rows), sampled=sampled, checks=rows
    )
    if write_record and backup_id:
        destination.write_record(record)
    return record
