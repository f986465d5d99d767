"""`FakeHost`: a `Host` in memory, for testing what an engine decides without a machine (like httpx's
`MockTransport`).

- Files live in `files` (path -> bytes) with their modes in `modes`; `write_file`/`read_file`/
  `file_mode`/`makedirs` work on them.
- Commands get scripted answers: `host.on(["docker", "compose"], stdout=b"...")` matches by argv
  prefix (the command split as the shell would), `host.on(re.compile(r"^for f in "), ...)` or
  `host.on(r"regex", ...)` by a regular expression searched in the command text, and a callable
  answer computes one from the `Call`. The latest matching rule wins, so a test can override a
  default; a rule with `times=n` answers n times and then steps aside.
- A command nothing answers raises `UnexpectedCommand` naming it, unless the host was built with a
  `default` answer: a test says what it expects the engine to run.
- Every operation is recorded in `calls` (`Call.kind` is "run", "stream", "channel", "read",
  "write", "mode" or "mkdir"), so a test can check what ran, in what order and with which stdin.

`check=True` raises `CommandFailed` on a non-zero answer, as `RemoteHost` does; an answer can also
raise (`Answer(error=CommandTimedOut(...))`). Channels (`open_channel`) answer `exec_command` from the
same rules: their stdout is read by `recv`, what is sent to them is kept on the call's `stdin`.
"""

from __future__ import annotations

import re
import shlex
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from mailu_flows.host import (
    Channel,
    CommandFailed,
    CommandResult,
    RemoteError,
    command_text,
)

__all__ = ["Answer", "Call", "FakeChannel", "FakeHost", "Rule", "UnexpectedCommand"]

CallKind = Literal["run", "stream", "channel", "read", "write", "mode", "mkdir"]


class UnexpectedCommand(RemoteError):
    """FakeHost: the engine ran a command no scripted answer matches (the message names it)."""


