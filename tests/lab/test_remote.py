"""The product's SSH layer against the lab's sshd: pinned key, one transport, atomic 0600 writes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import paramiko
import pytest

from mailu_flows.remote import HostKeyMismatch, RemoteError, RemoteHost

pytestmark = pytest.mark.lab


def _host(lab: dict[str, Any], host_key: str | None = None) -> RemoteHost:
    ssh = lab["ssh"]
    pinned = " ".join(Path(ssh["known_hosts_file"]).read_text().split()[1:3])
    return RemoteHost(
        ssh["host"], ssh["port"], ssh["user"], Path(ssh["private_key_file"]).read_text(), host_key or pinned
    )


def test_commands_share_one_connection_and_stdin_carries_data(lab: dict[str, Any]) -> None:
    with _host(lab) as host:
        assert host.run("echo hi").text() == "hi\n"
        assert (
            host.run(["sha256sum"], stdin=b"abc")
            .text()
            .startswith("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        )
        failed = host.run("exit 3", check=False)
        assert failed.returncode == 3
        with pytest.raises(RemoteError, match="exited 3"):
            host.run("echo nope >&2; exit 3")


def test_wrong_pinned_key_is_refused(lab: dict[str, Any]) -> None:
    # The client's own key stands in for "some other host's key".
    other = paramiko.Ed25519Key.from_private_key(
        io.StringIO(Path(lab["ssh"]["private_key_file"]).read_text())
    )
    with pytest.raises(HostKeyMismatch, match="not the pinned one"):
        _host(lab, f"{other.get_name()} {other.get_base64()}").connect()


def test_secret_file_is_written_atomically_with_mode_0600(lab: dict[str, Any]) -> None:
    path = f"{lab['stack_root']}/.remote-test-secret"
    with _host(lab) as host:
        host.write_file(path, b"s3cret", mode=0o600)
        assert host.read_file(path) == b"s3cret"
        assert host.file_mode(path) == 0o600
        host.write_file(path, b"s3cret-2", mode=0o600)
        assert host.read_file(path) == b"s3cret-2"
        host.run(["rm", "-f", path])
        assert host.read_file(path) is None


def test_host_lock_is_exclusive_and_frees_itself_when_the_holder_dies(lab: dict[str, Any]) -> None:

    from mailu_flows.remote import HostBusy, HostLock

    path = f"{lab['stack_root']}/.test-host-lock"
    for leftover in (path, f"{path}.holder"):
        Path(leftover).unlink(missing_ok=True)
    with _host(lab) as first, _host(lab) as second:
        with HostLock(first, path, "first run"), pytest.raises(HostBusy, match="first run holds"):
            HostLock(second, path, "second run").acquire(wait_s=0)
        # the lock and the holder's name are private to the deploy user
        assert {oct(Path(p).stat().st_mode & 0o777) for p in (path, f"{path}.holder")} == {"0o600"}
        HostLock(second, path, "second run").acquire(wait_s=0)  # released: free again
        second.close()

    # A process that takes the lock and is then killed (no clean release) must not leave it held.
    holder = _lock_holder(lab, path, "import time; time.sleep(600)")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        with _host(lab) as third:
            with pytest.raises(HostBusy, match="killed run"):
                HostLock(third, path, "third run").acquire(wait_s=0)
            holder.kill()
            holder.wait()
            HostLock(third, path, "third run").acquire(wait_s=10, poll_s=0.2)
    finally:
        holder.kill()


def _lock_holder(lab: dict[str, Any], path: str, then: str) -> Any:
    """Another process that takes the host lock at `path` as 'killed run', prints 'held', then runs
    `then` (Python, with the connection as `h`): the test kills it."""
    import subprocess
    import sys

    ssh = lab["ssh"]
    script = (
        "import pathlib\n"
        "from mailu_flows.remote import RemoteHost, HostLock\n"
        f"h = RemoteHost({ssh['host']!r}, {ssh['port']}, {ssh['user']!r}, "
        f"pathlib.Path({ssh['private_key_file']!r}).read_text(), {_pinned(lab)!r}).connect()\n"
        f"lock = HostLock(h, {path!r}, 'killed run')\n"
        "lock.acquire()\n"
        "print('held', flush=True)\n"
        f"{then}\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)


def _pinned(lab: dict[str, Any]) -> str:
    return " ".join(Path(lab["ssh"]["known_hosts_file"]).read_text().split()[1:3])


def test_a_command_past_its_deadline_is_stopped_on_the_host(lab: dict[str, Any]) -> None:
    """A wedged command (a hung `docker`) must not hang the run and its host lock: the deadline stops its
    whole process group on the host and the run fails naming the command."""
    import subprocess
    import time

    from mailu_flows.remote import CommandTimedOut

    marker = f"sleep 3{time.monotonic_ns() % 1000:03d}"  # a unique command line to look for
    with _host(lab) as host:
        started = time.monotonic()
        with pytest.raises(CommandTimedOut, match="did not finish within 2 s"):
            host.run(f"{marker} | cat; echo never", timeout=2)
        assert time.monotonic() - started < 10
        assert host.run("echo still usable", timeout=5).text().strip() == "still usable"
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert left == [], f"{marker} still runs on the host"


def test_the_lock_is_not_handed_on_while_a_dead_holders_command_still_runs(lab: dict[str, Any]) -> None:
    """A run killed mid-command frees the lock (its connection ends), but sshd leaves the command
    running; the next holder waits for it instead of overlapping it."""
    import time

    from mailu_flows.remote import HostLock

    path = f"{lab['stack_root']}/.test-fence-lock"
    marker = Path(f"{lab['stack_root']}/.test-fence-marker")
    marker.unlink(missing_ok=True)
    holder = _lock_holder(lab, path, f"h.run('sleep 6; touch {marker}', timeout=60)")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        time.sleep(1)  # the command is running on the host
        holder.kill()
        holder.wait()
        with _host(lab) as next_run:
            started = time.monotonic()
            lock = HostLock(next_run, path, "next run")
            lock.acquire(wait_s=30, poll_s=0.2)
            waited = time.monotonic() - started
            assert marker.exists(), "the lock was handed on while the dead run's command still ran"
            assert waited > 2
            # our own commands hold the fence shared, and a second fence taker must wait for them
            assert next_run.fence == lock.fence
            assert next_run.run(["true"]).ok
            lock.release()
            assert next_run.fence is None
    finally:
        holder.kill()
        marker.unlink(missing_ok=True)


def test_a_command_printing_without_end_is_stopped_at_the_output_cap(lab: dict[str, Any]) -> None:
    from mailu_flows.remote import RemoteError

    with _host(lab) as host:
        with pytest.raises(RemoteError, match="printed more than 1000000 bytes; stopped"):
            host.run("yes mailu", max_output=1_000_000, timeout=60)
        assert host.run(["echo", "still usable"]).text() == "still usable\n"


def test_output_written_after_the_command_exited_is_read_up_to_eof(lab: dict[str, Any]) -> None:
    """sshd may send a command's exit status before the last of its output (RFC 4254 allows it; a
    deploy once parsed a `docker inspect` cut short so, right after `compose up`). The output ends at
    EOF: here the shell exits at once while a child of it still writes; a child that holds the output
    open longer is given a short grace, then the run goes on without it."""
    import time

    from mailu_flows.remote import OUTPUT_GRACE_AFTER_EXIT_S

    with _host(lab) as host:
        late = host.run("(sleep 0.7; echo late; head -c 300000 /dev/zero | tr '\\0' x) & echo early")
        assert late.text().startswith("early\nlate\n") and len(late.stdout) == len("early\nlate\n") + 300000
        start = time.monotonic()
        held = host.run("(sleep 30; echo never) & echo early", timeout=60)
        assert held.text() == "early\n"
        assert time.monotonic() - start < OUTPUT_GRACE_AFTER_EXIT_S + 5
