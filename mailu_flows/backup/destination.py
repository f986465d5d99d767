"""Where backups live. A backup is a directory of ciphertext files plus `manifest.json` and its
signature `manifest.sig`; it is written under `.partial-<id>` and renamed to `<id>` only when
complete, so an interrupted run leaves nothing that looks like a backup (and the next run removes
the leftover). Each stack has its own subdirectory (`<destination_dir>/<stack>/`) with its own lock
and state, so stacks sharing a destination never prune, verify or lock each other's backups.

Everything read back is untrusted (anyone with write access to the destination can change it):
file names are checked before they become paths, and the manifest is read with a size cap.

`Destination` is the small interface the flows use; `LocalDirectory` (a directory on the machine
that runs the flow) is the default. Another store (SFTP, S3) implements the same methods.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from mailu_core.backup import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    VERIFICATION_NAME,
    Manifest,
    VerificationRecord,
    parse_backup_id,
)
from mailu_core.errors import MailuFlowsError
from mailu_core.fields import STACK_NAME_PATTERN

PARTIAL_PREFIX = ".partial-"
_MEMBER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
_STACK_RE = re.compile(STACK_NAME_PATTERN)


class UnsafeName(MailuFlowsError, ValueError):
    """A backup id or file name read from the destination that could leave its directory."""


def safe_member(backup_id: str, file: str) -> tuple[str, str]:
    """`(backup_id, file)` if both are plain names inside the destination; raises UnsafeName."""
    if parse_backup_id(backup_id) is None:
        raise UnsafeName(f"{backup_id!r} is not a backup id")
    if file and (not _MEMBER_RE.fullmatch(file) or ".." in file):
        raise UnsafeName(f"{file!r} is not a plain file name (a manifest may not name paths)")
    return backup_id, file


class DestinationBusy(MailuFlowsError, RuntimeError):
    """Another run is writing to this destination."""


class Staging(ABC):
    """A backup being written: invisible to readers until `commit`."""

    @abstractmethod
    def open_writer(self, file: str) -> BinaryIO: ...

    @abstractmethod
    def commit(self, manifest_bytes: bytes, signature: bytes) -> None:
        """Write the manifest and its signature, then make the backup visible under its id."""

    @abstractmethod
    def abort(self) -> None: ...


class Destination(ABC):
    """The operations the backup, verify and restore flows need from a backup store."""

    @abstractmethod
    def label(self, backup_id: str, file: str = "") -> str:
        """A human name for a backup or one of its files (used in every check message)."""

    @abstractmethod
    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive while writing or pruning, so a cleanup never removes a live run's files."""

    @abstractmethod
    def begin(self, backup_id: str) -> Staging: ...

    @abstractmethod
    def clean_partials(self) -> list[str]:
        """Remove leftovers of interrupted runs (call with the lock held); returns what was removed."""

    @abstractmethod
    def list_backups(self) -> list[str]:
        """Ids of complete backups, oldest first."""

    @abstractmethod
    def read_manifest_bytes(self, backup_id: str) -> bytes:
        """The manifest exactly as stored (what the signature covers); at most MAX_MANIFEST_BYTES."""

    @abstractmethod
    def read_signature(self, backup_id: str) -> bytes | None: ...

    def read_manifest(self, backup_id: str) -> Manifest:
        """The manifest, parsed but NOT authenticated (see mailu_flows.backup.signing)."""
        return Manifest.model_validate_json(self.read_manifest_bytes(backup_id))

    @abstractmethod
    def open_reader(self, backup_id: str, file: str) -> BinaryIO: ...

    @abstractmethod
    def size(self, backup_id: str, file: str) -> int | None: ...

    @abstractmethod
    def read_record(self, backup_id: str) -> VerificationRecord | None: ...

    @abstractmethod
    def write_record(self, record: VerificationRecord) -> None: ...

    @abstractmethod
    def delete(self, backup_id: str) -> None: ...

    @abstractmethod
    def read_state(self, name: str) -> dict[str, Any]: ...

    @abstractmethod
    def write_state(self, name: str, state: dict[str, Any]) -> None: ...


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class _LocalStaging(Staging):
    def __init__(self, root: Path, backup_id: str) -> None:
        self.root, self.backup_id = root, backup_id
        self.path = root / f"{PARTIAL_PREFIX}{backup_id}"
        self.path.mkdir(mode=0o700)

    def open_writer(self, file: str) -> BinaryIO:
        fd = os.open(self.path / file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return os.fdopen(fd, "wb")

    def commit(self, manifest_bytes: bytes, signature: bytes) -> None:
        for entry in self.path.iterdir():  # the data must be on disk before the name says "complete"
            with open(entry, "rb") as fh:
                os.fsync(fh.fileno())
        _atomic_write(self.path / SIGNATURE_NAME, signature)
        _atomic_write(self.path / MANIFEST_NAME, manifest_bytes)
        os.rename(self.path, self.root / self.backup_id)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class LocalDirectory(Destination):
    """Backups of one stack in `<base>/<stack>/` on the machine that runs the flow (dirs 0700, files 0600)."""

    def __init__(self, base: str | Path, stack: str) -> None:
        if not _STACK_RE.fullmatch(stack):
            raise ValueError(f"{stack!r} is not a stack name")
        self.base = Path(base)
        self.stack = stack
        self.root = self.base / stack

    def __repr__(self) -> str:
        return f"LocalDirectory({str(self.base)!r}, {self.stack!r})"

    def _path(self, backup_id: str, file: str = "") -> Path:
        backup_id, file = safe_member(backup_id, file)
        return self.root / backup_id / file if file else self.root / backup_id

    def _open(self, backup_id: str, file: str) -> BinaryIO:
        """Open a member for reading without following a symlink planted in the destination."""
        directory = self._path(backup_id)
        if directory.is_symlink():
            raise UnsafeName(f"{self.label(backup_id)} is a symbolic link")
        fd = os.open(self._path(backup_id, file), os.O_RDONLY | os.O_NOFOLLOW)
        return os.fdopen(fd, "rb")

    def label(self, backup_id: str, file: str = "") -> str:
        return str(self.root / backup_id / file) if file else str(self.root / backup_id)

    def _mkdir(self) -> None:
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.mkdir(mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self._mkdir()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DestinationBusy(f"another run is writing backups in {self.root}") from None
            yield
        finally:
            os.close(fd)

    def begin(self, backup_id: str) -> Staging:
        self._mkdir()
        if self._path(backup_id).exists():
            raise FileExistsError(f"backup {self.label(backup_id)} already exists")
        return _LocalStaging(self.root, backup_id)

    def clean_partials(self) -> list[str]:
        removed = []
        if self.root.is_dir():
            for entry in sorted(self.root.iterdir()):
                if entry.name.startswith(PARTIAL_PREFIX):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry.name)
        return removed

    def list_backups(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [
            entry.name
            for entry in self.root.iterdir()
            if parse_backup_id(entry.name) is not None
            and not entry.is_symlink()
            and (entry / MANIFEST_NAME).is_file()
        ]
        return sorted(found, key=lambda name: (parse_backup_id(name), name))

    def read_manifest_bytes(self, backup_id: str) -> bytes:
        with self._open(backup_id, MANIFEST_NAME) as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise ValueError(
                f"{self.label(backup_id, MANIFEST_NAME)} is larger than {MAX_MANIFEST_BYTES} bytes"
            )
        return data

    def read_signature(self, backup_id: str) -> bytes | None:
        try:
            with self._open(backup_id, SIGNATURE_NAME) as fh:
                return fh.read(4096)
        except FileNotFoundError:
            return None

    def open_reader(self, backup_id: str, file: str) -> BinaryIO:
        return self._open(backup_id, file)

    def size(self, backup_id: str, file: str) -> int | None:
        try:
            return self._path(backup_id, file).stat().st_size
        except FileNotFoundError:
            return None

    def read_record(self, backup_id: str) -> VerificationRecord | None:
        try:
            with self._open(backup_id, VERIFICATION_NAME) as fh:
                return VerificationRecord.model_validate_json(fh.read(MAX_MANIFEST_BYTES))
        except (OSError, ValueError):
            return None

    def write_record(self, record: VerificationRecord) -> None:
        _atomic_write(
            self._path(record.backup_id, VERIFICATION_NAME), record.model_dump_json(indent=2).encode()
        )

    def delete(self, backup_id: str) -> None:
        target = self._path(backup_id)
        # Make it invisible first (no manifest), then remove: a crash midway leaves a partial, not a
        # damaged backup that still looks complete.
        hidden = self.root / f"{PARTIAL_PREFIX}deleting-{backup_id}"
        os.rename(target, hidden)
        shutil.rmtree(hidden, ignore_errors=True)

    def read_state(self, name: str) -> dict[str, Any]:
        path = self.root / f".state-{name}.json"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_state(self, name: str, state: dict[str, Any]) -> None:
        self._mkdir()
        _atomic_write(self.root / f".state-{name}.json", json.dumps(state).encode())
