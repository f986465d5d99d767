"""FakeHost, the in-memory Host: scripted answers, files, the call record, channels; and the host lock's
decisions (taken, busy naming the holder) driven through it."""

from __future__ import annotations

import io
import re

import pytest

from mailu_flows.fake_host import Answer, FakeHost, UnexpectedCommand
from mailu_flows.host import CommandFailed, CommandTimedOut, Host, HostBusy
from mailu_flows.remote import HostLock, RemoteHost


def test_both_hosts_satisfy_the_protocol() -> None:
    assert isinstance(FakeHost(), Host)
    remote = RemoteHost("192.0.2.1", 22, "deploy", "unused", "ssh-ed25519 AAAA")  # never connects
    assert isinstance(remote, Host)


def test_argv_prefix_regex_and_latest_rule_wins() -> None:
    host = FakeHost()
    host.on(["docker", "compose"], stdout="compose says hi")
    host.on(r"^docker compose .* ps\b", stdout=b"ps output")
    host.on(re.compile(r"volume ls"), stdout="v1\nv2\n")
    assert host.run(["docker", "compose", "-p", "x", "ps"]).text() == "ps output"
    assert host.run("docker compose -p x up -d").text() == "compose says hi"
    assert host.run(["docker", "volume", "ls", "-q"]).text().split() == ["v1", "v2"]
    host.on(["docker", "compose"], stdout="overridden")
    assert host.run("docker compose -p x ps").text() == "overridden"


def test_unscripted_command_is_refused_naming_it_unless_a_default_is_given() -> None:
    with pytest.raises(UnexpectedCommand, match="rm -rf /srv"):
        FakeHost().run(["rm", "-rf", "/srv"])
    assert FakeHost(default=Answer(exit=0)).run("anything at all").ok


def test_exit_codes_check_and_errors_behave_like_the_ssh_host() -> None:
    host = FakeHost()
    host.on(["false"], exit=1, stderr="boom\nthe verdict")
    with pytest.raises(CommandFailed) as failed:
        host.run(["false"])
    assert failed.value.last_line() == "the verdict"
    assert host.run(["false"], check=False).returncode == 1
    host.on(["sleep"], Answer(error=CommandTimedOut("on fake: `sleep 9` did not finish within 1 s")))
    with pytest.raises(CommandTimedOut):
        host.run(["sleep", "9"], timeout=1)


def test_times_limits_a_rule_and_a_callable_answers_from_the_call() -> None:
    host = FakeHost()
    host.on(["probe"], stdout="late")
    first = host.on(["probe"], stdout="early", times=1)
    host.on(["echo"], lambda call: Answer(stdout=(call.stdin or b"").upper()))
    assert [host.run("probe").text(), host.run("probe").text()] == ["early", "late"]
    assert first.used == 1
    assert host.run(["echo"], stdin=b"secret via stdin").stdout == b"SECRET VIA STDIN"


def test_files_modes_and_the_call_record() -> None:
    host = FakeHost(files={"/srv/a": b"old"})
    assert host.read_file("/srv/a") == b"old" and host.read_file("/srv/missing") is None
    host.write_file("/srv/.env", b"KEY=1\n", mode=0o600)
    host.makedirs("/srv/dir", mode=0o700)
    host.on(["true"])
    host.run(["true"], stdin=b"x")
    assert host.files["/srv/.env"] == b"KEY=1\n" and host.file_mode("/srv/.env") == 0o600
    assert host.file_mode("/srv/missing") is None
    assert [(c.kind, c.path or c.command) for c in host.calls] == [
        ("read", "/srv/a"),
        ("read", "/srv/missing"),
        ("write", "/srv/.env"),
        ("mkdir", "/srv/dir"),
        ("run", "true"),
        ("mode", "/srv/.env"),
        ("mode", "/srv/missing"),
    ]
    assert host.calls[4].stdin == b"x" and host.commands() == ["true"]


def test_streams_and_channels_answer_from_the_same_rules() -> None:
    host = FakeHost()
    host.on(["tar", "-c"], stdout=b"x" * 10, stderr="warn")
    sink = io.BytesIO()
    result = host.stream_stdout(["tar", "-c", "."], sink, chunk=3)
    assert sink.getvalue() == b"x" * 10 and result.stderr == b"warn" and result.stdout == b""
    host.on(["tar", "-x"], exit=2, stderr="cannot write")
    channel = host.open_channel()
    channel.set_combine_stderr(True)
    channel.exec_command("tar -x -C /restore")
    channel.sendall(b"chunk1")
    channel.sendall(b"chunk2")
    channel.shutdown_write()
    assert channel.recv(1 << 16) == b"cannot write" and channel.recv(10) == b""
    assert channel.recv_exit_status() == 2
    assert host.calls[-1].kind == "channel" and host.calls[-1].stdin == b"chunk1chunk2"


def test_host_lock_taken_sets_the_fence_and_release_clears_it() -> None:
    host = FakeHost()
    take = host.on(re.compile(r"flock -n -E 75 .*stack\.lock"), stdout="LOCKED\n")
    fence = host.on(re.compile(r"flock -x -w \d+ .*stack\.lock\.commands"))
    with HostLock(host, "/srv/mailu/.mailu-flows/stacks/s/stack.lock", "deploy run 1") as lock:
        assert host.fence == lock.fence == "/srv/mailu/.mailu-flows/stacks/s/stack.lock.commands"
        assert "deploy run 1" in host.commands("channel")[0]
    assert host.fence is None and take.used == 1 and fence.used == 1


def test_host_lock_busy_names_the_holder_and_changes_nothing() -> None:
    path = "/srv/mailu/.mailu-flows/stacks/s/stack.lock"
    host = FakeHost(files={f"{path}.holder": b"rollback flow run 7"})
    host.on(re.compile(r"flock -n -E 75 "), exit=HostLock.BUSY_EXIT)
    with pytest.raises(HostBusy, match="rollback flow run 7 holds"):
        HostLock(host, path, "deploy run 2").acquire(wait_s=0)
    assert host.fence is None
    assert not [c for c in host.calls if c.kind in ("write", "run")]
