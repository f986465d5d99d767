"""Pure renderers of the deploy: config in, file contents out (no I/O, no Prefect, no SSH).

`render_stack(cfg)` gives every file the deploy writes on the host, keyed by the config's path
(relative to `host.stack_root` unless the config gives an absolute one; `cfg.host.resolve(key)` is
the host path), plus the secret files to fill from the Mailu secrets block. The same config always
gives the same bytes, so the deploy can write only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from mailu_core.config import StackConfig
from mailu_core.render.compose import front_alias, render_compose
from mailu_core.render.env import (
    SETTINGS,
    Setting,
    front_ports,
    proxy_protocol_ports,
    render_env_file,
    service_env,
    services_of,
)
from mailu_core.render.monitoring import monitoring_paths, render_monitoring
from mailu_core.render.secrets import SecretFileSpec, secret_file_specs
from mailu_core.render.traefik import render_traefik, traefik_dynamic
from mailu_core.render.yamlout import dump_yaml

__all__ = [
    "SETTINGS",
    "RenderedFile",
    "RenderedStack",
    "SecretFileSpec",
    "Setting",
    "dump_yaml",
    "env_file_path",
    "front_alias",
    "front_ports",
    "monitoring_paths",
    "proxy_protocol_ports",
    "render_compose",
    "render_env_file",
    "render_monitoring",
    "render_stack",
    "render_traefik",
    "secret_file_specs",
    "service_env",
    "services_of",
    "traefik_dynamic",
    "traefik_file_path",
]

FILE_MODE = 0o644


@dataclass(frozen=True)
class RenderedFile:
    """One file's bytes and mode (none of them holds a secret value)."""

    content: bytes
    mode: int = FILE_MODE


@dataclass(frozen=True)
class RenderedStack:
    """Everything the deploy writes: files by stack-relative path, and the secret files to fill."""

    files: dict[str, RenderedFile]
    secrets: list[SecretFileSpec] = field(default_factory=list)
    compose_file: str = ""
    traefik_file: str = ""
    env_files: dict[str, str] = field(default_factory=dict)


def env_file_path(cfg: StackConfig, service: str) -> str:
    """`<compose dir>/<compose stem>-env/<service>.env`, e.g. compose/mailu-env/front.env.

    A directory of its own per stack, next to the compose file, so other stacks' env files in the
    same compose directory are never touched. (Mailu's single shared `mailu.env` is not used: one
    file for all would recreate every container on any change.)
    """
    compose = PurePosixPath(cfg.host.compose_file)
    return str(compose.parent / f"{compose.stem}-env" / f"{service}.env")


def traefik_file_path(cfg: StackConfig) -> str:
    return str(PurePosixPath(cfg.host.traefik_dynamic_dir) / cfg.host.traefik_dynamic_file)


def render_stack(cfg: StackConfig) -> RenderedStack:
    """Render the compose file, one env file per service, the Traefik routes and the secret specs, plus
    the monitoring files when `monitoring.enabled` (written, recorded and restored like the others)."""
    secrets = secret_file_specs(cfg)
    services = services_of(cfg)
    env_paths = {service: env_file_path(cfg, service) for service in services}
    files: dict[str, RenderedFile] = {
        path: RenderedFile(render_env_file(cfg, service, secrets).encode())
        for service, path in env_paths.items()
    }
    host_env_paths = {service: str(cfg.host.resolve(path)) for service, path in env_paths.items()}
    files[cfg.host.compose_file] = RenderedFile(render_compose(cfg, host_env_paths, secrets).encode())
    traefik_path = traefik_file_path(cfg)
    files[traefik_path] = RenderedFile(render_traefik(cfg).encode())
    for path, text in render_monitoring(cfg).items():
        files[path] = RenderedFile(text.encode())
    return RenderedStack(
        files=dict(sorted(files.items())),
        secrets=secrets,
        compose_file=cfg.host.compose_file,
        traefik_file=traefik_path,
        env_files=env_paths,
    )
