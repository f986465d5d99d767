"""Planning a Mailu release upgrade: which images change, to what, and the config pinned to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.stack_config import lab_stack_config
from mailu_core.config import StackConfig
from mailu_core.upgrade import mailu_images, plan_upgrade, release_reference, repository_of
from mailu_flows.registry import RegistryError, _scheme, _split
from tests.core.render.test_render import lab_images

MAILU = ["resolver", "front", "admin", "imap", "smtp", "antispam", "webmail"]
NEW = {name: "sha256:" + f"{i:x}" * 64 for i, name in enumerate(MAILU, start=1)}


def cfg() -> StackConfig:
    return lab_stack_config(lab_images(), "/srv/apps")


def test_references_keep_their_registry_and_repository() -> None:
    pinned = "127.0.0.1:5000/mailu/admin:2024.06@sha256:" + "a" * 64
    assert repository_of(pinned) == "127.0.0.1:5000/mailu/admin"
    assert repository_of("ghcr.io/mailu/admin@sha256:" + "a" * 64) == "ghcr.io/mailu/admin"
    assert release_reference(pinned, "2024.06.10") == "127.0.0.1:5000/mailu/admin:2024.06.10"
    with pytest.raises(ValueError, match="not an image tag"):
        release_reference(pinned, "latest; rm -rf /")


def test_only_mailus_own_images_are_upgraded_and_the_plan_shows_old_and_new() -> None:
    base = cfg()
    assert set(mailu_images(base)) == set(NEW)  # not redis, not postgres
    plan = plan_upgrade(base, "2024.06.10", NEW)
    assert plan.config.images.admin == f"{repository_of(base.images.admin)}@{NEW['admin']}"
    assert plan.config.images.redis == base.images.redis
    assert plan.admin_changes and all(change.changed for change in plan.changes)
    assert plan.to_version == "2024.06" and "| admin |" in plan.table()
    same = plan_upgrade(plan.config, "2024.06.10", NEW)
    assert not same.admin_changes and "(same)" in same.table()


def test_a_missing_or_malformed_digest_is_refused() -> None:
    with pytest.raises(ValueError, match="no digest for admin"):
        plan_upgrade(cfg(), "2024.06.10", {k: v for k, v in NEW.items() if k != "admin"})
    with pytest.raises(ValueError, match="front: 'sha256:zz' is not a sha256 digest"):
        plan_upgrade(cfg(), "2024.06.10", {**NEW, "front": "sha256:zz"})


@pytest.mark.parametrize(
    ("reference", "parts", "scheme"),
    [
        ("ghcr.io/mailu/admin:2024.06", ("ghcr.io", "mailu/admin", "2024.06"), "https"),
        ("127.0.0.1:5000/mailu/admin:x", ("127.0.0.1:5000", "mailu/admin", "x"), "http"),
        ("redis:7", ("registry-1.docker.io", "library/redis", "7"), "https"),
        ("localhost:5000/a/b:1", ("localhost:5000", "a/b", "1"), "http"),
    ],
)
def test_registry_references(reference: str, parts: tuple[str, str, str], scheme: str) -> None:
    assert _split(reference) == parts
    assert _scheme(parts[0]) == scheme


def test_a_reference_without_a_tag_is_refused() -> None:
    with pytest.raises(RegistryError, match="names no tag"):
        _split("127.0.0.1:5000/mailu/admin")


def test_the_upgrade_plan_command_prints_old_new_and_the_images_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mailu_flows.registry
    from mailu_core.config import dump_stack_config
    from mailu_flows.cli import main

    path = tmp_path / "stack.yaml"
    path.write_text(dump_stack_config(cfg()))
    asked: list[dict[str, str]] = []

    def registry(references: dict[str, str]) -> dict[str, str]:
        asked.append(references)
        return {service: NEW[service] for service in references}

    monkeypatch.setattr(mailu_flows.registry, "resolve_digests", registry)
    assert main(["upgrade-plan", "--config", str(path), "--to", "2024.06.10"]) == 0
    out = capsys.readouterr().out
    assert asked[0]["admin"].endswith("/mailu/admin:2024.06.10")
    assert "| admin |" in out and f"admin: {repository_of(cfg().images.admin)}@{NEW['admin']}" in out
    assert main(["upgrade-plan", "--config", str(path), "--to", "bad tag!"]) == 2
    assert "not an image tag" in capsys.readouterr().err
