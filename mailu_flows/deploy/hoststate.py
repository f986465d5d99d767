"""Read the managed host's state in one SSH round trip (pyinfra's "facts"): files we manage, the
stack's containers, networks, volumes, versions, listeners, disk, and Traefik's view of itself.

Each fact is a small class with the shell snippet that prints it and the parser of that output, so a
parser is tested on captured output (`tests/core/deploy/facts/`) without a host. `gather` batches any
facts into one script whose sections run concurrently. Everything the deploy decides is decided from
this snapshot; nothing is changed here.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mailu_flows import dockercmd
from mailu_flows.host import Host

__all__ = [
    "FACTS_SECTION",
    "NO_DAEMON",
    "Container",
    "ContainerAddresses",
    "Containers",
    "DiskFree",
    "Fact",
    "Files",
    "HostState",
    "Listeners",
    "LocalImages",
    "Networks",
    "PublishedPorts",
    "RemoteFile",
    "TraefikApi",
    "Versions",
    "Volumes",
    "deploy_facts",
    "fact_script",
    "gather",
    "host_state_from",
    "read_host_state",
    "split_sections",
]

T = TypeVar("T")

FACTS_SECTION = "@@mailu-flows@@"  # starts the line that names the next fact's output
NO_DAEMON = "no-daemon"  # docker_version when the CLI is there but its daemon does not answer


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


class Fact(Generic[T]):
    """One thing read from the host: `command()` is a POSIX sh snippet printing it on stdout (its
    stderr is dropped), `parse()` turns that output into a value. `name` keys it in a batch."""

    name: str = ""

    def command(self) -> str:
        raise NotImplementedError

    def parse(self, output: str) -> T:
        raise NotImplementedError


@dataclass(frozen=True)
class Files(Fact[dict[str, RemoteFile]]):
    """Mode, group and sha256 of each of `paths` that is a regular file (others are left out)."""

    paths: Sequence[str]
    name: str = "files"

    def command(self) -> str:
        files = " ".join(shlex.quote(p) for p in self.paths)
        return f"""for f in {files}; do
  if [ -f "$f" ]; then echo "$f $(stat -c '%a %g' "$f") $(sha256sum < "$f" | cut -d' ' -f1)"; fi
done"""

    def parse(self, output: str) -> dict[str, RemoteFile]:
        files: dict[str, RemoteFile] = {}
        for line in output.splitlines():
            if line.strip():
                path, mode, gid, digest = line.rsplit(" ", 3)
                files[path] = RemoteFile(path, int(mode, 8), digest, int(gid))
        return files


@dataclass(frozen=True)
class Containers(Fact[list[Container]]):
    """Every container of the compose project, running or not."""

    project: str
    name: str = "containers"

    def command(self) -> str:
        ps = shlex.join(dockercmd.ps(dockercmd.project_filter(self.project), all_states=True))
        inspect = shlex.join(dockercmd.inspect())
        return f"""ids=$({ps})
if [ -n "$ids" ]; then {inspect} $ids; else echo '[]'; fi"""

    def parse(self, output: str) -> list[Container]:
        containers = []
        for item in json.loads(output or "[]"):
            labels = item["Config"].get("Labels") or {}
            containers.append(
                Container(
                    name=item["Name"].lstrip("/"),
                    service=labels.get("com.docker.compose.service", ""),
                    container_id=item["Id"],
                    image=item["Config"]["Image"],
                    image_id=item["Image"],
                    state=item["State"]["Status"],
                    health=(item["State"].get("Health") or {}).get("Status"),
                    config_hash=labels.get("com.docker.compose.config-hash", ""),
                    exit_code=int(item["State"].get("ExitCode", 0)),
                )
            )
        return containers


@dataclass(frozen=True)
class Networks(Fact[set[str]]):
    name: str = "networks"

    def command(self) -> str:
        return shlex.join(dockercmd.network_ls(format="{{.Name}}"))

    def parse(self, output: str) -> set[str]:
        return set(output.split())


@dataclass(frozen=True)
class Volumes(Fact[set[str]]):
    name: str = "volumes"

    def command(self) -> str:
        return shlex.join(dockercmd.volume_ls(format="{{.Name}}"))

    def parse(self, output: str) -> set[str]:
        return set(output.split())


@dataclass(frozen=True)
class Versions(Fact[tuple[str, str]]):
    """(docker server version, compose version): `none` when missing, NO_DAEMON when the CLI is
    there but its daemon does not answer, "" when nothing was printed."""

    name: str = "versions"

    def command(self) -> str:
        version = shlex.join(dockercmd.version(format="{{.Server.Version}}"))
        return f"""{version} 2>/dev/null \\
  || {{ command -v docker >/dev/null && echo {NO_DAEMON} || echo none; }}
{shlex.join(dockercmd.compose_version())} 2>/dev/null || echo none"""

    def parse(self, output: str) -> tuple[str, str]:
        words = output.split()
        return (words[0] if words else "", words[1] if len(words) > 1 else "")


@dataclass(frozen=True)
class Listeners(Fact[set[int]]):
    """TCP ports something listens on, on any address."""

    name: str = "listeners"

    def command(self) -> str:
        return "ss -ltnH 2>/dev/null | awk '{print $4}'"

    def parse(self, output: str) -> set[int]:
        ports = (addr.rsplit(":", 1)[-1] for addr in output.split())
        return {int(port) for port in ports if port.isdigit()}


@dataclass(frozen=True)
class PublishedPorts(Fact[dict[int, str]]):
    """Host port -> the container publishing it."""

    name: str = "published"

    def command(self) -> str:
        return shlex.join(dockercmd.ps(format="{{.Names}}\t{{.Ports}}"))

    def parse(self, output: str) -> dict[int, str]:
        published: dict[int, str] = {}
        for line in output.splitlines():
            cname, _, ports = line.partition("\t")
            for mapping in ports.split(","):
                left = mapping.strip().split("->")[0]
                if "->" in mapping and left.rsplit(":", 1)[-1].isdigit():
                    published[int(left.rsplit(":", 1)[-1])] = cname
        return published


@dataclass(frozen=True)
class ContainerAddresses(Fact[dict[str, set[str]]]):
    """Running container name -> its IP addresses on every network."""

    name: str = "ips"

    def command(self) -> str:
        template = "{{.Name}}{{range .NetworkSettings.Networks}} {{.IPAddress}}{{end}}"
        return f"{shlex.join(dockercmd.ps())} | xargs -r {shlex.join(dockercmd.inspect(format=template))}"

    def parse(self, output: str) -> dict[str, set[str]]:
        addresses: dict[str, set[str]] = {}
        for line in output.splitlines():
            parts = line.split()
            if parts:
                addresses[parts[0].lstrip("/")] = set(parts[1:])
        return addresses


@dataclass(frozen=True)
class DiskFree(Fact[int]):
    """Free KiB on the file system of Docker's root directory (0 when unknown)."""

    name: str = "disk"

    def command(self) -> str:
        info = shlex.join(dockercmd.info(format="{{.DockerRootDir}}"))
        return f"""root=$({info} 2>/dev/null || echo /)
df -Pk "$root" 2>/dev/null | awk 'NR==2 {{print $4}}'"""

    def parse(self, output: str) -> int:
        text = output.strip()
        return int(text) if text.isdigit() else 0


