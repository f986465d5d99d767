"""What the engines need from the managed host, as a protocol: `Host`.

`mailu_flows.remote.RemoteHost` is the SSH implementation (paramiko); `mailu_flows.fake_host.FakeHost`
is an in-memory one with scripted command answers, so an engine's decisions can be tested without a
host. This module imports no SSH library: the results, the errors and the protocol are all an engine
or a test needs to know.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO, Protocol, runtime_checkable

from mailu_core.errors import MailuFlowsError

__all__ = [
    "Channel",
    "CommandFailed",
    "CommandResult",
    "CommandTimedOut",
    "Host",
    "HostBusy",
    "HostKeyMismatch",
    "RemoteError",
    "command_label",
    "command_text",
]


def command_text(command: str | Sequence[str]) -> str:
    """The shell text of a command: a list is shell-quoted word by word, a string is taken as is."""
    return command if isinstance(command, str) else shlex.join(command)


def command_label(command: str) -> str:
    """A short name for a failed command: `compose <subcommand> [service]`, `docker run (<entrypoint>)`
    or the program, never its arguments (an `exec` carries a whole script, and arguments may carry
    values nobody should read)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    if words[:2] == ["docker", "run"] and "--entrypoint" in words:  # a helper: named by what it runs
        return f"docker run ({words[words.index('--entrypoint') + 1]})"
    if "compose" not in words:
        return PurePosixPath(words[0]).name if words else "command"
    rest = words[words.index("compose") + 1 :]
    while rest and rest[0].startswith("-"):  # global options (`-p name`, `-f file`) before the subcommand
        rest = rest[2:] if rest[0] in ("-p", "-f", "--project-name", "--file", "--env-file") else rest[1:]
    if not rest:
        return "compose"
    sub, args = rest[0], rest[1:]
    if sub in ("exec", "run"):
        valued = {"-u", "--user", "-w", "--workdir", "-e", "--env", "--index", "--entrypoint", "--name", "-v"}
        i = 0
        while i < len(args) and args[i].startswith("-"):
            i += 2 if args[i] in valued else 1
        return f"compose {sub} {args[i]}" if i < len(args) else f"compose {sub}"
    return f"compose {sub}"


@dataclass(frozen=True)
class CommandResult:
    command: str
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class RemoteError(MailuFlowsError, RuntimeError):
    """A command or file operation on the managed host failed; the message names it."""


class CommandTimedOut(RemoteError):
    """A remote command passed its deadline: it was stopped on the host and the run fails naming it."""


class CommandFailed(RemoteError):
    """A command on the host exited non-zero; keeps the command, its exit code and its output."""

    def __init__(self, label: str, result: CommandResult) -> None:
        self.result = result
        output = (result.stderr or result.stdout).decode(errors="replace").strip()
        super().__init__(f"on {label}: `{result.command}` exited {result.returncode}: {output[-1500:]}")

    def last_line(self) -> str:
        """The command's final verdict (compose prints progress first, its error last)."""
        lines = [
            x.strip()
            for x in (self.result.stderr or self.result.stdout).decode(errors="replace").splitlines()
        ]
        lines = [x for x in lines if x]
        return lines[-1] if lines else f"exit {self.result.returncode}"


class HostKeyMismatch(RemoteError):
    """The host presented another key than the pinned one: refuse, never learn."""


class HostBusy(RemoteError):
    """Another mutating flow holds the host lock."""


@runtime_checkable
class Channel(Protocol):
    """One command with its own stdin/stdout/stderr, as the streaming engines (backup, restore) and the
    host lock drive it: the part of `paramiko.Channel` they use."""

    def exec_command(self, command: str) -> None: ...

    def sendall(self, data: bytes) -> None: ...

    def shutdown_write(self) -> None: ...

    def recv(self, nbytes: int) -> bytes: ...

    def recv_ready(self) -> bool: ...

    def recv_stderr(self, nbytes: int) -> bytes: ...

    def recv_stderr_ready(self) -> bool: ...

    def recv_exit_status(self) -> int: ...

    def set_combine_stderr(self, combine: bool) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class Host(Protocol):
    """The managed host as the engines use it: commands, streams, files and raw channels.

    `fence` is set by `HostLock` while it is held: every command then holds a shared flock on that file
    (see `mailu_flows.remote.HostLock`). Secrets reach the host through `stdin` or `write_file`, never
    through a command line."""

    fence: str | None
    max_command_s: float | None

    @property
    def label(self) -> str:
        """`user@address:port`, for messages."""
        ...

    def run(
        self,
        command: str | Sequence[str],
        *,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = 600,
        max_output: int = 64 << 20,
    ) -> CommandResult:
        """Run a command (a list is shell-quoted); raises `CommandFailed` on a non-zero exit if `check`,
        `CommandTimedOut` past `timeout`."""
        ...

    def stream_stdout(
        self, command: str | Sequence[str], sink: BinaryIO, chunk: int = 1 << 20
    ) -> CommandResult:
        """Run a command and copy its stdout into `sink` as it arrives (the result's stdout is empty)."""
        ...

    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        ...

    def file_mode(self, path: str) -> int | None:
        """The file's permission bits, or None when it does not exist."""
        ...

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write atomically; the file is never wider than `mode`, not even while it is written."""
        ...

    def makedirs(self, path: str, mode: int = 0o755) -> None: ...

    def open_channel(self) -> Channel:
        """A new channel on the host's connection, for a command fed or read as a stream."""
        ...

    def close(self) -> None: ...
