"""GnuPG homedirs of runs killed outright are removed by the next run (a verify's holds a private key)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mailu_flows.backup.gpg import HOMEDIR_PREFIX, remove_stale_homedirs


def _homedir(tmp: Path, name: str, pid: int | None) -> Path:
    home = tmp / f"{HOMEDIR_PREFIX}{name}"
    (home / "private-keys-v1.d").mkdir(parents=True)
    (home / "private-keys-v1.d" / "key.key").write_text("private key material")
    if pid is not None:
        (home / "owner.pid").write_text(str(pid))
    return home


def test_only_homedirs_whose_process_is_gone_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = _homedir(tmp_path, "stale", dead.pid)
    live = _homedir(tmp_path, "live", os.getpid())
    starting = _homedir(tmp_path, "starting", None)  # its owner has not written its pid yet
    (tmp_path / "mfg-link").symlink_to(stale)

    removed = remove_stale_homedirs(str(tmp_path))

    assert removed == [str(stale)] and not stale.exists()
    assert live.exists() and starting.exists()
