"""The lab images are pinned by registry digest, come back by digest, and rebuild only on change."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest

from lab.endpoints import MAILU_VERSION, REGISTRY_HOST
from lab.images import (
    SPECS,
    ensure_images,
    local_image_id,
    registry_has,
    remove_local,
    verify_pull_by_digest,
)
from lab.mailu_images import MAILU_IMAGES

pytestmark = pytest.mark.lab

DIGEST_RE = r"^127\.0\.0\.1:5000/[a-z0-9/_-]+@sha256:[0-9a-f]{64}$"


def _assert_pinned_and_tagged(ref: str, repo: str, tag: str) -> None:
    assert ref.startswith(f"{REGISTRY_HOST}/{repo}@sha256:")
    assert len(ref.rsplit(":", 1)[1]) == 64
    assert registry_has(ref), ref
    # The human tag (e.g. mailu/nginx:2024.06) points at the very same manifest.
    req = urllib.request.Request(
        f"http://{REGISTRY_HOST}/v2/{repo}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Docker-Content-Digest"] == ref.split("@", 1)[1], f"{repo}:{tag}"


def test_every_image_has_a_pinned_digest(lab_images: dict[str, str]) -> None:
    mailu = {f"mailu-{i.name}": i for i in MAILU_IMAGES}
    services = {i.name for i in MAILU_IMAGES}
    assert set(lab_images) == {s.name for s in SPECS} | set(mailu) | services
    for spec in SPECS:
        _assert_pinned_and_tagged(lab_images[spec.name], spec.repo, spec.tag)
    for name, image in mailu.items():
        _assert_pinned_and_tagged(lab_images[name], image.repo, MAILU_VERSION)
    # the lab's stack runs Mailu's own image for every Mailu service: nothing pretends to be Mailu
    assert all(lab_images[name] == lab_images[f"mailu-{name}"] for name in services)
    assert not [s for s in SPECS if s.repo.startswith("mailu/")]


def _in_use(ref: str) -> bool:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"ancestor={ref}"], capture_output=True, text=True, check=True
    ).stdout
    return bool(out.strip())


def test_removed_image_is_pulled_back_by_digest(lab_images: dict[str, str]) -> None:
    candidates = [lab_images[n] for n in ("forward-auth", "redis", "webmail", "postgres")]
    ref = next((r for r in candidates if not _in_use(r)), None)
    assert ref is not None, f"every candidate image is used by a container: {candidates}"
    before = local_image_id(ref)
    remove_local(ref)
    assert local_image_id(ref) is None, "image still present locally"
    after = verify_pull_by_digest(ref)
    assert after == before


def test_second_run_is_fast_and_stable(lab_images: dict[str, str]) -> None:
    start = time.monotonic()
    again = ensure_images()
    elapsed = time.monotonic() - start
    assert again == lab_images
    assert elapsed < 10, f"ensure_images() took {elapsed:.1f}s with nothing changed"


def test_an_upgrade_plan_resolves_each_mailu_image_from_the_registry_it_came_from(
    lab_images: dict[str, str],
) -> None:
    """The lab's Mailu images at their release tag resolve (through the registry's HTTP API) to the very
    digests the lab pins, so a plan to that tag changes nothing; a tag the registry lacks is named."""
    from lab.stack_config import lab_stack_config
    from mailu_core.upgrade import mailu_images, plan_upgrade, release_reference
    from mailu_flows.registry import RegistryError, resolve_digest, resolve_digests

    cfg = lab_stack_config(lab_images, "/srv/apps")
    current = mailu_images(cfg)
    digests = resolve_digests({s: release_reference(ref, MAILU_VERSION) for s, ref in current.items()})
    plan = plan_upgrade(cfg, MAILU_VERSION, digests)
    assert [c.service for c in plan.changes if c.changed] == []
    with pytest.raises(RegistryError, match="no such tag"):
        resolve_digest(release_reference(current["admin"], "1999.01"))
