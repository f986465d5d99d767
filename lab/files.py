"""Writing the lab's files: atomically, and with their final mode from the first byte, so a key or
token is never readable by others even for an instant."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Replace `path` with `data` through a temp file created with `mode` (never wider, before any byte)."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    os.chmod(tmp, mode)  # the umask may have narrowed it; make it exact
    tmp.replace(path)


def write_if_changed(path: Path, data: bytes | str, mode: int = 0o600) -> bool:
    """`write_atomic` only when the content differs (the mode is set either way); True if written."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if path.read_bytes() == raw:
            os.chmod(path, mode)
            return False
    except OSError:
        pass
    write_atomic(path, raw, mode)
    return True
