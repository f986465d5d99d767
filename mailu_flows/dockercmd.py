"""Every `docker` and `docker compose` command line the product runs, spelled once.

Pure functions: each returns an argv (`list[str]`) and touches no host. Callers run it with
`host.run(argv)`, or `shlex.join(argv)` where a command is part of a shell script or a stream.

Values that become operands (volume, container, network and project names, image references,
services) are checked first, so a hostile value can never turn into an option (`-v`, `--privileged`)
or a host path: a volume is mounted with `--mount type=volume`, which takes only a name, and a name
is held to Docker's shape (no `/`, no `,` that would add mount options, no leading `-`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_core.fields import DOCKER_NAME_PATTERN

DOCKER = "docker"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class UnsafeDockerArgument(MailuFlowsError, ValueError):
    """A value would not reach docker as the operand it is meant to be (an option, a host path)."""


_NAME = re.compile(DOCKER_NAME_PATTERN)
# An image reference: [registry[:port]/]path[:tag][@digest]; no whitespace, no leading '-'.
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")  # name or uid, optionally :group or :gid


def name(value: str, what: str = "Docker object") -> str:
    """`value` if it is a Docker object name (volume, container, network, project, service)."""
    if not _NAME.fullmatch(value):
        raise UnsafeDockerArgument(f"{value!r} is not a {what} name")
    return value


def image(reference: str) -> str:
    """`reference` if it is an image reference (never an option)."""
    if not _IMAGE.fullmatch(reference):
        raise UnsafeDockerArgument(f"{reference!r} is not an image reference")
    return reference


def _path(value: str, what: str) -> str:
    """An absolute path that cannot add options to a `--mount` value."""
    if not value.startswith("/") or any(c in value for c in ",\n\r\0"):
        raise UnsafeDockerArgument(f"{what} {value!r} is not an absolute path without ','")
    return value


def _user(value: str) -> str:
    if not _USER.fullmatch(value):
        raise UnsafeDockerArgument(f"{value!r} is not a user")
    return value


def _label(key: str, value: str) -> str:
    if not _LABEL_KEY.fullmatch(key) or any(c in value for c in "\n\r\0"):
        raise UnsafeDockerArgument(f"{key}={value!r} is not a Docker label")
    return f"{key}={value}"


# --- filters and mounts (values, not argv) -------------------------------------------------------


def label_filter(key: str, value: str | None = None) -> str:
    """A `--filter` value matching a label with that value (None: with any value)."""
    if value is None:
        return "label=" + _label(key, "")[:-1]
    return "label=" + _label(key, value)


def project_filter(project: str) -> str:
    """The `--filter` value for the containers of a compose project."""
    return label_filter(PROJECT_LABEL, name(project, "compose project"))


def service_filter(service: str) -> str:
    return label_filter(SERVICE_LABEL, name(service, "compose service"))


def volume_mount(volume: str, target: str, *, read_only: bool) -> str:
    """A `--mount` value for a named volume. `type=volume` never mounts a host path, and the name is
    held to Docker's volume-name shape first (no `/`, no `,` that would add mount options)."""
    name(volume, "Docker volume")
    return f"type=volume,source={volume},target={_path(target, 'mount target')}" + (
        ",readonly" if read_only else ""
    )


def bind_mount(source: str, target: str, *, read_only: bool = True) -> str:
    """A `--mount` value for a host path the product chose (never a name from outside)."""
    mount = f"type=bind,source={_path(source, 'bind source')},target={_path(target, 'mount target')}"
    return mount + (",readonly" if read_only else "")


# --- docker compose ------------------------------------------------------------------------------


def compose(project: str, compose_file: str | None = None, *, env_file: str | None = None) -> list[str]:
    """`docker compose -p PROJECT [-f FILE] [--env-file FILE]`: the base of every compose command.
    Without a file compose works from the project's containers alone (what `down` needs when the file
    is gone)."""
    argv = [DOCKER, "compose", "-p", name(project, "compose project")]
    if compose_file is not None:
        argv += ["-f", _path(compose_file, "compose file")]
    if env_file is not None:
        argv += ["--env-file", _path(env_file, "env file")]
    return argv


def stack_compose(cfg: StackConfig) -> list[str]:
    """The stack's compose base: its project and its rendered compose file."""
    return compose(cfg.mailu.compose_project, str(cfg.host.resolve(cfg.host.compose_file)))


def _services(services: Sequence[str]) -> list[str]:
    return [name(s, "compose service") for s in services]


