"""The upgrade flow on the lab's Mailu (its own code, built from source): a newer release (the same code
with a visible difference, lab/upgrade_images.py) is resolved from the lab registry, backed up,
verified, deployed, checked and probed with the mail canary, and a message delivered before is still
readable after; a release whose admin never becomes healthy ends back on the old release, healthy,
with the message and admin's volume intact (restored from the pre-upgrade backup).

Each upgrade test takes minutes (a backup, a drill, Mailu starting twice or three times): run them one
at a time under the lab lock. Every test starts and ends on the lab's own release (a fixture deploys
the lab config before and after each), so each test and the other lab tests find the stack as they
expect, in any order.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.stack_config import with_canary
from lab.upgrade_images import BROKEN_TAG, UPGRADE_TAG, ensure_upgrade_images
from mailu_core.config import StackConfig, load_stack_config
from mailu_core.upgrade import mailu_images
from tests.lab.fixtures.deploying import deploy_state, exception_text
from tests.lab.test_mailu_stack import _fetch, _message, _secret, _submission

pytestmark = pytest.mark.lab

MARKER = ".upgrade-test-marker"


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def releases(cfg: StackConfig) -> dict[str, dict[str, str]]:
    """tag -> service -> pinned reference of the lab's newer and broken releases (built if needed)."""
    return ensure_upgrade_images(mailu_images(cfg))


@pytest.fixture
def on_the_lab_release(cfg: StackConfig, releases: dict[str, dict[str, str]]) -> Iterator[StackConfig]:
    """The lab stack on the lab config's release before and after each test (a no-op deploy when it
    already is): the good upgrade leaves the newer release running, and an upgrade is refused unless
    the host runs the config's release."""
    state = deploy_state(cfg)
    assert state.is_completed(), exception_text(state)
    try:
        yield cfg
    finally:
        back = deploy_state(cfg)
        assert back.is_completed(), exception_text(back)


@pytest.fixture
def stack_block(cfg: StackConfig) -> Iterator[None]:
    """The lab stack's block as it was, after a test that has it hold the config an upgrade starts from
    (a good upgrade then records its pins there)."""
    from mailu_flows.blocks import BlockNotFound, MailuStack, load_block, push_stack_config

    try:
        kept: StackConfig | None = load_block(MailuStack, cfg.name).config
    except BlockNotFound:
        kept = None
    try:
        yield
    finally:
        if kept is not None:
            push_stack_config(kept)
        else:
            MailuStack.delete(cfg.name)


def _block_config(cfg: StackConfig) -> StackConfig:
    from mailu_flows.blocks import MailuStack, load_block

    return load_block(MailuStack, cfg.name).config


def _upgrade(config: StackConfig, to: str, confirm: str | None = None) -> Any:
    from mailu_flows.flows.upgrade import upgrade

    return upgrade(
        config=config,
        to=to,
        confirm=confirm if confirm is not None else config.hostname,
        verify_time_budget_s=60.0,
        lock_wait_s=900,
        return_state=True,
    )


def _running(cfg: StackConfig) -> dict[str, dict[str, Any]]:
    """service -> `docker inspect` of the stack's container."""
    project = cfg.mailu.compose_project
    ids = _sh("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").split()
    items = json.loads(_sh("docker", "inspect", *ids)) if ids else []
    return {item["Config"]["Labels"]["com.docker.compose.service"]: item for item in items}


def _image_id(ref: str) -> str:
    return _sh("docker", "image", "inspect", "--format", "{{.Id}}", ref).strip()


def _runs_images(cfg: StackConfig, refs: dict[str, str]) -> dict[str, bool]:
    """service -> whether its container runs the image `refs` pins (by image id), running and healthy."""
    running = _running(cfg)
    out = {}
    for service, ref in refs.items():
        item = running.get(service)
        health = ((item or {}).get("State") or {}).get("Health", {}).get("Status", "healthy")
        out[service] = bool(
            item and item["Image"] == _image_id(ref) and item["State"]["Running"] and health == "healthy"
        )
    return out


