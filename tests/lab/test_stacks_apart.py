"""Two stacks in one stack root stay apart (issue 12): with a second stack "other" in the lab's stack
root (its release record, rollback journal, lock, compose file and a Traefik route of its own, written
over the lab's SSH with the project's own functions), the lab stack's deploy, previous-release and
teardown rollbacks leave all of it untouched and other's route loaded, and neither stack's lock
blocks the other. Legacy records in the shared place go to the stack whose files they wrote, and
records that cannot be told apart are refused with nothing moved. The lab stack is deployed again
at the end."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep
from mailu_core.config import StackConfig, load_stack_config
from mailu_core.render import traefik_file_path
from mailu_core.stack_paths import AdoptionRefused, StackPaths
from mailu_flows.deploy.releases import (
    Release,
    adopt_legacy_records,
    list_releases,
    new_release_id,
    save_release,
    start_release,
)
from mailu_flows.remote import HostBusy, HostLock, RemoteHost
from mailu_flows.rollback import Journal, read_journal, save_journal

pytestmark = pytest.mark.lab

OTHER_ROUTER = "ns-other-stack"


def _flow(name: str, **kw: Any) -> Any:
    kw.setdefault("lock_wait_s", 900)  # other lab tests take the lab stack's lock too
    if name == "deploy":
        from mailu_flows.flows.deploy import deploy

        return deploy(return_state=True, **kw)
    from mailu_flows.flows.rollback import rollback

    return rollback(return_state=True, **kw)


def _ok(state: Any) -> dict[str, Any]:
    if not state.is_completed():
        try:
            state.result()
        except Exception as exc:
            pytest.fail(f"{state.message}: {exc}")
    result: dict[str, Any] = state.result()
    return result


def _host(cfg: StackConfig) -> RemoteHost:
    from mailu_flows.tasks.host import connect_host

    return connect_host(cfg)


def _variant(cfg: StackConfig, name: str, **host: str) -> StackConfig:
    """Another stack in the same stack root: its own name, compose file, project and Traefik file."""
    data = cfg.model_dump(mode="json")
    data["name"] = name
    data["mailu"]["compose_project"] = name
    data["host"]["compose_file"] = f"compose/{name}.yml"
    data["host"]["traefik_dynamic_file"] = f"{name}.yml"
    data["host"].update(host)
    return StackConfig.model_validate(data)


def _route(cfg: StackConfig) -> bytes:
    """A route of the other stack Traefik loads: its own router and service, nothing of Mailu's."""
    return (
        "http:\n  routers:\n"
        f'    {OTHER_ROUTER}:\n      rule: "Host(`other.invalid`)"\n'
        f"      entryPoints: [{cfg.traefik.web_entrypoint}]\n      service: {OTHER_ROUTER}\n"
        f"  services:\n    {OTHER_ROUTER}:\n      loadBalancer:\n"
        '        servers:\n          - url: "http://127.0.0.1:9"\n'
    ).encode()


def _write_release(host: RemoteHost, cfg: StackConfig, legacy: bool = False) -> Release:
    """A good release record of `cfg` (its compose file and Traefik file), as the deploy writes it;
    `legacy`: in the shared place where versions before per-stack records wrote it."""
    contents = {
        cfg.host.compose_file: f"name: {cfg.mailu.compose_project}\nservices: {{}}\n".encode(),
        traefik_file_path(cfg): _route(cfg),
    }
    release = Release(
        id=new_release_id(),
        created="2026-01-01T00:00:00+00:00",
        config_sha256="0" * 64,
        images={"redis": cfg.images.redis},
        files={rel: {"sha256": hashlib.sha256(b).hexdigest(), "mode": 0o644} for rel, b in contents.items()},
        status="good",
    )
    paths = cfg.paths if not legacy else _LegacyPlace(cfg.paths.stack_root, cfg.paths.name)
    start_release(host, paths, release, contents, [])
    save_release(host, paths, release)
    return release


class _LegacyPlace(StackPaths):
    """A stack's paths with the releases directory of older versions (shared by the whole root)."""

    @property
    def releases_dir(self) -> str:
        return self.legacy_releases_dir


