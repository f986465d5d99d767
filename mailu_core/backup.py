"""Pure backup logic: the manifest, the tar-listing digest, retention and the verify sample.

Nothing here touches a disk, a network or a clock (callers pass `now`), so the rules that decide
what a backup *is*, which backups survive and what a verify run reads are tested in milliseconds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MANIFEST_NAME",
    "VERIFICATION_NAME",
    "ArchiveEntry",
    "BackupInfo",
    "CheckResult",
    "ListingDigest",
    "Manifest",
    "RetentionPlan",
    "Sample",
    "VerificationRecord",
    "archive_file_name",
    "backup_id_for",
    "choose_sample",
    "parse_backup_id",
    "select_retention",
]

MANIFEST_NAME = "manifest.json"
VERIFICATION_NAME = "verification.json"
STACK_FILES = "stack-files"
PG_DUMP = "postgres-dump"

ArchiveKind = Literal["volume", "stack-files", "pg-dump"]

_ID_RE = re.compile(r"^(?P<stack>[a-z0-9][a-z0-9-]*)-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<tag>[a-z0-9]+))?$")


def backup_id_for(stack: str, when: datetime, tag: str | None = None) -> str:
    """`<stack>-YYYYmmddTHHMMSSZ[-tag]`: sorts by time and names what it holds, without a lookup."""
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stack}-{stamp}" + (f"-{tag}" if tag else "")


def parse_backup_id(backup_id: str) -> datetime | None:
    """The creation time encoded in a backup id, or None if the name is not a backup id."""
    match = _ID_RE.match(backup_id)
    if match is None:
        return None
    return datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def archive_file_name(name: str, kind: ArchiveKind) -> str:
    """The ciphertext file name of an archive (the suffix says what the plaintext is)."""
    return f"{name}.dump.gpg" if kind == "pg-dump" else f"{name}.tar.gpg"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchiveEntry(_Model):
    """One encrypted archive of a backup and what its plaintext must look like when read back."""

    name: str = Field(description="Volume name, `stack-files` or `postgres-dump`.")
    kind: ArchiveKind
    file: str = Field(description="Ciphertext file name inside the backup.")
    plain_bytes: int = Field(ge=0, description="Bytes of the plaintext stream (the tar).")
    entries: int = Field(ge=0, description="Tar members (files, directories, links).")
    file_count: int = Field(ge=0, description="Regular files in the tar.")
    listing_sha256: str = Field(description="sha256 of the tar listing (see ListingDigest).")
    cipher_bytes: int = Field(ge=0)
    cipher_sha256: str


class Manifest(_Model):
    """What a complete backup holds; written last, so a directory without it is not a backup."""

    format: Literal[1] = 1
    backup_id: str
    stack: str
    tag: str | None = None
    created: datetime
    finished: datetime
    mailu_version: str
    images: dict[str, str] = Field(description="Service -> pinned image reference (with its digest).")
    key_fingerprint: str = Field(description="The recipient the archives are encrypted to.")
    consistency: list[str] = Field(default_factory=list, description="How each part was made consistent.")
    archives: list[ArchiveEntry]

    def archive(self, name: str) -> ArchiveEntry | None:
        return next((a for a in self.archives if a.name == name), None)

    @property
    def volumes(self) -> list[str]:
        return [a.name for a in self.archives if a.kind == "volume"]


class CheckResult(_Model):
    """One row of the verify table: which check, on which file, and what it found."""

    check: str
    file: str
    ok: bool
    detail: str = ""

    def message(self) -> str:
        return f"{self.check} {'ok' if self.ok else 'FAILED'}: {self.file}: {self.detail}"


class VerificationRecord(_Model):
    """Stored next to a backup; retention never deletes the newest backup whose record is ok."""

    backup_id: str
    verified_at: datetime
    ok: bool
    sampled: list[str] = Field(default_factory=list, description="Archives decrypted and drilled this run.")
    checks: list[CheckResult] = Field(default_factory=list)


# --- tar listing ---------------------------------------------------------------------------------


class ListingDigest:
    """sha256 over one line per tar member, in archive order: the same bytes give the same digest.

    The line holds type, mode, owner, size, mtime, name and link target, so a restore that loses
    ownership or a file shows up even when contents are intact. File contents are not in it (the
    ciphertext hash and the restore drill cover them).
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.entries = 0
        self.file_count = 0

    def add(
        self,
        name: str,
        kind: str,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        mtime: int,
        linkname: str = "",
    ) -> None:
        line = f"{kind}\t{mode:o}\t{uid}:{gid}\t{size}\t{mtime}\t{name}\t{linkname}\n"
        self._hash.update(line.encode("utf-8", "surrogateescape"))
        self.entries += 1
        if kind == "file":
            self.file_count += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# --- retention -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupInfo:
    """What retention needs to know about one complete backup."""

    backup_id: str
    created: datetime
    verified_ok: bool | None = None  # None: never verified


