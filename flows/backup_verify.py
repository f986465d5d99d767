"""The `backup-verify` flow (daily by default): prove the newest backup restores.

Each check is a row of a table artifact; the flow fails if any row fails, and its error names the
check and the file. Checks: age and completeness of the newest backup, the key, ciphertext
sha256, decryption with the private key block, tar read-through, file counts and listing digests,
the DKIM key, and a restore drill into scratch volumes (a rotating sample within `time_budget_s`).
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from mailu_core.backup import VerificationRecord
from mailu_core.config import StackConfig
from mailu_flows import redact
from tasks.backup import default_destination, verify_newest_backup
from tasks.host import connect_host


class BackupVerificationFailed(RuntimeError):
    """At least one check failed; the message lists each failed check with its file."""


@flow(name="backup-verify")
def backup_verify(
    config: StackConfig, time_budget_s: float | None = 1800.0, drill: bool = True
) -> VerificationRecord:
    """Verify the newest backup; fail if any check fails."""
    redact.install()
    destination = default_destination(config)
    host = connect_host(config)
    try:
        record = verify_newest_backup(host, config, destination, time_budget_s, drill)
    finally:
        host.close()
    create_table_artifact(
        [{"check": r.check, "file": r.file, "ok": r.ok, "detail": r.detail} for r in record.checks],
        key=f"backup-verify-{config.name}",
        description=f"backup {record.backup_id or '(none)'}: "
        + ("all checks passed" if record.ok else "FAILED"),
    )
    failed = [r.message() for r in record.checks if not r.ok]
    if failed:
        raise BackupVerificationFailed(
            f"backup {record.backup_id or '(none)'} failed {len(failed)} check(s): " + " | ".join(failed)
        )
    return record
