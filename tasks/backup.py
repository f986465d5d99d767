"""Prefect tasks around `mailu_flows.backup`: each takes the flow run's one SSH connection.

Inputs include live objects (the connection, the destination), so caching is off (`NO_CACHE`);
nothing retries: a failed backup leaves no partial that looks complete, and the next run redoes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from mailu_core.backup import RetentionPlan, VerificationRecord
from mailu_core.config import StackConfig
from mailu_flows.backup import (
    BackupOutcome,
    Destination,
    LocalDirectory,
    RestoreResult,
    prune,
    restore_backup,
    run_backup,
    verify_backup,
)
from mailu_flows.blocks import load_block
from mailu_flows.blocks.backup import BackupSigningKey
from mailu_flows.blocks.gpg import GpgBackupPrivateKey, GpgBackupPublicKey
from mailu_flows.redact import register_secret
from mailu_flows.remote import RemoteHost


def _log(message: str) -> None:
    try:
        get_run_logger().info(message)
    except MissingContextError:
        logging.getLogger("mailu_flows.backup").info(message)


def _warn(message: str) -> None:
    try:
        get_run_logger().warning(message)
    except MissingContextError:
        logging.getLogger("mailu_flows.backup").warning(message)


def default_destination(config: StackConfig) -> Destination:
    """This stack's directory under the config's backup directory, on the machine that runs the flow."""
    return LocalDirectory(config.backup.destination_dir, config.name)


def load_signing_key(config: StackConfig) -> bytes:
    """The key that signs (backup) and authenticates (verify, restore, retention) backup manifests."""
    block = load_block(BackupSigningKey, config.blocks.backup_signing_key)
    register_secret(block.key.get_secret_value())
    return block.key_bytes()


def load_public_key(config: StackConfig) -> GpgBackupPublicKey:
    return load_block(GpgBackupPublicKey, config.blocks.gpg_public_key)


def load_private_key(config: StackConfig) -> GpgBackupPrivateKey:
    block = load_block(GpgBackupPrivateKey, config.blocks.gpg_private_key)
    register_secret(block.armored_private_key.get_secret_value())
    if block.passphrase.get_secret_value():
        register_secret(block.passphrase.get_secret_value())
    return block


@task(name="backup-volumes", cache_policy=NO_CACHE)
def backup_volumes(
    host: RemoteHost,
    config: StackConfig,
    destination: Destination,
    pause_services: Sequence[str] = (),
    tag: str | None = None,
) -> BackupOutcome:
    """Archive every configured volume, the stack files (and the database dump) into one backup."""
    return run_backup(
        host, config, destination, load_public_key(config), load_signing_key(config), tag=tag,
        pause_services=pause_services, log=_log, warn=_warn,
    )  # fmt: skip


@task(name="apply-retention", cache_policy=NO_CACHE)
def apply_retention(config: StackConfig, destination: Destination) -> RetentionPlan:
    return prune(destination, config, load_signing_key(config), log=_log)


@task(name="verify-backup", cache_policy=NO_CACHE)
def verify_newest_backup(
    host: RemoteHost,
    config: StackConfig,
    destination: Destination,
    time_budget_s: float | None,
    drill: bool = True,
    backup_id: str | None = None,
) -> VerificationRecord:
    return verify_backup(
        host,
        config,
        destination,
        load_private_key(config),
        load_signing_key(config),
        backup_id=backup_id,
        time_budget_s=time_budget_s,
        drill=drill,
        log=_log,
    )


@task(name="restore-backup", cache_policy=NO_CACHE)
def restore_backup_task(
    host: RemoteHost,
    config: StackConfig,
    backup_id: str,
    holder: str,
    destination: Destination | None = None,
    volumes: Sequence[str] | None = None,
    lock_wait_s: float = 0.0,
    lock_held: bool = False,
) -> RestoreResult:
    """Restore a backup into the stopped stack's volumes (for the rollback flow).

    Takes the host lock (unless the caller holds it: `lock_held`), refuses a backup that fails
    verification or a running stack, and takes a safety backup of the current volumes first.
    """
    return restore_backup(
        host,
        config,
        destination or default_destination(config),
        load_public_key(config),
        load_private_key(config),
        load_signing_key(config),
        backup_id,
        holder=holder,
        volumes=volumes,
        lock_wait_s=lock_wait_s,
        lock_held=lock_held,
        log=_log,
    )
