"""The `backup-verify` flow (daily by default): prove the newest backup restores.

Each check is a row of a table artifact; the flow fails if any row fails, and its error names the
check and the file. Checks: age and completeness of the newest backup, the key, ciphertext
sha256, decryption with the private key block, tar read-through, file counts and listing digests,
the DKIM key, and a restore drill into scratch volumes (a rotating sample within `time_budget_s`).
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.artifacts import create_table_artifact

from mailu_core.backup import VerificationRecord
from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_core.fields import WaitSeconds
from mailu_core.render.monitoring import BACKUP_VERIFIED_METRIC, textfile_metric
from mailu_flows import redact
from mailu_flows.blocks import StackParameter
from mailu_flows.flows.naming import artifact_key, flow_name, run_namer
from mailu_flows.host import Host
from mailu_flows.session import host_session
from mailu_flows.tasks.backup import default_destination, verify_newest_backup
from mailu_flows.tasks.host import textfile_dir, write_textfile_metric


def publish_verified_metric(host: Host, config: StackConfig) -> None:
    """Feed the "newest verified backup too old" alert: the node exporter's textfile collector reads
    `<textfile_dir>/mailu_backup_<stack>.prom` (written atomically, world-readable: no secret in it)."""
    directory = textfile_dir(config)
    if directory is None:
        return
    text = textfile_metric(
        BACKUP_VERIFIED_METRIC,
        "Unix time of the newest backup-verify run that passed every check.",
        {(("stack", config.name),): time.time()},
    )
    write_textfile_metric(host, directory, f"mailu_backup_{config.name}", text)


class BackupVerificationFailed(MailuFlowsError, RuntimeError):
    """At least one check failed; the message lists each failed check with its file."""


@flow(name=flow_name("backup-verify"), flow_run_name=run_namer("backup-verify"))
def backup_verify(
    config: StackParameter,
    time_budget_s: WaitSeconds | None = 1800.0,
    drill: bool = True,
) -> VerificationRecord:
    """Verify the newest backup; fail if any check fails.

    Args:
        config: The stack: host, volumes, backup destination and keys (its stack block).
        time_budget_s: Seconds the restore drill may take (0 to 86400; sets its rotating sample);
            empty: no limit (every archive, every run).
        drill: Restore the sample into scratch volumes and compare (off: decrypt and read only).
    """
    redact.install()
    destination = default_destination(config)
    with host_session(config, "backup-verify", 0, lock=False) as host:  # reads only; drills in scratch
        record = verify_newest_backup(host, config, destination, time_budget_s, drill)
        if record.ok:
            publish_verified_metric(host, config)
    create_table_artifact(
        [{"check": r.check, "file": r.file, "ok": r.ok, "detail": r.detail} for r in record.checks],
        key=artifact_key("backup-verify", config.name),
        description=f"backup {record.backup_id or '(none)'}: "
        + ("all checks passed" if record.ok else "FAILED"),
    )
    failed = [r.message() for r in record.checks if not r.ok]
    if failed:
        raise BackupVerificationFailed(
            f"backup {record.backup_id or '(none)'} failed {len(failed)} check(s): " + " | ".join(failed)
        )
    return record
