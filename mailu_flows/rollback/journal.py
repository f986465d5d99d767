"""The rollback journal on the host (`StackConfig.paths.journal_file`, one per stack): the rollback in
progress or the last one (mode, from, to, backup, run) and the keys of the steps done. Its JSON format
is what every version reads and writes: an interrupted rollback of an older version is finished by
this one."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath

from mailu_flows.host import Host

__all__ = ["Journal", "now", "read_journal", "save_journal"]


@dataclass
class Journal:
    """The rollback in progress (or the last one) on the host."""

    mode: str
    from_release: str | None
    to_release: str | None
    restore_backup: str | None
    run: str
    started: str
    done: list[str] = field(default_factory=list)
    finished: str | None = None


def read_journal(host: Host, path: str) -> Journal | None:
    """The journal at `path` (a stack's `paths.journal_file`), or None."""
    data = host.read_file(path)
    if not data:
        return None
    try:
        raw = json.loads(data)
        return Journal(**{k: raw[k] for k in Journal.__dataclass_fields__ if k in raw})
    except (ValueError, TypeError):
        return None  # an unreadable journal is treated as none: every step checks the host anyway


def save_journal(host: Host, path: str, journal: Journal) -> None:
    host.run(["mkdir", "-p", "-m", "700", str(PurePosixPath(path).parent)])
    host.write_file(path, json.dumps(asdict(journal), sort_keys=True).encode() + b"\n", mode=0o600)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