def compose_up(
    base: Sequence[str],
    *services: str,
    wait_timeout_s: int | None = 240,
    force_recreate: bool = False,
    no_deps: bool = False,
    remove_orphans: bool = False,
    dry_run: bool = False,
) -> list[str]:
    """`up --detach`, waiting for health (`--wait --wait-timeout`) unless `wait_timeout_s` is None."""
    argv = [*base, "up"]
    if dry_run:
        argv.append("--dry-run")
    argv.append("--detach")
    if wait_timeout_s is not None:
        argv += ["--wait", "--wait-timeout", str(int(wait_timeout_s))]
    if remove_orphans:
        argv.append("--remove-orphans")
    if force_recreate:
        argv.append("--force-recreate")
    if no_deps:
        argv.append("--no-deps")
    return argv + _services(services)


def compose_down(base: Sequence[str], *, timeout_s: int = 30, remove_orphans: bool = True) -> list[str]:
    """`down`: containers and networks go, volumes stay (never `-v`)."""
    return [*base, "down", *(["--remove-orphans"] if remove_orphans else []), "-t", str(int(timeout_s))]


def compose_stop(base: Sequence[str], *services: str, timeout_s: int | None = None) -> list[str]:
    return [
        *base,
        "stop",
        *(["-t", str(int(timeout_s))] if timeout_s is not None else []),
        *_services(services),
    ]


def compose_restart(base: Sequence[str], *services: str) -> list[str]:
    return [*base, "restart", *_services(services)]


def compose_ps(base: Sequence[str], *, all_states: bool = True, format: str | None = None) -> list[str]:
    return [*base, "ps", *(["-a"] if all_states else []), *(["--format", format] if format else [])]


def compose_config(base: Sequence[str], *, quiet: bool = True) -> list[str]:
    """`config`: compose validates the file (`--quiet`: says nothing when it is valid)."""
    return [*base, "config", *(["--quiet"] if quiet else [])]


def compose_pull(base: Sequence[str], *services: str, quiet: bool = True) -> list[str]:
    return [*base, "pull", *(["--quiet"] if quiet else []), *_services(services)]


def compose_logs(base: Sequence[str], service: str, *, tail: int = 15) -> list[str]:
    return [*base, "logs", "--no-color", "--tail", str(int(tail)), name(service, "compose service")]


def compose_exec(
    base: Sequence[str], service: str, argv: Sequence[str], *, user: str | None = None
) -> list[str]:
    """`exec -T SERVICE ARGV...` (no TTY: the flows feed stdin and read stdout)."""
    user_args = ["-u", _user(user)] if user is not None else []
    return [*base, "exec", *user_args, "-T", name(service, "compose service"), *argv]


# --- docker: containers --------------------------------------------------------------------------


def ps(*filters: str, all_states: bool = False, quiet: bool = True, format: str | None = None) -> list[str]:
    """`docker ps` with `--filter` values (see `label_filter`, `project_filter`): ids, or `format`."""
    argv = [DOCKER, "ps", *(["-a"] if all_states else [])]
    if format is not None:
        argv += ["--format", format]
    elif quiet:
        argv.append("-q")
    for value in filters:
        argv += ["--filter", value]
    return argv


def inspect(*targets: str, format: str | None = None) -> list[str]:
    """`docker inspect [-f FORMAT] TARGET...` (containers, volumes, networks by name or id)."""
    return [
        DOCKER,
        "inspect",
        *(["-f", format] if format else []),
        *(name(t, "Docker object") for t in targets),
    ]


def image_inspect(reference: str, *, format: str | None = None) -> list[str]:
    return [DOCKER, "image", "inspect", *(["--format", format] if format else []), image(reference)]


def exec_(container: str, argv: Sequence[str], *, user: str | None = None, stdin: bool = False) -> list[str]:
    """`docker exec [-i] [-u USER] CONTAINER ARGV...`."""
    user_args = ["-u", _user(user)] if user is not None else []
    return [DOCKER, "exec", *(["-i"] if stdin else []), *user_args, name(container, "container"), *argv]


def pause(container: str) -> list[str]:
    return [DOCKER, "pause", name(container, "container")]


def unpause(container: str) -> list[str]:
    return [DOCKER, "unpause", name(container, "container")]


def stop(container: str, *, timeout_s: int = 10) -> list[str]:
    return [DOCKER, "stop", "-t", str(int(timeout_s)), name(container, "container")]


def rm(*containers: str, force: bool = True) -> list[str]:
    """`docker rm [-f] CONTAINER...` (at least one)."""
    if not containers:
        raise UnsafeDockerArgument("docker rm needs at least one container")
    return [DOCKER, "rm", *(["-f"] if force else []), *(name(c, "container") for c in containers)]


