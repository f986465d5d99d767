"""A flow run's time on the managed host: connect, take the stack's lock (waiting for it), and always
release and close, whatever happens in between.

    with host_session(config, "backup", lock_wait_s) as host:
        outcome = backup_volumes(host, config, destination, pause)

One SSH connection per run (see docs/architecture.md), opened from the SSH host block; the lock is the
stack's `HostLock` (one mutating run at a time per stack), held by a process fed by a channel of that
same connection, so it frees itself if the run dies. Its holder text names the purpose and the flow
run, which is what a run refused as busy reports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar, overload

from mailu_core.config import StackConfig
from mailu_flows import redact
from mailu_flows.blocks import SshHost, load_block
from mailu_flows.host import Host
from mailu_flows.remote import HostLock, RemoteHost

Connect = Callable[[StackConfig], Host]


def connect_host(config: StackConfig) -> RemoteHost:
    """Open the flow run's one SSH connection, with the key and pinned host key from the block."""
    block = load_block(SshHost, config.blocks.ssh_host)
    for secret in (block.private_key, block.private_key_passphrase):
        redact.register_secret(secret.get_secret_value())  # never in a log, traceback or state message
    host = RemoteHost(
        str(block.address),
        block.port,
        block.user,
        block.private_key.get_secret_value(),
        block.host_keys,
        key_passphrase=block.private_key_passphrase.get_secret_value() or None,
        max_command_s=config.host.max_command_s,
    )
    return host.connect()


def run_label() -> str:
    """The current flow run, by name (or id), for a lock holder's text; `local` outside a run."""
    from prefect.runtime import flow_run  # lazily: the engines that import this module stay Prefect-free

    return str(flow_run.get_name() or flow_run.get_id() or "local")


def lock_holder(purpose: str) -> str:
    """What the lock's holder file says while this run holds it: `<purpose> flow run <name>`."""
    return f"{purpose} flow run {run_label()}"


@contextlib.contextmanager
def stack_lock(host: Host, config: StackConfig, holder: str, wait_s: float) -> Iterator[HostLock]:
    """Hold the stack's host lock (waiting up to `wait_s`) for the block; released however it ends.
    A lock still busy after the wait raises `HostBusy` naming its holder."""
    lock = HostLock(host, config.paths.lock_file, holder)
    lock.acquire(wait_s=wait_s)
    try:
        yield lock
    finally:
        lock.release()


HostT = TypeVar("HostT", bound=Host)


@overload
def host_session(
    config: StackConfig,
    purpose: str,
    lock_wait_s: float,
    *,
    lock: bool = True,
    connect: None = None,
    holder: str | None = None,
) -> contextlib.AbstractContextManager[RemoteHost]: ...


@overload
def host_session(
    config: StackConfig,
    purpose: str,
    lock_wait_s: float,
    *,
    lock: bool = True,
    connect: Callable[[StackConfig], HostT],
    holder: str | None = None,
) -> contextlib.AbstractContextManager[HostT]: ...


def host_session(
    config: StackConfig,
    purpose: str,
    lock_wait_s: float,
    *,
    lock: bool = True,
    connect: Callable[[StackConfig], Host] | None = None,
    holder: str | None = None,
) -> contextlib.AbstractContextManager[Host]:
    """Connect to the stack's host and, unless `lock` is False (a read-only run), hold its lock for the
    block, waiting up to `lock_wait_s` seconds. The lock is released and the connection closed however
    the block ends; a busy lock (`HostBusy`, naming its holder) closes the connection too.

    `purpose` names the run in the lock's holder text (`<purpose> flow run <name>`; `holder` replaces
    the whole text); `connect` replaces the SSH connection from the block (tests pass a FakeHost). The
    block gets what `connect` returns: a `RemoteHost` by default."""
    return _session(config, purpose, lock_wait_s, lock, connect or connect_host, holder)


@contextlib.contextmanager
def _session(
    config: StackConfig,
    purpose: str,
    lock_wait_s: float,
    lock: bool,
    connect: Callable[[StackConfig], Host],
    holder: str | None,
) -> Iterator[Host]:
    host = connect(config)
    try:
        if not lock:
            yield host
            return
        with stack_lock(host, config, holder or lock_holder(purpose), lock_wait_s):
            yield host
    finally:
        host.close()
