"""The deploy flow on the lab, for real: first deploy, no-op, targeted recreate, bad image with return
to the last good release, preflight refusals that write nothing, secret files, the host lock."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep
from mailu_core.config import StackConfig, load_stack_config
from tests.lab.fixtures.mailclient import smtp_from_container

pytestmark = pytest.mark.lab


def _deploy(cfg: StackConfig, **kw: Any) -> Any:
    from mailu_flows.flows.deploy import deploy

    return deploy(config=cfg, return_state=True, **kw)


def _container_ids(project: str) -> dict[str, str]:
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--format",
            '{{.Label "com.docker.compose.service"}} {{.ID}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines())


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".lock" not in p.name:  # the locks (legacy and per stack) and holders
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
    return out


@pytest.fixture(scope="module")
def cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def first_deploy(cfg: StackConfig) -> dict[str, Any]:
    state = _deploy(cfg)
    assert state.is_completed(), state.message
    result: dict[str, Any] = state.result()
    return result


def test_first_deploy_is_healthy_with_all_checks_green(
    first_deploy: dict[str, Any], cfg: StackConfig
) -> None:
    assert first_deploy["failed_checks"] == []
    ids = _container_ids(cfg.mailu.compose_project)
    assert {"front", "admin", "imap", "smtp", "antispam", "redis"} <= set(ids)


def test_second_deploy_is_a_no_op(first_deploy: dict[str, Any], cfg: StackConfig) -> None:
    root = Path(cfg.host.stack_root)
    before_ids = _container_ids(cfg.mailu.compose_project)
    before_files = _tree_digest(root / "compose")
    state = _deploy(cfg)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["summary"] == "no changes"
    assert result["changed"] is False
    assert _container_ids(cfg.mailu.compose_project) == before_ids
    assert _tree_digest(root / "compose") == before_files


def test_secret_files_keep_content_and_mode_across_deploys(
    first_deploy: dict[str, Any], cfg: StackConfig
) -> None:
    secrets_dir = Path(cfg.host.resolve(cfg.host.secrets_dir))
    files = sorted(p for p in secrets_dir.iterdir() if p.is_file())
    assert files
    before = {p.name: p.read_bytes() for p in files}
    # admin reads them after dropping to `mailu`: group-readable by Mailu's gid 1000, never by others
    assert all((p.stat().st_mode & 0o777, p.stat().st_gid) == (0o640, 1000) for p in files)
    assert _deploy(cfg).is_completed()
    assert {p.name: p.read_bytes() for p in files} == before
    assert all((p.stat().st_mode & 0o777, p.stat().st_gid) == (0o640, 1000) for p in files)


def test_a_rotated_secret_recreates_the_services_that_read_it(
    first_deploy: dict[str, Any], cfg: StackConfig
) -> None:
    """Compose sees no change when only a secret file's content does, and Mailu reads the file once at
    start: without a recreate, admin keeps the old API token and the deploy's own API calls get 403."""
    import secrets as pysecrets

    from mailu_core.render.secrets import secret_file_specs
    from mailu_flows.flows.deploy import BlockSecretsStore

    store = BlockSecretsStore(cfg.blocks.mailu_secrets)
    old = store.load()["api_token"]
    readers = {s for spec in secret_file_specs(cfg) if spec.block_field == "api_token" for s in spec.services}
    assert readers == {"admin"}
    before = _container_ids(cfg.mailu.compose_project)
    store.save({"api_token": pysecrets.token_urlsafe(32)})
    try:
        state = _deploy(cfg)  # ends with Mailu API calls made with the new token
        assert state.is_completed(), state.message
        after = _container_ids(cfg.mailu.compose_project)
        assert {s for s in before if after.get(s) != before[s]} == readers
    finally:
        store.save({"api_token": old})
        assert _deploy(cfg).is_completed()


