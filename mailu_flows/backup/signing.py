"""Reading a backup's manifest only when it is authentic and belongs where it was found.

The signature is checked over the exact stored bytes before they are parsed, then the manifest's
id, stack and dates are held against the directory, the stack config and the clock. Nothing else
of a backup (archives, volume names) is used unless this passes.
"""

from __future__ import annotations

from datetime import datetime

from mailu_core.backup import Manifest, check_signature, identity_problems
from mailu_core.errors import MailuFlowsError
from mailu_flows.backup.destination import Destination, UnsafeName


class BackupNotAuthentic(MailuFlowsError, RuntimeError):
    """The backup is not signed with the stack's signing key, or is not this stack's backup."""


def authentic_manifest(
    destination: Destination, backup_id: str, key: bytes, stack: str, now: datetime
) -> Manifest:
    """The manifest of `backup_id`, or BackupNotAuthentic saying why it cannot be trusted."""
    label = destination.label(backup_id)
    try:
        raw = destination.read_manifest_bytes(backup_id)
        signature = destination.read_signature(backup_id)
    except (OSError, ValueError, UnsafeName) as exc:
        raise BackupNotAuthentic(f"{label}: the manifest cannot be read: {exc}") from None
    why = check_signature(key, raw, signature)
    if why is not None:
        raise BackupNotAuthentic(f"{label}: {why}")
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValueError as exc:
        raise BackupNotAuthentic(f"{label}: the signed manifest is not valid: {exc}") from None
    problems = identity_problems(manifest, backup_id, stack, now)
    if problems:
        raise BackupNotAuthentic(f"{label}: " + "; ".join(problems))
    return manifest
