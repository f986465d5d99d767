"""Encrypted volume backups: making them (`run_backup`), proving they restore (`verify_backup`),
restoring them (`restore_backup`), and where they are kept (`Destination`, `LocalDirectory`)."""

from mailu_flows.backup.destination import Destination, DestinationBusy, LocalDirectory
from mailu_flows.backup.engine import BackupError, BackupOutcome, prune, run_backup
from mailu_flows.backup.restore import RestoreFailed, RestoreRefused, RestoreResult, restore_backup
from mailu_flows.backup.verify import verify_backup

__all__ = [
    "BackupError",
    "BackupOutcome",
    "Destination",
    "DestinationBusy",
    "LocalDirectory",
    "RestoreFailed",
    "RestoreRefused",
    "RestoreResult",
    "prune",
    "restore_backup",
    "run_backup",
    "verify_backup",
]
