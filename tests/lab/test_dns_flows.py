"""The dns-propagation-wait flow and the deploy's DNS step on the lab (Knot primary + secondary).

The wait is checked through the flow itself: its failure carries the record x nameserver table, and
the run has the table artifact (and a progress artifact); the secondary shows "stale" while NOTIFY is
off, until it is refreshed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from lab.dns import refresh_secondary, set_notify
from lab.endpoints import DNS_PRIMARY, DNS_SECONDARY
from mailu_core.config import StackConfig, dump_stack_config
from mailu_core.dns import PropagationTimeout

from .test_dkim_publish import cleanup, isolated_config, lab_cfg, publish

__all__ = ["lab_cfg"]  # the module fixture, shared

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def iso(lab_cfg: StackConfig) -> Iterator[StackConfig]:
    cfg = isolated_config(lab_cfg, f"t-{secrets.token_hex(4)}")
    try:
        yield cfg
    finally:
        cleanup(cfg)


def run_artifacts(flow_run_id: UUID) -> dict[str, Any]:
    """The artifacts of one flow run, by type (table data decoded)."""
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out: dict[str, Any] = {}
    for a in arts:
        data = json.loads(a.data) if a.type == "table" and isinstance(a.data, str) else a.data
        out[a.type or ""] = data
    return out


def wait_flow(cfg: StackConfig, **kw: Any) -> Any:
    from mailu_flows.flows.dns_wait import dns_propagation_wait

    return dns_propagation_wait(config=cfg, return_state=True, **kw)


def test_wait_reports_stale_secondary_until_refreshed(iso: StackConfig, dns_notify_restored: None) -> None:
    set_notify(False)
    published = publish(iso, wait=False)
    assert not published["verified"]  # the secondary has not transferred the new records
    assert all(DNS_SECONDARY in p for p in published["problems"])
    dkim = {"dkim": published["txt"]}

    state = wait_flow(iso, deadline_s=2, interval_s=0.3, dkim_txt=dkim)
    assert state.is_failed()
    err = state.result(raise_on_failure=False)
    assert isinstance(err, PropagationTimeout)
    assert "stale" in str(err) and DNS_SECONDARY in str(err)
    assert all(c.nameserver.address == DNS_SECONDARY for c in err.table.pending())
    arts = run_artifacts(state.state_details.flow_run_id)
    rows = arts["table"]
    assert len(rows) == 9
    assert all(r[DNS_PRIMARY] == "ok" and r[DNS_SECONDARY].startswith("stale") for r in rows)
    assert "progress" in arts and 0 <= arts["progress"] < 100

    assert refresh_secondary() is not None
    state = wait_flow(iso, deadline_s=10, interval_s=0.3, dkim_txt=dkim)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["ok"] and result["summary"].endswith("18 ok")
    arts = run_artifacts(state.state_details.flow_run_id)
    assert all(r[DNS_PRIMARY] == r[DNS_SECONDARY] == "ok" for r in arts["table"])
    assert arts["progress"] == 100


def test_wait_when_everything_is_in_place_is_one_quick_check(iso: StackConfig) -> None:
    publish(iso)
    # no dkim_txt: the flow derives it from the key on the host, as `mailu-flows dns-wait` does
    state = wait_flow(iso)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["attempts"] == 1 and result["elapsed_s"] < 0.5, result
    assert result["records"] == 9
    # FCrDNS is a warning (the lab's 127.0.0.1 has no PTR naming the mail host), never a failure
    assert any("reverse DNS" in w for w in result["warnings"])


def test_cli_dns_wait_and_dkim_publish(iso: StackConfig, tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(dump_stack_config(iso))
    cli = [sys.executable, "-m", "mailu_flows.cli"]
    env = {**os.environ}
    pub = subprocess.run(
        [*cli, "dkim-publish", "--local", "--config", str(path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=900,
    )
    assert pub.returncode == 0, pub.stderr[-2000:]
    out = json.loads(pub.stdout[pub.stdout.index("{") :])
    assert out["state"] == "Completed" and out["result"]["verified"] and out["result"]["created"]
    assert "PRIVATE KEY" not in pub.stdout + pub.stderr
    wait = subprocess.run(
        [*cli, "dns-wait", "--local", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert wait.returncode == 0, wait.stderr[-2000:]
    assert "propagated: 9 records x 2 nameservers: 18 ok" in wait.stdout


def test_deploy_publishes_dns_then_writes_nothing_and_plan_shows_it(lab_cfg: StackConfig) -> None:
    from mailu_flows.flows.deploy import deploy

    first = deploy(config=lab_cfg, lock_wait_s=900, return_state=True)
    assert first.is_completed(), first.message
    second = deploy(config=lab_cfg, lock_wait_s=900, return_state=True)
    assert second.is_completed(), second.message
    dns = second.result()["dns"]
    # nothing to write, and one concurrent check found every record (the DKIM key on disk included)
    # on every authoritative server: the dkim-publish subflow is not needed
    assert dns["publish"]["writes"] == 0
    assert dns["in_place"] is True

    dry = deploy(config=lab_cfg, dry_run=True, return_state=True)
    assert dry.is_completed(), dry.message
    plan = dry.result()["plan"]
    assert (
        "# Deploy plan" in plan
        and "# DNS plan" in plan
        and "zone inlock.test: 0 create, 0 update, 0 delete" in plan
    )


def test_a_dns_failure_fails_the_deploy_but_keeps_the_release(lab_cfg: StackConfig) -> None:
    from mailu_flows.flows.deploy import DnsStepFailed, deploy

    data = lab_cfg.model_dump(mode="json")
    data["blocks"]["dns_provider"] = "no-such-dns-block"
    broken = type(lab_cfg).model_validate(data)
    state = deploy(config=broken, lock_wait_s=900, return_state=True)
    assert state.is_failed()
    err = state.result(raise_on_failure=False)
    assert isinstance(err, DnsStepFailed) and "stays in place" in str(err)
    # and the stack is untouched: the next deploy of the good config is a no-op
    again = deploy(config=lab_cfg, lock_wait_s=900, publish_dns=False, return_state=True)
    assert again.is_completed() and again.result()["changed"] is False
