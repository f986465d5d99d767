"""The rollback package on a FakeHost (tests/core/rollback/world.py) and the in-memory DNS provider: the
plan's step objects and their order, each step checked before it is applied (a re-run of an
interrupted rollback skips what is done), the journal as older versions wrote it, and the journals
that are refused."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import ClassVar

import pytest

from mailu_core.config import StackConfig
from mailu_core.dns import Record
from mailu_flows.deploy.releases import Release
from mailu_flows.dns.memory import MemoryProvider, MemoryZone
from mailu_flows.rollback import (
    Journal,
    Mode,
    Rollback,
    RollbackContext,
    RollbackError,
    make_plan,
    read_journal,
)
from mailu_flows.rollback.steps import (
    CheckRelease,
    ComposeDown,
    DnsTeardown,
    MarkReleases,
    PutFilesBack,
    RemoveFiles,
    RestoreBackup,
    StartRelease,
    Step,
    StopContainers,
    TeardownChecks,
)
from tests.core.dns.conftest import example_config
from tests.core.rollback.world import TRAEFIK_FILE, World

CFG = example_config()
COMPOSE = "compose/mailu.yml"
ROUTES = "traefik/dynamic/mailu.yml"
HOST_ROUTES = "traefik/dynamic/routers.yml"  # the host's own routes file: never the stack's


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def release(rid: str, contents: dict[str, bytes], redis: str, status: str = "good") -> Release:
    return Release(
        id=rid,
        created=rid,
        config_sha256="x",
        images={"redis": f"redis@sha256:{redis}", "front": "front@sha256:f"},
        files={rel: {"sha256": sha(data), "mode": 0o644} for rel, data in contents.items()},
        status=status,  # type: ignore[arg-type]
    )


FILES_1 = {COMPOSE: b"services: {redis: one}\n", ROUTES: TRAEFIK_FILE}
FILES_2 = {COMPOSE: b"services: {redis: two}\n", ROUTES: TRAEFIK_FILE, "compose/extra.env": b"X=1\n"}


def two_releases(world: World) -> list[Release]:
    """Releases 1 and 2 recorded on the host; release 2 is live (its files and containers)."""
    one, two = release("1", FILES_1, "r1"), release("2", FILES_2, "r2")
    world.store_release(one, FILES_1)
    world.store_release(two, FILES_2)
    for rel, data in FILES_2.items():
        world.put(rel, data)
    world.run_release(two)
    return [one, two]


def engine(
    world: World, restore: Callable[[str], str] | None = None, provider: MemoryProvider | None = None
) -> Rollback:
    dns = None if provider is None else (lambda: provider)
    return Rollback(world.cfg, world.host, "rollback flow run test", restore=restore, provider=dns, wait_s=0)


def run(
    world: World,
    releases: list[Release],
    mode: Mode,
    journal: Journal | None = None,
    restore_backup: str | None = None,
    restore: Callable[[str], str] | None = None,
    provider: MemoryProvider | None = None,
) -> Rollback:
    """The plan made from `releases` and `journal`, executed on the world's host."""
    rb = engine(world, restore, provider)
    rb.execute(make_plan(world.cfg, mode, releases, journal, restore_backup), releases, journal)
    return rb


def results(rb: Rollback) -> dict[str, str]:
    return {r.step: r.result for r in rb.rows}


# --- the plan: step objects, in order ------------------------------------------------------------


def test_the_previous_release_plan_is_its_steps_in_order() -> None:
    world = World(CFG)
    one, two = two_releases(world)
    plan = make_plan(CFG, "previous-release", [one, two], None, restore_backup="bk-1")
    assert [type(s) for s in plan.steps] == [
        StopContainers,
        RestoreBackup,
        PutFilesBack,
        StartRelease,
        CheckRelease,
        MarkReleases,
    ]
    assert [s.key for s in plan.steps] == ["stop", "restore", "files", "containers", "checks", "mark"]
    files = plan.steps[2]
    assert isinstance(files, PutFilesBack) and (files.frm.id, files.to.id) == ("2", "1")
    assert files.gone == ["compose/extra.env"]
    plain = make_plan(CFG, "previous-release", [one, two], None)
    assert [type(s) for s in plain.steps] == [PutFilesBack, StartRelease, CheckRelease, MarkReleases]
    assert world.host.calls == []  # making a plan reads and writes nothing