@pytest.fixture
def mailbox(on_the_lab_release: StackConfig) -> tuple[StackConfig, str, str]:
    """(config, address, password) of the canary's mailbox, declared in the config's accounts and made by
    the accounts flow (the lab's own admin account may come from an earlier lab, with another password)."""
    from mailu_flows.flows.accounts import accounts

    cfg = with_canary(on_the_lab_release)
    assert cfg.blocks.canary_password is not None
    made = accounts(config=cfg, return_state=True)
    assert made.is_completed(), exception_text(made)
    return cfg, cfg.canary.mailbox_for(cfg.mailu.domain), _secret(cfg.blocks.canary_password)


def _deliver(user: str, password: str) -> str:
    """A message to `user` over submission (587, through Traefik), read back over IMAPS; its tag."""
    tag = secrets.token_hex(6)
    with _submission(587) as smtp:
        smtp.login(user, password)
        smtp.sendmail(user, [user], _message(user, user, tag))
    assert f"probe {tag}".encode() in _fetch(user, password, tag)
    return tag


def _admin_volume(cfg: StackConfig, write: str | None = None) -> str:
    """Read (or write) the marker file in admin's data volume, through the stack's Redis image."""
    script = (
        f"printf %s {write} > /v/{MARKER}" if write is not None else f"cat /v/{MARKER} 2>/dev/null || true"
    )
    return _sh("docker", "run", "--rm", "-v", f"{cfg.volumes.admin}:/v", "--entrypoint", "sh",
               cfg.images.redis, "-c", script)  # fmt: skip


def _backups(cfg: StackConfig) -> list[str]:
    from mailu_flows.tasks.backup import default_destination

    return default_destination(cfg).list_backups()


def test_the_lab_registry_has_a_newer_and_a_broken_release(
    cfg: StackConfig, releases: dict[str, dict[str, str]]
) -> None:
    """Every Mailu image at both tags, new digests in the repository the lab's image comes from, the
    tag resolving (through the registry's HTTP API, as the flow asks it) to that digest; rebuilt only
    on change."""
    from mailu_core.upgrade import release_reference, repository_of
    from mailu_flows.registry import resolve_digest

    current = mailu_images(cfg)
    for tag in (UPGRADE_TAG, BROKEN_TAG):
        assert set(releases[tag]) == set(current)
        for service, ref in releases[tag].items():
            assert repository_of(ref) == repository_of(current[service])
            assert ref.split("@")[1] != current[service].split("@")[1]
            assert resolve_digest(release_reference(current[service], tag)) == ref.split("@")[1]
    labels = '{{index .Config.Labels "org.mailu-flows.lab-release"}}'
    label = _sh("docker", "image", "inspect", "--format", labels, releases[UPGRADE_TAG]["admin"])
    assert label.strip() == UPGRADE_TAG
    start = time.monotonic()
    assert ensure_upgrade_images(current) == releases
    assert time.monotonic() - start < 10


def test_an_upgrade_without_the_hostname_does_nothing(on_the_lab_release: StackConfig) -> None:
    cfg = on_the_lab_release
    before = _backups(cfg)
    state = _upgrade(cfg, UPGRADE_TAG, confirm="yes")
    assert state.is_failed()
    assert "type the mail hostname" in exception_text(state)
    assert _backups(cfg) == before
    assert all(_runs_images(cfg, mailu_images(cfg)).values())


