"""Monitoring on the lab, for real: the deploy flow installs the monitoring files and reloads the lab's
Prometheus, whose API then lists the Mailu targets and alert rules and scrapes rspamd; a blackbox
exporter run by the tests on the rendered modules reports `probe_success 1` for every mail probe
through Traefik's entrypoints (lab CA, mail.inlock.test), and 0 while the stack is stopped (it is
started again afterwards)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep
from lab.blackbox import ensure_blackbox, probe, stop_blackbox
from mailu_core.config import StackConfig, load_stack_config
from mailu_core.render.monitoring import (
    BLACKBOX_METRICS,
    RSPAMD_METRICS,
    alert_names,
    module_name,
    monitoring_paths,
    probes,
)
from mailu_flows.deploy.engine import compose_args
from mailu_flows.deploy.monitoring import expected_targets, listed_addresses

pytestmark = pytest.mark.lab

PROM = f"http://127.0.0.1:{ep.PROMETHEUS_PORT}"


def _api(path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{PROM}/api/v1/{path}{query}", timeout=10) as resp:
        doc = json.loads(resp.read())
    assert doc["status"] == "success", doc
    return doc["data"]


def _until(what: str, fn: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            assert value, f"timed out after {timeout:.0f}s waiting for {what}"
            return value
        time.sleep(1)


@pytest.fixture(scope="module")
def cfg(lab: dict[str, Any]) -> StackConfig:
    config = load_stack_config(Path(lab["stack_config"]))
    assert config.monitoring.enabled, "the lab config enables monitoring (lab/stack_config.py)"
    return config


@pytest.fixture(scope="module")
def deployed(cfg: StackConfig) -> dict[str, Any]:
    from mailu_flows.flows.deploy import deploy

    state = deploy(config=cfg, return_state=True, lock_wait_s=900)  # other lab tests may hold the host
    assert state.is_completed(), state.message
    result: dict[str, Any] = state.result()
    assert result["failed_checks"] == []
    return result


@pytest.fixture(scope="module")
def blackbox(cfg: StackConfig, deployed: dict[str, Any]) -> Iterator[str]:
    modules = cfg.host.resolve(cfg.monitoring.blackbox_modules_file)
    url = ensure_blackbox(Path(str(modules)))
    try:
        yield url
    finally:
        stop_blackbox()


def _probe_all(cfg: StackConfig) -> dict[str, dict[str, float]]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {p.name: pool.submit(probe, p.target, module_name(cfg, p.module)) for p in probes(cfg)}
        return {name: f.result() for name, f in futures.items()}


def test_deploy_installs_the_files_and_prometheus_lists_targets_and_rules(
    cfg: StackConfig, deployed: dict[str, Any]
) -> None:
    for rel in monitoring_paths(cfg):
        assert Path(str(cfg.host.resolve(rel))).is_file(), rel
    targets = _api("targets", state="active")["activeTargets"]
    listed = listed_addresses(targets, cfg.name)
    assert {address for _, address in expected_targets(cfg)} <= listed
    groups = {g["name"]: g for g in _api("rules", type="alert")["groups"]}
    assert [r["name"] for r in groups[f"mailu-{cfg.name}"]["rules"]] == alert_names(cfg)


def test_a_prometheus_that_refuses_the_reload_keeps_the_mail_release(
    cfg: StackConfig, deployed: dict[str, Any]
) -> None:
    """A monitoring misconfiguration (here: nothing answers at reload_url) is the host's monitoring
    problem: the healthy mail release stays good and the summary warns (issue 15: it used to return
    the stack to the previous release)."""
    from mailu_core.config import stack_config_from_mapping
    from mailu_flows.flows.deploy import deploy

    data = cfg.model_dump(mode="json")
    data["monitoring"] |= {  # a rule file that differs, so the deploy reloads
        "reload_url": "http://127.0.0.1:9/-/reload",
        "prometheus_url": PROM,
        "port_down_minutes": cfg.monitoring.port_down_minutes + 1,
    }
    broken = stack_config_from_mapping(data, source="test: a wrong reload_url")
    try:
        state = deploy(config=broken, return_state=True, publish_dns=False, lock_wait_s=900)
        assert state.is_completed(), state.message
        result = state.result()
        assert result["changed"] and result["failed_checks"] == ["prometheus reload"], result
        assert "WARNING monitoring is not working (the mail release stays)" in result["summary"]
        record = Path(cfg.host.stack_root) / ".mailu-flows/stacks" / cfg.name / "releases" / result["release"]
        assert json.loads((record / "release.json").read_text())["status"] == "good"
    finally:
        back = deploy(config=cfg, return_state=True, publish_dns=False, lock_wait_s=900)
        assert back.is_completed(), back.message


def test_prometheus_scrapes_rspamd_through_the_mail_network(
    cfg: StackConfig, deployed: dict[str, Any]
) -> None:
    selector = f'{{stack="{cfg.name}",service="antispam"}}'

    def up() -> bool:
        rows = _api("query", query=f"up{selector}")["result"]
        return bool(rows) and all(r["value"][1] == "1" for r in rows)

    _until("rspamd's /metrics to be scraped (up == 1)", up, timeout=60)
    names = {
        r["metric"]["__name__"] for r in _api("query", query=f"count by (__name__) ({selector})")["result"]
    }
    assert names >= RSPAMD_METRICS  # what the dashboard's spam panel uses


def test_every_probe_succeeds_through_traefik(cfg: StackConfig, blackbox: str) -> None:
    results = _probe_all(cfg)
    failed = {name: r.get("probe_success") for name, r in results.items() if r.get("probe_success") != 1}
    assert not failed, f"probes failing: {failed}"
    for name, samples in results.items():
        assert samples["probe_ssl_earliest_cert_expiry"] > time.time(), name  # TLS was negotiated
        assert BLACKBOX_METRICS - {"probe_http_status_code"} <= set(samples), name
    # the lab's Prometheus probes through the same exporter (its blackbox job uses the `exporter` label)
    want = {p.target for p in probes(cfg)}

    def all_up() -> bool:
        rows = _api("query", query=f'probe_success{{stack="{cfg.name}"}}')["result"]
        return {r["metric"]["instance"] for r in rows if r["value"][1] == "1"} >= want

    _until("Prometheus to record probe_success 1 for every probe", all_up, timeout=60)


def test_mail_probes_fail_while_the_stack_is_stopped(cfg: StackConfig, blackbox: str) -> None:
    compose = [*compose_args(cfg)]
    mail = [p for p in probes(cfg) if p.kind == "mail"]
    subprocess.run([*compose, "stop"], check=True, capture_output=True, timeout=300)
    try:
        results = _probe_all(cfg)
        assert {p.name: results[p.name]["probe_success"] for p in mail} == {p.name: 0.0 for p in mail}
    finally:
        subprocess.run([*compose, "start"], check=True, capture_output=True, timeout=300)

    def back() -> bool:
        return all(r.get("probe_success") == 1 for name, r in _probe_all(cfg).items() if name != "admin")

    _until("the stack to answer every probe again", back, timeout=240)
    _until(
        "every container healthy again",
        lambda: (
            subprocess.run(
                [*compose, "up", "--detach", "--wait", "--wait-timeout", "10"],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        ),
        timeout=420,
    )
