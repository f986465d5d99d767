"""Deployments on the lab's real Prefect server: registered with their schedules by `serve`, runs created
through the API (as the UI does) complete, bad parameters are refused at creation (an empty rollback
confirmation included), every parameter shows its help text, and every failed, timed-out or late run
notifies exactly once (the lab's webhook receiver writes each message to .lab/notifications.jsonl)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest

from mailu_core.config import StackConfig, load_stack_config
from mailu_flows.deployments.definitions import (
    SPECS_BY_NAME,
    VERIFY_CRON,
    build_deployments,
    deployment_id,
    deployments_for,
    prefect_yaml,
)

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


def _dep(name: str) -> str:
    """`mailu-<name>/<name>`, as the UI and `run_deployment` name a deployment."""
    return deployment_id(SPECS_BY_NAME[name])


@pytest.fixture(scope="module")
def notifications() -> Callable[[], list[dict[str, Any]]]:
    """The lab's webhook receiver and automations; returns a reader of the messages sent since."""
    from lab.webhook import ensure_webhook, webhook_log

    ensure_webhook()
    log = webhook_log()
    start = log.read_text().count("\n") if log.exists() else 0

    def read() -> list[dict[str, Any]]:
        lines = log.read_text().splitlines()[start:] if log.exists() else []
        return [json.loads(line) for line in lines]

    return read


def _about(
    run_id: UUID | str, read: Callable[[], list[dict[str, Any]]], settle_s: float = 8
) -> list[dict[str, Any]]:
    """The messages naming the run: waits up to 60 s for the first, then `settle_s` more so that a
    second message for the same incident would be seen."""
    deadline = time.monotonic() + 60
    hits: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        hits = [m for m in read() if str(run_id) in m["body"]]
        if hits:
            break
        time.sleep(0.5)
    time.sleep(settle_s)
    return [m for m in read() if str(run_id) in m["body"]]


def test_prefect_yaml_and_serve_define_the_same_deployments(cfg: StackConfig) -> None:
    block_id = "6a1c2d3e-0000-4000-8000-000000000001"
    doc = prefect_yaml(cfg)
    runner = {d.name: d for d in build_deployments(cfg, block_id)}
    assert [d["name"] for d in doc["deployments"]] == [s.name for s in deployments_for(cfg)] == list(runner)
    for item in doc["deployments"]:
        dep = runner[item["name"]]
        assert dep.entrypoint is not None
        # one module path, served (Prefect writes `module.flow`) or deployed to a pool (`module:flow`)
        assert dep.entrypoint == item["entrypoint"].replace(":", ".")
        # the same block: by id when served (the UI shows it picked), by name in prefect.yaml
        assert dep.parameters["config"] == {"$ref": {"block_document_id": block_id}}
        assert item["parameters"]["config"] == {"$ref": {"block_document_slug": f"mailu-stack/{cfg.name}"}}
        assert {**item["parameters"], "config": None} == {**dep.parameters, "config": None}
        crons = [s.schedule.cron for s in dep.schedules or []]  # type: ignore[union-attr]
        assert [s["cron"] for s in item["schedules"]] == crons
        assert dep.enforce_parameter_schema and item["enforce_parameter_schema"]


def test_every_deployment_is_registered_with_its_schedule(serving: None, cfg: StackConfig) -> None:
    with _client() as client:
        for spec in deployments_for(cfg):
            dep = client.read_deployment_by_name(deployment_id(spec))
            crons = [s.schedule.cron for s in dep.schedules]
            cron = spec.cron_for(cfg)
            assert crons == ([cron] if cron else []), spec.name
            assert dep.enforce_parameter_schema
            assert "config" in dep.parameter_openapi_schema["properties"]
        verify = client.read_deployment_by_name(_dep("backup-verify"))
        assert [s.schedule.cron for s in verify.schedules] == [VERIFY_CRON]
        rollback = client.read_deployment_by_name(_dep("rollback"))
        assert rollback.schedules == []