@dataclass(frozen=True)
class TraefikApi(Fact[Any]):
    """One JSON document of Traefik's API (`/api/rawdata`, `/api/entrypoints`); None when it does
    not answer."""

    api: str
    path: str
    name: str = "traefik"

    def command(self) -> str:
        url = shlex.quote(f"{self.api.rstrip('/')}{self.path}")
        return f"curl -sf --max-time 3 {url} || echo null; echo"

    def parse(self, output: str) -> Any:
        text = output.strip()
        return json.loads(text) if text and text != "null" else None


@dataclass(frozen=True)
class LocalImages(Fact[set[str]]):
    """Which of `images` (digest references) are present on the host."""

    images: Sequence[str]
    name: str = "images"

    def command(self) -> str:
        inspect = [
            (shlex.join(dockercmd.image_inspect(i, format="{{.Id}}")), shlex.quote(i)) for i in self.images
        ]
        return "; ".join(f"{{ {probe} >/dev/null 2>&1 && echo {ref}; }}" for probe, ref in inspect) or "true"

    def parse(self, output: str) -> set[str]:
        return set(output.split())


def fact_script(facts: Sequence[Fact[Any]]) -> str:
    """A POSIX sh script printing every fact's output under its own section line. The sections run
    concurrently (each docker CLI call costs 10-50 ms, and the host has cores to spare), then print
    in the given order."""
    names = [fact.name for fact in facts]
    if len(set(names)) != len(names):
        raise ValueError(f"facts in one batch need distinct names: {names}")
    jobs = "\n".join(
        f"( echo '{FACTS_SECTION} {fact.name}'\n{fact.command()}\n) > \"$d/{i:02d}\" 2>/dev/null &"
        for i, fact in enumerate(facts)
    )
    return f"""d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
{jobs}
wait
cat "$d"/*
"""


def split_sections(output: str) -> dict[str, str]:
    """The batch's output, by fact name (lines before the first section line are dropped)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(FACTS_SECTION):
            current = sections.setdefault(line[len(FACTS_SECTION) :].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def gather(host: Host, facts: Sequence[Fact[Any]]) -> dict[str, Any]:
    """One round trip: every fact's value by its name (a fact whose section is missing parses "")."""
    sections = split_sections(host.run(["sh", "-c", fact_script(facts)]).text())
    return {fact.name: fact.parse(sections.get(fact.name, "")) for fact in facts}


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


def deploy_facts(
    paths: Iterable[str], project: str, traefik_api: str, images: Iterable[str] = ()
) -> list[Fact[Any]]:
    """The facts a deploy decides from."""
    return [
        Files(list(paths)),
        Containers(project),
        Networks(),
        Volumes(),
        Versions(),
        Listeners(),
        PublishedPorts(),
        ContainerAddresses(),
        DiskFree(),
        TraefikApi(traefik_api, "/api/rawdata", name="rawdata"),
        TraefikApi(traefik_api, "/api/entrypoints", name="entrypoints"),
        LocalImages(list(images)),
    ]


def host_state_from(values: dict[str, Any]) -> HostState:
    """The HostState of `deploy_facts`' values."""
    docker_version, compose_version = values["versions"]
    return HostState(
        files=values["files"],
        containers=values["containers"],
        networks=values["networks"],
        volumes=values["volumes"],
        docker_version=docker_version,
        compose_version=compose_version,
        listening_ports=values["listeners"],
        published=values["published"],
        container_ips=values["ips"],
        disk_free_kb=values["disk"],
        traefik_rawdata=values["rawdata"],
        traefik_entrypoints=values["entrypoints"],
        local_images=values["images"],
    )


def read_host_state(
    host: Host, paths: Iterable[str], project: str, traefik_api: str, images: Iterable[str] = ()
) -> HostState:
    """One round trip: every fact the deploy decides from."""
    return host_state_from(gather(host, deploy_facts(paths, project, traefik_api, images)))