@dataclass(frozen=True)
class RetentionPlan:
    keep: dict[str, list[str]] = field(default_factory=dict)  # id -> reasons
    delete: list[str] = field(default_factory=list)


def select_retention(backups: Iterable[BackupInfo], daily: int, weekly: int) -> RetentionPlan:
    """Keep the newest backup of each of the last `daily` days and `weekly` ISO weeks that have one.

    Like restic's `--keep-daily/--keep-weekly`: days and weeks without a backup do not count. The
    newest backup and the newest *verified* backup are always kept, so pruning can never leave
    only unproven archives.
    """
    ordered = sorted(backups, key=lambda b: (b.created, b.backup_id), reverse=True)
    keep: dict[str, list[str]] = {}

    def mark(info: BackupInfo, reason: str) -> None:
        keep.setdefault(info.backup_id, []).append(reason)

    if ordered:
        mark(ordered[0], "newest")
    verified = next((b for b in ordered if b.verified_ok), None)
    if verified is not None:
        mark(verified, "newest verified")
    for limit, label, bucket in (
        (daily, "daily", lambda d: d.strftime("%Y-%m-%d")),
        (weekly, "weekly", lambda d: f"{d.isocalendar()[0]:04d}-W{d.isocalendar()[1]:02d}"),
    ):
        seen: list[str] = []
        for info in ordered:
            key = bucket(info.created.astimezone(UTC))
            if key in seen:
                continue
            if len(seen) >= limit:
                break
            seen.append(key)
            mark(info, f"{label} {key}")
    delete = [b.backup_id for b in ordered if b.backup_id not in keep]
    return RetentionPlan(keep=keep, delete=delete)


# --- verify sample -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    selected: list[str]
    skipped: list[str]
    next_cursor: int


def choose_sample(
    archives: Sequence[tuple[str, int]],
    budget_bytes: int | None,
    cursor: int,
    pinned: Iterable[str] = (),
) -> Sample:
    """Which archives a verify run decrypts and drills when it cannot read them all.

    Pinned archives (small and critical: DKIM keys, stack files) are always read and do not count
    against the budget. The others are taken in rotation from `cursor` until the budget is used
    (always at least one), so successive runs cover everything, as `restic check
    --read-data-subset n/t` does. Returns the next cursor to store.
    """
    pinned_set = set(pinned)
    always = [name for name, _ in archives if name in pinned_set]
    rotating = [(name, size) for name, size in archives if name not in pinned_set]
    if budget_bytes is None or sum(size for _, size in rotating) <= budget_bytes or not rotating:
        return Sample(selected=[name for name, _ in archives], skipped=[], next_cursor=cursor)
    start = cursor % len(rotating)
    taken: list[str] = []
    used = 0
    index = start
    for step in range(len(rotating)):
        index = (start + step) % len(rotating)
        name, size = rotating[index]
        if taken and used + size > budget_bytes:
            index = (index - 1) % len(rotating)
            break
        taken.append(name)
        used += size
    next_cursor = (index + 1) % len(rotating)
    selected_set = set(taken) | set(always)
    selected = [name for name, _ in archives if name in selected_set]
    skipped = [name for name, _ in archives if name not in selected_set]
    return Sample(selected=selected, skipped=skipped, next_cursor=next_cursor)
