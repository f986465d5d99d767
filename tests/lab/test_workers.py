"""A fleet on Prefect's own distributed machinery (issue 13): two stacks deploy at once, through a process
work pool served by two workers, against a Prefect server whose database is PostgreSQL.

The stacks: the lab's own (its deploy finds it deployed) and "fleet-b", a second Mailu stack on the same
host with its own domain, compose project, stack root, volumes, mail network, secrets block, and a
Traefik of its own (entrypoints published on other ports). It needs one: Mailu's routers have fixed
names (`mailu-*`, mailu_core/render/traefik.py), so two stacks in one Traefik would shadow each other.
fleet-b runs without webmail (the fewest services a Mailu stack has). Its containers, volumes, files and
Traefik are removed afterwards; the lab's stack and its volumes are left as they were.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import endpoints as ep
from lab import prefect_pg
from lab.procs import running_pid
from mailu_core.config import StackConfig, load_stack_config, stack_config_from_mapping

pytestmark = pytest.mark.lab

FLEET = "fleet-b"
VOLUME_PREFIX = "fleet_b_"
FLEET_DOMAIN = f"b.{ep.ZONE}"
FLEET_HOSTNAME = f"mail-b.{ep.ZONE}"  # the lab certificate's *.inlock.test covers it
FLEET_MAIL_SUBNET = "172.30.6.0/24"
PORT_SHIFT = 1000  # fleet-b's Traefik publishes each lab entrypoint's port + 1000
FLEET_TRAEFIK = "mailu-lab-traefik-fleet-b"  # the lab label: `lab down` removes it too
FLEET_TRAEFIK_IP = "172.30.2.3"  # mgmt: statics below .64, Docker's dynamic range above
FLEET_TRAEFIK_API_PORT = 18081
WORKERS = ("fleet-worker-1", "fleet-worker-2")
RUN_TIMEOUT_S = 720
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])}: {proc.stderr.strip()}")
    return proc.stdout


def _project_containers(project: str) -> dict[str, str]:
    """Name -> state of every container of a compose project."""
    out = _docker(
        "ps",
        "-a",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--format",
        "{{.Names}} {{.State}}",
    )
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def _remove_project(project: str) -> None:
    """A compose project's containers and networks (never its volumes; the caller removes those)."""
    label = f"label=com.docker.compose.project={project}"
    ids = _docker("ps", "-aq", "--filter", label).split()
    if ids:
        _docker("rm", "-f", *ids, check=False)
    nets = _docker("network", "ls", "-q", "--filter", label).split()
    if nets:
        _docker("network", "rm", *nets, check=False)


def _fleet_traefik(image: str, root: Path) -> None:
    """A second Traefik for fleet-b, as the lab's own is made (lab/traefik.py) but with the file provider
    watching fleet-b's directory, its own address on mgmt, and its entrypoints on other host ports."""
    from lab.traefik import CONTAINER_CERT_DIR, CONTAINER_DYNAMIC_DIR, baseline_dynamic_files, static_config

    conf = root / "traefik-static"
    conf.mkdir(parents=True, exist_ok=True)
    static = static_config()
    static.pop("certificatesResolvers", None)  # no ACME for fleet-b: the lab certificate covers its name
    (conf / "traefik.yml").write_text(yaml.safe_dump(static, sort_keys=False))
    dyn = root / "traefik" / "dynamic"
    dyn.mkdir(parents=True, exist_ok=True)
    for name, doc in baseline_dynamic_files().items():  # the host's middlewares, as on the lab's Traefik
        (dyn / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    for d in (dyn, dyn.parent):
        shutil.chown(d, ep.SSH_USER, ep.SSH_USER)
    publish: list[str] = []
    for e in (*ep.MAIL_ENTRYPOINTS, *ep.WEB_ENTRYPOINTS):
        publish += ["-p", f"127.0.0.1:{e.host_port + PORT_SHIFT}:{e.port}"]
    publish += ["-p", f"127.0.0.1:{FLEET_TRAEFIK_API_PORT}:8080"]
    _docker("rm", "-f", FLEET_TRAEFIK, check=False)
    _docker(
        "run", "-d", "--name", FLEET_TRAEFIK, "--label", "org.mailu-flows.lab=1",
        "--network", "mgmt", "--ip", FLEET_TRAEFIK_IP, *publish,
        "-v", f"{conf / 'traefik.yml'}:/etc/traefik/traefik.yml:ro",
        "-v", f"{ep.lab_dir() / 'traefik' / 'certs'}:{CONTAINER_CERT_DIR}:ro",
        "-v", f"{dyn}:{CONTAINER_DYNAMIC_DIR}:ro",
        "--read-only", "--security-opt", "no-new-privileges", "--cap-drop", "ALL",
        "--cap-add", "NET_BIND_SERVICE", image, "--configFile=/etc/traefik/traefik.yml",
    )  # fmt: skip
    import json
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        try:
            url = f"http://127.0.0.1:{FLEET_TRAEFIK_API_PORT}/api/rawdata"
            with urllib.request.urlopen(url, timeout=2) as resp:
                if "secure-headers@file" in json.load(resp).get("middlewares", {}):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"fleet-b's Traefik did not load its files: {_docker('logs', FLEET_TRAEFIK)}"
            )
        time.sleep(0.5)