@dataclass(frozen=True)
class Answer:
    """What a scripted command prints and exits with (or the error it raises)."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit: int = 0
    error: BaseException | None = None


@dataclass
class Call:
    """One operation on the fake host, as the engine made it."""

    kind: CallKind
    command: str = ""
    path: str = ""
    stdin: bytes | None = None
    data: bytes | None = None
    mode: int | None = None
    timeout: float | None = None

    @property
    def argv(self) -> list[str]:
        """The command split as the shell would (empty for file operations)."""
        return _split(self.command)


Matcher = Sequence[str] | re.Pattern[str] | str
Responder = Answer | Callable[[Call], Answer]


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


@dataclass
class Rule:
    """A scripted answer and what it matches; `times=None` answers forever."""

    match: Matcher
    answer: Responder
    times: int | None = None
    used: int = 0

    def matches(self, command: str) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if isinstance(self.match, re.Pattern):
            return self.match.search(command) is not None
        if isinstance(self.match, str):
            return re.search(self.match, command) is not None
        prefix = list(self.match)
        return _split(command)[: len(prefix)] == prefix

    def respond(self, call: Call) -> Answer:
        self.used += 1
        return self.answer(call) if callable(self.answer) else self.answer


class FakeChannel:
    """A channel whose command is answered by the fake host's rules (see the module docstring)."""

    def __init__(self, host: FakeHost) -> None:
        self._host = host
        self._call: Call | None = None
        self._out = b""
        self._err = b""
        self._exit = -1
        self._combine = False
        self.closed = False

    def exec_command(self, command: str) -> None:
        self._call = Call("channel", command=command, stdin=b"")
        self._host.calls.append(self._call)
        answer = self._host.answer(self._call)
        if answer.error is not None:
            raise answer.error
        self._out = answer.stdout + (answer.stderr if self._combine else b"")
        self._err = b"" if self._combine else answer.stderr
        self._exit = answer.exit

    def sendall(self, data: bytes) -> None:
        assert self._call is not None, "sendall before exec_command"
        self._call.stdin = (self._call.stdin or b"") + bytes(data)

    def shutdown_write(self) -> None:
        return None

    def recv(self, nbytes: int) -> bytes:
        data, self._out = self._out[:nbytes], self._out[nbytes:]
        return data

    def recv_ready(self) -> bool:
        return bool(self._out)

    def recv_stderr(self, nbytes: int) -> bytes:
        data, self._err = self._err[:nbytes], self._err[nbytes:]
        return data

    def recv_stderr_ready(self) -> bool:
        return bool(self._err)

    def recv_exit_status(self) -> int:
        return self._exit

    def set_combine_stderr(self, combine: bool) -> bool:
        before, self._combine = self._combine, combine
        return before

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeHost:
    """An in-memory `Host` (see the module docstring)."""

    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    default: Answer | None = None
    name: str = "deploy@fake-host:22"
    calls: list[Call] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    fence: str | None = None
    max_command_s: float | None = None
    closed: bool = False

    @property
    def label(self) -> str:
        return self.name

    # --- scripting ----------------------------------------------------------------------------

    def on(
        self,
        match: Matcher,
        answer: Responder | None = None,
        *,
        stdout: bytes | str = b"",
        stderr: bytes | str = b"",
        exit: int = 0,
        times: int | None = None,
    ) -> Rule:
        """Answer commands that `match` (argv prefix, regex text or compiled pattern) with `answer`, or
        with the given stdout/stderr/exit. Returns the rule (its `used` counts the answers given)."""
        if answer is None:
            out = stdout.encode() if isinstance(stdout, str) else stdout
            err = stderr.encode() if isinstance(stderr, str) else stderr
            answer = Answer(out, err, exit)
        rule = Rule(match, answer, times)
        self.rules.append(rule)
        return rule

    def answer(self, call: Call) -> Answer:
        """The answer of the latest rule that matches `call.command` (or the default)."""
        for rule in reversed(self.rules):
            if rule.matches(call.command):
                return rule.respond(call)
        if self.default is not None:
            return self.default
        raise UnexpectedCommand(f"FakeHost {self.name}: no answer scripted for `{call.command}`")

    def commands(self, kind: CallKind | None = None) -> list[str]:
        """The command texts run so far (of one kind, or run/stream/channel alike)."""
        kinds = {kind} if kind else {"run", "stream", "channel"}
        return [c.command for c in self.calls if c.kind in kinds]

    # --- Host ---------------------------------------------------------------------------------

    def run(
        self,
        command: str | Sequence[str],
        *,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = 600,
        max_output: int = 64 << 20,
    ) -> CommandResult:
        call = Call("run", command=command_text(command), stdin=stdin, timeout=timeout)
        self.calls.append(call)
        answer = self.answer(call)
        if answer.error is not None:
            raise answer.error
        result = CommandResult(call.command, answer.exit, answer.stdout, answer.stderr)
        if len(result.stdout) + len(result.stderr) > max_output:
            raise RemoteError(f"on {self.label}: `{call.command[:200]}` printed more than {max_output} bytes")
        if check and result.returncode != 0:
            raise CommandFailed(self.label, result)
        return result

    def stream_stdout(
        self, command: str | Sequence[str], sink: BinaryIO, chunk: int = 1 << 20
    ) -> CommandResult:
        call = Call("stream", command=command_text(command))
        self.calls.append(call)
        answer = self.answer(call)
        if answer.error is not None:
            raise answer.error
        for i in range(0, len(answer.stdout), chunk):
            sink.write(answer.stdout[i : i + chunk])
        return CommandResult(call.command, answer.exit, b"", answer.stderr)

    def read_file(self, path: str) -> bytes | None:
        self.calls.append(Call("read", path=path))
        return self.files.get(path)

    def file_mode(self, path: str) -> int | None:
        self.calls.append(Call("mode", path=path))
        return stat.S_IMODE(self.modes.get(path, 0o644)) if path in self.files else None

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.calls.append(Call("write", path=path, data=bytes(data), mode=mode))
        self.files[path] = bytes(data)
        self.modes[path] = mode

    def makedirs(self, path: str, mode: int = 0o755) -> None:
        self.calls.append(Call("mkdir", path=path, mode=mode))
        self.dirs.add(path)

    def open_channel(self) -> Channel:
        return FakeChannel(self)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