def test_message_size_change_recreates_only_the_services_that_read_it(
    first_deploy: dict[str, Any], cfg: StackConfig
) -> None:
    from mailu_core.render.env import service_env

    changed = _changed(cfg, "mailu", "message_size_limit", cfg.mailu.message_size_limit + 1_000_000)
    readers = {
        s
        for s in ("front", "admin", "imap", "smtp", "antispam", "webmail", "redis")
        if service_env(cfg, s) != service_env(changed, s)
    }
    assert readers and readers != {"front", "admin", "imap", "smtp", "antispam", "webmail", "redis"}
    before = _container_ids(cfg.mailu.compose_project)
    try:
        state = _deploy(changed)
        assert state.is_completed(), state.message
        after = _container_ids(cfg.mailu.compose_project)
        recreated = {s for s in before if after.get(s) != before[s]}
        assert recreated == readers
    finally:
        assert _deploy(cfg).is_completed()


def test_an_image_that_cannot_start_returns_to_the_previous_release(
    first_deploy: dict[str, Any], cfg: StackConfig
) -> None:
    # The scratch Traefik image has no shell and no Dovecot: imap cannot start with it.
    broken = _changed(cfg, "images", "imap", str(_images()["traefik"]))
    before = _container_ids(cfg.mailu.compose_project)
    state = _deploy(broken)
    assert state.is_failed()
    message = str(state.message) + _exception_text(state)
    assert "imap" in message
    assert "healthy again" in message
    after = _container_ids(cfg.mailu.compose_project)
    assert set(after) == set(before)
    ok = _deploy(cfg)
    assert ok.is_completed(), ok.message
    assert ok.result()["summary"] == "no changes"


def test_a_file_a_failed_deploy_replaced_comes_back_with_its_content_and_mode(
    first_deploy: dict[str, Any], cfg: StackConfig
) -> None:
    """An operator's own file where the new config puts one of ours: the deploy keeps a copy before it
    writes, and when the deploy fails, the file comes back as it was, private mode included."""
    import os
    import shutil

    data = cfg.model_dump(mode="json")
    data["host"]["traefik_dynamic_file"] = "mailu-operator.yml"
    data["images"]["imap"] = str(_images()["traefik"])  # cannot start: the deploy fails
    changed = StackConfig.model_validate(data)
    theirs = Path(cfg.host.resolve(cfg.host.traefik_dynamic_dir)) / "mailu-operator.yml"
    content = "# the operator's own Traefik file, not for everyone's eyes\n"
    theirs.write_text(content)
    theirs.chmod(0o640)
    shutil.chown(theirs, ep.SSH_USER, ep.SSH_USER)
    try:
        state = _deploy(changed)
        assert state.is_failed()
        assert "healthy again" in str(state.message) + _exception_text(state)
        assert theirs.read_text() == content
        assert oct(os.stat(theirs).st_mode & 0o777) == "0o640"
    finally:
        theirs.unlink(missing_ok=True)
    ok = _deploy(cfg)
    assert ok.is_completed(), ok.message


@pytest.mark.parametrize("what", ["network", "middleware"])
def test_preflight_failure_writes_nothing(first_deploy: dict[str, Any], cfg: StackConfig, what: str) -> None:
    data = cfg.model_dump(mode="json")
    data["mailu"]["message_size_limit"] += 7  # would change files if it got that far
    if what == "network":
        data["networks"]["mgmt"] = "mgmt-does-not-exist"
    else:
        data["traefik"]["middlewares"]["allowed_admins"] = "no-such-middleware"
    bad = StackConfig.model_validate(data)
    root = Path(cfg.host.stack_root)
    before = _tree_digest(root)
    state = _deploy(bad)
    assert state.is_failed()
    text = _exception_text(state)
    assert "preflight failed, nothing was changed" in text
    assert ("mgmt-does-not-exist" if what == "network" else "no-such-middleware") in text
    assert _tree_digest(root) == before


