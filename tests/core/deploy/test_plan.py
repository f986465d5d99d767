"""The deploy plan is decided from the rendered stack and the host's facts alone (plan.py): here on facts
captured from the lab's host (`facts/*.txt`) and on a converged host made from them, with the lab's
rendered stack. No host is involved."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from lab.stack_config import lab_stack_config
from mailu_core.config import StackConfig
from mailu_core.render import RenderedStack, render_stack
from mailu_flows.deploy.hoststate import (
    Container,
    Files,
    HostState,
    deploy_facts,
    host_state_from,
    split_sections,
)
from mailu_flows.deploy.plan import (
    DeployFacts,
    files_to_keep,
    host_path,
    managed_paths,
    plan_deploy,
    release_files,
    wanted_services,
    with_diffs,
)
from mailu_flows.deploy.releases import Release
from tests.core.deploy.test_hoststate import FACTS
from tests.core.render.test_render import lab_images, updated

ROOT = "/srv/mailu-lab/apps"
SECRETS = {"api_token": "token-value", "secret_key": "key-value", "admin_password": "pw"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cfg() -> StackConfig:
    return lab_stack_config(lab_images(), ROOT)


@pytest.fixture
def rendered(cfg: StackConfig) -> RenderedStack:
    return render_stack(cfg)


def captured(name: str, cfg: StackConfig, rendered: RenderedStack) -> HostState:
    """The state a deploy would read, from a captured batch output (its files section names none of
    ours: the capture's host has none of the stack's files)."""
    sections = split_sections((FACTS / f"{name}.txt").read_text())
    facts = deploy_facts(managed_paths(cfg, rendered), "mailu-lab", "http://127.0.0.1:1")
    return host_state_from({f.name: f.parse(sections.get(f.name, "")) for f in facts})


def files_output(cfg: StackConfig, rendered: RenderedStack, secrets: dict[str, str]) -> str:
    """What the Files fact prints on a host that holds every rendered file and secret file as rendered."""
    lines = [
        f"{host_path(cfg, rel)} {rf.mode:o} 1000 {sha(rf.content)}" for rel, rf in rendered.files.items()
    ]
    for s in rendered.secrets:
        gid = s.gid if s.gid is not None else 1000
        lines.append(f"{s.host_path} {s.mode:o} {gid} {sha(secrets[s.block_field].encode())}")
    return "\n".join(lines) + "\n"


def converged(cfg: StackConfig, rendered: RenderedStack) -> HostState:
    """The captured host after a good deploy: every file as rendered, every service running its image."""
    state = captured("exited-containers", cfg, rendered)
    template = state.containers[0]
    by_service = state.by_service()
    containers = [
        replace(
            by_service.get(service, template),
            service=service,
            name=f"mailu-lab-{service}-1",
            image=image,
            state="running",
            health="healthy",
        )
        for service, image in wanted_services(cfg, rendered).items()
    ]
    files = Files(managed_paths(cfg, rendered)).parse(files_output(cfg, rendered, SECRETS))
    return replace(state, containers=containers, files=files)


def test_a_host_without_the_stack_gets_every_file_secret_and_service(
    cfg: StackConfig, rendered: RenderedStack
) -> None:
    state = captured("exited-containers", cfg, rendered)
    plan = plan_deploy(cfg, rendered, DeployFacts(state, SECRETS, ["secret_key"]))
    assert {c.path for c in plan.files} == set(rendered.files)
    assert all(c.action == "create" and c.old_sha256 is None for c in plan.files)
    assert all(c.new_sha256 == sha(rendered.files[c.path].content) for c in plan.files)
    assert sorted(plan.secret_files) == sorted(s.name for s in rendered.secrets)
    # the captured containers are exited (and run other images): every service is (re)created
    assert sorted(plan.services_not_running) == sorted(wanted_services(cfg, rendered))
    assert plan.services_to_recreate == []  # nothing was running to read the old secret files
    assert plan.secrets_to_generate == ["secret_key"]
    assert plan.changes and plan.compose_must_run and plan.monitoring_reload
    assert not plan.awaiting_certificate and plan.waits_for == []


def test_a_converged_host_means_no_changes(cfg: StackConfig, rendered: RenderedStack) -> None:
    plan = plan_deploy(cfg, rendered, DeployFacts(converged(cfg, rendered), SECRETS))
    assert (plan.files, plan.secret_files, plan.services_not_running, plan.services_to_recreate) == (
        [],
        [],
        [],
        [],
    )
    assert not plan.changes and not plan.compose_must_run and not plan.monitoring_reload
    assert "**No changes**" in plan.markdown()


def test_an_edited_file_is_updated_with_both_hashes_and_its_diff(
    cfg: StackConfig, rendered: RenderedStack
) -> None:
    state = converged(cfg, rendered)
    rel = cfg.host.compose_file
    live = host_path(cfg, rel)
    old = rendered.files[rel].content.replace(b"services:", b"# edited by hand\nservices:", 1)
    state.files[live] = replace(state.files[live], sha256=sha(old))
    plan = plan_deploy(cfg, rendered, DeployFacts(state, SECRETS))
    [change] = plan.files
    assert (change.path, change.action) == (rel, "update")
    assert (change.old_sha256, change.new_sha256) == (sha(old), sha(rendered.files[rel].content))
    assert plan.changes and plan.compose_must_run and not plan.monitoring_reload
    assert change.diff == ""  # the plan alone has no old content
    diffed = with_diffs(plan, rendered, {rel: old})
    assert "-# edited by hand" in diffed.files[0].diff and f"+++ b/{rel}" in diffed.files[0].diff
    assert plan.files[0].diff == ""  # with_diffs returns a new plan


def test_a_mode_change_alone_has_no_diff(cfg: StackConfig, rendered: RenderedStack) -> None:
    state = converged(cfg, rendered)
    rel = "traefik/dynamic/mailu.yml"
    state.files[host_path(cfg, rel)] = replace(state.files[host_path(cfg, rel)], mode=0o666)
    plan = with_diffs(plan_deploy(cfg, rendered, DeployFacts(state, SECRETS)), rendered, {})
    assert [(c.path, c.action, c.diff) for c in plan.files] == [(rel, "mode", "")]
    assert "(mode only)" in plan.markdown()


def test_a_changed_monitoring_file_reloads_prometheus(cfg: StackConfig, rendered: RenderedStack) -> None:
    state = converged(cfg, rendered)
    rules = host_path(cfg, "monitoring/rules/mailu-lab.yml")
    state.files[rules] = replace(state.files[rules], sha256=sha(b"groups: []\n"))
    plan = plan_deploy(cfg, rendered, DeployFacts(state, SECRETS))
    assert [c.path for c in plan.files] == ["monitoring/rules/mailu-lab.yml"] and plan.monitoring_reload


def test_a_file_we_did_not_write_is_kept_to_be_restored(cfg: StackConfig, rendered: RenderedStack) -> None:
    state = converged(cfg, rendered)
    for rel in ("compose/mailu.yml", "traefik/dynamic/mailu.yml"):
        state.files[host_path(cfg, rel)] = replace(state.files[host_path(cfg, rel)], sha256=sha(b"theirs"))
    del state.files[host_path(cfg, "compose/mailu-env/admin.env")]  # created: nothing to keep
    plan = plan_deploy(cfg, rendered, DeployFacts(state, SECRETS))
    assert {c.path: c.action for c in plan.files} == {
        "compose/mailu.yml": "update",
        "traefik/dynamic/mailu.yml": "update",
        "compose/mailu-env/admin.env": "create",
    }
    assert files_to_keep(plan, None) == ["compose/mailu.yml", "traefik/dynamic/mailu.yml"]
    previous = Release(
        "r1", "2026-01-01T00:00:00+00:00", "x", {}, {"compose/mailu.yml": {"sha256": "x", "mode": 0o644}}
    )
    assert files_to_keep(plan, previous) == ["traefik/dynamic/mailu.yml"]  # the compose file was ours
    assert release_files(rendered)["compose/mailu.yml"]["sha256"] == sha(
        rendered.files["compose/mailu.yml"].content
    )


def test_a_changed_secret_recreates_the_running_services_that_read_it(
    cfg: StackConfig, rendered: RenderedStack
) -> None:
    state = converged(cfg, rendered)
    plan = plan_deploy(cfg, rendered, DeployFacts(state, {**SECRETS, "secret_key": "new-key"}))
    assert plan.secret_files == ["mailu-secret-key"] and plan.files == []
    assert plan.services_to_recreate == ["admin", "webmail"]  # both mount it; Mailu reads it at start
    assert plan.changes and plan.services_not_running == []


def test_a_secret_file_with_the_wrong_group_is_rewritten(cfg: StackConfig, rendered: RenderedStack) -> None:
    state = converged(cfg, rendered)
    token = next(s for s in rendered.secrets if s.block_field == "api_token")
    state.files[token.host_path] = replace(state.files[token.host_path], gid=0)
    plan = plan_deploy(cfg, rendered, DeployFacts(state, SECRETS))
    assert plan.secret_files == [token.name] and plan.services_to_recreate == ["admin"]


def test_a_service_on_another_image_or_stopped_is_started(cfg: StackConfig, rendered: RenderedStack) -> None:
    state = converged(cfg, rendered)
    containers = [
        replace(c, image="old@sha256:" + "0" * 64)
        if c.service == "imap"
        else replace(c, state="exited")
        if c.service == "smtp"
        else c
        for c in state.containers
    ]
    no_redis: list[Container] = [c for c in containers if c.service != "redis"]
    plan = plan_deploy(cfg, rendered, DeployFacts(replace(state, containers=no_redis), SECRETS))
    assert sorted(plan.services_not_running) == ["imap", "redis", "smtp"]
    assert plan.changes and plan.files == []


def test_an_acme_flavor_waits_for_its_first_certificate_only_while_it_is_missing(cfg: StackConfig) -> None:
    acme = updated(cfg, "mailu", tls_flavor="letsencrypt")
    rendered = render_stack(acme)
    state = converged(acme, rendered)
    waiting = plan_deploy(acme, rendered, DeployFacts(state, SECRETS, certificate_present=False))
    assert waiting.awaiting_certificate and len(waiting.waits_for) == 1 and "HTTP-01" in waiting.waits_for[0]
    assert not waiting.changes  # waiting is not a change
    present = plan_deploy(acme, rendered, DeployFacts(state, SECRETS, certificate_present=True))
    assert not present.awaiting_certificate and present.waits_for == []


def test_a_host_whose_docker_does_not_answer_fails_preflight(
    cfg: StackConfig, rendered: RenderedStack
) -> None:
    plan = plan_deploy(cfg, rendered, DeployFacts(captured("no-daemon", cfg, rendered), SECRETS))
    assert plan.preflight_failures
    assert any("docker" in c.name.lower() for c in plan.preflight_failures)
    converged_plan = plan_deploy(cfg, rendered, DeployFacts(converged(cfg, rendered), SECRETS))
    assert all("docker" not in c.name.lower() for c in converged_plan.preflight_failures)
