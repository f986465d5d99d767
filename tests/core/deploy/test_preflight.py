"""Preflight is pure: from a host-state snapshot, every blocking problem with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailu_core.config import StackConfig, load_stack_config
from mailu_flows.deploy.hoststate import HostState
from mailu_flows.deploy.preflight import blocking_failures, preflight_checks

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "inlock.ai.yaml"


@pytest.fixture()
def cfg() -> StackConfig:
    return load_stack_config(EXAMPLE)


def healthy_state(cfg: StackConfig) -> HostState:
    """What a ready host looks like: Traefik publishes every mail port and knows every middleware."""
    traefik = "traefik"
    state = HostState(
        networks={cfg.networks.mgmt, cfg.networks.internal, "bridge"},
        docker_version="24.0.7",
        compose_version="2.24.5",
        disk_free_kb=50 * 1024 * 1024,
        traefik_rawdata={
            "middlewares": {f"{m}@file": {} for m in cfg.traefik.middlewares.model_dump().values()}
        },
        traefik_entrypoints=[
            {"name": ep.name, "address": f":{ep.port}"} for ep in cfg.traefik.mail_entrypoints
        ],
        container_ips={traefik: {str(cfg.traefik.mgmt_address)}},
    )
    for ep in cfg.traefik.mail_entrypoints:
        state.listening_ports.add(ep.host_port)
        state.published[ep.host_port] = traefik
    return state


def test_a_ready_host_passes(cfg: StackConfig) -> None:
    checks = preflight_checks(cfg, healthy_state(cfg))
    assert blocking_failures(checks) == [], [c for c in checks if not c.ok]


def test_missing_mgmt_network_is_created_with_the_subnet_that_holds_traefiks_address(
    cfg: StackConfig,
) -> None:
    """Traefik keeps a fixed address on mgmt (Mailu trusts only it for PROXY headers); a network created
    without --subnet cannot give one (issue 15: the fix text created it plain)."""
    import ipaddress

    state = healthy_state(cfg)
    state.networks.discard(cfg.networks.mgmt)
    (failed,) = blocking_failures(preflight_checks(cfg, state))
    subnet = ipaddress.ip_network(failed.detail.split("--subnet ")[1].split()[0])
    assert ipaddress.ip_address(cfg.traefik.mgmt_address) in subnet
    assert f"docker network create --subnet {subnet} {cfg.networks.mgmt})" in failed.detail
    assert f"ipv4_address {cfg.traefik.mgmt_address}" in failed.detail


def test_missing_shared_database_network_names_the_fix(cfg: StackConfig) -> None:
    from mailu_core.config import stack_config_from_mapping

    data = cfg.model_dump(mode="json")
    data["database"] |= {"flavor": "postgresql", "managed": False}
    shared = stack_config_from_mapping(data, source="test")
    state = healthy_state(shared)
    state.networks.discard(shared.networks.internal)
    (failed,) = blocking_failures(preflight_checks(shared, state))
    assert f"(docker network create {shared.networks.internal})" in failed.detail


def test_missing_middleware(cfg: StackConfig) -> None:
    state = healthy_state(cfg)
    assert state.traefik_rawdata is not None
    del state.traefik_rawdata["middlewares"][f"{cfg.traefik.middlewares.allowed_admins}@file"]
    (failed,) = blocking_failures(preflight_checks(cfg, state))
    assert cfg.traefik.middlewares.allowed_admins in failed.detail


def test_missing_entrypoint_prints_the_static_snippet(cfg: StackConfig) -> None:
    state = healthy_state(cfg)
    assert state.traefik_entrypoints is not None
    state.traefik_entrypoints = [e for e in state.traefik_entrypoints if e["name"] != "submission"]
    (failed,) = blocking_failures(preflight_checks(cfg, state))
    assert "entryPoints:" in failed.detail and 'address: ":587"' in failed.detail


def test_a_host_mta_on_port_25_is_an_error(cfg: StackConfig) -> None:
    state = healthy_state(cfg)
    state.published.pop(25)  # something else than Traefik holds 25
    failures = blocking_failures(preflight_checks(cfg, state))
    assert [f.name for f in failures] == ["port 25"]
    assert "host MTA" in failures[0].detail


def test_old_compose_and_full_disk(cfg: StackConfig) -> None:
    state = healthy_state(cfg)
    state.compose_version = "1.29.2"
    state.disk_free_kb = 100 * 1024
    failed = {f.name: f.detail for f in blocking_failures(preflight_checks(cfg, state))}
    assert set(failed) == {"docker compose v2", "disk space"}
    # the advice works on Debian bookworm, whose own archive has no docker-compose-plugin (issue 15)
    assert "apt-get install docker-compose-plugin" not in failed["docker compose v2"]
    assert "/usr/local/lib/docker/cli-plugins/" in failed["docker compose v2"]


def test_traefik_api_unreachable(cfg: StackConfig) -> None:
    state = healthy_state(cfg)
    state.traefik_rawdata = None
    state.traefik_entrypoints = None
    (failed,) = blocking_failures(preflight_checks(cfg, state))
    assert failed.name == "traefik api" and "api" in failed.detail


@pytest.mark.parametrize(
    ("configured", "in_traefik", "ok"),
    [
        ("secure-headers@docker", "secure-headers@docker", True),  # as setup.md tells operators to write it
        ("secure-headers", "secure-headers@docker", True),
        ("secure-headers@file", "secure-headers@docker", False),  # another provider's is another object
    ],
)
def test_middleware_names_with_a_provider_suffix(configured: str, in_traefik: str, ok: bool) -> None:
    data = load_stack_config(EXAMPLE).model_dump(mode="json")
    data["traefik"]["middlewares"]["secure_headers"] = configured
    cfg = StackConfig.model_validate(data)
    state = healthy_state(cfg)
    assert state.traefik_rawdata is not None
    middlewares = state.traefik_rawdata["middlewares"]
    middlewares.pop(f"{configured}@file", None)
    middlewares[in_traefik] = {}
    failed = [c.name for c in blocking_failures(preflight_checks(cfg, state))]
    assert failed == ([] if ok else [f"middleware {configured}"])
