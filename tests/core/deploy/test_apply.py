"""The deploy engine (`run_deploy`) on a FakeHost: a first deploy writes every file and starts the stack,
the next one says "no changes" in few round trips and writes nothing. The fake host answers the fact
batch from its own files (hash, mode) and a containers list that `compose up` starts."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.stack_config import lab_stack_config
from mailu_core.config import StackConfig
from mailu_core.render import render_stack
from mailu_core.render.monitoring import alert_names
from mailu_flows.deploy import engine
from mailu_flows.deploy.engine import SecretsStore, run_deploy
from mailu_flows.deploy.hoststate import FACTS_SECTION, fact_script, split_sections
from mailu_flows.deploy.monitoring import PrometheusApi, expected_targets
from mailu_flows.deploy.plan import wanted_services
from mailu_flows.deploy.releases import UnreadableRelease
from mailu_flows.fake_host import Answer, Call, FakeHost
from tests.core.deploy.test_hoststate import FACTS
from tests.core.render.test_render import lab_images

ROOT = "/srv/mailu-lab/apps"


class MemoryStore(SecretsStore):
    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)
        self.saved: list[dict[str, str]] = []

    def load(self) -> dict[str, str]:
        return dict(self.values)

    def save(self, values: dict[str, str]) -> None:
        self.values = dict(values)
        self.saved.append(dict(values))


@dataclass
class FakeStack:
    """A FakeHost that answers like the lab's host for one stack."""

    cfg: StackConfig
    host: FakeHost = field(default_factory=FakeHost)
    running: bool = False
    captured: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.captured = split_sections((FACTS / "exited-containers.txt").read_text())
        self.host.default = Answer()  # mkdir, rm, cp, chgrp helpers, compose config/up: all succeed
        self.host.on(["sh", "-c"], self.facts)
        self.host.on(["docker", "compose"], self.compose)
        self.host.on(r"^for f in .*release\.json", self.releases)
        self.host.on(["curl", "-fsS"], self.prometheus)
        self.host.on(["curl", "-sS"], stdout="200")
        self.host.on(r" exec -T admin python3 ", stdout='["admin@inlock.test"]\n')
        self.host.on(r"^docker run .*chgrp", self.chgrp)
        self.host.on(["mktemp", "-d"], stdout="/tmp/mailu-flows-plan.abc123\n")

    def chgrp(self, call: Call) -> Answer:
        """The root helper that gives a secret file its group and group-readable mode."""
        mount = next(a for a in call.argv if a.startswith("type=bind,"))
        path = dict(kv.split("=", 1) for kv in mount.split(",") if "=" in kv)["source"]
        script = call.argv[-1]
        self.host.modes[path] = int(script.split("chmod ")[1].split()[0], 8)
        return Answer()

    def compose(self, call: Call) -> Answer:
        if " up " in f"{call.command} ":
            self.running = True
        return Answer()

    def releases(self, call: Call) -> Answer:
        return Answer(self.records().encode())

    def records(self) -> str:
        lines = [
            f"{path} {base64.b64encode(data).decode()}"
            for path, data in sorted(self.host.files.items())
            if path.endswith("/release.json")
        ]
        return "\n".join(lines) + "\n"

    def prometheus(self, call: Call) -> Answer:
        return Answer(self.prometheus_doc(call.argv[-1]).encode())

    def prometheus_doc(self, url: str) -> str:
        if "/targets" in url:
            active = [
                {"labels": {"stack": self.cfg.name, "instance": addr}}
                for _, addr in expected_targets(self.cfg)
            ]
            doc: dict[str, Any] = {"activeTargets": active}
        else:
            rules = [{"name": name} for name in alert_names(self.cfg)]
            doc = {"groups": [{"name": f"mailu-{self.cfg.name}", "rules": rules}]}
        return json.dumps({"status": "success", "data": doc})

    def facts(self, call: Call) -> Answer:
        sections = dict(self.captured)
        sections["files"] = "\n".join(
            f"{path} {self.host.modes.get(path, 0o644):o} 1000 {hashlib.sha256(data).hexdigest()}"
            for path, data in self.host.files.items()
        )
        template = json.loads(self.captured["containers"])[0]
        containers = []
        if self.running:
            for service, image in wanted_services(self.cfg, render_stack(self.cfg)).items():
                item = json.loads(json.dumps(template))
                item["Name"] = f"/mailu-lab-{service}-1"
                item["Config"]["Image"] = image
                item["Config"]["Labels"]["com.docker.compose.service"] = service
                item["State"].update(Status="running", Health={"Status": "healthy"})
                containers.append(item)
        sections["containers"] = json.dumps(containers)
        script = call.argv[-1]
        if "release.json" in script:  # the deploy's first read: its records and Prometheus' documents
            releases_dir = self.cfg.paths.releases_dir
            there = any(p.startswith(releases_dir + "/") for p in self.host.files)
            sections["releases"] = ("present\n" + self.records()) if there else "absent"
            sections["prometheus-targets"] = self.prometheus_doc("/api/v1/targets")
            sections["prometheus-rules"] = self.prometheus_doc("/api/v1/rules")
        return Answer(
            "".join(f"{FACTS_SECTION} {name}\n{body}\n" for name, body in sections.items()).encode()
        )

    def runs(self) -> list[str]:
        return self.host.commands()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStack]:
    monkeypatch.setattr(engine, "probes", lambda cfg: [])  # TLS from the runner: the lab's tests do them
    yield FakeStack(lab_stack_config(lab_images(), ROOT))