def test_the_teardown_plan_is_its_steps_in_order() -> None:
    world = World(CFG)
    releases = two_releases(world)
    plan = make_plan(CFG, "teardown", releases, None, restore_backup="bk-1")
    assert [type(s) for s in plan.steps] == [
        ComposeDown,
        RestoreBackup,
        DnsTeardown,
        RemoveFiles,
        TeardownChecks,
    ]
    assert [s.key for s in plan.steps] == ["stop", "restore", "dns", "files", "checks"]
    remove = plan.steps[3]
    assert isinstance(remove, RemoveFiles) and remove.files == (ROUTES,)
    assert plan.remove_files == [ROUTES]
    assert "| 3 | DNS | delete the MX of inlock.ai" in plan.markdown(CFG.hostname)


# --- previous-release on the host ----------------------------------------------------------------


def test_previous_release_puts_files_and_containers_back_and_marks_the_releases() -> None:
    world = World(CFG)
    releases = two_releases(world)
    rb = run(world, releases, "previous-release")
    assert [(r.step, r.result) for r in rb.rows] == [
        ("put files back", "done"),
        ("containers", "done"),
        ("container redis", "ok"),
        ("container front", "ok"),
        ("traefik routers mailu-web", "ok"),
        ("traefik services mailu-web", "ok"),
        ("mark releases", "done"),
    ]
    assert world.host.files[world.abs(COMPOSE)] == FILES_1[COMPOSE]
    assert world.abs("compose/extra.env") not in world.host.files
    assert world.containers["redis"].image == "redis@sha256:r1"
    assert len(world.commands("docker", "compose", "up", "--wait", "--remove-orphans")) == 1
    status = {
        rid: json.loads(world.host.files[f"{CFG.paths.releases_dir}/{rid}/release.json"])["status"]
        for rid in "12"
    }
    assert status == {"1": "good", "2": "rolled-back"}
    journal = read_journal(world.host, CFG.paths.journal_file)
    assert journal is not None and journal.finished
    assert journal.done == ["files", "containers", "checks", "mark"]


@pytest.fixture
def rolled_back() -> tuple[World, list[Release], Journal]:
    """A previous-release rollback that ran to the end; its journal and the host as it left them."""
    world = World(CFG)
    releases = two_releases(world)
    run(world, releases, "previous-release")
    journal = read_journal(world.host, CFG.paths.journal_file)
    assert journal is not None
    return world, releases, journal


def test_a_finished_rollback_run_again_finds_every_step_done(
    rolled_back: tuple[World, list[Release], Journal],
) -> None:
    world, releases, journal = rolled_back
    world.host.calls.clear()
    plan = make_plan(CFG, "previous-release", releases, journal)
    assert plan.journal_applies and (plan.from_release, plan.to_release) == ("2", "1")
    rb = engine(world)
    rb.execute(plan, releases, journal)
    assert {r.result for r in rb.rows} <= {"already", "ok"}, rb.rows
    assert not world.commands("docker", "compose")  # nothing stopped, started or recreated
    assert world.writes() == []  # no file and no release record written


def test_an_interrupted_rollback_skips_the_steps_done_and_applies_the_rest() -> None:
    """Killed after compose up: the files and containers are the target's, the releases not marked."""
    world = World(CFG)
    one, two = two_releases(world)
    for rel, data in FILES_1.items():
        world.put(rel, data)
    world.host.files.pop(world.abs("compose/extra.env"))
    world.run_release(one)
    journal = Journal(
        "previous-release", "2", "1", None, "rollback flow run killed", "t0", ["files", "containers"]
    )
    world.host.files[CFG.paths.journal_file] = json.dumps(asdict(journal)).encode()
    plan = make_plan(CFG, "previous-release", [one, two], journal)
    assert plan.journal_applies
    rb = engine(world)
    rb.execute(plan, [one, two], journal)
    rows = {r.step: r.result for r in rb.rows}
    assert rows["put files back"] == "already" and rows["containers"] == "already"
    assert rows["mark releases"] == "done"
    assert not world.commands("docker", "compose")
    assert world.writes() == [f"{CFG.paths.releases_dir}/2/release.json"]
    done = read_journal(world.host, CFG.paths.journal_file)
    assert done is not None and done.finished and done.run == "rollback flow run killed"


