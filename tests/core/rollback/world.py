"""A small model of a stack's host behind a `FakeHost`, for running rollback steps without a machine.

The host's facts (`mailu_flows.deploy.hoststate.gather`) are answered from the model: the compose
project's containers, the files in `host.files`, the Docker volumes and Traefik's rawdata (Mailu's
routers are loaded while Mailu's routes file is on the host). `docker compose stop|up|down` change the
containers as Docker would, `rm -f` removes files; every command is in `host.calls`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from mailu_core.config import StackConfig
from mailu_core.render import front_alias
from mailu_flows.deploy.hoststate import FACTS_SECTION
from mailu_flows.deploy.releases import Release
from mailu_flows.fake_host import Answer, Call, FakeHost

TRAEFIK_FILE = b"http:\n  routers:\n    mailu-web: {service: mailu-web}\n  services:\n    mailu-web: {}\n"
OTHER_ROUTERS: dict[str, Any] = {"whoami@file": {"service": "whoami", "status": "enabled"}}
OTHER_SERVICES: dict[str, Any] = {"whoami@file": {"loadBalancer": {"servers": [{"url": "http://whoami:80"}]}}}


@dataclass
class Running:
    """One container of the project: its image (the reference it was created from) and state."""

    image: str
    state: str = "running"
    id: str = "c0"


@dataclass
class World:
    cfg: StackConfig
    host: FakeHost = field(default_factory=FakeHost)
    containers: dict[str, Running] = field(default_factory=dict)  # service -> container
    pins: dict[bytes, dict[str, str]] = field(default_factory=dict)  # compose file -> service -> image
    volumes: set[str] = field(default_factory=set)
    traefik_up: bool = True
    created: int = 0  # containers created so far (their ids)

    def __post_init__(self) -> None:
        h = self.host
        h.on(["mkdir"])
        h.on(["test", "-f"], self._test_f)
        h.on(["rm", "-f"], self._rm)
        h.on(["docker", "compose"], self._compose)
        h.on(re.compile(re.escape(FACTS_SECTION)), self._facts)

    # --- what the test sets up ------------------------------------------------------------------

    def abs(self, rel: str) -> str:
        return str(self.cfg.host.resolve(rel))

    def put(self, rel: str, data: bytes, mode: int = 0o644) -> None:
        self.host.files[self.abs(rel)] = data
        self.host.modes[self.abs(rel)] = mode

    def store_release(self, release: Release, contents: dict[str, bytes]) -> None:
        """A release record and the stored copies of its files, as the deploy leaves them."""
        base = f"{self.cfg.paths.releases_dir}/{release.id}"
        for rel, data in contents.items():
            self.host.files[f"{base}/files/{rel}"] = data
        self.pins[contents[self.cfg.host.compose_file]] = dict(release.images)
        self.host.files[f"{base}/release.json"] = json.dumps(asdict(release)).encode()

    def run_release(self, release: Release) -> None:
        """The containers of `release` up and running, as its deploy left them (`store_release` first: its
        compose file pins the images `compose up` runs)."""
        for service, image in release.images.items():
            self.created += 1
            self.containers[service] = Running(image, id=f"c{self.created}")

    # --- what the host answers ------------------------------------------------------------------

    def rawdata(self) -> dict[str, Any] | None:
        if not self.traefik_up:
            return None
        routers, services = dict(OTHER_ROUTERS), dict(OTHER_SERVICES)
        if (
            self.abs(f"{self.cfg.host.traefik_dynamic_dir}/{self.cfg.host.traefik_dynamic_file}")
            in self.host.files
        ):
            front = f"http://{front_alias(self.cfg)}:80"
            routers["mailu-web@file"] = {"service": "mailu-web", "status": "enabled"}
            services["mailu-web@file"] = {"status": "enabled", "loadBalancer": {"servers": [{"url": front}]}}
        return {"routers": routers, "services": services}

    def _test_f(self, call: Call) -> Answer:
        return Answer(exit=0 if call.argv[2] in self.host.files else 1)

    def _rm(self, call: Call) -> Answer:
        for path in call.argv[2:]:
            self.host.files.pop(path, None)
        return Answer()

    def _compose(self, call: Call) -> Answer:
        verbs = [a for a in call.argv if a in ("stop", "up", "down", "config")]
        verb = verbs[0] if verbs else ""
        if verb == "stop":
            for running in self.containers.values():
                running.state = "exited"
        elif verb == "down":
            self.containers.clear()
        elif verb == "up":
            for service, image in self.pins[self.host.files[self.abs(self.cfg.host.compose_file)]].items():
                c = self.containers.get(service)
                if c is None or c.image != image:
                    self.created += 1
                    self.containers[service] = Running(image, id=f"c{self.created}")
                else:
                    c.state = "running"
        return Answer()

    def _facts(self, call: Call) -> Answer:
        script = call.argv[2]
        out = []
        for name in re.findall(rf"echo '{re.escape(FACTS_SECTION)} (\w+)'", script):
            out += [f"{FACTS_SECTION} {name}", self._fact(name, script)]
        return Answer(stdout="\n".join(out).encode() + b"\n")

    def _fact(self, name: str, script: str) -> str:
        if name == "containers":
            return json.dumps([self._inspect(s, c) for s, c in self.containers.items()])
        if name == "volumes":
            return "\n".join(sorted(self.volumes))
        if name == "rawdata":
            return json.dumps(self.rawdata())
        if name == "files":
            listed = re.search(r"for f in (.*?); do", script)
            paths = shlex.split(listed.group(1)) if listed else []
            return "\n".join(
                f"{p} {self.host.modes.get(p, 0o644):o} 0 {hashlib.sha256(self.host.files[p]).hexdigest()}"
                for p in paths
                if p in self.host.files
            )
        raise AssertionError(f"the rollback asked for a fact the world does not model: {name}")

    def _inspect(self, service: str, c: Running) -> dict[str, Any]:
        return {
            "Name": f"/{self.cfg.mailu.compose_project}-{service}-1",
            "Id": c.id,
            "Image": "sha256:" + hashlib.sha256(c.image.encode()).hexdigest(),
            "Config": {"Image": c.image, "Labels": {"com.docker.compose.service": service}},
            "State": {"Status": c.state, "ExitCode": 0},
        }

    # --- what the test checks -------------------------------------------------------------------

    def commands(self, *words: str) -> list[str]:
        """The commands run whose argv holds every one of `words`."""
        return [c for c in self.host.commands() if set(words) <= set(shlex.split(c))]

    def writes(self) -> list[str]:
        """Paths written (the journal aside)."""
        return [
            c.path for c in self.host.calls if c.kind == "write" and c.path != self.cfg.paths.journal_file
        ]