def _tree(path: Path) -> dict[str, str]:
    """Every file under `path` (or `path` itself): content hash and mode."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
        for p in files
        if p.exists()
    }


def _rawdata() -> dict[str, Any]:
    with urllib.request.urlopen(f"{ep.TRAEFIK_API_URL}/api/rawdata", timeout=5) as resp:
        doc: dict[str, Any] = json.load(resp)
    return doc


def _other_router_status() -> str | None:
    router = (_rawdata().get("routers") or {}).get(f"{OTHER_ROUTER}@file") or {}
    return router.get("status")


def _wait_other_router(status: str | None, wait_s: float = 30) -> str | None:
    import time

    deadline = time.monotonic() + wait_s
    while (now := _other_router_status()) != status and time.monotonic() < deadline:
        time.sleep(0.5)
    return now


@pytest.fixture(scope="module")
def cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def other(cfg: StackConfig) -> Iterator[StackConfig]:
    """The stack "other" in the lab's stack root: a good release, a finished teardown journal naming
    it, its compose file and its loaded Traefik route. Removed afterwards."""
    other = _variant(cfg, "other")
    live = [other.host.compose_file, traefik_file_path(other)]
    host = _host(cfg)
    try:
        release = _write_release(host, other)
        host.write_file(str(other.host.resolve(other.host.compose_file)), b"services: {}\n", mode=0o644)
        host.write_file(str(other.host.resolve(traefik_file_path(other))), _route(other), mode=0o644)
        save_journal(
            host,
            other.paths.journal_file,
            Journal("teardown", release.id, None, None, "other's own rollback", "2026-01-01T00:00:00Z",
                    ["stop", "dns", "files", "checks"], "2026-01-01T00:01:00Z"),
        )  # fmt: skip
        with HostLock(host, other.paths.lock_file, "other's earlier run"):
            pass  # other's lock file exists, as after any run of other
        assert _wait_other_router("enabled") == "enabled"
        yield other
    finally:
        host.run(["rm", "-rf", other.paths.state_dir, *[str(other.host.resolve(r)) for r in live]])
        host.close()


def _other_state(other: StackConfig) -> dict[str, str]:
    """Everything of other's on the host: records, journal, lock, compose file and Traefik file."""
    out = _tree(Path(other.paths.state_dir))
    for rel in (other.host.compose_file, traefik_file_path(other)):
        out |= _tree(Path(str(other.host.resolve(rel))))
    return out


def test_one_stacks_lock_does_not_block_the_other(cfg: StackConfig, other: StackConfig) -> None:
    assert cfg.paths.lock_file != other.paths.lock_file
    first, second = _host(cfg), _host(cfg)
    try:
        lab_lock = HostLock(first, cfg.paths.lock_file, "test_stacks_apart: the lab stack's run")
        lab_lock.acquire(wait_s=900)  # the lab stack's other runs may hold it a while
        try:
            HostLock(second, other.paths.lock_file, "other's run").acquire(wait_s=0)  # free: not blocked
            # and a second run of the lab stack itself is still refused
            with pytest.raises(HostBusy, match="test_stacks_apart: the lab stack's run"):
                HostLock(second, cfg.paths.lock_file, "a second lab run").acquire(wait_s=0)
        finally:
            lab_lock.release()
    finally:
        first.close()
        second.close()


@pytest.fixture
def other_lock_held(cfg: StackConfig, other: StackConfig) -> Iterator[None]:
    """other's lock held by "another run" for the whole test: the lab stack's flows must not wait."""
    host = _host(cfg)
    lock = HostLock(host, other.paths.lock_file, "other's long run")
    lock.acquire(wait_s=0)
    try:
        yield
    finally:
        lock.release()
        host.close()