def test_a_first_deploy_writes_everything_then_a_rerun_says_no_changes(stack: FakeStack) -> None:
    store = MemoryStore({"admin_password": "pw"})
    first = run_deploy(stack.cfg, stack.host, store)
    assert first.changed and first.release_id and first.created_accounts == ["admin@inlock.test"]
    assert [c.name for c in first.checks if not c.ok] == []
    assert store.saved and {"api_token", "secret_key"} <= set(store.values)  # generated, saved first
    rendered = render_stack(stack.cfg)
    for rel, rf in rendered.files.items():
        assert stack.host.files[f"{ROOT}/{rel}"] == rf.content
    for spec in rendered.secrets:
        assert stack.host.files[spec.host_path] == store.values[spec.block_field].encode()
    release = json.loads(stack.host.files[f"{stack.cfg.paths.releases_dir}/{first.release_id}/release.json"])
    assert release["status"] == "good" and release["replaced"] == []
    compose = [c for c in stack.runs() if c.startswith("docker compose")]
    assert any(" up " in c for c in compose) and any(" config --quiet" in c for c in compose)
    chgrp = [c for c in stack.runs() if c.startswith("docker run") and "chgrp 1000" in c]
    assert len(chgrp) == len(rendered.secrets) and all("--network none" in c for c in chgrp)

    stack.host.calls.clear()
    again = run_deploy(stack.cfg, stack.host, store)
    assert (again.changed, again.summary, again.release_id) == (False, "no changes", first.release_id)
    assert not again.plan.changes and [c.name for c in again.checks if not c.ok] == []
    assert [c for c in stack.host.calls if c.kind == "write"] == []
    assert not any(c.startswith("docker compose") for c in stack.runs())
    assert len(stack.runs()) == 1, stack.runs()  # facts, release records and Prometheus in one round trip


def test_a_file_edited_on_the_host_is_put_back_and_its_diff_shown(stack: FakeStack) -> None:
    store = MemoryStore({"admin_password": "pw"})
    run_deploy(stack.cfg, stack.host, store)
    live = f"{ROOT}/{stack.cfg.host.compose_file}"
    rendered = stack.host.files[live]
    stack.host.files[live] = rendered.replace(b"services:", b"# by hand\nservices:", 1)
    shown: list[str] = []
    result = run_deploy(stack.cfg, stack.host, store, on_plan=lambda p: shown.append(p.markdown()))
    assert result.changed and [c.path for c in result.plan.files] == [stack.cfg.host.compose_file]
    assert "-# by hand" in shown[0]
    assert stack.host.files[live] == rendered
    assert not store.saved[1:]  # nothing generated the second time


def test_a_dry_run_changes_nothing(stack: FakeStack) -> None:
    store = MemoryStore({"admin_password": "pw"})
    result = run_deploy(stack.cfg, stack.host, store, dry_run=True)
    assert result.summary == "dry run: changes planned" and not store.saved
    assert [p for p in stack.host.files if not p.startswith("/tmp/mailu-flows-plan.abc123/")] == []
    up = [c for c in stack.runs() if c.startswith("docker compose")]
    assert len(up) == 1 and " up --dry-run --detach" in up[0] and "/tmp/mailu-flows-plan.abc123/" in up[0]
    assert stack.runs()[-1] == "rm -rf /tmp/mailu-flows-plan.abc123"


def test_a_damaged_release_record_read_with_the_facts_is_named_and_nothing_is_written(
    stack: FakeStack,
) -> None:
    store = MemoryStore({"admin_password": "pw"})
    run_deploy(stack.cfg, stack.host, store)
    damaged = f"{stack.cfg.paths.releases_dir}/20200101T000000000000Z/release.json"
    stack.host.files[damaged] = b"\x00garbage"
    stack.host.calls.clear()
    with pytest.raises(UnreadableRelease, match=r"20200101T000000000000Z/release\.json"):
        run_deploy(stack.cfg, stack.host, store)
    assert [c for c in stack.host.calls if c.kind == "write"] == []


def test_prometheus_documents_read_in_one_batch_each_keep_their_section(tmp_path: Path) -> None:
    """Prometheus answers without a final newline: each document must still end before the next fact."""
    docs = {}
    for name in ("targets", "rules"):
        doc = {"status": "success", "data": {name: [1, 2]}}
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))  # no newline at the end
        docs[f"prometheus-{name}"] = doc
    facts = [PrometheusApi(f"file://{tmp_path}/{name.split('-')[1]}.json", name) for name in docs]
    out = subprocess.run(["sh", "-c", fact_script(facts)], check=True, capture_output=True, text=True).stdout
    sections = split_sections(out)
    assert {f.name: f.parse(sections.get(f.name, "")) for f in facts} == docs
