"""A failed command is named by what it is, never by its arguments (an exec carries a whole script)."""

from __future__ import annotations

import shlex

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