def test_a_file_changed_since_the_interrupted_run_is_written_and_the_containers_are_started_again() -> None:
    world = World(CFG)
    one, two = two_releases(world)
    world.put(COMPOSE, FILES_1[COMPOSE])
    world.put(ROUTES, b"edited by hand\n")
    world.host.files.pop(world.abs("compose/extra.env"))
    world.run_release(one)
    journal = Journal("previous-release", "2", "1", None, "run-a", "t0", ["files", "containers"])
    rb = engine(world)
    rb.execute(make_plan(CFG, "previous-release", [one, two], journal), [one, two], journal)
    rows = {r.step: (r.result, r.detail) for r in rb.rows}
    assert rows["put files back"] == ("done", f"wrote {ROUTES}")
    assert rows["containers"][0] == "already"  # compose up ran and recreated nothing
    assert len(world.commands("docker", "compose", "up")) == 1


class Counting(Step):
    """A step that says it is done (or not) and counts its applies."""

    key: ClassVar[str] = "counting"
    title: ClassVar[str] = "counting"

    def __init__(self, done: bool) -> None:
        self.done, self.applied = done, 0

    @property
    def detail(self) -> str:
        return "counts"

    def check(self, ctx: RollbackContext) -> bool:
        return self.done

    def apply(self, ctx: RollbackContext) -> None:
        self.applied += 1
        ctx.row(self.title, "done", "applied")


def test_a_step_whose_check_says_done_is_not_applied() -> None:
    world = World(CFG)
    one, two = two_releases(world)
    plan = make_plan(CFG, "previous-release", [one, two], None)
    done, todo = Counting(True), Counting(False)
    plan.steps = [done, todo]
    rb = engine(world)
    rb.execute(plan, [one, two], None)
    assert (done.applied, todo.applied) == (0, 1)
    assert [(r.result, r.detail) for r in rb.rows] == [("already", "nothing to do"), ("done", "applied")]
    journal = read_journal(world.host, CFG.paths.journal_file)
    assert journal is not None and journal.done == ["counting"] and journal.finished


# --- the journal on the host ---------------------------------------------------------------------

OLD_JOURNAL = (
    b'{"done": ["stop", "restore"], "finished": null, "from_release": "2", "mode": "teardown", '
    b'"restore_backup": "bk-1", "run": "rollback (flow run old-otter)", "started": "2026-11-30T01:00:00Z", '
    b'"to_release": null}\n'
)  # as the single-module rollback of earlier versions wrote it, interrupted after the restore


def b64(doc: object) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def zone(cfg: StackConfig) -> MemoryZone:
    d, h = cfg.mailu.domain, cfg.hostname
    z = MemoryZone(cfg.dns.zone)
    ours = [
        Record(d, "MX", 600, (f"10 {h}",)),
        Record(h, "A", 600, ("203.0.113.10",)),
        Record(d, "TXT", 600, ("v=spf1 mx ~all",)),
        Record(f"_dmarc.{d}", "TXT", 600, ("v=DMARC1; p=quarantine",)),
        Record(f"dkim._domainkey.{d}", "TXT", 600, ("v=DKIM1; k=rsa; p=AAAA",)),
    ]
    z.records = [(r, "inlock-ai") for r in ours]
    z.add_foreign(Record(f"www.{d}", "A", 600, ("203.0.113.9",)))
    return z


