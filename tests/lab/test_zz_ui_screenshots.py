"""A person can look at the UI: headless Chromium renders the deployments page and a finished deploy
run; the DOM shows what the PNGs show, and the PNGs are kept in test-artifacts/."""

from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep
from mailu_core.config import load_stack_config
from mailu_flows.deployments.definitions import SPECS_BY_NAME, deployment_id, deployments_for

pytestmark = pytest.mark.lab

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
    "--virtual-time-budget=20000",
]


def _chromium(url: str, *args: str) -> str:
    with tempfile.TemporaryDirectory(dir="/tmp") as profile:
        proc = subprocess.run(
            ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return proc.stdout


def _latest_completed_deploy_run() -> str | None:
    body = json.dumps(
        {
            "flows": {"name": {"any_": [SPECS_BY_NAME["deploy"].flow_name]}},
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
            "sort": "END_TIME_DESC",
            "limit": 1,
        }
    ).encode()
    req = urllib.request.Request(
        f"{ep.PREFECT_API_URL}/flow_runs/filter",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        runs = json.loads(resp.read())
    return str(runs[0]["id"]) if runs else None


@pytest.fixture(scope="module")
def finished_deploy_run(lab: dict[str, Any]) -> str:
    from prefect.deployments import run_deployment

    from lab.serving import ensure_serving

    ensure_serving(Path(lab["stack_config"]))
    run_id = _latest_completed_deploy_run()
    if run_id is None:
        run: Any = run_deployment(deployment_id(SPECS_BY_NAME["deploy"]), timeout=900, poll_interval=1)
        assert run.state.is_completed(), run.state
        run_id = str(run.id)
    return run_id


def test_deployments_page(lab: dict[str, Any], finished_deploy_run: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{ep.PREFECT_PORT}/deployments"
    png = ARTIFACTS / "ui-deployments.png"
    _chromium(url, f"--screenshot={png}")
    assert png.stat().st_size > 20_000
    dom = _chromium(url, "--dump-dom")
    for spec in deployments_for(load_stack_config(Path(lab["stack_config"]))):
        assert spec.name in dom, f"deployment {spec.name} not shown on {url}"


def test_finished_deploy_run_page(finished_deploy_run: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{ep.PREFECT_PORT}/runs/flow-run/{finished_deploy_run}"
    png = ARTIFACTS / "ui-deploy-run.png"
    _chromium(url, f"--screenshot={png}")
    assert png.stat().st_size > 20_000
    dom = _chromium(url, "--dump-dom")
    assert "Completed" in dom
    assert "deploy" in dom


def test_mailu_admin_login_page_renders(lab: dict[str, Any]) -> None:
    """Mailu's own admin, through Traefik's websecure entrypoint and the host's forward-auth: a signed-out
    browser lands on Mailu's sign-in page (/sso/login on the admin host). TLS is checked elsewhere; this
    browser profile does not know the lab CA."""
    ARTIFACTS.mkdir(exist_ok=True)
    websecure = next(e.host_port for e in ep.WEB_ENTRYPOINTS if e.name == "websecure")
    url = f"https://admin:lab-admin@{ep.ADMIN_HOSTNAME}:{websecure}/admin/"
    flags = ["--ignore-certificate-errors", f"--host-resolver-rules=MAP {ep.ADMIN_HOSTNAME} 127.0.0.1"]
    png = ARTIFACTS / "mailu-admin-login.png"
    _chromium(url, *flags, f"--screenshot={png}")
    assert png.stat().st_size > 10_000
    dom = _chromium(url, *flags, "--dump-dom")
    assert "Mailu-Admin" in dom and 'name="email"' in dom and 'name="pw"' in dom, dom[:2000]
    assert 'id="submitAdmin"' in dom
