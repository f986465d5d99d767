"""Pure backup logic: the manifest, the tar-listing digest, retention and the verify sample.

Nothing here touches a disk, a network or a clock (callers pass `now`), so the rules that decide
what a backup *is*, which backups survive and what a verify run reads are tested in milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from mailu_core.fields import BackupId, DockerName, StackName

__all__ = [
    "FUTURE_SKEW",
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "SIGNATURE_NAME",
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
    "check_signature",
    "choose_sample",
    "identity_problems",
    "parse_backup_id",
    "parse_backup_stack",
    "select_retention",
    "sign_manifest",
    "signing_key_id",
]

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
VERIFICATION_NAME = "verification.json"
MAX_MANIFEST_BYTES = 1 << 20  # a real manifest is a few kB; a forged giant one is not read into memory
FUTURE_SKEW = timedelta(minutes=5)  # clocks of the runner and of whoever wrote the backup may differ a little
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
    match = _ID_RE.fullmatch(backup_id)
    if match is None:
        return None
    try:
        return datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:  # 20261399T999999Z has the shape but is no time
        return None


def parse_backup_stack(backup_id: str) -> str | None:
    """The stack name encoded in a backup id, or None if the name is not a backup id."""
    match = _ID_RE.fullmatch(backup_id)
    return match["stack"] if match is not None and parse_backup_id(backup_id) is not None else None


def archive_file_name(name: str, kind: ArchiveKind) -> str:
    """The ciphertext file name of an archive (the suffix says what the plaintext is)."""
    return f"{name}.dump.gpg" if kind == "pg-dump" else f"{name}.tar.gpg"


class _Model(BaseModel):
    # hide_input_in_errors: a forged manifest's values never reach a log through an error message
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# A manifest is read from a directory anyone with write access to the destination can change: every
# name in it is held to the shape we write (the config's own field types), so no value can become a
# path, an option or a host mount.
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
RelPath = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00-\x1f]*$")]


class ArchiveEntry(_Model):
    """One encrypted archive of a backup and what its plaintext must look like when read back."""

    name: DockerName = Field(description="Volume name, `stack-files` or `postgres-dump`.")
    kind: ArchiveKind
    file: str = Field(description="Ciphertext file name inside the backup.")
    plain_bytes: int = Field(ge=0, description="Bytes of the plaintext stream (the tar).")
    entries: int = Field(ge=0, description="Tar members (files, directories, links).")
    file_count: int = Field(ge=0, description="Regular files in the tar.")
    listing_sha256: Sha256Hex | Literal[""] = Field(
        description="sha256 of the tar listing (see ListingDigest)."
    )
    cipher_bytes: int = Field(ge=0)
    cipher_sha256: Sha256Hex
    changed_while_read: list[RelPath] = Field(
        default_factory=list,
        max_length=10_000,
        description="Files that changed while a live copy read them (their copy may be torn).",
    )

    @model_validator(mode="after")
    def _file_is_derived(self) -> ArchiveEntry:
        """The ciphertext name is derived from name and kind: a `../` or `/` in it is never read."""
        if ".." in self.name:
            raise ValueError(f"archive name {self.name!r} contains '..'")
        fixed = {"stack-files": STACK_FILES, "pg-dump": PG_DUMP}.get(self.kind)
        if fixed is not None and self.name != fixed:
            raise ValueError(f"a {self.kind} archive must be named {fixed!r}, not {self.name!r}")
        expected = archive_file_name(self.name, self.kind)
        if self.file != expected:
            raise ValueError(f"archive {self.name!r} names file {self.file!r}; expected {expected!r}")
        return self


class Manifest(_Model):
    """What a complete backup holds; written last, so a directory without it is not a backup."""

    format: Literal[1] = 1
    backup_id: BackupId
    stack: StackName
    tag: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{1,32}$")] | None = None
    created: datetime
    finished: datetime
    mailu_version: str
    images: dict[str, str] = Field(description="Service -> pinned image reference (with its digest).")
    key_fingerprint: str = Field(description="The recipient the archives are encrypted to.")
    consistency: list[str] = Field(default_factory=list, description="How each part was made consistent.")
    archives: list[ArchiveEntry]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [a.name for a in self.archives]
        if len(set(names)) != len(names):
            raise ValueError("an archive name appears twice")
        if self.created.tzinfo is None or self.finished < self.created:
            raise ValueError("created must carry a time zone and come before finished")
        return self

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


# --- authenticity ------------------------------------------------------------------------------
# The archives are encrypted to a public key, so anyone who can write to the destination could make
# a backup that decrypts fine. The manifest (which pins every ciphertext's sha256) is therefore
# MAC'd with a key held outside the destination (a Prefect block): a forger without it cannot make
# a manifest that verifies, and without a verified manifest nothing is decrypted, restored or pruned.

_SIGNATURE_SCHEME = "mailu-flows-hmac-sha256"
_MAC_CONTEXT = b"mailu-flows backup manifest v1\n"


def signing_key_id(key: bytes) -> str:
    """A short public name of a signing key (says which key signed, reveals nothing of it)."""
    return hmac.new(key, b"mailu-flows backup signing key id", hashlib.sha256).hexdigest()[:16]


def sign_manifest(key: bytes, manifest_bytes: bytes) -> bytes:
    """The content of `manifest.sig`: scheme, key id and HMAC-SHA256 over the exact manifest bytes."""
    mac = hmac.new(key, _MAC_CONTEXT + manifest_bytes, hashlib.sha256).hexdigest()
    return f"{_SIGNATURE_SCHEME} {signing_key_id(key)} {mac}\n".encode()


def check_signature(key: bytes, manifest_bytes: bytes, signature: bytes | None) -> str | None:
    """None when `signature` is a valid MAC of `manifest_bytes` under `key`; otherwise why not."""
    if signature is None:
        return f"{SIGNATURE_NAME} is missing: the backup is not signed"
    parts = signature.decode("ascii", "replace").split()
    if len(parts) != 3 or parts[0] != _SIGNATURE_SCHEME:
        return f"{SIGNATURE_NAME} is not a {_SIGNATURE_SCHEME} signature"
    if parts[1] != signing_key_id(key):
        return (
            f"signed with key {parts[1][:16]!r}, not with the signing key block's key {signing_key_id(key)}"
        )
    if not hmac.compare_digest(sign_manifest(key, manifest_bytes), signature.strip() + b"\n"):
        return "the signature does not match the manifest: the manifest was changed after signing"
    return None


def identity_problems(manifest: Manifest, directory: str, stack: str, now: datetime) -> list[str]:
    """Why a (signed) manifest does not belong where it was found: another stack's backup, copied
    under another name, or dated in the future (which would pass an age check and push real
    backups out of retention)."""
    problems = []
    if manifest.backup_id != directory:
        problems.append(f"the manifest is of backup {manifest.backup_id}, but its directory is {directory}")
    if manifest.stack != stack or parse_backup_stack(directory) != stack:
        problems.append(f"the backup belongs to stack {manifest.stack!r}, not to {stack!r}")
    stamp = parse_backup_id(directory)
    if stamp is None or abs((manifest.created - stamp).total_seconds()) >= 1:
        problems.append(f"created {manifest.created.isoformat()} does not match the id's time")
    if manifest.created > now + FUTURE_SKEW or (stamp is not None and stamp > now + FUTURE_SKEW):
        problems.append(f"created {manifest.created.isoformat()} is in the future (now {now.isoformat()})")
    return problems


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
    ignored: dict[str, str] = field(default_factory=dict)  # id -> why it is not a backup of this stack


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