def test_a_killed_deploy_does_not_keep_the_host_lock(first_deploy: dict[str, Any], cfg: StackConfig) -> None:
    script = (
        "import time\n"
        "from mailu_core.config import load_stack_config\n"
        "from mailu_flows.tasks.host import connect_host\n"
        "from mailu_flows.remote import HostLock\n"
        f"cfg = load_stack_config({str(Path(ep.lab_dir()) / 'stack.yaml')!r})\n"
        "h = connect_host(cfg)\n"
        "lock = HostLock(h, cfg.paths.lock_file, 'deploy (killed)')\n"
        "lock.acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"locked"
        busy = _deploy(cfg, lock_wait_s=0)
        assert busy.is_failed()
        assert "busy" in _exception_text(busy)
        proc.kill()
        proc.wait()
        time.sleep(0.5)
        state = _deploy(cfg)
        assert state.is_completed(), state.message
    finally:
        proc.kill()


def _changed(cfg: StackConfig, section: str, key: str, value: Any) -> StackConfig:
    """A copy of the (frozen) config with one setting changed, validated like a loaded file."""
    data = cfg.model_dump(mode="json")
    data[section][key] = value
    return StackConfig.model_validate(data)


def _images() -> dict[str, str]:
    from lab.images import ensure_images

    return ensure_images()


def _exception_text(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:
        return str(exc)
    return ""


def test_plan_shows_diffs_and_compose_dry_run_and_changes_nothing(
    first_deploy: dict[str, Any], cfg: StackConfig
) -> None:
    changed = _changed(cfg, "mailu", "message_size_limit", cfg.mailu.message_size_limit + 3_000_000)
    root = Path(cfg.host.stack_root)
    before, ids = _tree_digest(root), _container_ids(cfg.mailu.compose_project)
    state = _deploy(changed, dry_run=True)
    assert state.is_completed(), state.message
    plan = state.result()["plan"]
    assert f"+MESSAGE_SIZE_LIMIT={changed.mailu.message_size_limit}" in plan
    assert "mailu-lab-front-1  Recreate" in plan
    assert "mailu-lab-imap-1  Running" in plan
    assert _tree_digest(root) == before
    assert _container_ids(cfg.mailu.compose_project) == ids


def test_mailu_sees_the_client_ip_not_traefiks(first_deploy: dict[str, Any], cfg: StackConfig) -> None:
    """A client with a known address on `edge` -> Traefik (PROXY v2) -> front -> Postfix: Postfix's
    log names the client's address, never Traefik's (a lost client IP inside SUBNET is an open relay)."""
    import ipaddress
    import secrets

    client_ip = str(ipaddress.ip_network(ep.NETWORKS["edge"])[150 + secrets.randbelow(40)])
    replies = smtp_from_container(_images()["admin"], "edge", client_ip, ep.TRAEFIK_EDGE_IP)
    assert "554" in replies or "Relay access denied" in replies, replies  # not an open relay
    smtp = f"{cfg.mailu.compose_project}-smtp-1"
    logs = ""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        proc = subprocess.run(["docker", "logs", smtp], capture_output=True, text=True)
        logs = proc.stdout + proc.stderr
        if f"[{client_ip}]" in logs:
            break
        time.sleep(0.5)
    assert f"[{client_ip}]" in logs, logs[-1500:]
    assert f"[{ep.TRAEFIK_MGMT_IP}]" not in logs and f"[{ep.TRAEFIK_EDGE_IP}]" not in logs


def test_a_deploy_right_after_a_restart_waits_for_health(
    first_deploy: dict[str, Any], cfg: StackConfig
) -> None:
    """After a host reboot or `compose restart`, containers report health `starting` for a while: a
    no-op deploy waits for the verdict instead of failing on it."""
    redis = f"{cfg.mailu.compose_project}-redis-1"
    subprocess.run(["docker", "restart", redis], check=True, capture_output=True, timeout=120)
    health = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", redis],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert health == "starting"
    state = _deploy(cfg)
    assert state.is_completed(), _exception_text(state)
    assert state.result()["summary"] == "no changes"