def test_every_run_reads_the_stack_block_so_an_edit_there_changes_the_next_run(
    lab: dict[str, Any], serving: None, cfg: StackConfig
) -> None:
    """One source of truth: `serve` pushed the config file to the stack's block, every deployment
    refers to that block (no copy in its defaults), and a run started after an edit of the block (as
    in the UI) plans with the edited config, without re-registering anything."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    from mailu_flows.blocks import MailuStack, push_stack_config
    from mailu_flows.blocks.stack import PushOutcome

    block: Any = MailuStack.load(cfg.name)
    assert block.config == cfg
    ref = {"$ref": {"block_document_id": str(block._block_document_id)}}
    with _client() as client:
        for spec in deployments_for(cfg):
            dep = client.read_deployment_by_name(deployment_id(spec))
            assert dep.parameters["config"] == ref, spec.name
    assert push_stack_config(cfg) == PushOutcome(block._block_document_id, saved=False, kept=[])  # as it was
    interval = cfg.mailu.health_interval_s + 1
    edited = cfg.model_copy(update={"mailu": cfg.mailu.model_copy(update={"health_interval_s": interval})})
    try:
        # a restart of serve keeps the edit and names it; a push saves into the same block
        kept = push_stack_config(cfg, replace=False)  # (as if the edit were made in the UI, then this)
        assert kept == PushOutcome(block._block_document_id, saved=False, kept=[]), kept
        assert push_stack_config(edited) == PushOutcome(block._block_document_id, saved=True, kept=[])
        assert push_stack_config(cfg, replace=False).kept == ["mailu.health_interval_s"]
        run: Any = run_deployment(
            _dep("deploy"), parameters={"dry_run": True, "publish_dns": False}, timeout=600, poll_interval=1
        )
        assert run.state is not None and run.state.is_completed(), run.state
        with _client() as client:
            arts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        plan = next(str(a.data) for a in arts if a.key == f"mailu-deploy-plan-{cfg.name}")
        assert f"+      interval: {interval}s" in plan, plan[-3000:]
    finally:
        push_stack_config(cfg)
    assert cast(Any, MailuStack.load(cfg.name)).config == cfg


def test_a_flow_command_runs_through_the_stacks_deployment_and_refuses_a_file_that_differs(
    lab: dict[str, Any], serving: None, cfg: StackConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --local, `mailu-flows plan` creates a run of the stack's deploy deployment (a dry run,
    on the served runner), prints its logs and ends with its state. A file that says something else
    than the stack's block is refused, naming the field and the fix, and no run is created."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from mailu_core.config import dump_stack_config
    from mailu_flows.cli import main

    def runs_of(dep_id: UUID) -> int:
        with _client() as client:
            found = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id]))
            )
        return len(found)

    with _client() as client:
        dep = client.read_deployment_by_name(_dep("deploy"))
    before = runs_of(dep.id)
    edited = cfg.model_copy(
        update={"mailu": cfg.mailu.model_copy(update={"health_interval_s": cfg.mailu.health_interval_s + 1})}
    )
    other_file = tmp_path / "stack.yaml"
    other_file.write_text(dump_stack_config(edited))
    assert main(["plan", "--config", str(other_file)]) == 2
    refused = capsys.readouterr().err
    assert "differs from" in refused and "mailu.health_interval_s" in refused, refused
    assert "mailu-flows config push --config" in refused and "--local" in refused
    assert runs_of(dep.id) == before  # refused before any run was created

    assert main(["plan", "--config", lab["stack_config"], "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["state"] == "Completed" and out["deployment"] == _dep("deploy"), out
    assert out["flow_run_name"] == f"deploy-{cfg.name}"
    assert "| INFO    | plan: " in captured.err  # the run's logs, streamed from the server
    with _client() as client:
        run = client.read_flow_run(UUID(out["flow_run_id"]))
    assert run.deployment_id == dep.id and run.parameters["dry_run"] is True
    assert run.name == f"deploy-{cfg.name}"

    assert main(["plan", "--config", lab["stack_config"]]) == 0  # `plan > plan.md` gets the plan
    captured = capsys.readouterr()
    assert captured.out.startswith("# Deploy plan"), captured.out[:500]
    assert f"Completed: deploy-{cfg.name} (" in captured.err  # the name the run took when it started


def test_every_parameter_shows_its_help_text_on_the_server(serving: None, cfg: StackConfig) -> None:
    with _client() as client:
        for spec in deployments_for(cfg):
            dep = client.read_deployment_by_name(deployment_id(spec))
            properties = dep.parameter_openapi_schema["properties"]
            bare = [name for name, prop in properties.items() if not prop.get("description")]
            assert bare == [], f"{spec.flow_name}: no help text for {bare}"
        rollback = client.read_deployment_by_name(_dep("rollback"))
        schema = rollback.parameter_openapi_schema
        assert {"mode", "confirm"} <= set(schema["required"])
        assert schema["properties"]["confirm"]["minLength"] == 1
        assert "confirm" not in rollback.parameters


def test_an_empty_rollback_confirmation_is_refused_by_the_server(serving: None) -> None:
    from prefect.exceptions import PrefectHTTPStatusError

    with _client() as client:
        dep = client.read_deployment_by_name(_dep("rollback"))
        for params in ({"mode": "teardown"}, {"mode": "teardown", "confirm": ""}):
            with pytest.raises(PrefectHTTPStatusError) as info:
                client.create_flow_run_from_deployment(dep.id, parameters=params)
            assert info.value.response.status_code == 409
            assert "confirm" in info.value.response.text


def test_a_run_created_through_the_api_completes(serving: None, cfg: StackConfig) -> None:
    from prefect.deployments import run_deployment

    run: Any = run_deployment(_dep("deploy"), timeout=600, poll_interval=1)
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.name == f"deploy-{cfg.name}"


def test_a_bad_parameter_is_refused_when_the_run_is_created(serving: None, cfg: StackConfig) -> None:
    from prefect.exceptions import PrefectHTTPStatusError

    bad = json.loads(cfg.model_dump_json())
    bad["images"]["front"] = "127.0.0.1:5000/mailu/nginx:2024.06"  # a tag, not a digest
    with _client() as client:
        dep = client.read_deployment_by_name(_dep("deploy"))
        with pytest.raises(PrefectHTTPStatusError) as info:
            client.create_flow_run_from_deployment(dep.id, parameters={"config": bad})
        assert info.value.response.status_code in (409, 422)
        assert "front" in info.value.response.text or "sha256" in info.value.response.text


def test_a_failed_run_notifies_once(serving: None, cfg: StackConfig, notifications: Any) -> None:
    from prefect.deployments import run_deployment

    bad = json.loads(cfg.model_dump_json())
    bad["networks"]["mgmt"] = "mgmt-missing-for-test"  # valid value, fails in preflight
    run: Any = run_deployment(_dep("deploy"), parameters={"config": bad}, timeout=600, poll_interval=1)
    assert run.state is not None and run.state.is_failed()
    hits = _about(run.id, notifications, settle_s=3)
    assert len(hits) == 1, f"{len(hits)} notification(s) for {run.name}: {hits}"
    assert "mgmt-missing-for-test" in hits[0]["body"]
    assert f"deploy-{cfg.name}" in hits[0]["subject"] and "Failed" in hits[0]["subject"]


def test_a_timed_out_propagation_wait_notifies_once(
    serving: None, cfg: StackConfig, notifications: Any
) -> None:
    """A record nobody publishes, a 1 s deadline: the wait gives up (`TimedOut`, not `Failed`), and the
    automation tells, once. Read-only: the host is not even contacted (the records are given)."""
    from prefect.deployments import run_deployment

    params = {
        "deadline_s": 1,
        "interval_s": 0.5,
        "dkim_txt": {"never-published": "v=DKIM1; k=rsa; p=MIIBnever"},
        "mail_routing": False,
        "check_reverse_dns": False,
    }
    run: Any = run_deployment(_dep("dns-propagation-wait"), parameters=params, timeout=300, poll_interval=1)
    assert run.state is not None and run.state.name == "TimedOut", run.state
    hits = _about(run.id, notifications)
    assert len(hits) == 1, f"{len(hits)} notification(s) for {run.name}: {hits}"
    assert "TimedOut" in hits[0]["subject"] and "never-published" in hits[0]["body"]


def test_a_late_backup_notifies_once(lab: dict[str, Any], serving: None, notifications: Any) -> None:
    """The runner is down when a backup is due: the server marks the run Late and the automation tells,
    once. The run is deleted before the runner comes back, so no backup is made."""
    from datetime import UTC, datetime

    from prefect.states import Scheduled

    from lab.serving import ensure_serving, stop_serving

    stop_serving()
    run_id = None
    try:
        with _client() as client:
            dep = client.read_deployment_by_name(_dep("backup"))
            due = datetime.now(UTC) - timedelta(seconds=30)
            run = client.create_flow_run_from_deployment(dep.id, state=Scheduled(scheduled_time=due))
            run_id = run.id
            hits = _about(run.id, notifications)
            state = client.read_flow_run(run.id).state
            assert state is not None and state.name == "Late", state
            assert len(hits) == 1, f"{len(hits)} notification(s) for the late run: {hits}"
            assert "Late" in hits[0]["subject"] and "has not started" in hits[0]["body"]
    finally:
        if run_id is not None:
            with _client() as client:
                client.delete_flow_run(run_id)
        ensure_serving(Path(lab["stack_config"]))


def _overdue_fires(notifications: Any, what: Any, stack: str) -> None:
    """`what`'s proactive rule for `stack` with a 15 s interval instead of hours (on its own automation,
    removed after): no Completed run of the flow for the stack within it sends one message, naming the
    stack."""
    from prefect.blocks.core import Block

    from mailu_flows.notifications import overdue_automation

    block: Any = Block.load("custom-webhook/lab-notify", _sync=True)  # type: ignore[call-arg]
    automation = overdue_automation(what, block._block_document_id, timedelta(seconds=15), stack)
    automation.name = f"mailu-flows-test: {what.flow} overdue in 15 s"
    created = automation.create()
    try:
        deadline = time.monotonic() + 60
        hits: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not hits:
            hits = [
                m
                for m in notifications()
                if f"{what.flow} of stack {stack} completed in 15 s" in m["subject"]
            ]
            time.sleep(1)
        assert hits, "no message from the proactive rule within 60 s"
        assert len(hits) == 1, hits
    finally:
        created.delete()


def test_no_completed_backup_verify_in_time_notifies(
    serving: None, notifications: Any, cfg: StackConfig
) -> None:
    """The setup made the lab stack's own backup-verify rule (no server-wide one once stacks have
    blocks), and no canary rule (the lab's config has no canary). Such a rule fires."""
    from prefect.automations import Automation

    from mailu_flows.notifications import CANARY, VERIFY, overdue_name

    read: Any = Automation.read  # synchronous here (Prefect's sync/async dispatch)
    assert read(name=overdue_name(VERIFY, cfg.name)).trigger.within == timedelta(hours=26)
    for absent in (overdue_name(VERIFY, None), overdue_name(CANARY, cfg.name)):
        with pytest.raises(ValueError):
            read(name=absent)
    _overdue_fires(notifications, VERIFY, cfg.name)


def test_no_completed_mail_canary_in_time_notifies(
    serving: None, notifications: Any, cfg: StackConfig
) -> None:
    from mailu_flows.notifications import CANARY

    _overdue_fires(notifications, CANARY, cfg.name)


def _wait_state(run_id: UUID, done: Callable[[Any], bool], timeout_s: float = 180) -> Any:
    deadline = time.monotonic() + timeout_s
    with _client() as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and done(run.state):
                return run
            assert time.monotonic() < deadline, f"run {run.name} still {run.state}"
            time.sleep(0.5)


def _paused_review(client: Any, **params: Any) -> Any:
    """A rollback-review run created as the UI creates it, once it shows its plan and waits."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Cancelled

    dep = client.read_deployment_by_name(_dep("rollback-review"))
    run = client.create_flow_run_from_deployment(dep.id, parameters=params)
    try:
        paused = _wait_state(run.id, lambda s: s.is_paused() or s.is_final())
    except AssertionError:  # never started: it must not start (and wait an hour) after this test
        client.set_flow_run_state(run.id, Cancelled(message="left over by a failed test"), force=True)
        raise
    assert paused.state.is_paused(), paused.state
    arts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    return paused, {a.key: a for a in arts}


def test_a_rollback_from_the_ui_shows_its_plan_then_proceeds_only_with_the_hostname(
    serving: None, cfg: StackConfig
) -> None:
    """Wrong hostname: the run stops, nothing done. Right hostname: it goes on to the host lock, which
    this test holds, so that it stops there too (`lock_wait_s=0`) and the lab's stack stays up."""
    from mailu_flows.remote import HostLock
    from mailu_flows.tasks.host import connect_host

    plan_key = f"mailu-rollback-plan-{cfg.name}"
    with _client() as client:
        wrong, arts = _paused_review(client, mode="teardown")
        assert wrong.name == f"rollback-review-teardown-{cfg.name}"
        assert plan_key in arts and "Rollback plan: teardown" in str(arts[plan_key].data)
        client.resume_flow_run(wrong.id, run_input={"hostname": "not-the-mail-host.example"})
        refused = _wait_state(wrong.id, lambda s: s.is_final())
        assert refused.state.is_failed() and "Nothing was done" in (refused.state.message or ""), (
            refused.state
        )

        host = connect_host(cfg)
        lock = HostLock(host, cfg.paths.lock_file, "test_deployments holding the lock")
        lock.acquire(wait_s=30)
        try:
            right, _ = _paused_review(client, mode="teardown", lock_wait_s=0)
            client.resume_flow_run(right.id, run_input={"hostname": cfg.hostname.upper()})
            stopped = _wait_state(right.id, lambda s: s.is_final())
        finally:
            lock.release()
            host.close()
    message = stopped.state.message or ""
    assert stopped.state.is_failed() and "test_deployments holding the lock" in message, stopped.state


def test_serve_removes_the_deployments_of_the_unprefixed_flow_names(serving: None, cfg: StackConfig) -> None:
    """An upgraded server keeps `backup/backup` and its schedule unless someone removes it: serve does.
    Another project's deployment of a flow that happens to be named `deploy` (no `mailu` tag) stays."""
    from prefect.exceptions import ObjectNotFound

    from mailu_flows.deployments.definitions import remove_legacy_deployments

    with _client() as client:
        flow_id = client.create_flow_from_name("deploy")
        ours = client.create_deployment(flow_id=flow_id, name="deploy", tags=["mailu"])
        assert "deploy/deploy" in remove_legacy_deployments()
        with pytest.raises(ObjectNotFound):
            client.read_deployment(ours)
        theirs = client.create_deployment(flow_id=flow_id, name="deploy", tags=["etl"])
        try:
            assert remove_legacy_deployments() == []
            assert client.read_deployment(theirs).name == "deploy"
        finally:
            client.delete_deployment(theirs)
        for spec in deployments_for(cfg):  # ours, under their new names, untouched
            assert client.read_deployment_by_name(deployment_id(spec)).name == spec.name
