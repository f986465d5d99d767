"""Mailu's own source for the lab's images: a checked archive, extracted once into the cache.

Only the lab reads `../shared`: a clone of the repository alone never needs this module. The archive
comes from `MAILU_SOURCE_ARCHIVE` (a path) or, by default, `../shared/upstream/` beside the checkout;
its sha256 must match the pinned one (or `MAILU_SOURCE_SHA256`). With no archive, a machine that
reaches GitHub downloads the tag's source archive; with neither, the error names both.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from lab.endpoints import CACHE_DIR, REPO_ROOT
from lab.files import sha256_file
from lab.procs import LabError

MAILU_TAG = "2024.06.9"
ARCHIVE_NAME = f"mailu-{MAILU_TAG}.tar.gz"
# sha256 of shared/upstream/mailu-2024.06.9.tar.gz (commit 2df224b284d04fd5a4ff7133ff6a4fd88e7b373e).
PINNED_SHA256 = "708bdb37d574d790874b5e89800bf769d680f915529fc47e4598926000e60348"
GITHUB_URL = f"https://github.com/Mailu/Mailu/archive/refs/tags/{MAILU_TAG}.tar.gz"
DEFAULT_ARCHIVE = REPO_ROOT.parent / "shared" / "upstream" / ARCHIVE_NAME


def expected_sha256() -> str:
    return os.environ.get("MAILU_SOURCE_SHA256", PINNED_SHA256).strip().lower()


def archive_path() -> Path:
    return Path(os.environ.get("MAILU_SOURCE_ARCHIVE", str(DEFAULT_ARCHIVE))).expanduser()


def _download(dest: Path) -> Path:
    """The tag's archive from GitHub (its own sha256 is checked only when MAILU_SOURCE_SHA256 names it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(GITHUB_URL, timeout=30) as resp, tmp.open("wb") as out:
            shutil.copyfileobj(resp, out)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise LabError(
            f"Mailu {MAILU_TAG}'s source is needed to build the lab's images and was not found:\n"
            f"  - no archive at {archive_path()} (set MAILU_SOURCE_ARCHIVE to its path; the project's shared/"
            f"upstream/{ARCHIVE_NAME} is the default)\n"
            f"  - and {GITHUB_URL} could not be downloaded ({exc})"
        ) from exc
    os.replace(tmp, dest)
    return dest


def source_tree() -> Path:
    """The extracted Mailu tree (its top holds core/, optional/, webmails/), checked and cached by sha256."""
    archive = archive_path()
    want = expected_sha256()
    if archive.is_file():
        got = sha256_file(archive)
        if got != want:
            raise LabError(
                f"{archive}: sha256 {got} is not Mailu {MAILU_TAG}'s ({want}); use the archive from "
                "shared/upstream, or set MAILU_SOURCE_SHA256 to the checksum of the one you trust"
            )
    else:
        downloaded = CACHE_DIR / f"github-{ARCHIVE_NAME}"
        archive = downloaded if downloaded.is_file() else _download(downloaded)
        got = sha256_file(archive)
        if "MAILU_SOURCE_SHA256" in os.environ and got != want:
            raise LabError(f"{archive}: sha256 {got} is not the MAILU_SOURCE_SHA256 given ({want})")
    out = CACHE_DIR / f"mailu-src-{got[:16]}"
    if (out / "core").is_dir():
        return out
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mailu-src-", dir=CACHE_DIR) as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        tops = [p for p in Path(tmp).iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "core").is_dir():
            raise LabError(f"{archive}: expected one top directory holding core/, found {tops}")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tops[0], out)
    return out
