"""The rollback flow on the lab, for real: refusal without confirmation (nothing touched),
previous-release bringing back the prior image digests and files, teardown keeping volumes and
SPF/DKIM/DMARC while removing MX, the mail A record and Mailu's routes only, both run twice; the
lab stack is redeployed at the end so other tests find it up."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep
from mailu_core.config import StackConfig, load_stack_config
from mailu_core.render import monitoring_paths
from mailu_flows.deploy.releases import list_releases

pytestmark = pytest.mark.lab

MARKER = ".rollback-test-marker"


def _flow(name: str, **kw: Any) -> Any:
    kw.setdefault("lock_wait_s", 900)  # other lab tests take the host lock too
    if name == "deploy":
        from mailu_flows.flows.deploy import deploy

        return deploy(return_state=True, **kw)
    if name == "backup":
        from mailu_flows.flows.backup import backup

        return backup(return_state=True, **kw)
    if name == "dkim-publish":
        from mailu_flows.flows.dkim_publish import dkim_publish

        return dkim_publish(return_state=True, **kw)
    from mailu_flows.flows.rollback import rollback

    return rollback(return_state=True, **kw)


def _ok(state: Any) -> dict[str, Any]:
    assert state.is_completed(), f"{state.message}: {_exception_text(state)}"
    result: dict[str, Any] = state.result()
    return result


def _exception_text(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:
        return str(exc)
    return ""


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _containers(project: str) -> dict[str, tuple[str, str]]:
    """service -> (container id, image id)."""
    ids = _sh("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").split()
    if not ids:
        return {}
    out = {}
    for item in json.loads(_sh("docker", "inspect", *ids)):
        service = item["Config"]["Labels"]["com.docker.compose.service"]
        out[service] = (item["Id"], item["Image"])
    return out


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".lock" not in p.name:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
    return out


def _dig(name: str, rtype: str, server: str = ep.DNS_PRIMARY) -> list[str]:
    return sorted(_sh("dig", "+short", f"@{server}", name, rtype).split("\n")[:-1])


def _rawdata() -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"{ep.TRAEFIK_API_URL}/api/rawdata", timeout=5) as resp:
        doc: dict[str, Any] = json.load(resp)
    return doc


def _volume_file(cfg: StackConfig, volume: str, name: str, write: str | None = None) -> str:
    """Read (or write) a file in a volume through a throwaway container of the stack's Redis image."""
    script = (
        f"printf %s {shlex.quote(write)} > /v/{name}"
        if write is not None
        else f"cat /v/{name} 2>/dev/null || true"
    )
    return _sh(
        "docker", "run", "--rm", "-v", f"{volume}:/v", "--entrypoint", "sh", cfg.images.redis, "-c", script
    )


@pytest.fixture(scope="module")
def cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def deployed(cfg: StackConfig) -> Iterator[dict[str, Any]]:
    """The lab stack deployed (with DNS) before, and deployed again after every test here."""
    result = _ok(_flow("deploy", config=cfg))
    try:
        yield result
    finally:
        again = _ok(_flow("deploy", config=cfg))
        assert again["failed_checks"] == []


def _snapshot_under_the_lock(
    monkeypatch: pytest.MonkeyPatch, look: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Have the rollback call `look` right after its last step, while it still holds the host lock:
    the other lab tests' flows (deploy, dkim-publish, ...) cannot change the host in between."""
    from mailu_flows.rollback import Rollback

    seen: dict[str, Any] = {}
    original = Rollback.execute

    def execute(self: Rollback, *args: Any, **kw: Any) -> Any:
        result = original(self, *args, **kw)
        seen.update(look())
        return result

    monkeypatch.setattr(Rollback, "execute", execute)
    return seen


def _host(cfg: StackConfig) -> Any:
    from mailu_flows.tasks.host import connect_host

    return connect_host(cfg)


# --- confirmation --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["teardown", "previous-release"])
@pytest.mark.parametrize("confirm", ["webmail.inlock.test", "yes"])  # "": refused by the schema, below
def test_without_the_hostname_confirmation_nothing_is_touched(
    deployed: dict[str, Any], cfg: StackConfig, mode: str, confirm: str
) -> None:
    from mailu_flows.remote import HostLock

    root = Path(cfg.host.stack_root)
    host = _host(cfg)
    lock = HostLock(host, cfg.paths.lock_file, "test_rollback: nothing may change while I look")
    lock.acquire(wait_s=900)  # keeps the other helpers' flows from changing the host meanwhile
    try:
        before_tree, before_ids = _tree_digest(root), _containers(cfg.mailu.compose_project)
        state = _flow("rollback", config=cfg, mode=mode, confirm=confirm, lock_wait_s=0)
        assert state.is_failed()
        text = _exception_text(state)
        assert text.startswith("confirm:")
        assert "'mail.inlock.test'" in text and "Nothing was done" in text
        assert _tree_digest(root) == before_tree
        assert _containers(cfg.mailu.compose_project) == before_ids
    finally:
        lock.release()
        host.close()


def test_the_server_refuses_a_run_without_confirm(cfg: StackConfig) -> None:
    from mailu_flows.flows.rollback import rollback

    schema = rollback.parameters.model_dump()
    assert "confirm" in schema["required"] and "mode" in schema["required"]
    assert schema["properties"]["confirm"]["minLength"] == 1  # an empty confirmation never starts a run
    assert schema["properties"]["mode"]["enum"] == ["previous-release", "teardown"]


# --- previous-release --------------------------------------------------------------------------------


def _redis_variant(base: str) -> str:
    """The lab's Redis with one extra label: another pinned digest (another image id) that runs the
    same way, so the container stays healthy."""
    tag = f"{ep.REGISTRY_HOST}/library/redis:rollback-variant"
    dockerfile = f"FROM {base}\nLABEL org.mailu-flows.test=rollback-variant\n"
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, check=True,
                   capture_output=True)  # fmt: skip
    _sh("docker", "push", "-q", tag)
    digests = json.loads(_sh("docker", "image", "inspect", "--format", "{{json .RepoDigests}}", tag))
    ref = next(d for d in digests if d.startswith(f"{ep.REGISTRY_HOST}/library/redis@sha256:"))
    assert ref != base
    return str(ref)


