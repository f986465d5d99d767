"""The docker and compose command lines, argv exactly, and the refusal of values that would become an
option or a host path."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailu_core.config import load_stack_config
from mailu_flows import dockercmd as d
from mailu_flows.dockercmd import UnsafeDockerArgument

BASE = ["docker", "compose", "-p", "mailu", "-f", "/srv/mailu/compose/mailu.yml"]


def test_compose_base_and_the_stacks_own() -> None:
    assert d.compose("mailu", "/srv/mailu/compose/mailu.yml") == BASE
    assert d.compose("mailu") == ["docker", "compose", "-p", "mailu"]
    assert d.compose("m", "/c.yml", env_file="/e.env") == [
        "docker", "compose", "-p", "m", "-f", "/c.yml", "--env-file", "/e.env",
    ]  # fmt: skip
    cfg = load_stack_config(Path(__file__).resolve().parents[2] / "examples" / "inlock.ai.yaml")
    expected_file = str(cfg.host.resolve(cfg.host.compose_file))
    assert d.stack_compose(cfg) == ["docker", "compose", "-p", cfg.mailu.compose_project, "-f", expected_file]


def test_compose_subcommands() -> None:
    assert d.compose_up(BASE) == [*BASE, "up", "--detach", "--wait", "--wait-timeout", "240"]
    assert d.compose_up(BASE, wait_timeout_s=None) == [*BASE, "up", "--detach"]
    assert d.compose_up(BASE, "front", "admin", force_recreate=True, no_deps=True) == [
        *BASE, "up", "--detach", "--wait", "--wait-timeout", "240", "--force-recreate", "--no-deps", "front",
        "admin",
    ]  # fmt: skip
    assert d.compose_up(BASE, remove_orphans=True) == [
        *BASE, "up", "--detach", "--wait", "--wait-timeout", "240", "--remove-orphans",
    ]  # fmt: skip
    assert d.compose_up(BASE, wait_timeout_s=None, dry_run=True) == [*BASE, "up", "--dry-run", "--detach"]
    assert d.compose_down(BASE) == [*BASE, "down", "--remove-orphans", "-t", "30"]
    assert d.compose_stop(BASE, timeout_s=30) == [*BASE, "stop", "-t", "30"]
    assert d.compose_stop(BASE) == [*BASE, "stop"]
    assert d.compose_restart(BASE, "front") == [*BASE, "restart", "front"]
    assert d.compose_ps(BASE, format="json") == [*BASE, "ps", "-a", "--format", "json"]
    assert d.compose_config(BASE) == [*BASE, "config", "--quiet"]
    assert d.compose_pull(BASE) == [*BASE, "pull", "--quiet"]
    assert d.compose_logs(BASE, "front") == [*BASE, "logs", "--no-color", "--tail", "15", "front"]
    assert d.compose_exec(BASE, "admin", ["sh", "-c", "echo $x"]) == [
        *BASE, "exec", "-T", "admin", "sh", "-c", "echo $x",
    ]  # fmt: skip
    assert d.compose_exec(BASE, "front", ["nginx", "-s", "reload"], user="0") == [
        *BASE, "exec", "-u", "0", "-T", "front", "nginx", "-s", "reload",
    ]  # fmt: skip


def test_container_commands() -> None:
    assert d.ps(d.project_filter("mailu"), d.service_filter("redis")) == [
        "docker", "ps", "-q", "--filter", "label=com.docker.compose.project=mailu",
        "--filter", "label=com.docker.compose.service=redis",
    ]  # fmt: skip
    assert d.ps("status=paused", all_states=True) == ["docker", "ps", "-a", "-q", "--filter", "status=paused"]
    assert d.ps("volume=mailu_mail", format="{{.Names}}") == [
        "docker", "ps", "--format", "{{.Names}}", "--filter", "volume=mailu_mail",
    ]  # fmt: skip
    assert d.label_filter("mailu-flows.role", "drill") == "label=mailu-flows.role=drill"
    assert d.label_filter("mailu-flows.role") == "label=mailu-flows.role"
    assert d.inspect("abc123", format="{{.State.Running}}") == [
        "docker", "inspect", "-f", "{{.State.Running}}", "abc123",
    ]  # fmt: skip
    assert d.exec_("c1", ["redis-cli", "SAVE"]) == ["docker", "exec", "c1", "redis-cli", "SAVE"]
    assert d.exec_("c1", ["sh"], stdin=True, user="0:0") == ["docker", "exec", "-i", "-u", "0:0", "c1", "sh"]
    assert d.pause("c1") == ["docker", "pause", "c1"] and d.unpause("c1") == ["docker", "unpause", "c1"]
    assert d.stop("pg", timeout_s=60) == ["docker", "stop", "-t", "60", "pg"]
    assert d.rm("a", "b") == ["docker", "rm", "-f", "a", "b"]
    assert d.image_inspect("redis@sha256:ab", format="{{.Id}}") == [
        "docker", "image", "inspect", "--format", "{{.Id}}", "redis@sha256:ab",
    ]  # fmt: skip


def test_volume_network_and_daemon_commands() -> None:
    assert d.volume_ls() == ["docker", "volume", "ls", "-q"]
    assert d.volume_ls("label=a=b", "label=c") == ["docker", "volume", "ls", "-q", "--filter", "label=a=b",
                                                   "--filter", "label=c"]  # fmt: skip
    assert d.volume_ls(format="{{.Name}}") == ["docker", "volume", "ls", "--format", "{{.Name}}"]
    assert d.volume_create("scratch-1", {"mailu-flows.scratch": "restore-drill"}) == [
        "docker", "volume", "create", "--label", "mailu-flows.scratch=restore-drill", "scratch-1",
    ]  # fmt: skip
    assert d.volume_rm("v1") == ["docker", "volume", "rm", "-f", "v1"]
    assert d.network_ls(format="{{.Name}}") == ["docker", "network", "ls", "--format", "{{.Name}}"]
    assert d.network_inspect("mgmt") == ["docker", "network", "inspect", "mgmt"]
    assert d.network_create("mgmt", subnet="172.30.0.0/24") == [
        "docker", "network", "create", "--subnet", "172.30.0.0/24", "mgmt",
    ]  # fmt: skip
    assert d.version(format="{{.Server.Version}}") == ["docker", "version", "--format", "{{.Server.Version}}"]
    assert d.compose_version() == ["docker", "compose", "version", "--short"]
    assert d.info(format="{{.DockerRootDir}}") == ["docker", "info", "--format", "{{.DockerRootDir}}"]


def test_run_and_the_backup_helper() -> None:
    mount = d.volume_mount("mailu_mail", "/v", read_only=True)
    assert mount == "type=volume,source=mailu_mail,target=/v,readonly"
    assert d.helper_run("redis:7", "mailu-backup-x-1", [mount], "tar", ["-cf", "-", "."]) == [
        "docker", "run", "--rm", "--name", "mailu-backup-x-1", "--network", "none", "--log-driver", "none",
        "--mount", mount, "--entrypoint", "tar", "redis:7", "-cf", "-", ".",
    ]  # fmt: skip
    assert d.helper_run("redis:7", "h", [], "sh", ["-c", "x"], stdin=True)[:4] == [
        "docker",
        "run",
        "--rm",
        "-i",
    ]
    secret = d.bind_mount("/etc/mailu/db", "/run/secrets/db")
    assert secret == "type=bind,source=/etc/mailu/db,target=/run/secrets/db,readonly"
    assert d.run(
        "postgres:16", remove=False, detach=True, container_name="pg", log_driver="none",
        labels={"mailu-flows.stack": "s"}, mounts=[secret], env=["POSTGRES_USER=u", "POSTGRES_PASSWORD"],
    ) == [
        "docker", "run", "-d", "--name", "pg", "--network", "none", "--log-driver", "none",
        "--label", "mailu-flows.stack=s", "--mount", secret, "-e", "POSTGRES_USER=u",
        "-e", "POSTGRES_PASSWORD", "postgres:16",
    ]  # fmt: skip
    assert d.run("alpine", ["true"], network=None, user="0:0") == [
        "docker", "run", "--rm", "--user", "0:0", "alpine", "true",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "build",
    [
        lambda: d.volume_mount("/", "/v", read_only=True),  # a host path
        lambda: d.volume_mount("/etc", "/v", read_only=True),
        lambda: d.volume_mount("-v", "/v", read_only=True),  # an option
        lambda: d.volume_mount("--privileged", "/v", read_only=False),
        lambda: d.volume_mount("vol,source=/", "/v", read_only=True),  # more mount options
        lambda: d.volume_mount("", "/v", read_only=True),
        lambda: d.volume_mount("vol", "/v,readonly=false", read_only=True),
        lambda: d.volume_mount("vol", "relative", read_only=True),
        lambda: d.bind_mount("relative/path", "/x"),
        lambda: d.bind_mount("/a,type=volume", "/x"),
        lambda: d.volume_create("/"),
        lambda: d.volume_create("-rf"),
        lambda: d.volume_create("ok", {"k": "line\nbreak"}),
        lambda: d.volume_rm("--all"),
        lambda: d.volume_rm(),
        lambda: d.rm("-f"),
        lambda: d.rm(),
        lambda: d.pause("../x"),
        lambda: d.stop("--time=0"),
        lambda: d.inspect("-f"),
        lambda: d.exec_("--privileged", ["sh"]),
        lambda: d.exec_("c", ["sh"], user="--privileged"),
        lambda: d.compose("-f"),
        lambda: d.compose("mailu", "relative.yml"),
        lambda: d.compose_exec(BASE, "-u", ["sh"]),
        lambda: d.compose_up(BASE, "--build"),
        lambda: d.network_inspect("host net"),
        lambda: d.network_create("n", subnet="--internal"),
        lambda: d.project_filter("a=b"),
        lambda: d.helper_run("--privileged", "h", [], "sh", []),
        lambda: d.helper_run("redis", "-h", [], "sh", []),
        lambda: d.helper_run("redis", "h", ["/:/h"], "sh", []),
        lambda: d.helper_run("redis", "h", [], "--privileged", []),
        lambda: d.run("redis", env=["-e"]),
        lambda: d.run("redis", network="--privileged"),
        lambda: d.run("redis", labels={"--x": "y"}),
    ],
)
def test_hostile_values_are_refused(build: object) -> None:
    with pytest.raises(UnsafeDockerArgument):
        build()  # type: ignore[operator]
    assert issubclass(UnsafeDockerArgument, ValueError)