def run(
    image_ref: str,
    args: Sequence[str] = (),
    *,
    container_name: str | None = None,
    remove: bool = True,
    detach: bool = False,
    stdin: bool = False,
    network: str | None = "none",
    log_driver: str | None = None,
    user: str | None = None,
    entrypoint: str | None = None,
    mounts: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    env: Sequence[str] = (),
) -> list[str]:
    """`docker run` of a one-off container: by default removed at exit and with no network.

    `mounts` are `--mount` values (`volume_mount`, `bind_mount`); `env` entries are `KEY=VALUE`, or
    `KEY` alone to pass the value from the caller's environment (how secrets stay off the command
    line)."""
    argv = [DOCKER, "run"]
    if detach:
        argv.append("-d")
    if remove:
        argv.append("--rm")
    if stdin:
        argv.append("-i")
    if container_name is not None:
        argv += ["--name", name(container_name, "container")]
    if network is not None:
        argv += ["--network", name(network, "network")]
    if log_driver is not None:
        argv += ["--log-driver", name(log_driver, "log driver")]
    if user is not None:
        argv += ["--user", _user(user)]
    for key, value in (labels or {}).items():
        argv += ["--label", _label(key, value)]
    for mount in mounts:
        if not mount.startswith(("type=volume,", "type=bind,")):
            raise UnsafeDockerArgument(f"{mount!r} is not a --mount value of volume_mount or bind_mount")
        argv += ["--mount", mount]
    for entry in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(=.*)?", entry, re.DOTALL) or "\0" in entry:
            raise UnsafeDockerArgument(f"{entry.split('=', 1)[0]!r} is not an environment variable")
        argv += ["-e", entry]
    if entrypoint is not None:
        if not re.fullmatch(r"[A-Za-z0-9_/][A-Za-z0-9_./-]*", entrypoint):
            raise UnsafeDockerArgument(f"{entrypoint!r} is not an entrypoint")
        argv += ["--entrypoint", entrypoint]
    return [*argv, image(image_ref), *args]


def helper_run(
    image_ref: str, container_name: str, mounts: Sequence[str], entrypoint: str, args: Sequence[str],
    *, stdin: bool = False,
) -> list[str]:  # fmt: skip
    """A throwaway helper of a backup, restore or drill: removed at exit, no network, and no log driver
    (its stdout may be a plaintext archive the json-file driver would write to the host's disk)."""
    return run(
        image_ref, args, container_name=container_name, stdin=stdin, log_driver="none",
        entrypoint=entrypoint, mounts=mounts,
    )  # fmt: skip


# --- docker: volumes and networks ----------------------------------------------------------------


def volume_ls(*filters: str, quiet: bool = True, format: str | None = None) -> list[str]:
    argv = [DOCKER, "volume", "ls"]
    if format is not None:
        argv += ["--format", format]
    elif quiet:
        argv.append("-q")
    for value in filters:
        argv += ["--filter", value]
    return argv


def volume_create(volume: str, labels: Mapping[str, str] | None = None) -> list[str]:
    label_args = [arg for k, v in (labels or {}).items() for arg in ("--label", _label(k, v))]
    return [DOCKER, "volume", "create", *label_args, name(volume, "Docker volume")]


def volume_rm(*volumes: str, force: bool = True) -> list[str]:
    if not volumes:
        raise UnsafeDockerArgument("docker volume rm needs at least one volume")
    return [DOCKER, "volume", "rm", *(["-f"] if force else []), *(name(v, "Docker volume") for v in volumes)]


def network_ls(*, format: str | None = None) -> list[str]:
    return [DOCKER, "network", "ls", *(["--format", format] if format else [])]


def network_inspect(network: str, *, format: str | None = None) -> list[str]:
    return [DOCKER, "network", "inspect", *(["--format", format] if format else []), name(network, "network")]


def network_create(network: str, *, subnet: str | None = None, internal: bool = False) -> list[str]:
    if subnet is not None and not re.fullmatch(r"[0-9A-Fa-f.:]+/[0-9]{1,3}", subnet):
        raise UnsafeDockerArgument(f"{subnet!r} is not a subnet")
    argv = [DOCKER, "network", "create", *(["--subnet", subnet] if subnet else [])]
    return [*argv, *(["--internal"] if internal else []), name(network, "network")]


# --- docker: the daemon --------------------------------------------------------------------------


def version(*, format: str | None = None) -> list[str]:
    return [DOCKER, "version", *(["--format", format] if format else [])]


def compose_version() -> list[str]:
    return [DOCKER, "compose", "version", "--short"]


def info(*, format: str | None = None) -> list[str]:
    return [DOCKER, "info", *(["--format", format] if format else [])]