def _fleet_config(lab_cfg: StackConfig, root: Path) -> StackConfig:
    """fleet-b: the lab's config on its own root, volumes, project, domain, network, secrets and Traefik."""
    from tests.lab.fixtures.deploying import own_stack_config

    entrypoints = [
        {"port": e.port, "name": e.name, "published_port": (e.published_port or e.port) + PORT_SHIFT}
        for e in lab_cfg.traefik.mail_entrypoints
    ]
    own = own_stack_config(
        lab_cfg, root, VOLUME_PREFIX,
        host={"traefik_dynamic_dir": "traefik/dynamic"},  # fleet-b's Traefik watches it
        traefik={
            "mail_entrypoints": entrypoints,
            "websecure_published_port": lab_cfg.traefik.websecure_published_port + PORT_SHIFT,
            "mgmt_address": FLEET_TRAEFIK_IP,
            "api_url": f"http://127.0.0.1:{FLEET_TRAEFIK_API_PORT}",
            "admin_host": None,
            "webmail_host": None,
        },
        compose_project=FLEET, domain=FLEET_DOMAIN, hostnames=[FLEET_HOSTNAME], webmail="none",
    )  # fmt: skip
    data = own.model_dump(mode="json")
    data["name"] = FLEET
    data["images"]["webmail"] = None
    data["networks"]["mail_subnet"] = FLEET_MAIL_SUBNET
    data["blocks"]["mailu_secrets"] = f"{FLEET}-mailu-secrets"
    return stack_config_from_mapping(data, source="test_workers (fleet-b)")


@pytest.fixture(scope="module")
def lab_cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def fleet(lab_cfg: StackConfig, lab_images: dict[str, str]) -> Iterator[StackConfig]:
    """fleet-b's stack root (the lab's certificates in it), its Traefik, and empty volumes; all removed
    afterwards."""
    from tests.lab.fixtures.deploying import empty_volumes, fresh_stack_root

    root = fresh_stack_root(FLEET)
    cfg = _fleet_config(lab_cfg, root)
    try:
        certs = cfg.host.certs_dir
        assert certs is not None
        shutil.copytree(Path(str(lab_cfg.host.resolve(certs))), root / certs)
        subprocess.run(["chown", "-R", f"{ep.SSH_USER}:{ep.SSH_USER}", str(root / certs)], check=True)
        _remove_project(FLEET)
        empty_volumes(cfg, VOLUME_PREFIX)
        _fleet_traefik(lab_images["traefik"], root)
        yield cfg
    finally:
        _remove_project(FLEET)
        empty_volumes(cfg, VOLUME_PREFIX)
        _docker("rm", "-f", FLEET_TRAEFIK, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pool(lab_cfg: StackConfig, fleet: StackConfig) -> Iterator[dict[str, str]]:
    """The PostgreSQL-backed server (kept for the session; `lab down` stops it), both stacks' blocks and
    deploy deployments on it, and two workers on its process pool, each running one flow at a time
    (stopped afterwards). Yields deployment id by stack name."""
    prefect_pg.ensure_prefect_pg()
    prefect_pg.copy_blocks(
        sorted({v for v in lab_cfg.blocks.model_dump().values() if v} - {fleet.blocks.mailu_secrets})
    )
    prefect_pg.ensure_empty_mailu_secrets(fleet.blocks.mailu_secrets)
    prefect_pg.ensure_work_pool()
    ids = prefect_pg.deploy_to_pool([lab_cfg, fleet])
    try:
        for name in WORKERS:
            prefect_pg.ensure_worker(name, limit=1)
        yield dict(zip((lab_cfg.name, fleet.name), ids, strict=True))
    finally:
        for name in WORKERS:
            prefect_pg.stop_worker(name)


def _create_run(deployment: str) -> str:
    dep = prefect_pg.api("GET", f"/deployments/name/{deployment}")
    params = {"publish_dns": False, "lock_wait_s": 600}
    run = prefect_pg.api("POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": params})
    return str(run["id"])


def _states(run_ids: list[str]) -> list[str]:
    return [prefect_pg.api("GET", f"/flow_runs/{rid}")["state"]["type"] for rid in run_ids]


