"""Two newer Mailu releases for the lab's upgrade tests, in the local registry like the lab's own build.

- `2024.06.10-lab`: every Mailu image of the lab's release, with a visible difference (a label and a
  file `/lab-release` holding the tag): the same code, new digests, an upgrade that works.
- `2024.06.11-broken`: the same, but admin's health check fails (its `curl`, which the stack's health
  check of admin calls, exits 7): admin starts, migrates its database as a newer admin would, and
  never becomes healthy. The upgrade to it must return to the release before.

Each image is a one-layer `docker build` FROM the image the lab built (no package, no network), keyed
on its inputs like every other lab image, so a second run only checks the registry still has them.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.endpoints import REGISTRY_HOST
from lab.images import _DIGEST_REF, _load_record, _lock, _push, _save_record, registry_has
from lab.mailu_images import MAILU_IMAGES, MailuImage, tree_hash
from lab.procs import LabError, run_checked

UPGRADE_TAG = "2024.06.10-lab"
BROKEN_TAG = "2024.06.11-broken"

# Stands in for curl in the broken release: the health check of admin (`curl … /ping`) fails.
BROKEN_CURL = '#!/bin/sh\necho "curl: broken on purpose in the lab release {tag}" >&2\nexit 7\n'


@dataclass(frozen=True)
class LabRelease:
    """A release tag of Mailu's images in the lab registry, and the services it breaks."""

    tag: str
    broken: frozenset[str] = frozenset()


RELEASES: tuple[LabRelease, ...] = (
    LabRelease(UPGRADE_TAG),
    LabRelease(BROKEN_TAG, frozenset({"admin"})),
)


def release_context(dest: Path, base_ref: str, release: LabRelease, image: MailuImage) -> Path:
    """The build context of `image` at `release`: FROM the lab's image, a label, /lab-release, and in a
    service the release breaks, a `curl` that fails."""
    ctx = dest / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "lab-release").write_text(release.tag + "\n")
    lines = [
        f"FROM {base_ref}",
        f'LABEL org.mailu-flows.lab-release="{release.tag}"',
        "COPY lab-release /lab-release",
    ]
    if image.name in release.broken:
        curl = ctx / "curl"
        curl.write_text(BROKEN_CURL.format(tag=release.tag))
        curl.chmod(0o755)
        lines += ["COPY curl /usr/bin/curl", "COPY curl /usr/local/bin/curl"]
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    return ctx


def ensure_upgrade_images(current: Mapping[str, str], force: bool = False) -> dict[str, dict[str, str]]:
    """Build and push every lab release of Mailu's images derived from `current` (service -> the pinned
    reference the lab's stack runs); return tag -> service -> `repo@sha256:…`. Rebuilt only when an
    input changed or the registry lost a manifest."""
    missing = [image.name for image in MAILU_IMAGES if image.name not in current]
    if missing:
        raise LabError(f"no built image for {', '.join(missing)}: build the lab's images first")
    out: dict[str, dict[str, str]] = {}
    with _lock():
        record = _load_record()
        for release in RELEASES:
            refs: dict[str, str] = {}
            for image in MAILU_IMAGES:
                base_ref = current[image.name]
                with tempfile.TemporaryDirectory(prefix="mailu-upgrade-") as tmp:
                    ctx = release_context(Path(tmp), base_ref, release, image)
                    key = hashlib.sha256(
                        f"{image.repo}\0{release.tag}\0{base_ref}\0{tree_hash(ctx)}".encode()
                    )
                    entry = record.get(f"upgrade:{release.tag}:{image.name}", {})
                    ref = entry.get("ref", "")
                    if force or entry.get("input") != key.hexdigest() or not registry_has(ref):
                        tagged = f"{REGISTRY_HOST}/{image.repo}:{release.tag}"
                        run_checked(
                            ["docker", "build", "-q", "-t", tagged, str(ctx)], env={"DOCKER_BUILDKIT": "0"}
                        )
                        ref = _push(tagged)
                        record[f"upgrade:{release.tag}:{image.name}"] = {"input": key.hexdigest(), "ref": ref}
                        _save_record(record)
                if not _DIGEST_REF.match(ref):
                    raise LabError(f"{image.name} at {release.tag}: not a pinned reference: {ref!r}")
                refs[image.name] = ref
            out[release.tag] = refs
    return out