class Restores:
    """The restore the flow wires in, recording the backups it was asked to restore."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, backup_id: str) -> str:
        self.asked.append(backup_id)
        return f"restored from {backup_id}; safety backup of the volumes before: safety-1"


def torn_world() -> tuple[World, list[Release], MemoryProvider]:
    world = World(CFG)
    releases = two_releases(world)
    world.put(HOST_ROUTES, b"http: {}\n")
    world.volumes = {CFG.volumes.mail, CFG.volumes.dkim, "someone-elses-volume"}
    return world, releases, MemoryProvider(zone(CFG), owner="inlock-ai")


def test_teardown_removes_containers_dns_and_routes_and_keeps_volumes_and_txt() -> None:
    world, releases, provider = torn_world()
    restores = Restores()
    rb = run(world, releases, "teardown", restore_backup="bk-1", provider=provider, restore=restores)
    assert restores.asked == ["bk-1"]
    rows = results(rb)
    assert rows["compose down"] == rows["DNS"] == rows["Traefik and monitoring files"] == "done"
    assert {r.result for r in rb.rows if r.step.startswith("check")} == {"ok"}
    assert world.containers == {} and len(world.commands("docker", "compose", "down")) == 1
    assert not world.commands("down", "-v")
    left = {(r.name, r.type) for r, _ in provider.state.records}
    assert left == {("inlock.ai", "TXT"), ("_dmarc.inlock.ai", "TXT"), ("dkim._domainkey.inlock.ai", "TXT"),
                    ("www.inlock.ai", "A")}  # fmt: skip
    assert world.abs(ROUTES) not in world.host.files and world.abs(HOST_ROUTES) in world.host.files
    assert world.volumes == {CFG.volumes.mail, CFG.volumes.dkim, "someone-elses-volume"}

    # run again: every step finds its work done, the backup is not restored a second time
    journal = read_journal(world.host, CFG.paths.journal_file)
    assert journal is not None and journal.done == ["stop", "restore", "dns", "files", "checks"]
    world.host.calls.clear()
    writes = provider.state.writes
    again = run(world, releases, "teardown", journal, restore_backup="bk-1", provider=provider,
                restore=restores)  # fmt: skip
    assert restores.asked == ["bk-1"] and provider.state.writes == writes
    assert {r.result for r in again.rows} <= {"already", "ok"}, again.rows
    assert not world.commands("docker", "compose") and not world.commands("rm")


def test_an_interrupted_teardown_journal_of_an_earlier_version_is_finished_without_a_second_restore() -> None:
    world, releases, provider = torn_world()
    world.containers.clear()  # it was interrupted after compose down and the restore
    world.host.files[CFG.paths.journal_file] = OLD_JOURNAL
    restores = Restores()
    rb = engine(world, restore=restores, provider=provider)
    world.host.on(["test", "-d", CFG.paths.releases_dir])
    listing = [f"{CFG.paths.releases_dir}/{r.id}/release.json {b64(asdict(r))}\n" for r in releases]
    world.host.on(re.compile(r"^for f in .*release\.json"), stdout="".join(listing))
    plan, read, journal = rb.read_plan("teardown", "bk-1")
    assert plan.journal_applies and plan.skip_restore
    rb.execute(plan, read, journal)
    assert restores.asked == []
    rows = {r.step: (r.result, r.detail) for r in rb.rows}
    assert rows["compose down"][0] == "already"
    assert rows["restore volumes"] == ("already", "backup bk-1 restored by run rollback (flow run old-otter)")
    assert rows["DNS"][0] == "done"
    saved = json.loads(world.host.files[CFG.paths.journal_file])
    assert sorted(saved) == sorted(json.loads(OLD_JOURNAL))  # the same format, written back
    assert saved["done"] == ["stop", "restore", "dns", "files", "checks"] and saved["finished"]
    assert saved["run"] == "rollback (flow run old-otter)"


@pytest.mark.parametrize(
    ("journal", "mode", "refusal"),
    [
        (Journal("teardown", "2", None, None, "run-t", "t0", ["stop"], "t1"), "previous-release",
         r"torn down by rollback run run-t \(finished\).*deploy flow"),
        (Journal("everything", "2", None, None, "run-x", "t0", []), "teardown",
         r"mode 'everything' \(run run-x\), which this version does not know"),
        (Journal("everything", "2", "1", None, "run-x", "t0", []), "previous-release",
         r"mode 'everything'.*move the journal aside"),
    ],
    ids=["torn-down", "unknown-mode-teardown", "unknown-mode-previous"],
)  # fmt: skip
def test_a_blocking_or_unknown_journal_is_refused_before_anything_changes(
    journal: Journal, mode: Mode, refusal: str
) -> None:
    world = World(CFG)
    releases = two_releases(world)
    world.host.files[CFG.paths.journal_file] = json.dumps(asdict(journal)).encode()
    world.host.calls.clear()
    with pytest.raises(RollbackError, match=refusal):
        make_plan(CFG, mode, releases, read_journal(world.host, CFG.paths.journal_file))
    assert not [c for c in world.host.calls if c.kind in ("write", "run")]
