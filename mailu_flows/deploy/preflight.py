"""Preflight: every reason the deploy would fail on this host, found before anything changes, each
with the fix. Pure: it reads the host-state snapshot, never the host."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailu_core.config import StackConfig
from mailu_flows.deploy.hoststate import NO_DAEMON, HostState

MIN_DOCKER = (20, 10)
MIN_COMPOSE = (2, 20)
MIN_FREE_KB = 2 * 1024 * 1024  # images + a first mail volume


@dataclass(frozen=True)
class Check:
    """One preflight or post-deploy check: a table row in the run's artifact."""

    name: str
    ok: bool
    detail: str
    blocking: bool = True


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.lstrip("v").split("+")[0].split("-")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def static_entrypoints_snippet(cfg: StackConfig, missing: list[str]) -> str:
    lines = ["entryPoints:"]
    for ep in cfg.traefik.mail_entrypoints:
        if ep.name in missing:
            lines.append(f'  {ep.name}:\n    address: ":{ep.port}"')
    return "\n".join(lines)


def external_networks(cfg: StackConfig) -> list[str]:
    """Networks the stack joins but does not own: mgmt (Traefik), internal (a shared database)."""
    nets = [cfg.networks.mgmt]
    if cfg.database.flavor == "postgresql" and not cfg.database.managed:
        nets.append(cfg.networks.internal)
    return nets


def mgmt_subnet(cfg: StackConfig) -> str:
    """The /24 around Traefik's fixed address: the subnet the mgmt network must declare, so that Traefik
    can hold that address (`ipv4_address` needs a network with a declared subnet)."""
    return str(ipaddress.ip_network(f"{cfg.traefik.mgmt_address}/24", strict=False))


def network_fix(cfg: StackConfig, net: str) -> str:
    """What to run when an external network is missing: mgmt with its subnet, the others plain."""
    if net == cfg.networks.mgmt:
        create = f"docker network create --subnet {mgmt_subnet(cfg)} {net}"
        return (
            f"external network {net!r} is missing; create it with the subnet that holds "
            f"traefik.mgmt_address {cfg.traefik.mgmt_address} ({create}), then attach Traefik to it with "
            f"ipv4_address {cfg.traefik.mgmt_address}; or fix networks.mgmt in the config"
        )
    return (
        f"external network {net!r} is missing; create it (docker network create {net}) "
        "or fix networks in the config"
    )


def preflight_checks(cfg: StackConfig, state: HostState) -> list[Check]:
    checks: list[Check] = []
    add = checks.append

    docker_ok = _version(state.docker_version) >= MIN_DOCKER
    if state.docker_version == NO_DAEMON:  # every other fact (networks, containers) is then unknown
        detail = (
            "the Docker daemon does not answer on the host (the docker CLI is there): start it "
            "(systemctl start docker) and check that the deploy user may use /var/run/docker.sock"
        )
    else:
        detail = f"Docker {state.docker_version or 'not found'}" + (
            "" if docker_ok else f"; need >= {'.'.join(map(str, MIN_DOCKER))} (apt-get install docker.io)"
        )
    add(Check("docker engine", docker_ok, detail))
    compose_ok = _version(state.compose_version) >= MIN_COMPOSE
    add(
        Check(
            "docker compose v2",
            compose_ok,
            f"Compose {state.compose_version or 'not found'}"
            + (
                ""
                if compose_ok
                else "; need Compose v2 >= 2.20 as a docker CLI plugin: Docker's apt repository "
                "(docker-compose-plugin; Debian bookworm's own archive has none), or a docker-compose v2 "
                "binary in /usr/local/lib/docker/cli-plugins/"
            ),
        )
    )

    for net in external_networks(cfg):
        ok = net in state.networks
        add(Check(f"network {net}", ok, "exists" if ok else network_fix(cfg, net)))

    raw = state.traefik_rawdata
    add(
        Check(
            "traefik api",
            raw is not None,
            f"{cfg.traefik.api_url} answers"
            if raw is not None
            else f"Traefik's API does not answer at {cfg.traefik.api_url} from the host; enable `api` in "
            "Traefik's static config or fix traefik.api_url",
        )
    )
    if raw is not None:
        middlewares = raw.get("middlewares") or {}
        for mw in cfg.traefik.middlewares.model_dump().values():
            # `name@provider` in the config names exactly that one; a bare name, any provider's
            present = any(name == mw or ("@" not in mw and name.split("@")[0] == mw) for name in middlewares)
            add(
                Check(
                    f"middleware {mw}",
                    present,
                    "exists"
                    if present
                    else f"Traefik has no middleware {mw!r}; define it in the host's dynamic config or "
                    "fix traefik.middlewares",
                )
            )
    eps = {e.get("name"): str(e.get("address", "")) for e in state.traefik_entrypoints or []}
    missing = [
        ep.name for ep in cfg.traefik.mail_entrypoints if not eps.get(ep.name, "").endswith(f":{ep.port}")
    ]
    if state.traefik_entrypoints is not None:
        add(
            Check(
                "mail entrypoints",
                not missing,
                "all present"
                if not missing
                else f"Traefik lacks entrypoints {missing}; add to its static config and restart it:\n"
                + static_entrypoints_snippet(cfg, missing),
            )
        )

    traefik_containers = {
        name for name, ips in state.container_ips.items() if str(cfg.traefik.mgmt_address) in ips
    }
    for ep in cfg.traefik.mail_entrypoints:
        holder = state.published.get(ep.host_port)
        if holder is not None and holder in traefik_containers:
            add(Check(f"port {ep.host_port}", True, f"held by Traefik ({holder}, entrypoint {ep.name})"))
        elif ep.host_port in state.listening_ports:
            add(
                Check(
                    f"port {ep.host_port}",
                    False,
                    f"port {ep.host_port} is held by something other than Traefik "
                    f"({holder or 'a host process, e.g. a host MTA'}); stop it "
                    "(for an MTA: systemctl disable --now exim4 postfix) so Traefik can own the port",
                )
            )
        else:
            add(
                Check(
                    f"port {ep.host_port}",
                    False,
                    f"nothing publishes port {ep.host_port}; publish Traefik's {ep.name} entrypoint on it",
                )
            )
        if ep.host_port != ep.port and ep.port in state.listening_ports and ep.port not in state.published:
            add(
                Check(
                    f"port {ep.port}",
                    False,
                    f"a host process listens on {ep.port} (a host MTA?); stop it: mail for port "
                    f"{ep.port} must go through Traefik",
                )
            )

    add(
        Check(
            "disk space",
            state.disk_free_kb >= MIN_FREE_KB,
            f"{state.disk_free_kb // 1024} MiB free in Docker's root"
            + ("" if state.disk_free_kb >= MIN_FREE_KB else "; need at least 2 GiB"),
        )
    )
    return checks


def blocking_failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.blocking and not c.ok]
