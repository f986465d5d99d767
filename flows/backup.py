"""The `backup` flow: one encrypted backup of the stack's state, then retention.

Per configured volume a throwaway read-only container streams a tar over the flow's SSH
connection into gpg (to the public key in the `gpg_public_key` block) and into the destination;
the stack's rendered files and secrets and, with a managed PostgreSQL, a `pg_dump` join them. The
backup appears only when complete. Takes the host lock (waiting up to `lock_wait_s`), so it never
copies volumes while a deploy or a restore changes them.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from mailu_core.backup import ArchiveEntry
from mailu_core.fields import ComposeService, WaitSeconds
from mailu_flows import redact
from mailu_flows.blocks import StackParameter
from mailu_flows.flows.naming import artifact_key, flow_name, run_namer
from mailu_flows.session import host_session
from mailu_flows.tasks.backup import apply_retention, backup_volumes, default_destination


class BackupReport(BaseModel):
    """What the run made and what retention kept."""

    backup_id: str
    destination: str
    seconds: float
    archives: list[ArchiveEntry]
    consistency: list[str] = Field(default_factory=list)
    removed_partials: list[str] = Field(default_factory=list)
    kept: dict[str, list[str]] = Field(default_factory=dict)
    deleted: list[str] = Field(default_factory=list)


@flow(name=flow_name("backup"), flow_run_name=run_namer("backup"))
def backup(
    config: StackParameter,
    pause_services: Annotated[list[ComposeService] | None, Field(max_length=32)] = None,
    lock_wait_s: WaitSeconds = 600,
) -> BackupReport:
    """Back up every configured volume of the stack, encrypted, then apply retention.

    Args:
        config: The stack: host, volumes, backup destination and retention (its stack block).
        pause_services: Compose services to pause while their volumes are read (at most 32); empty: none.
        lock_wait_s: Seconds to wait for the host lock held by another run (0 to 86400).
    """
    redact.install()
    destination = default_destination(config)
    with host_session(config, "backup", lock_wait_s) as host:
        outcome = backup_volumes(host, config, destination, pause_services or ())
    plan = apply_retention(config, destination)
    manifest = outcome.manifest
    create_table_artifact(
        [
            {
                "archive": a.name,
                "file": destination.label(manifest.backup_id, a.file),
                "plaintext bytes": a.plain_bytes,
                "files": a.file_count,
                "ciphertext sha256": a.cipher_sha256,
            }
            for a in manifest.archives
        ],
        key=artifact_key("backup", config.name),
        description=f"backup {manifest.backup_id} ({outcome.seconds:.1f}s); retention kept "
        f"{len(plan.keep)}, deleted {len(plan.delete)}",
    )
    return BackupReport(
        backup_id=manifest.backup_id,
        destination=destination.label(manifest.backup_id),
        seconds=round(outcome.seconds, 2),
        archives=manifest.archives,
        consistency=manifest.consistency,
        removed_partials=outcome.removed_partials,
        kept=plan.keep,
        deleted=plan.delete,
    )
