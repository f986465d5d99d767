"""Run forms a person can use (no server needed): every parameter of every deployed flow carries its
help text in the parameter schema Prefect sends to the server (Prefect drops the description of an
`Annotated[..., Field(description=...)]`, so it must come from the docstring's `Args:`), the limits
stay in the schema, rollback's confirmation is required and cannot be empty, flows carry the `mailu-`
prefix, runs are named after what they do and the stack, artifact keys end with the stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailu_core.config import StackConfig, load_stack_config
from mailu_flows.deployments.definitions import (
    DEPLOYMENTS,
    SPECS_BY_NAME,
    DeploymentSpec,
    build_deployments,
    deployment_id,
    deployments_for,
    fleet_prefect_yaml,
    prefect_yaml,
    trigger_spec,
)
from mailu_flows.flows.naming import artifact_key, run_name

REPO = Path(__file__).resolve().parents[2]
BLOCK_ID = "6a1c2d3e-0000-4000-8000-000000000001"  # a stack block's id, as the server gives it


@pytest.fixture(scope="module")
def cfg() -> StackConfig:
    return load_stack_config(REPO / "examples" / "inlock.ai.yaml")


def _schema(spec: DeploymentSpec) -> dict[str, Any]:
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(spec.load_flow().fn).model_dump_for_openapi()


@pytest.mark.parametrize("spec", DEPLOYMENTS, ids=[s.name for s in DEPLOYMENTS])
def test_every_parameter_has_help_text_in_the_schema(spec: DeploymentSpec) -> None:
    properties = _schema(spec)["properties"]
    missing = [name for name, prop in properties.items() if not str(prop.get("description", "")).strip()]
    assert missing == [], f"{spec.flow_name}: parameters without a description: {missing}"


@pytest.mark.parametrize("spec", DEPLOYMENTS, ids=[s.name for s in DEPLOYMENTS])
def test_flows_are_named_with_the_mailu_prefix(spec: DeploymentSpec) -> None:
    assert spec.load_flow().name == spec.flow_name == f"mailu-{spec.name}"
    assert deployment_id(spec) == f"mailu-{spec.name}/{spec.name}"


def test_limits_stay_in_the_schema() -> None:
    by_name = {s.name: s for s in DEPLOYMENTS}
    deploy = _schema(by_name["deploy"])["properties"]
    assert (deploy["lock_wait_s"]["minimum"], deploy["lock_wait_s"]["maximum"]) == (0, 3600)
    wait = _schema(by_name["dns-propagation-wait"])["properties"]
    assert wait["deadline_s"]["anyOf"][0]["maximum"] == 7200
    backup = _schema(by_name["backup"])["properties"]
    assert backup["pause_services"]["anyOf"][0]["maxItems"] == 32


def test_rollback_confirm_is_required_and_cannot_be_empty(cfg: StackConfig) -> None:
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    spec = next(s for s in DEPLOYMENTS if s.name == "rollback")
    schema = _schema(spec)
    assert {"mode", "confirm"} <= set(schema["required"])
    assert schema["properties"]["confirm"]["minLength"] == 1
    deployed = next(d for d in prefect_yaml(cfg)["deployments"] if d["name"] == "rollback")
    assert "confirm" not in deployed["parameters"]  # no empty default filled in for the form
    base = {"config": cfg.model_dump(mode="json"), "mode": "teardown"}
    for params in (base, {**base, "confirm": ""}):
        with pytest.raises(ValidationError):
            validate(params, schema, raise_on_error=True)
    validate({**base, "confirm": cfg.hostname}, schema, raise_on_error=True)


def test_run_names_say_what_and_which_stack(cfg: StackConfig) -> None:
    dumped = cfg.model_dump(mode="json")
    assert run_name("deploy", (), {"config": cfg}) == f"deploy-{cfg.name}"
    assert run_name("deploy", (), {"config": dumped}) == f"deploy-{cfg.name}"  # before validation
    teardown = {"config": cfg, "mode": "teardown", "confirm": cfg.hostname}
    assert run_name("rollback", ("mode",), teardown) == f"rollback-teardown-{cfg.name}"
    for spec in DEPLOYMENTS:
        namer = spec.load_flow().flow_run_name
        assert callable(namer), f"{spec.flow_name} has no run name"


def test_artifact_keys_end_with_the_stack(cfg: StackConfig) -> None:
    import re

    key = artifact_key("rollback-plan", cfg.name)
    assert key == f"mailu-rollback-plan-{cfg.name}"
    assert re.fullmatch(r"[a-z0-9-]+", key)  # what Prefect accepts as an artifact key


def test_backup_verify_follows_a_completed_backup_of_the_same_stack(cfg: StackConfig) -> None:
    by_name = {s.name: s for s in DEPLOYMENTS}
    verify = by_name["backup-verify"]
    assert verify.cron  # the schedule stays, as the safety net
    trigger = trigger_spec(verify, cfg)
    assert trigger is not None
    assert trigger["expect"] == ["prefect.flow-run.Completed"]
    related = {r["prefect.resource.role"]: r for r in trigger["match_related"]}
    assert related["flow"]["prefect.resource.name"] == "mailu-backup"
    assert related["tag"]["prefect.resource.id"] == f"prefect.tag.mailu-stack:{cfg.name}"
    assert [trigger_spec(s, cfg) for s in DEPLOYMENTS if s is not verify] == [None] * (len(DEPLOYMENTS) - 1)


def test_the_mail_canary_is_deployed_on_its_schedule_only_where_it_is_configured(cfg: StackConfig) -> None:
    """A stack naming a canary password block gets the mail-canary deployment, every 15 minutes by
    default (canary.interval_minutes); a stack without one does not; `scheduled: false` keeps it manual."""
    from lab.stack_config import lab_stack_config, with_canary
    from tests.core.render.test_render import lab_images

    lab = with_canary(lab_stack_config(lab_images(), "/srv/apps"))
    data = lab.model_dump(mode="json")
    data["canary"]["scheduled"] = True
    scheduled = StackConfig.model_validate(data)
    canary = {d.name: d for d in build_deployments(scheduled, BLOCK_ID)}["mail-canary"]
    assert [s.schedule.cron for s in canary.schedules] == ["*/15 * * * *"]  # type: ignore[union-attr]
    data["canary"]["interval_minutes"] = 360
    assert next(d for d in prefect_yaml(StackConfig.model_validate(data))["deployments"]
            if d["name"] == "mail-canary")["schedules"][0]["cron"] == "0 */6 * * *"  # fmt: skip
    assert "mail-canary" in [s.name for s in deployments_for(lab)]
    assert SPECS_BY_NAME["mail-canary"].cron_for(lab) is None  # the lab's: started by its tests
    data["blocks"]["canary_password"] = None
    assert "mail-canary" not in [s.name for s in deployments_for(StackConfig.model_validate(data))]
    data["canary"]["interval_minutes"] = 7
    with pytest.raises(ValueError, match="neither a divisor of 60"):
        StackConfig.model_validate(data)


def test_every_deployment_reads_its_stack_block_and_the_server_accepts_the_reference(
    cfg: StackConfig,
) -> None:
    """Deployments carry a reference to the stack's block, not a copy of the config; the `config`
    parameter's schema offers the block (the UI's picker) or a whole config, and the server's check
    (`validate` with Prefect's preprocessing) accepts both, and refuses a broken config."""
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    from mailu_flows.blocks import MailuStack

    ref = {"$ref": {"block_document_id": BLOCK_ID}}  # as the UI's block picker writes it (and serve)
    by_slug = {"$ref": {"block_document_slug": f"{MailuStack.get_block_type_slug()}/{cfg.name}"}}
    for item in prefect_yaml(cfg)["deployments"]:
        assert item["parameters"]["config"] == by_slug, item["name"]
    for dep in build_deployments(cfg, BLOCK_ID):
        assert dep.parameters["config"] == ref, dep.name
    for spec in DEPLOYMENTS:
        schema = _schema(spec)
        slugs = {d.get("block_type_slug") for d in schema.get("definitions", {}).values()}
        assert "mailu-stack" in slugs, spec.flow_name
        fixed = {k: v for k, v in {"mode": "teardown", "confirm": cfg.hostname, "to": "2024.06.10"}.items()
                 if k in schema["properties"]}  # fmt: skip
        validate({"config": ref, **fixed}, schema, raise_on_error=True)
        validate({"config": by_slug, **fixed}, schema, raise_on_error=True)
        validate({"config": cfg.model_dump(mode="json"), **fixed}, schema, raise_on_error=True)
        broken = cfg.model_dump(mode="json")
        broken["images"]["front"] = "mailu/nginx:latest"  # a tag, not a digest
        with pytest.raises(ValidationError):
            validate({"config": broken, **fixed}, schema, raise_on_error=True)


def test_a_run_works_with_the_config_inside_the_block_or_given_whole(cfg: StackConfig) -> None:
    from mailu_flows.blocks import MailuStack, stack_config

    block = MailuStack(config=cfg)
    assert stack_config(block) is cfg and stack_config(cfg) is cfg
    assert run_name("deploy", (), {"config": block}) == f"deploy-{cfg.name}"
    deploy = SPECS_BY_NAME["deploy"].load_flow()
    assert deploy.validate_parameters({"config": block})["config"] == cfg  # the block, as a $ref resolves
    assert deploy.validate_parameters({"config": cfg.model_dump(mode="json")})["config"] == cfg


def test_a_fleet_names_each_stacks_deployments_after_it_and_refuses_a_name_twice(cfg: StackConfig) -> None:
    other = cfg.model_copy(update={"name": "second-stack"})
    doc = fleet_prefect_yaml([cfg, other])
    names = [d["name"] for d in doc["deployments"]]
    assert len(names) == len(set(names)) == 2 * len(deployments_for(cfg))
    assert {"deploy-" + cfg.name, "deploy-second-stack", "backup-second-stack"} <= set(names)
    second = next(d for d in doc["deployments"] if d["name"] == "deploy-second-stack")
    assert second["parameters"]["config"] == {"$ref": {"block_document_slug": "mailu-stack/second-stack"}}
    assert "mailu-stack:second-stack" in second["tags"]
    assert deployment_id(SPECS_BY_NAME["deploy"], "second-stack") == "mailu-deploy/deploy-second-stack"
    with pytest.raises(ValueError, match=f"same name: {cfg.name}; give each its own `name`"):
        fleet_prefect_yaml([cfg, cfg])


def test_prefect_yaml_for_several_stacks_needs_per_stack_names_and_distinct_names(tmp_path: Path) -> None:
    """Refused before anything is pushed to a server (none answers here), naming the fix."""
    from mailu_flows.cli import main

    cfg_file = str(REPO / "examples" / "inlock.ai.yaml")
    argv = ["deployments", "prefect-yaml", "--config", cfg_file, "--config", cfg_file]
    assert main(argv) == 2
    assert main([*argv, "--per-stack-names"]) == 2


def test_the_stack_block_slug_is_the_one_deployments_refer_to() -> None:
    from mailu_flows.blocks import MailuStack
    from mailu_flows.deployments.definitions import MAILU_STACK_SLUG

    assert MailuStack.get_block_type_slug() == MAILU_STACK_SLUG
