"""Writing the lab's files: atomically, and with their final mode from the first byte, so a key or
token is never readable by others even for an instant. Hashing them: build inputs and archives."""

from __future__ import annotations

import hashlib
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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(h: hashlib._Hash, root: Path) -> None:
    """Feed every file under `root` into `h`: relative path, exec bit and content (a symlink: its target)."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_symlink():
            h.update(b"L" + os.readlink(path).encode() + b"\0")
            continue
        h.update(b"x" if os.access(path, os.X_OK) else b"-")
        h.update(path.read_bytes() + b"\0")
