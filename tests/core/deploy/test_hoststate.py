"""The host facts' parsers, on outputs captured from the lab's host (`tests/core/deploy/facts/*.txt`,
made by `facts/capture.py`), and the batch script that runs them in one round trip."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mailu_flows.deploy.hoststate import (
    NO_DAEMON,
    DiskFree,
    Fact,
    Files,
    HostState,
    Listeners,
    PublishedPorts,
    TraefikApi,
    Versions,
    deploy_facts,
    fact_script,
    host_state_from,
    split_sections,
)

FACTS = Path(__file__).parent / "facts"


def state_of(capture: str) -> HostState:
    sections = split_sections((FACTS / f"{capture}.txt").read_text())
    facts = deploy_facts(["/etc/hostname"], "mailu-lab", "http://127.0.0.1:1")
    return host_state_from({fact.name: fact.parse(sections.get(fact.name, "")) for fact in facts})


def test_a_stack_of_exited_containers_and_a_running_traefik() -> None:
    state = state_of("exited-containers")
    by_service = state.by_service()
    assert sorted(by_service) == ["admin", "antispam", "front", "imap", "redis", "smtp", "webmail"]
    admin = by_service["admin"]
    assert (admin.state, admin.exit_code, admin.name) == ("exited", 1, "mlt-standins-bcddff-admin-1")
    assert admin.config_hash and admin.container_id and admin.image_id.startswith("sha256:")
    assert by_service["redis"].exit_code == 0
    assert state.docker_version.startswith("20.10") and state.compose_version.startswith("2.")
    assert {25, 443, 10025} - state.listening_ports == {25}  # Traefik publishes 10025, not 25
    assert state.published[10025] == "mailu-lab-traefik" and 4181 not in state.published  # exposed only
    assert state.container_ips["mailu-lab-forward-auth"] == {"172.30.2.65"}
    assert state.disk_free_kb > 1_000_000
    assert state.traefik_rawdata is not None and "mailu-smtp@file" in state.traefik_rawdata["tcpRouters"]
    assert state.traefik_entrypoints is not None
    assert {ep["name"]: ep["address"] for ep in state.traefik_entrypoints}["smtp"] == ":25"
    assert len(state.local_images) == 1 and next(iter(state.local_images)).startswith("127.0.0.1:5000/")
    assert state.files["/etc/hostname"].sha256 and "/etc/nonexistent-file" not in state.files


def test_a_host_whose_docker_daemon_does_not_answer() -> None:
    state = state_of("no-daemon")
    assert state.docker_version == NO_DAEMON and state.compose_version
    assert state.containers == [] and state.networks == set() and state.volumes == set()
    assert state.traefik_rawdata is None and state.traefik_entrypoints is None
    assert state.disk_free_kb == 0 and state.published == {}


@pytest.mark.parametrize(
    ("fact", "output", "value"),
    [
        (Versions(), "", ("", "")),
        (Versions(), "none\nnone\n", ("none", "none")),
        (Listeners(), "[::]:25\n*:993\n0.0.0.0:80\ngarbage\n", {25, 80, 993}),
        (PublishedPorts(), "web\t0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 9000/tcp\n", {8080: "web"}),
        (DiskFree(), "df: cannot read\n", 0),
        (TraefikApi("http://t", "/api/rawdata"), "null\n\n", None),
        (Files(["/a b"]), "/a b 640 1001 abc\n", {"/a b": ("/a b", 0o640, "abc", 1001)}),
    ],
)
def test_parsers_on_edge_outputs(fact: Any, output: str, value: Any) -> None:
    parsed = fact.parse(output)
    if isinstance(fact, Files):
        parsed = {k: (f.path, f.mode, f.sha256, f.gid) for k, f in parsed.items()}
    assert parsed == value


def test_the_batch_runs_its_facts_concurrently_and_prints_them_in_order(tmp_path: Path) -> None:
    """The script itself, run by sh: each section under its own header, whatever finishes first;
    paths with spaces and quotes stay one word."""
    odd = tmp_path / "it's a file"
    odd.write_text("x")
    files_fact = Files([str(odd), str(tmp_path / "missing")])
    facts: list[Fact[Any]] = [files_fact, Listeners(), Versions()]
    out = subprocess.run(["sh", "-c", fact_script(facts)], check=True, capture_output=True, text=True).stdout
    sections = split_sections(out)
    assert list(sections) == ["files", "listeners", "versions"]
    files = files_fact.parse(sections["files"])
    assert list(files) == [str(odd)]
    assert files[str(odd)].sha256 == hashlib.sha256(b"x").hexdigest()


def test_a_batch_refuses_two_facts_of_one_name() -> None:
    with pytest.raises(ValueError, match="distinct names"):
        fact_script([Versions(), Versions()])