def _wait_final(run_ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        runs = {rid: prefect_pg.api("GET", f"/flow_runs/{rid}") for rid in run_ids}
        if all(r["state"]["type"] in FINAL for r in runs.values()):
            return runs
        if time.monotonic() > deadline:
            return runs
        time.sleep(2)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _banner(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        return sock.recv(512).decode(errors="replace")


def test_two_stacks_deploy_at_once_on_two_workers_of_a_postgresql_backed_server(
    lab_cfg: StackConfig, fleet: StackConfig, pool: dict[str, str]
) -> None:
    lab_volumes = set(_docker("volume", "ls", "-q").split()) & set(lab_cfg.volumes.model_dump().values())
    logs_before = {w: prefect_pg.worker_log(w).stat().st_size for w in WORKERS}

    # Both runs created at once, as a schedule or a person would for the whole fleet. The lab stack's
    # deploy has nothing to do (seconds), so the test holds that stack's host lock until both runs are
    # Running: the lab's run waits on it, and the two are seen running at the same moment.
    from mailu_flows.remote import HostLock
    from mailu_flows.tasks.host import connect_host

    host = connect_host(lab_cfg)
    try:
        lock = HostLock(host, lab_cfg.paths.lock_file, "test_workers: both runs start first")
        lock.acquire(wait_s=600)  # other runs of the lab stack may still hold it
        try:
            run_ids = {stack: _create_run(deployment) for stack, deployment in pool.items()}
            ids = list(run_ids.values())
            deadline = time.monotonic() + 180
            while (states_now := _states(ids)) != ["RUNNING", "RUNNING"] and time.monotonic() < deadline:
                if FINAL & set(states_now):  # fleet-b's first deploy takes far longer than the lab's start
                    break
                time.sleep(0.5)
            assert states_now == ["RUNNING", "RUNNING"], states_now
        finally:
            lock.release()
    finally:
        host.close()
    runs = _wait_final(ids, RUN_TIMEOUT_S)
    states = {stack: runs[rid]["state"] for stack, rid in run_ids.items()}
    assert all(s["type"] == "COMPLETED" for s in states.values()), states

    # each on its own worker: the worker that submitted a run names it in its log
    submitted: dict[str, set[str]] = {}
    for worker in WORKERS:
        with prefect_pg.worker_log(worker).open("rb") as log:
            log.seek(logs_before[worker])
            text = log.read().decode(errors="replace")
        # Both workers may poll the same scheduled run; the server lets one take it, and the other logs
        # that it aborted its submission (Prefect's worker, `_propose_pending_state`).
        took = {rid for rid in run_ids.values() if f"submitting flow run '{rid}'" in text}
        submitted[worker] = {rid for rid in took if f"Aborted submission of flow run '{rid}'" not in text}
    assert sorted(len(s) for s in submitted.values()) == [1, 1], submitted
    assert set().union(*submitted.values()) == set(run_ids.values())
    assert all(runs[rid]["work_pool_name"] == prefect_pg.WORK_POOL for rid in run_ids.values())

    # and at the same time, as the server's start and end times say too
    (a_start, a_end), (b_start, b_end) = (
        (_when(runs[rid]["start_time"]), _when(runs[rid]["end_time"])) for rid in run_ids.values()
    )
    assert a_start < b_end and b_start < a_end, runs

    # the server keeps them in PostgreSQL: its process was given a PostgreSQL URL, it has no SQLite
    # database, and the runs are rows that psql reads as Prefect's database user
    pid = running_pid(prefect_pg.SERVER_NAME)
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    url = next(v for v in environ if v.startswith(b"PREFECT_API_DATABASE_CONNECTION_URL="))
    assert url.split(b"=", 1)[1].startswith(b"postgresql+asyncpg://")
    assert not (prefect_pg.home_dir() / "prefect.db").exists()
    ids_sql = ", ".join(f"'{rid}'" for rid in run_ids.values())
    rows = prefect_pg.psql_prefect(f"SELECT id, state_type FROM flow_run WHERE id IN ({ids_sql}) ORDER BY id")
    assert sorted(rows.split()) == sorted(f"{rid}|COMPLETED" for rid in run_ids.values())

    # the stacks stayed apart: each project's containers run, none shared; each answers on its own ports
    lab_side, fleet_side = _project_containers(lab_cfg.mailu.compose_project), _project_containers(FLEET)
    assert fleet_side and all(state == "running" for state in fleet_side.values()), fleet_side
    assert lab_side and all(state == "running" for state in lab_side.values()), lab_side
    assert not set(lab_side) & set(fleet_side)
    smtp = next(e for e in ep.MAIL_ENTRYPOINTS if e.port == 25)
    assert ep.MAIL_HOSTNAME in _banner(smtp.host_port)
    assert FLEET_HOSTNAME in _banner(smtp.host_port + PORT_SHIFT)
    fleet_volumes = set(
        _docker("inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", *fleet_side).split()
    )
    own = set(fleet.volumes.model_dump().values())
    assert all(v.startswith(VOLUME_PREFIX) for v in own) and fleet_volumes & own, fleet_volumes
    assert not fleet_volumes & set(lab_cfg.volumes.model_dump().values())
    assert set(_docker("volume", "ls", "-q").split()) >= lab_volumes  # none of the lab's volumes went away
