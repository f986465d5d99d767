"""Start and stop the lab's daemons by pid file, never by process name.

Each daemon runs detached in its own session, logs to `<lab>/logs/<name>.log`, and is
recorded in `<lab>/pids/<name>.pid`. `stop` only signals the pid it recorded, and only
if that pid still runs the command it started (pids get reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from lab.endpoints import lab_dir


class LabError(RuntimeError):
    """A lab part could not be brought up or checked; the message says which and why."""


def run_checked(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800,
) -> str:
    """Run a build command (no secrets in argv): its stdout, or LabError with the output's tail."""
    full_env = {**os.environ, **env} if env else None
    proc = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise LabError(f"{' '.join(argv[:4])} … failed (rc {proc.returncode}):\n{tail}")
    return proc.stdout


def pid_file(name: str) -> Path:
    return lab_dir() / "pids" / f"{name}.pid"


def log_file(name: str) -> Path:
    return lab_dir() / "logs" / f"{name}.log"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def running_pid(name: str) -> int | None:
    """The pid recorded for `name`, if that process is still alive and still the one we started."""
    path = pid_file(name)
    try:
        pid_text, _, marker = path.read_text().partition("\n")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    cmd = _cmdline(pid)
    if not cmd:
        return None
    if marker and marker.encode() not in cmd:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat.rsplit(")", 1)[1].split()[0] == "Z":  # zombie: exited, not yet reaped
        return None
    return pid


def start_daemon(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready: Callable[[], bool] | None = None,
    timeout: float = 30.0,
) -> int:
    """Start `argv` detached unless it already runs; wait until `ready()` is true. Returns the pid.
    It runs in `cwd`, by default the checkout (so `python -m lab.…` finds the lab, which is not
    installed with the package), with the checkout on PYTHONPATH for the same reason."""
    pid = running_pid(name)
    if pid is not None:
        if ready is None or _wait(ready, timeout):
            return pid
        raise LabError(f"{name} (pid {pid}) runs but is not ready; see {log_file(name)}")
    for d in (pid_file(name).parent, log_file(name).parent):
        d.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    checkout = str(Path(__file__).resolve().parents[1])
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, full_env.get("PYTHONPATH", "")) if p)
    with open(log_file(name), "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd if cwd is not None else checkout,
            start_new_session=True,
        )
    # The marker (argv[0]'s basename) guards against a reused pid.
    pid_file(name).write_text(f"{proc.pid}\n{Path(argv[0]).name}")
    if ready is not None and not _wait(ready, timeout, proc):
        tail = log_file(name).read_text(errors="replace")[-2000:]
        raise LabError(f"{name} did not become ready within {timeout:.0f}s; log tail:\n{tail}")
    return proc.pid


def stop_daemon(name: str, timeout: float = 10.0) -> bool:
    """SIGTERM the recorded pid (SIGKILL after `timeout`). True if something was stopped."""
    pid = running_pid(name)
    pid_file(name).unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        # Reap it if it is our child; a zombie counts as gone.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(ready: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if ready():
                return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
