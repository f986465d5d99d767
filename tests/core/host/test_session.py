"""host_session: connect, hold the stack's lock for the block, always release and close (a FakeHost
stands in for the SSH connection)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailu_core.config import StackConfig, load_stack_config
from mailu_flows.fake_host import FakeHost
from mailu_flows.host import Host, HostBusy
from mailu_flows.remote import HostLock
from mailu_flows.session import Connect, host_session, lock_holder, stack_lock

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "inlock.ai.yaml"


@pytest.fixture(scope="module")
def config() -> StackConfig:
    return load_stack_config(EXAMPLE)


class Lockable(FakeHost):
    """A FakeHost whose lock and fence commands succeed, remembering the lock holder's script."""

    def __init__(self) -> None:
        super().__init__()
        self.take = self.on(re.compile(r"flock -n -E 75 "), stdout="LOCKED\n")
        self.fence_rule = self.on(re.compile(r"flock -x -w \d+ "))
        self.on(["true"])

    def lock_scripts(self) -> list[str]:
        return self.commands("channel")


def _connect(host: FakeHost) -> tuple[list[StackConfig], Connect]:
    seen: list[StackConfig] = []

    def connect(cfg: StackConfig) -> Host:
        seen.append(cfg)
        return host

    return seen, connect


def test_the_lock_is_held_for_the_block_then_released_and_the_host_closed(config: StackConfig) -> None:
    host = Lockable()
    seen, connect = _connect(host)
    with host_session(config, "backup", 30, connect=connect, holder="backup flow run r1") as got:
        assert got is host and seen == [config]
        assert host.fence == f"{config.paths.lock_file}.commands"  # held: commands hold the fence
        assert "backup flow run r1" in host.lock_scripts()[0]
        assert config.paths.lock_file in host.lock_scripts()[0]
        got.run(["true"])
        assert not host.closed
    assert host.fence is None and host.closed
    assert host.take.used == 1 and host.fence_rule.used == 1


def test_an_exception_in_the_block_still_releases_and_closes(config: StackConfig) -> None:
    host = Lockable()
    _, connect = _connect(host)
    session = host_session(config, "accounts", 0, connect=connect, holder="h")
    with pytest.raises(RuntimeError, match="the task failed"), session:
        assert host.fence is not None
        raise RuntimeError("the task failed")
    assert host.fence is None and host.closed


def test_a_busy_lock_names_its_holder_and_closes_the_connection(config: StackConfig) -> None:
    path = config.paths.lock_file
    host = FakeHost(files={f"{path}.holder": b"deploy flow run brave-otter"})
    host.on(re.compile(r"flock -n -E 75 "), exit=HostLock.BUSY_EXIT)
    _, connect = _connect(host)
    entered = False
    session = host_session(config, "backup", 0, connect=connect, holder="backup flow run r2")
    with pytest.raises(HostBusy, match="deploy flow run brave-otter holds"), session:
        entered = True
    assert not entered and host.closed and host.fence is None
    assert not [c for c in host.calls if c.kind in ("write", "run")]


def test_without_the_lock_nothing_is_locked_and_the_host_is_still_closed(config: StackConfig) -> None:
    host = FakeHost()
    host.on(["true"])
    _, connect = _connect(host)
    session = host_session(config, "backup-verify", 0, lock=False, connect=connect)
    with pytest.raises(ValueError, match="boom"), session as got:
        got.run(["true"])
        raise ValueError("boom")
    assert host.closed and host.commands("channel") == []


def test_a_failed_connection_has_nothing_to_close(config: StackConfig) -> None:
    def refuse(_cfg: StackConfig) -> Host:
        raise ConnectionRefusedError("no route")

    with pytest.raises(ConnectionRefusedError), host_session(config, "backup", 0, connect=refuse):
        pytest.fail("the block ran without a connection")


def test_stack_lock_on_an_open_host_and_the_holder_text(config: StackConfig) -> None:
    host = Lockable()
    with stack_lock(host, config, "restore flow run r3", 5) as lock:
        assert lock.holder == "restore flow run r3" and host.fence == lock.fence
    assert host.fence is None and not host.closed  # the connection is the caller's
    assert lock_holder("backup") == "backup flow run local"  # outside a flow run