def test_deploy_and_rollbacks_of_one_stack_leave_the_other_stacks_records_lock_and_route(
    cfg: StackConfig, other: StackConfig, other_lock_held: None
) -> None:
    before = _other_state(other)
    holder = Path(f"{other.paths.lock_file}.holder").read_text()
    try:
        first = _ok(_flow("deploy", config=cfg, publish_dns=False))
        data = cfg.model_dump(mode="json")
        data["mailu"]["message_size_limit"] += 1_000_000
        second = _ok(_flow("deploy", config=StackConfig.model_validate(data), publish_dns=False))
        assert second["changed"] and second["failed_checks"] == []
        host = _host(cfg)
        try:
            mine = {r.id for r in list_releases(host, cfg.paths)}
            theirs = {r.id for r in list_releases(host, other.paths)}
        finally:
            host.close()
        assert second["release"] in mine and not mine & theirs and len(theirs) == 1
        assert _other_state(other) == before

        back = _ok(_flow("rollback", config=cfg, mode="previous-release", confirm=cfg.hostname))
        assert back["from_release"] == second["release"] and back["failed_checks"] == []
        assert _other_state(other) == before

        down = _ok(_flow("rollback", config=cfg, mode="teardown", confirm=cfg.hostname))
        assert down["failed_checks"] == []
        removed = next(r["detail"] for r in down["rows"] if r["step"] == "Traefik and monitoring files")
        assert traefik_file_path(other) not in removed
        assert _other_state(other) == before  # other's Traefik file, records, journal and lock
        assert _wait_other_router("enabled", wait_s=5) == "enabled"
        host = _host(cfg)
        try:  # each stack reads its own journal: the lab's teardown, other's own old one
            assert (read_journal(host, cfg.paths.journal_file) or pytest.fail("no journal")).run != (
                read_journal(host, other.paths.journal_file) or pytest.fail("no journal")
            ).run
        finally:
            host.close()
        # the whole time, other's lock stayed held by its own run
        assert Path(f"{other.paths.lock_file}.holder").read_text() == holder == "other's long run"
        assert first["failed_checks"] == []
    finally:
        again = _ok(_flow("deploy", config=cfg))  # the lab stack back up, with its DNS, for what follows
        assert again["failed_checks"] == []
    assert _other_state(other) == before
    assert _other_router_status() == "enabled"


def test_legacy_records_go_to_the_stack_whose_files_they_wrote(cfg: StackConfig) -> None:
    """Records in the legacy shared place: a stack adopts its own and leaves the other's; a record
    that writes only one of its two files is refused with nothing moved."""
    a, b = _variant(cfg, "ns-adopt-a"), _variant(cfg, "ns-adopt-b")
    legacy = a.paths.legacy_releases_dir
    host = _host(cfg)
    made: list[str] = []
    try:
        rec_a, rec_b = _write_release(host, a, True), _write_release(host, b, True)
        made += [f"{legacy}/{rec_a.id}", f"{legacy}/{rec_b.id}"]
        logged: list[str] = []
        adoption = adopt_legacy_records(host, a, logged.append)
        assert adoption is not None and rec_a.id in adoption.ours and rec_b.id in adoption.foreign
        assert [r.id for r in list_releases(host, a.paths)] == [rec_a.id]
        assert not Path(f"{legacy}/{rec_a.id}").exists() and Path(f"{legacy}/{rec_b.id}").exists()
        assert any(a.paths.releases_dir in line and rec_a.id in line for line in logged)
        assert adopt_legacy_records(host, a) is None  # once only: a has its own directory now

        # b's record next to one that names b's compose file but not its Traefik file: refused
        data = b.model_dump(mode="json")
        data["host"]["traefik_dynamic_file"] = "ns-adopt-elsewhere.yml"
        unclear = _write_release(host, StackConfig.model_validate(data), True)
        made.append(f"{legacy}/{unclear.id}")
        with pytest.raises(AdoptionRefused) as err:
            adopt_legacy_records(host, b)
        assert unclear.id in str(err.value) and b.paths.releases_dir in str(err.value)
        assert not Path(b.paths.state_dir).exists()
        assert Path(f"{legacy}/{rec_b.id}").exists() and Path(f"{legacy}/{unclear.id}").exists()
    finally:
        host.run(["rm", "-rf", a.paths.state_dir, b.paths.state_dir, *made])
        host.run(["sh", "-c", f"rmdir {legacy} 2>/dev/null; true"])
        host.close()
