"""Streaming plumbing: remote commands whose stdout/stdin is a byte stream, and a tar reader that
checks a stream as it passes (listing digest, file hashes) without storing it.

Every buffer here is bounded (SSH window, 64 KiB pipes, 1 MiB chunks), so memory stays flat
whatever the volume size.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import tarfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailu_core.backup import ListingDigest
from mailu_flows.host import Host

CHUNK = 1 << 20
_TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
}


@dataclass
class StreamResult:
    command: str
    returncode: int
    stderr: str


def _command(command: str | Sequence[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


def stream_out(host: Host, command: str | Sequence[str], sink: Callable[[bytes], None]) -> StreamResult:
    """Run `command` on the host and hand its stdout to `sink` chunk by chunk.

    The channel is always closed, also when `sink` raises. A connection that dies midway gives
    returncode -1 (no exit status), which callers treat as a failure.
    """
    cmd = _command(command)
    channel = host.open_channel()
    err = bytearray()
    try:
        channel.exec_command(cmd)
        channel.shutdown_write()
        while True:
            data = channel.recv(CHUNK)
            if not data:
                break
            sink(data)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(1 << 16)
                del err[:-65536]
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(1 << 16)
        rc = channel.recv_exit_status()
    finally:
        channel.close()
    return StreamResult(cmd, rc, bytes(err[-4000:]).decode(errors="replace").strip())


class StreamIn:
    """A remote command fed from local chunks (`write`), e.g. `tar -x` into a volume."""

    def __init__(self, host: Host, command: str | Sequence[str]) -> None:
        self.command = _command(command)
        self.host = host
        self.channel = host.open_channel()
        self.channel.set_combine_stderr(True)
        self.channel.exec_command(self.command)
        self._out = bytearray()
        self.sent = 0

    def write(self, data: bytes) -> None:
        self.channel.sendall(data)
        self.sent += len(data)
        while self.channel.recv_ready():
            self._out += self.channel.recv(1 << 16)
            del self._out[:-65536]

    def finish(self) -> StreamResult:
        try:
            self.channel.shutdown_write()
            while True:
                data = self.channel.recv(1 << 16)
                if not data:
                    break
                self._out += data
                del self._out[:-65536]
            rc = self.channel.recv_exit_status()
        finally:
            self.channel.close()
        return StreamResult(self.command, rc, bytes(self._out[-4000:]).decode(errors="replace").strip())

    def abort(self) -> None:
        self.channel.close()


@dataclass
class TarReport:
    plain_bytes: int = 0
    listing: ListingDigest = field(default_factory=ListingDigest)
    file_hashes: dict[str, str] = field(default_factory=dict)  # keyed by path without "./"
    captured: dict[str, bytes] = field(default_factory=dict)  # keyed by path without "./"
    ends_with_marker: bool = False
    error: str | None = None


def _relative(name: str) -> str:
    """`./a/b` and `a/b` name the same file (tar of `.` vs tar of named paths, `find .` output)."""
    return name.removeprefix("./")


class _PipeReader:
    """A reader over a pipe that counts what it hands out."""

    def __init__(self, fd: int) -> None:
        self._fh = os.fdopen(fd, "rb", buffering=CHUNK)
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.consumed += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        self._fh.close()


class TarInspector:
    """Reads a tar stream in a thread while it flows elsewhere (into gpg, into a restore).

    Computes the listing digest and, if asked, the sha256 of every regular file (for the restore
    drill), and keeps the first bytes of files named in `capture` (the DKIM key check). After a
    parse error it keeps draining, so the producer never blocks.
    """

    def __init__(self, hash_files: bool = False, capture: Sequence[str] = ()) -> None:
        read_fd, self._write_fd = os.pipe()
        self._reader = _PipeReader(read_fd)
        self._hash_files, self._capture = hash_files, {_relative(name) for name in capture}
        self.report = TarReport()
        self._tail = b""
        self._thread = threading.Thread(target=self._run, name="tar-inspector", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        self.report.plain_bytes += len(data)
        self._tail = (self._tail + data[-1024:])[-1024:]
        view = memoryview(data)
        while view:
            written = os.write(self._write_fd, view)
            view = view[written:]

    def close(self) -> TarReport:
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1
        self._thread.join()
        self.report.ends_with_marker = len(self._tail) == 1024 and not self._tail.strip(b"\0")
        return self.report

    def _run(self) -> None:
        try:
            with tarfile.open(fileobj=self._reader, mode="r|") as archive:  # type: ignore[call-overload]
                for member in archive:
                    self._member(archive, member)
        except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
            self.report.error = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                self._reader.drain()
            finally:
                self._reader.close()

    def _member(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        kind = _TYPES.get(member.type, "other")
        self.report.listing.add(
            member.name,
            kind,
            member.mode,
            member.uid,
            member.gid,
            member.size if kind == "file" else 0,
            int(member.mtime),
            member.linkname,
        )
        name = _relative(member.name)
        if kind != "file" or not (self._hash_files or name in self._capture):
            return
        handle = archive.extractfile(member)
        if handle is None:
            return
        digest = hashlib.sha256()
        head = b""
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if name in self._capture and len(head) < 65536:
                head += chunk[: 65536 - len(head)]
        if self._hash_files:
            self.report.file_hashes[name] = digest.hexdigest()
        if name in self._capture:
            self.report.captured[name] = head
