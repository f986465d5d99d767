"""The rollback's pure logic: type-to-confirm, which release goes back, resuming from the journal,
which files a teardown removes, which DNS records it deletes, and how Traefik's view is judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mailu_core.config import StackConfig, stack_config_from_mapping
from mailu_core.dns import Record
from mailu_flows.deploy.releases import Release
from mailu_flows.dns.provider import ProviderRecord
from mailu_flows.rollback import (
    ConfirmationRefused,
    Journal,
    NoPreviousRelease,
    RollbackError,
    check_confirmation,
    dns_teardown_plan,
    kept_records,
    mailu_objects,
    make_plan,
    other_routers,
    select_releases,
    teardown_files,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "inlock.ai.yaml"


def config(monitoring: bool = False, **mailu: Any) -> StackConfig:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["mailu"].update(mailu)
    data.setdefault("monitoring", {})["enabled"] = monitoring
    return stack_config_from_mapping(data, source="example")


@pytest.fixture
def cfg() -> StackConfig:
    return config()


def rel(rid: str, status: str = "good", files: dict[str, str] | None = None, redis: str = "r1") -> Release:
    names = files or {"compose/mailu.yml": "c", "traefik/dynamic/mailu.yml": "t"}
    return Release(
        id=rid,
        created=rid,
        config_sha256="x",
        images={"redis": redis, "front": "f1"},
        files={k: {"sha256": v, "mode": 0o644} for k, v in names.items()},
        status=status,  # type: ignore[arg-type]
    )


# --- confirmation --------------------------------------------------------------------------------


@pytest.mark.parametrize("confirm", [None, "", "yes", "inlock.ai", "webmail.inlock.ai", "mail.inlock.ai x"])
def test_confirmation_must_name_the_mail_hostname(cfg: StackConfig, confirm: str | None) -> None:
    with pytest.raises(ConfirmationRefused) as err:
        check_confirmation(cfg, "teardown", confirm)
    text = str(err.value)
    assert text.startswith("confirm:")
    assert repr(cfg.hostname) in text
    assert "Nothing was done" in text


@pytest.mark.parametrize(
    "confirm", ["mail.inlock.ai", "MAIL.inlock.ai", "mail.inlock.ai.", " mail.inlock.ai "]
)
def test_confirmation_accepts_the_hostname_in_any_case(cfg: StackConfig, confirm: str) -> None:
    assert cfg.hostname == "mail.inlock.ai"
    check_confirmation(cfg, "previous-release", confirm)


def test_an_unknown_mode_is_refused(cfg: StackConfig) -> None:
    with pytest.raises(RollbackError, match="mode: 'everything'"):
        check_confirmation(cfg, "everything", cfg.hostname)


# --- which release ---------------------------------------------------------------------------------


def test_previous_release_is_the_last_good_one_before_the_current() -> None:
    releases = [rel("1"), rel("2", "rolled-back"), rel("3", "failed"), rel("4"), rel("5", "rolled-back")]
    frm, to, resumed = select_releases(releases, None)
    assert (frm.id, to.id, resumed) == ("4", "1", False)


def test_no_previous_good_release_is_a_clear_error() -> None:
    with pytest.raises(NoPreviousRelease, match="no good release before the current 2"):
        select_releases([rel("1", "failed"), rel("2")], None)
    with pytest.raises(NoPreviousRelease, match="no good release at all"):
        select_releases([], None)


def test_a_named_release_must_exist_and_be_good() -> None:
    releases = [rel("1"), rel("2", "failed"), rel("3"), rel("4")]
    assert select_releases(releases, None, "1")[1].id == "1"
    with pytest.raises(NoPreviousRelease, match="not a release"):
        select_releases(releases, None, "9")
    with pytest.raises(NoPreviousRelease, match="failed, not good"):
        select_releases(releases, None, "2")
    with pytest.raises(NoPreviousRelease, match="already the current"):
        select_releases(releases, None, "4")


def _journal(mode: str, frm: str | None, to: str | None, done: list[str], finished: bool) -> Journal:
    return Journal(mode, frm, to, None, "run-a", "t0", done, "t1" if finished else None)


def test_an_interrupted_previous_release_is_resumed_with_the_same_releases() -> None:
    # interrupted after marking: the current good release is already the target
    releases = [rel("1"), rel("2"), rel("3", "rolled-back")]
    frm, to, resumed = select_releases(releases, _journal("previous-release", "3", "2", ["files"], False))
    assert (frm.id, to.id, resumed) == ("3", "2", True)
    # interrupted before marking
    releases = [rel("1"), rel("2"), rel("3")]
    frm, to, resumed = select_releases(releases, _journal("previous-release", "3", "2", ["files"], False))
    assert (frm.id, to.id, resumed) == ("3", "2", True)


def test_a_finished_previous_release_run_twice_does_not_go_back_a_second_step() -> None:
    releases = [rel("1"), rel("2"), rel("3", "rolled-back")]
    done = _journal("previous-release", "3", "2", ["files", "containers", "checks", "mark"], True)
    frm, to, resumed = select_releases(releases, done)
    assert (frm.id, to.id, resumed) == ("3", "2", True)
    # going further back is asked for by name
    frm, to, resumed = select_releases(releases, done, "1")
    assert (frm.id, to.id, resumed) == ("2", "1", False)


def test_a_deploy_after_the_rollback_makes_the_journal_stale() -> None:
    releases = [rel("1"), rel("2"), rel("3", "rolled-back"), rel("4")]
    done = _journal("previous-release", "3", "2", ["mark"], True)
    frm, to, resumed = select_releases(releases, done)
    assert (frm.id, to.id, resumed) == ("4", "2", False)


def test_previous_release_after_a_teardown_is_refused(cfg: StackConfig) -> None:
    releases = [rel("1"), rel("2")]
    torn = _journal("teardown", "2", None, ["stop", "dns", "files", "checks"], True)
    with pytest.raises(RollbackError, match=r"torn down.*deploy flow"):
        make_plan(cfg, "previous-release", releases, torn)
    # after a redeploy (a new release) it is allowed again
    plan = make_plan(cfg, "previous-release", [*releases, rel("3")], torn)
    assert (plan.from_release, plan.to_release) == ("3", "2")


def test_the_restore_is_not_repeated_by_a_rerun_of_the_same_rollback(cfg: StackConfig) -> None:
    releases = [rel("1"), rel("2")]
    journal = Journal("teardown", "2", None, "bk-1", "run-a", "t0", ["stop", "restore"], None)
    plan = make_plan(cfg, "teardown", releases, journal, restore_backup="bk-1")
    assert plan.journal_applies and plan.skip_restore
    assert "already restored" in plan.markdown(cfg.hostname)
    other = make_plan(cfg, "teardown", releases, journal, restore_backup="bk-2")
    assert not other.skip_restore


def test_previous_release_plan_lists_its_steps_in_order(cfg: StackConfig) -> None:
    releases = [
        rel("1"),
        rel("2", files={"compose/mailu.yml": "c2", "traefik/dynamic/mailu.yml": "t", "x/new.yml": "n"}),
    ]
    releases[1].images["redis"] = "r2"
    plan = make_plan(cfg, "previous-release", releases, None, restore_backup="bk")
    assert [s.key for s in plan.steps] == ["stop", "restore", "files", "containers", "checks", "mark"]
    md = plan.markdown(cfg.hostname)
    assert "going back from `2` to `1`" in md
    assert "remove x/new.yml" in md
    assert "(images that differ from 2: redis)" in md
    plain = make_plan(cfg, "previous-release", releases, None)
    assert [s.key for s in plain.steps] == ["files", "containers", "checks", "mark"]


# --- teardown: files ---------------------------------------------------------------------------------


def test_teardown_removes_every_release_file_under_traefik_and_monitoring_dirs_only() -> None:
    cfg = config(monitoring=True)
    old = rel(
        "1",
        files={
            "compose/mailu.yml": "c",
            "compose/mailu-env/front.env": "e",
            "traefik/dynamic/mailu-old-name.yml": "t0",
            "monitoring/prometheus/rules/mailu-old.yml": "r0",
        },
    )
    releases = [old, rel("2")]
    files = teardown_files(cfg, releases)
    assert "traefik/dynamic/mailu.yml" in files
    assert "traefik/dynamic/mailu-old-name.yml" in files  # written by an older release
    assert "monitoring/prometheus/rules/mailu-old.yml" in files
    assert any(f.startswith("monitoring/prometheus/file_sd/") for f in files)  # rendered now
    assert not any(f.startswith("compose/") for f in files)
    assert "traefik/dynamic/routers.yml" not in files  # the host's own, never in a release


def test_teardown_files_without_monitoring_is_only_mailus_traefik_file(cfg: StackConfig) -> None:
    assert teardown_files(cfg, []) == ["traefik/dynamic/mailu.yml"]


# --- teardown: DNS -----------------------------------------------------------------------------------


def _zone(cfg: StackConfig, foreign_mx: bool = False) -> list[ProviderRecord]:
    d, h = cfg.mailu.domain, cfg.hostname
    owned = [
        Record(d, "MX", 600, (f"10 {h}",)),
        Record(h, "A", 600, ("203.0.113.5",)),
        Record(h, "AAAA", 600, ("2001:db8::5",)),
        Record(d, "TXT", 600, ("v=spf1 mx ~all",)),
        Record(f"_dmarc.{d}", "TXT", 600, ("v=DMARC1; p=quarantine",)),
        Record(f"dkim._domainkey.{d}", "TXT", 600, ("v=DKIM1; k=rsa; p=AAAA",)),
    ]
    foreign = [Record(f"www.{d}", "A", 600, ("203.0.113.9",)), Record(d, "TXT", 600, ("google-site=x",))]
    if foreign_mx:
        foreign = [Record(f"other.{d}", "MX", 600, ("10 mx.example.net",)), *foreign]
    return [ProviderRecord(r, True) for r in owned] + [ProviderRecord(r, False) for r in foreign]


def test_dns_teardown_deletes_mx_first_then_the_mail_host_a_aaaa_and_nothing_else(cfg: StackConfig) -> None:
    plan, notes = dns_teardown_plan(cfg, "inlock.ai", _zone(cfg))
    assert [(c.kind, c.record.name, c.record.type) for c in plan.changes] == [
        ("delete", "inlock.ai", "MX"),
        ("delete", "mail.inlock.ai", "A"),
        ("delete", "mail.inlock.ai", "AAAA"),
    ]
    assert notes == []
    kept = kept_records(cfg, _zone(cfg))
    assert [(r.name, r.key[2]) for r in kept] == [
        ("_dmarc.inlock.ai", "dmarc1"),
        ("dkim._domainkey.inlock.ai", "dkim1"),
        ("inlock.ai", "spf1"),
    ]


def test_dns_teardown_leaves_foreign_records_in_its_slots(cfg: StackConfig) -> None:
    zone = _zone(cfg)
    zone[0] = ProviderRecord(zone[0].record, False)  # an MX someone else manages
    plan, notes = dns_teardown_plan(cfg, "inlock.ai", zone)
    assert [c.record.type for c in plan.changes] == ["A", "AAAA"]
    assert len(notes) == 1 and "not managed by this stack" in notes[0]
    # a second run over the emptied zone has nothing to do
    rest = [p for p in zone if not (p.owned and p.record.type in ("A", "AAAA"))]
    assert dns_teardown_plan(cfg, "inlock.ai", rest)[0].empty


# --- teardown: Traefik's view ------------------------------------------------------------------------


RAW: dict[str, Any] = {
    "routers": {
        "mailu-admin@file": {"service": "mailu-web", "status": "enabled"},
        "whoami@file": {"service": "whoami", "status": "enabled"},
        "api@internal": {"service": "api@internal", "status": "enabled"},
        "sneaky@file": {"service": "mailu-web-2", "status": "enabled"},
    },
    "services": {
        "mailu-web@file": {"loadBalancer": {"servers": [{"url": "http://mailu-lab-front:80"}]}},
        "mailu-web-2@file": {"loadBalancer": {"servers": [{"url": "http://mailu-lab-front:80"}]}},
        "whoami@file": {"loadBalancer": {"servers": [{"url": "http://whoami:80"}]}},
    },
    "tcpRouters": {"mailu-smtp@file": {"service": "mailu-smtp", "status": "enabled"}},
}


def test_mailu_objects_are_found_by_name_and_by_what_they_route_to() -> None:
    names = {("routers", "mailu-admin"), ("tcpRouters", "mailu-smtp"), ("services", "mailu-web")}
    found = mailu_objects(RAW, names, "mailu-lab-front")
    assert "routers mailu-admin@file" in found
    assert "tcpRouters mailu-smtp@file" in found
    assert "services mailu-web-2@file" in found
    assert "routers sneaky@file" in found  # routes to a service pointing at Mailu's front
    assert not any("whoami" in f for f in found)
    others = other_routers(RAW, found)
    assert others == {"routers whoami@file": "enabled", "routers api@internal": "enabled"}
    assert mailu_objects({"routers": {"whoami@file": {"service": "whoami"}}}, names, "mailu-lab-front") == []
