"""A failed command is named by what it is, never by its arguments (an exec carries a whole script)."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from mailu_flows.deploy.engine import command_label

BASE = ["docker", "compose", "-p", "mailu", "-f", "/srv/mailu/compose/mailu.yml"]


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (["up", "--detach", "--wait"], "compose up"),
        (["exec", "-T", "admin", "python3", "-c", 'print("%s" % x)\nimport json'], "compose exec admin"),
        (["exec", "-u", "0", "-T", "front", "nginx", "-s", "reload"], "compose exec front"),
        (["run", "--rm", "--entrypoint", "/bin/sh", "admin", "-c", "echo secret"], "compose run admin"),
        ([], "compose"),
    ],
)
def test_compose_commands_are_named_by_subcommand_and_service(args: list[str], label: str) -> None:
    assert command_label(shlex.join([*BASE, *args])) == label


def test_other_commands_are_named_by_their_program() -> None:
    assert command_label("/usr/bin/rm -f /srv/mailu/secrets/x") == "rm"
    assert command_label("") == "command"
    assert command_label("echo 'unbalanced") == "echo"


def test_a_dry_run_renders_every_file_inside_its_scratch_directory() -> None:
    """Absolute secrets, compose and Traefik paths once made `plan` truncate the live secret files: the
    scratch config moves them all under the scratch directory; the live certificates stay (read-only)."""
    from pathlib import Path, PurePosixPath

    from mailu_core.config import load_stack_config, stack_config_from_mapping
    from mailu_core.render import render_stack
    from mailu_flows.deploy.engine import scratch_config

    example = Path(__file__).resolve().parents[3] / "examples" / "inlock.ai.yaml"
    data = load_stack_config(example).model_dump(mode="json")
    data["host"].update(
        secrets_dir="/etc/mailu/secrets",
        compose_file="/opt/mailu/compose.yml",
        traefik_dynamic_dir="/opt/traefik/dynamic",
        certs_dir="certs",
    )
    live = stack_config_from_mapping(data, source="test")
    tmp = "/tmp/mailu-flows-plan.abc123"
    scratch = scratch_config(live, tmp)
    rendered = render_stack(scratch)
    paths = [str(PurePosixPath(tmp) / rel) for rel in rendered.files]
    paths += [s.host_path for s in rendered.secrets]
    assert paths and all(p.startswith(tmp + "/") for p in paths), paths
    assert str(scratch.host.resolve(scratch.host.compose_file)).startswith(tmp + "/")
    live_certs = str(live.host.resolve(str(live.host.certs_dir)))
    assert str(scratch.host.resolve(str(scratch.host.certs_dir))) == live_certs
    assert all(not s.host_path.startswith("/etc/mailu") for s in rendered.secrets)


def _converged(cfg: Any, config_files: str) -> tuple[Any, Any]:
    """A Deployer and the host state of a stack whose files and containers already match."""
    from typing import cast

    from mailu_flows.deploy.engine import Deployer, sha256
    from mailu_flows.deploy.hoststate import Container, HostState, RemoteFile
    from mailu_flows.remote import RemoteHost

    deployer = Deployer(cfg, cast(RemoteHost, None))  # plan() reads only the state it is given
    values = {
        "secret_key": "S" * 16,
        "admin_password": "a" * 12,
        "db_password": "d" * 20,
        "api_token": "T" * 32,
    }
    state = HostState()
    for rel, rf in deployer.rendered.files.items():
        state.files[deployer.abs(rel)] = RemoteFile(deployer.abs(rel), rf.mode, sha256(rf.content), -1)
    for spec in deployer.rendered.secrets:
        digest = sha256(values.get(spec.block_field, "").encode())
        state.files[spec.host_path] = RemoteFile(spec.host_path, spec.mode, digest, spec.gid or -1)
    for service, image in deployer.wanted_services().items():
        state.containers.append(
            Container(f"x-{service}", service, "id", image, "sha256:0", "running", None, "h", 0, config_files)
        )
    return deployer, (state, values)


def test_containers_made_from_another_stacks_compose_file_are_a_change() -> None:
    """A test (or an operator) once ran another stack root under the same compose project: the
    containers ran its config and volumes, and the deploy said "no changes". They are recreated."""
    from pathlib import Path

    from mailu_core.config import load_stack_config

    cfg = load_stack_config(Path(__file__).resolve().parents[3] / "examples" / "inlock.ai.yaml")
    ours = str(cfg.host.resolve(cfg.host.compose_file))
    deployer, (state, values) = _converged(cfg, ours)
    plan = deployer.plan(state, values, [])
    assert plan.services_not_running == [] and not plan.secret_files and not plan.files
    deployer, (state, values) = _converged(cfg, "/srv/other-root/compose/mailu.yml")
    plan = deployer.plan(state, values, [])
    assert sorted(plan.services_not_running) == sorted(deployer.wanted_services())
    assert "## Services to (re)create" in plan.markdown()
    # compose keeps a container whose service config is the same in both files (same hash): no change,
    # or a deploy after such a switch would never be a no-op again (the resolver, in the ACME test)
    state.expected_hashes = {service: "h" for service in deployer.wanted_services()}
    state.expected_hashes["front"] = "another hash"
    assert deployer.plan(state, values, []).services_not_running == ["front"]