def test_previous_release_brings_back_the_prior_images_and_files(
    deployed: dict[str, Any], cfg: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, root = cfg.mailu.compose_project, Path(cfg.host.stack_root)
    first = _ok(_flow("deploy", config=cfg, publish_dns=False))
    assert first["failed_checks"] == []
    images_before = {s: image for s, (_cid, image) in _containers(project).items()}
    files_before = _tree_digest(root / "compose") | _tree_digest(root / "traefik")

    data = cfg.model_dump(mode="json")
    data["images"]["redis"] = _redis_variant(cfg.images.redis)
    data["mailu"]["message_size_limit"] += 1_000_000
    second_cfg = StackConfig.model_validate(data)
    second = _ok(_flow("deploy", config=second_cfg, publish_dns=False))
    assert second["changed"] and second["failed_checks"] == []
    images_second = {s: image for s, (_cid, image) in _containers(project).items()}
    assert images_second["redis"] != images_before["redis"]
    assert (_tree_digest(root / "compose") | _tree_digest(root / "traefik")) != files_before

    def look() -> dict[str, Any]:
        return {
            "containers": _containers(project),
            "files": _tree_digest(root / "compose") | _tree_digest(root / "traefik"),
        }

    seen = _snapshot_under_the_lock(monkeypatch, look)
    result = _ok(_flow("rollback", config=cfg, mode="previous-release", confirm=cfg.hostname))
    assert result["from_release"] == second["release"]
    assert result["failed_checks"] == []
    after = seen["containers"]
    assert {s: image for s, (_cid, image) in after.items()} == images_before
    assert seen["files"] == files_before
    host = _host(cfg)
    try:
        releases = {r.id: r for r in list_releases(host, cfg.paths)}
    finally:
        host.close()
    assert releases[second["release"]].status == "rolled-back"
    assert "rolled back to" in releases[second["release"]].note
    assert releases[result["to_release"]].status == "good"

    # twice: the same rollback, found done (it does not go a second release back)
    again = _ok(_flow("rollback", config=cfg, mode="previous-release", confirm=cfg.hostname))
    assert again["resumed"] and again["to_release"] == result["to_release"]
    assert {r["result"] for r in again["rows"]} <= {"already", "ok"}
    assert seen["containers"] == after  # nothing recreated


# --- teardown ----------------------------------------------------------------------------------------


def test_teardown_keeps_volumes_and_spf_dkim_dmarc_and_removes_only_mailus_routes(
    deployed: dict[str, Any], cfg: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, root, zone = cfg.mailu.compose_project, Path(cfg.host.stack_root), cfg.dns.zone
    dyn = root / cfg.host.traefik_dynamic_dir
    host_route_files = {
        p.name: p.read_bytes() for p in dyn.iterdir() if p.name != cfg.host.traefik_dynamic_file
    }
    assert (dyn / cfg.host.traefik_dynamic_file).exists()
    assert all((root / rel).exists() for rel in monitoring_paths(cfg))
    assert _dig(zone, "MX") and _dig(cfg.hostname, "A")
    kept = {n: _dig(n, "TXT") for n in (zone, f"_dmarc.{zone}", f"{cfg.dns.dkim.selector}._domainkey.{zone}")}
    assert all(kept.values()), kept
    volumes = sorted(
        set(cfg.volumes.model_dump().values()) & set(_sh("docker", "volume", "ls", "-q").split())
    )
    assert cfg.volumes.mail in volumes

    # a marker from before the backup survives; one written after it is undone by the restore
    _volume_file(cfg, cfg.volumes.mail, MARKER, write="before-backup")
    report = _flow("backup", config=cfg)
    assert report.is_completed(), _exception_text(report)
    backup_id = report.result().backup_id
    _volume_file(cfg, cfg.volumes.mail, MARKER + "-late", write="after-backup")
    host = _host(cfg)
    try:
        releases_before = [r.id for r in list_releases(host, cfg.paths)]
    finally:
        host.close()
    others_before = {
        f"{section} {name}"
        for section in ("routers", "tcpRouters")
        for name in (_rawdata().get(section) or {})
        if not name.startswith("mailu-")
    }

    def look() -> dict[str, Any]:
        host = _host(cfg)
        try:
            release_ids = [r.id for r in list_releases(host, cfg.paths)]
        finally:
            host.close()
        raw = _rawdata()
        return {
            "containers": _containers(project),
            "volumes": sorted(
                set(cfg.volumes.model_dump().values()) & set(_sh("docker", "volume", "ls", "-q").split())
            ),
            "marker": _volume_file(cfg, cfg.volumes.mail, MARKER),
            "late marker": _volume_file(cfg, cfg.volumes.mail, MARKER + "-late"),
            "mx": _dig(zone, "MX"),
            "a": _dig(cfg.hostname, "A"),
            "kept": {n: _dig(n, "TXT") for n in kept},
            "files": {
                rel: (root / rel).exists()
                for rel in [
                    str(dyn.relative_to(root) / cfg.host.traefik_dynamic_file),
                    *monitoring_paths(cfg),
                ]
            },
            "route files": {p.name: p.read_bytes() for p in dyn.iterdir()},
            "loaded": {
                f"{s} {n}": v
                for s in ("routers", "tcpRouters", "services", "tcpServices")
                for n, v in (raw.get(s) or {}).items()
            },
            "releases": release_ids,
            "prometheus rule groups": _prometheus_rule_groups(),
        }

    seen = _snapshot_under_the_lock(monkeypatch, look)
    result = _ok(
        _flow("rollback", config=cfg, mode="teardown", confirm=cfg.hostname, restore_backup=backup_id)
    )
    assert result["failed_checks"] == []
    rows = {r["step"]: r for r in result["rows"]}
    assert "safety backup" in rows["restore volumes"]["detail"]

    assert seen["containers"] == {}
    assert seen["volumes"] == volumes
    assert seen["marker"] == "before-backup"
    assert seen["late marker"] == ""
    assert seen["mx"] == [] and seen["a"] == []
    assert seen["kept"] == kept
    assert not any(seen["files"].values()), seen["files"]  # Mailu's routes and Prometheus files
    assert seen["route files"] == host_route_files
    loaded = seen["loaded"]
    assert not [k for k in loaded if " mailu-" in k]
    for name in ("routers whoami@file", "routers traefik-dashboard@file"):
        assert loaded[name]["status"] == "enabled"
    assert {k for k in loaded if k.split()[0] in ("routers", "tcpRouters")} == others_before
    assert seen["releases"] == releases_before
    # the lab's Prometheus no longer lists Mailu's alert rules (the rule file is gone, reloaded)
    assert not [g for g in seen["prometheus rule groups"] if "mailu" in g.lower()], seen[
        "prometheus rule groups"
    ]

    # twice: every step finds its work done; the backup is not restored again. (Another lab test may
    # redeploy between the two runs; then this run is a new teardown, which must work as well.)
    seen.clear()
    again = _ok(
        _flow("rollback", config=cfg, mode="teardown", confirm=cfg.hostname, restore_backup=backup_id)
    )
    assert again["failed_checks"] == []
    if seen["releases"] == releases_before:
        assert again["resumed"]
        assert {r["result"] for r in again["rows"]} <= {"already", "ok"}, again["rows"]
    assert seen["marker"] == "before-backup" and seen["containers"] == {} and seen["mx"] == []

    # dkim-publish (and its propagation wait) on a torn-down stack keeps DKIM, SPF and DMARC published
    # and does not bring MX or the mail host's A back: only a deploy does
    dkim = _ok(_flow("dkim-publish", config=cfg))
    assert dkim["verified"]
    assert _dig(zone, "MX") == [] and _dig(cfg.hostname, "A") == []
    assert {n: _dig(n, "TXT") for n in kept} == kept

    # the deploy comes back on the kept volumes (the module fixture deploys once more at the end)
    back = _ok(_flow("deploy", config=cfg))
    assert back["failed_checks"] == []
    assert _dig(zone, "MX") and _dig(cfg.hostname, "A")
    assert _volume_file(cfg, cfg.volumes.mail, MARKER) == "before-backup"
    _sh("docker", "run", "--rm", "-v", f"{cfg.volumes.mail}:/v", "--entrypoint", "rm", cfg.images.redis,
        "-f", f"/v/{MARKER}")  # fmt: skip


def _prometheus_rule_groups() -> list[str]:
    import json
    import urllib.request

    from lab.endpoints import PROMETHEUS_PORT

    with urllib.request.urlopen(f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/rules", timeout=5) as resp:
        groups = json.loads(resp.read())["data"]["groups"]
    return [str(g["name"]) for g in groups]
