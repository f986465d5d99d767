"""Deployments on the lab's real Prefect server: registered with their schedules by `serve`, runs created
through the API (as the UI does) complete, bad parameters are refused at creation, failures notify."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from deployments.definitions import DEPLOYMENTS, VERIFY_CRON, build_deployments, deployment_id, prefect_yaml
from mailu_core.config import StackConfig, load_stack_config

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def serving(lab: dict[str, Any]) -> None:
    from lab.serving import ensure_serving

    ensure_serving(Path(lab["stack_config"]), restart=True)


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def test_prefect_yaml_and_serve_define_the_same_deployments(cfg: StackConfig) -> None:
    doc = prefect_yaml(cfg)
    runner = {d.name: d for d in build_deployments(cfg)}
    assert [d["name"] for d in doc["deployments"]] == [s.name for s in DEPLOYMENTS] == list(runner)
    for item in doc["deployments"]:
        dep = runner[item["name"]]
        assert dep.entrypoint is not None
        assert dep.entrypoint.endswith(item["entrypoint"].split("/")[-1])
        assert item["parameters"] == dep.parameters
        crons = [s.schedule.cron for s in dep.schedules or []]  # type: ignore[union-attr]
        assert [s["cron"] for s in item["schedules"]] == crons
        assert dep.enforce_parameter_schema and item["enforce_parameter_schema"]


def test_every_deployment_is_registered_with_its_schedule(serving: None) -> None:
    with _client() as client:
        for spec in DEPLOYMENTS:
            dep = client.read_deployment_by_name(deployment_id(spec))
            crons = [s.schedule.cron for s in dep.schedules]
            assert crons == ([spec.cron] if spec.cron else []), spec.name
            assert dep.enforce_parameter_schema
            assert "config" in dep.parameter_openapi_schema["properties"]
        verify = client.read_deployment_by_name("backup-verify/backup-verify")
        assert [s.schedule.cron for s in verify.schedules] == [VERIFY_CRON]
        rollback = client.read_deployment_by_name("rollback/rollback")
        assert rollback.schedules == []


def test_a_run_created_through_the_api_completes(serving: None) -> None:
    from prefect.deployments import run_deployment

    run: Any = run_deployment("deploy/deploy", timeout=600, poll_interval=1)
    assert run.state is not None and run.state.is_completed(), run.state


def test_a_bad_parameter_is_refused_when_the_run_is_created(serving: None, cfg: StackConfig) -> None:
    from prefect.exceptions import PrefectHTTPStatusError

    bad = json.loads(cfg.model_dump_json())
    bad["images"]["front"] = "127.0.0.1:5000/mailu/nginx:2024.06"  # a tag, not a digest
    with _client() as client:
        dep = client.read_deployment_by_name("deploy/deploy")
        with pytest.raises(PrefectHTTPStatusError) as info:
            client.create_flow_run_from_deployment(dep.id, parameters={"config": bad})
        assert info.value.response.status_code in (409, 422)
        assert "front" in info.value.response.text or "sha256" in info.value.response.text


def test_a_failed_run_notifies(serving: None, cfg: StackConfig) -> None:
    from prefect.deployments import run_deployment

    from lab.webhook import ensure_webhook, webhook_log

    ensure_webhook()
    before = webhook_log().read_text().count("\n") if webhook_log().exists() else 0
    bad = json.loads(cfg.model_dump_json())
    bad["networks"]["mgmt"] = "mgmt-missing-for-test"  # valid value, fails in preflight
    run: Any = run_deployment("deploy/deploy", parameters={"config": bad}, timeout=600, poll_interval=1)
    assert run.state is not None and run.state.is_failed()
    deadline = time.monotonic() + 30
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = webhook_log().read_text().splitlines()[before:] if webhook_log().exists() else []
        if any(run.name in line for line in lines):
            break
        time.sleep(0.5)
    hit = [json.loads(line) for line in lines if run.name in line]
    assert hit, f"no notification for {run.name}: {lines}"
    assert "mgmt-missing-for-test" in hit[0]["body"]
