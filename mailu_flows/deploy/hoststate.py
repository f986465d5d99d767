"""Read the managed host's state in one SSH round trip (pyinfra's "facts"): files we manage, the
stack's containers, networks, volumes, versions, listeners, disk, and Traefik's view of itself.

Everything the deploy decides is decided from this snapshot; nothing is changed here.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mailu_flows.remote import RemoteHost


@dataclass(frozen=True)
class RemoteFile:
    path: str
    mode: int
    sha256: str
    gid: int = -1


@dataclass(frozen=True)
class Container:
    """One container of the compose project, as `docker inspect` reports it."""

    name: str
    service: str
    container_id: str
    image: str  # the reference it was created from
    image_id: str
    state: str
    health: str | None
    config_hash: str
    exit_code: int


@dataclass
class HostState:
    files: dict[str, RemoteFile] = field(default_factory=dict)
    containers: list[Container] = field(default_factory=list)
    networks: set[str] = field(default_factory=set)
    volumes: set[str] = field(default_factory=set)
    docker_version: str = ""
    compose_version: str = ""
    listening_ports: set[int] = field(default_factory=set)
    published: dict[int, str] = field(default_factory=dict)  # host port -> container name
    container_ips: dict[str, set[str]] = field(default_factory=dict)  # container name -> IPs
    disk_free_kb: int = 0
    traefik_rawdata: dict[str, Any] | None = None
    traefik_entrypoints: list[dict[str, Any]] | None = None
    local_images: set[str] = field(default_factory=set)  # digest refs present on the host

    def by_service(self) -> dict[str, Container]:
        return {c.service: c for c in self.containers}


_SECTION = "@@mailu-flows@@"
NO_DAEMON = "no-daemon"  # docker_version when the CLI is there but its daemon does not answer


def _state_script(paths: Iterable[str], project: str, traefik_api: str, images: Iterable[str]) -> str:
    """A POSIX sh script printing every fact in sections; independent sections run concurrently (each
    docker CLI call costs 10-50 ms, and the host has cores to spare), then print in a fixed order."""
    files = " ".join(shlex.quote(p) for p in paths)
    refs = " ".join(shlex.quote(i) for i in images)
    api = shlex.quote(traefik_api.rstrip("/"))
    s = _SECTION
    sections = [
        f"""for f in {files}; do
  if [ -f "$f" ]; then echo "$f $(stat -c '%a %g' "$f") $(sha256sum < "$f" | cut -d' ' -f1)"; fi
done""",
        f"""echo '{s} containers'
ids=$(docker ps -aq --filter label=com.docker.compose.project={shlex.quote(project)})
if [ -n "$ids" ]; then docker inspect $ids; else echo '[]'; fi""",
        f"""echo '{s} networks'; docker network ls --format '{{{{.Name}}}}'""",
        f"""echo '{s} volumes'; docker volume ls --format '{{{{.Name}}}}'""",
        f"""echo '{s} versions'
docker version --format '{{{{.Server.Version}}}}' 2>/dev/null \
  || {{ command -v docker >/dev/null && echo {NO_DAEMON} || echo none; }}
docker compose version --short 2>/dev/null || echo none""",
        f"""echo '{s} listeners'; ss -ltnH 2>/dev/null | awk '{{print $4}}'""",
        f"""echo '{s} published'; docker ps --format '{{{{.Names}}}}\t{{{{.Ports}}}}'""",
        f"""echo '{s} ips'
docker ps -q | xargs -r docker inspect --format \
  '{{{{.Name}}}}{{{{range .NetworkSettings.Networks}}}} {{{{.IPAddress}}}}{{{{end}}}}'""",
        f"""echo '{s} disk'
root=$(docker info --format '{{{{.DockerRootDir}}}}' 2>/dev/null || echo /)
df -Pk "$root" 2>/dev/null | awk 'NR==2 {{print $4}}'""",
        f"""echo '{s} rawdata'; curl -sf --max-time 3 {api}/api/rawdata || echo null; echo""",
        f"""echo '{s} entrypoints'; curl -sf --max-time 3 {api}/api/entrypoints || echo null; echo""",
        f"""echo '{s} images'
for i in {refs}; do docker image inspect --format '{{{{.Id}}}}' "$i" >/dev/null 2>&1 && echo "$i"; done""",
    ]
    jobs = "\n".join(f'( {body}\n) > "$d/{i:02d}" 2>/dev/null &' for i, body in enumerate(sections))
    return f"""d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
{jobs}
wait
cat "$d"/*
"""


def read_host_state(
    host: RemoteHost, paths: Iterable[str], project: str, traefik_api: str, images: Iterable[str] = ()
) -> HostState:
    """One round trip: run the fact script, parse its sections."""
    out = host.run(["sh", "-c", _state_script(list(paths), project, traefik_api, list(images))]).text()
    sections: dict[str, str] = {}
    name, buf = "files", list[str]()
    for line in out.splitlines():
        if line.startswith(_SECTION):
            sections[name] = "\n".join(buf)
            name, buf = line[len(_SECTION) :].strip(), []
        else:
            buf.append(line)
    sections[name] = "\n".join(buf)
    state = HostState()
    for line in sections.get("files", "").splitlines():
        path, mode, gid, digest = line.rsplit(" ", 3)
        state.files[path] = RemoteFile(path, int(mode, 8), digest, int(gid))
    for item in json.loads(sections.get("containers") or "[]"):
        labels = item["Config"].get("Labels") or {}
        health = (item["State"].get("Health") or {}).get("Status")
        state.containers.append(
            Container(
                name=item["Name"].lstrip("/"),
                service=labels.get("com.docker.compose.service", ""),
                container_id=item["Id"],
                image=item["Config"]["Image"],
                image_id=item["Image"],
                state=item["State"]["Status"],
                health=health,
                config_hash=labels.get("com.docker.compose.config-hash", ""),
                exit_code=int(item["State"].get("ExitCode", 0)),
            )
        )
    state.networks = set(sections.get("networks", "").split())
    state.volumes = set(sections.get("volumes", "").split())
    versions = sections.get("versions", "").split()
    state.docker_version = versions[0] if versions else ""
    state.compose_version = versions[1] if len(versions) > 1 else ""
    for addr in sections.get("listeners", "").split():
        port = addr.rsplit(":", 1)[-1]
        if port.isdigit():
            state.listening_ports.add(int(port))
    for line in sections.get("published", "").splitlines():
        cname, _, ports = line.partition("\t")
        for mapping in ports.split(","):
            left = mapping.strip().split("->")[0]
            if "->" in mapping and left.rsplit(":", 1)[-1].isdigit():
                state.published[int(left.rsplit(":", 1)[-1])] = cname
    for line in sections.get("ips", "").splitlines():
        parts = line.split()
        if parts:
            state.container_ips[parts[0].lstrip("/")] = set(parts[1:])
    disk = sections.get("disk", "").strip()
    state.disk_free_kb = int(disk) if disk.isdigit() else 0
    raw = sections.get("rawdata", "").strip()
    state.traefik_rawdata = json.loads(raw) if raw and raw != "null" else None
    eps = sections.get("entrypoints", "").strip()
    state.traefik_entrypoints = json.loads(eps) if eps and eps != "null" else None
    state.local_images = set(sections.get("images", "").split())
    return state