@pytest.mark.timeout(1500)  # an upgrade, plus the return to the lab's release (fixture)
def test_the_good_upgrade_changes_the_digests_keeps_mail_and_passes_the_canary(
    mailbox: tuple[StackConfig, str, str], releases: dict[str, dict[str, str]], stack_block: None
) -> None:
    """Backup, verify, deploy the new pins, checks, the mail canary; every Mailu container then runs the
    new release (its /lab-release says so), the message delivered before is still there, and the
    stack's block (which held the config the upgrade started from) now pins the new release."""
    from mailu_flows.blocks import push_stack_config

    cfg, user, password = mailbox  # a config with the canary on
    push_stack_config(cfg)
    tag = _deliver(user, password)
    before = _backups(cfg)

    state = _upgrade(cfg, UPGRADE_TAG)
    assert state.is_completed(), exception_text(state)
    result = state.result()
    rows = {row["step"]: row for row in result["rows"]}
    assert rows["mail canary"]["result"] == "ok", rows["mail canary"]
    assert rows["verify backup"]["result"] == "ok"
    new = releases[UPGRADE_TAG]
    assert result["images"] == new  # the pins to put into the config file, as the run shows them
    assert rows["stack block"]["result"] == "saved", rows["stack block"]
    recorded = _block_config(cfg)
    assert mailu_images(recorded) == new
    assert recorded.model_copy(update={"images": cfg.images}) == cfg  # nothing else (-lab: same version)
    assert {c["service"] for c in result["changes"] if c["old"] != c["new"]} == set(new)
    assert _runs_images(cfg, new) == dict.fromkeys(new, True)
    assert not any(_runs_images(cfg, mailu_images(cfg)).values())  # not one old digest still runs
    release_file = _sh("docker", "exec", f"{cfg.mailu.compose_project}-admin-1", "cat", "/lab-release")
    assert release_file.strip() == UPGRADE_TAG
    assert f"probe {tag}".encode() in _fetch(user, password, tag)
    made_now = [b for b in _backups(cfg) if b not in before]
    assert made_now == [result["backup"]] and result["backup"].endswith("-preupgrade")


@pytest.mark.timeout(1500)  # admin's health check fails only after its start period and 3 probes
def test_a_broken_upgrade_returns_to_the_old_release_healthy_with_mail_and_admins_data(
    mailbox: tuple[StackConfig, str, str],
    releases: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    stack_block: None,
) -> None:
    """admin of 2024.06.11-broken never becomes healthy: the deploy fails and returns, admin is stopped,
    its volume restored from the pre-upgrade backup, the lab's release deployed again and checked. The
    stack ends on the old digests, healthy; the message and admin's volume are as they were before the
    upgrade (a file written into it after the backup, as a newer admin's migration would, is gone)."""
    from mailu_flows.blocks import push_stack_config
    from mailu_flows.upgrade import Upgrade

    cfg, user, password = mailbox
    push_stack_config(cfg)
    tag = _deliver(user, password)
    marker = secrets.token_hex(8)
    _admin_volume(cfg, write=marker)
    original = Upgrade.return_to_previous

    def after_the_backup(self: Upgrade, *args: Any, **kw: Any) -> Any:
        _admin_volume(cfg, write="changed after the backup")
        return original(self, *args, **kw)

    monkeypatch.setattr(Upgrade, "return_to_previous", after_the_backup)

    state = _upgrade(cfg, BROKEN_TAG)
    assert state.is_failed()
    text = exception_text(state)
    assert "UpgradeFailed" in text and "back on the previous release" in text, text
    assert "restored mailu_admin_data from" in text, text

    assert _runs_images(cfg, mailu_images(cfg)) == dict.fromkeys(mailu_images(cfg), True)
    assert not any(_runs_images(cfg, releases[BROKEN_TAG]).values())
    assert f"probe {tag}".encode() in _fetch(user, password, tag)  # the mailbox's user, from admin's DB
    assert _admin_volume(cfg) == marker  # the pre-upgrade backup's, not what was written after it
    assert _block_config(cfg) == cfg  # the block still pins the release that runs
    again = deploy_state(cfg)  # the host is exactly the lab's release: nothing to change
    assert again.is_completed(), exception_text(again)
    assert again.result()["changed"] is False
