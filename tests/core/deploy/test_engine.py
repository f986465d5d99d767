"""A failed command is named by what it is, never by its arguments (an exec carries a whole script)."""

from __future__ import annotations

import shlex

import pytest

from mailu_flows.remote import command_label

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
    helper = "docker run --rm --mount type=volume,source=v,target=/v --entrypoint tar img -cf -"
    assert command_label(helper) == "docker run (tar)"  # a backup helper, without its mounts or script


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
