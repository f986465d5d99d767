"""The package as users install it (issue 13): a wheel built from this checkout, installed with its
dependencies into a fresh venv, holds one namespace (`mailu_core`, `mailu_flows`; the folders flows/,
tasks/, blocks/ and deployments/ inside `mailu_flows`, the lab not at all), and its deployments run
from it: `prefect deploy` with module-path entrypoints onto a process pool of the lab's
PostgreSQL-backed server, a worker started from that venv in a directory that is not a checkout, and
a deploy of the lab stack (a dry run: it reads the host, renders and plans) through that deployment
completes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import endpoints as ep
from lab import prefect_pg
from mailu_core.config import StackConfig, load_stack_config

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("flows", "tasks", "blocks", "deployments")
POOL = "mailu-wheel"
DEPLOYMENT = "deploy-from-wheel"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _run(argv: list[str], **kw: Any) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, **kw)
    assert proc.returncode == 0, f"{' '.join(argv[:4])}: {(proc.stdout + proc.stderr)[-3000:]}"
    return str(proc.stdout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(wheel, venv, an empty working directory): the wheel built from the checkout, installed with its
    dependencies (from the machine's package index, as `pip install` would) into a fresh venv."""
    base = tmp_path_factory.mktemp("wheel")
    dist, venv, work = base / "dist", base / "venv", base / "work"
    work.mkdir()
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)])
    (wheel,) = dist.glob("mailu_flows-*.whl")
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)])
    return wheel, venv, work


def test_the_wheel_holds_one_namespace_and_every_module_of_the_product(
    built: tuple[Path, Path, Path],
) -> None:
    wheel, _, _ = built
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "mailu_core",
        "mailu_flows",
    }
    expected = {str(p.relative_to(REPO)) for p in (REPO / "mailu_core").rglob("*.py")}
    expected |= {
        str(p.relative_to(REPO)) for p in (REPO / "mailu_flows").rglob("*.py") if "__pycache__" not in p.parts
    }
    for folder in FOLDERS:  # the checkout's folders, at their place in the namespace
        expected |= {f"mailu_flows/{p.relative_to(REPO)}" for p in (REPO / folder).rglob("*.py")}
    expected = {e for e in expected if "__pycache__" not in e}
    assert expected <= set(names), sorted(expected - set(names))
    assert not [n for n in names if n.startswith(("lab/", "tests/", "bench/"))]
    dist_info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(dist_info).decode()
    assert "mailu_flows = mailu_flows.blocks" in entry_points  # prefect.collections: the block types
    assert "mailu-flows = mailu_flows.cli:main" in entry_points


def test_installed_there_is_no_top_level_flows_tasks_or_lab_and_the_lab_says_where_it_lives(
    built: tuple[Path, Path, Path],
) -> None:
    _, venv, work = built
    python = str(venv / "bin" / "python")
    probe = (
        "import importlib.util as u, mailu_flows.flows.deploy as d, mailu_flows.blocks as b\n"
        "print([n for n in ('flows', 'tasks', 'blocks', 'deployments', 'lab') if u.find_spec(n)])\n"
        "print(d.__file__)\n"
        "print(len(b.BLOCK_TYPES))\n"
    )
    top_level, deploy_file, block_types = _run([python, "-c", probe], cwd=work).splitlines()
    assert top_level == "[]"
    assert deploy_file.startswith(str(venv)), deploy_file  # from the wheel, not from the checkout
    assert int(block_types) >= 6
    lab = subprocess.run(
        [str(venv / "bin" / "mailu-flows"), "lab", "status"], capture_output=True, text=True, cwd=work
    )
    assert lab.returncode != 0 and "runs from a checkout" in lab.stderr, lab.stderr


@pytest.fixture
def worker(built: tuple[Path, Path, Path], lab_cfg: StackConfig) -> Iterator[str]:
    """The lab stack's deploy deployment, made by the installed package's `prefect deploy` onto a
    process pool of the PostgreSQL-backed server, and a worker from the venv polling it (stopped
    afterwards). Yields the deployment's id."""
    _, venv, work = built
    prefect_pg.ensure_prefect_pg()
    prefect_pg.copy_blocks(sorted({v for v in lab_cfg.blocks.model_dump().values() if v}))
    prefect_pg.ensure_work_pool(POOL)
    env = {**os.environ, **prefect_pg.client_env(), "MAILU_FLOWS_DIR": str(work)}
    env.pop("PYTHONPATH", None)
    # the installed CLI pushes the stack config to its block on this server and writes prefect.yaml
    cli = [str(venv / "bin" / "mailu-flows"), "deployments", "prefect-yaml", "--work-pool", POOL]
    full = yaml.safe_load(_run([*cli, "--config", str(ep.lab_dir() / "stack.yaml")], cwd=work, env=env))
    full["deployments"] = [dict(d, name=DEPLOYMENT) for d in full["deployments"] if d["name"] == "deploy"]
    doc = yaml.safe_dump(full, sort_keys=False)
    (entry,) = yaml.safe_load(doc)["deployments"]
    assert entry["entrypoint"] == "mailu_flows.flows.deploy:deploy"  # a module path: no checkout needed
    (work / "prefect.yaml").write_text(doc)
    _run([str(venv / "bin" / "prefect"), "--no-prompt", "deploy", "--all"], cwd=work, env=env)
    log = (work / "worker.log").open("wb")
    proc = subprocess.Popen(
        [str(venv / "bin" / "prefect"), "worker", "start", "--pool", POOL, "--name", "wheel-worker",
         "--type", "process", "--limit", "1"],
        cwd=work, env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        dep = prefect_pg.api("GET", f"/deployments/name/mailu-deploy/{DEPLOYMENT}")
        yield str(dep["id"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def lab_cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.mark.timeout(600)
def test_its_deployment_runs_from_the_installed_package_on_a_worker_outside_any_checkout(
    built: tuple[Path, Path, Path], worker: str
) -> None:
    _, _, work = built
    run = prefect_pg.api("POST", f"/deployments/{worker}/create_flow_run", {"parameters": {"dry_run": True}})
    deadline = time.monotonic() + 420
    while (state := prefect_pg.api("GET", f"/flow_runs/{run['id']}")["state"])["type"] not in FINAL:
        assert time.monotonic() < deadline, (
            f"flow run still {state['type']}: {(work / 'worker.log').read_text()[-3000:]}"
        )
        time.sleep(2)
    assert state["type"] == "COMPLETED", f"{state}: {(work / 'worker.log').read_text()[-3000:]}"
    assert not (work / "mailu_flows").exists() and not (work / "flows").exists()  # nothing was pulled here
