"""Each stack's state on the host (release records, rollback journal, lock) is its own, derived from
the config in one place, and records from the shared legacy place are adopted only when they can be
told apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailu_core.config import StackConfig, load_stack_config
from mailu_core.render import render_stack, traefik_file_path
from mailu_core.stack_paths import (
    AdoptionRefused,
    LegacyJournal,
    LegacyRelease,
    StackIdentity,
    StackPaths,
    decide_adoption,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "inlock.ai.yaml"


def _cfg(name: str, **host: str) -> StackConfig:
    data = load_stack_config(EXAMPLE).model_dump(mode="json")
    data["name"] = name
    data["host"].update(host)
    return StackConfig.model_validate(data)


def test_two_stacks_in_one_root_have_disjoint_records_journals_and_locks() -> None:
    a = _cfg("mail", stack_root="/srv/apps").paths
    b = _cfg("other", stack_root="/srv/apps").paths
    assert a.releases_dir == "/srv/apps/.mailu-flows/stacks/mail/releases"
    assert a.journal_file == "/srv/apps/.mailu-flows/stacks/mail/rollback.json"
    assert a.lock_file == "/srv/apps/.mailu-flows/stacks/mail/stack.lock"
    assert b.releases_dir == "/srv/apps/.mailu-flows/stacks/other/releases"
    mine = {a.releases_dir, a.journal_file, a.lock_file, a.adopting_dir, a.state_dir}
    theirs = {b.releases_dir, b.journal_file, b.lock_file, b.adopting_dir, b.state_dir}
    assert not mine & theirs
    assert not any(p.startswith(b.state_dir + "/") for p in mine)
    # the legacy place is the one both shared
    assert a.legacy_releases_dir == b.legacy_releases_dir == "/srv/apps/.mailu-flows/releases"
    assert a.legacy_journal_file == "/srv/apps/.mailu-flows/rollback.json"
    assert a.legacy_lock_file == "/srv/apps/.mailu-flows.lock"


def test_the_same_name_in_two_roots_is_two_places() -> None:
    assert _cfg("mail", stack_root="/a").paths.state_dir != _cfg("mail", stack_root="/b").paths.state_dir


def test_the_identity_files_are_files_every_release_writes() -> None:
    cfg = _cfg("mail")
    files = render_stack(cfg).files
    assert cfg.host.compose_file in files and traefik_file_path(cfg) in files


P = StackPaths("/srv/apps", "mail")
ME = StackIdentity("compose/mailu.yml", "traefik/dynamic/mailu.yml")
MINE = frozenset({"compose/mailu.yml", "traefik/dynamic/mailu.yml", "compose/mailu-env/front.env"})
THEIRS = frozenset({"compose/other.yml", "traefik/dynamic/other.yml", "compose/other-env/front.env"})


def test_nothing_in_the_legacy_place_is_nothing_to_adopt() -> None:
    assert decide_adoption(P, ME, [], None) is None


def test_this_stacks_legacy_records_and_journal_are_adopted_and_another_stacks_are_left() -> None:
    legacy = [LegacyRelease("r1", MINE), LegacyRelease("r2", THEIRS), LegacyRelease("r3", MINE)]
    adoption = decide_adoption(P, ME, legacy, LegacyJournal("r3", None, finished=True))
    assert adoption is not None
    assert adoption.ours == ("r1", "r3") and adoption.foreign == ("r2",)
    assert adoption.move_journal
    text = "\n".join(adoption.notes)
    assert P.legacy_releases_dir in text and P.releases_dir in text and "r2" in text


def test_another_stacks_journal_stays_where_it_is() -> None:
    legacy = [LegacyRelease("r1", MINE), LegacyRelease("r2", THEIRS)]
    adoption = decide_adoption(P, ME, legacy, LegacyJournal("r2", "r0", finished=False))
    assert adoption is not None and adoption.ours == ("r1",) and not adoption.move_journal


def test_a_journal_naming_pruned_releases_is_ours_when_every_legacy_record_is() -> None:
    adoption = decide_adoption(P, ME, [LegacyRelease("r5", MINE)], LegacyJournal("r1", "r0", True))
    assert adoption is not None and adoption.move_journal


def test_only_another_stacks_records_start_this_stack_empty_and_say_so() -> None:
    adoption = decide_adoption(P, ME, [LegacyRelease("r2", THEIRS)], None)
    assert adoption is not None and adoption.ours == () and adoption.foreign == ("r2",)
    assert any("starts its own release history" in n for n in adoption.notes)


def test_an_interrupted_adoption_is_finished() -> None:
    adoption = decide_adoption(P, ME, [LegacyRelease("r3", MINE)], None, adopting=["r1"])
    assert adoption is not None and adoption.ours == ("r1", "r3")


@pytest.mark.parametrize(
    "files",
    [
        frozenset({"compose/mailu.yml", "traefik/dynamic/other.yml"}),  # our compose, not our Traefik file
        frozenset({"compose/other.yml", "traefik/dynamic/mailu.yml"}),
        frozenset(),  # no files at all: nothing says whose
    ],
)
def test_a_record_that_cannot_be_told_apart_is_refused_naming_the_paths_and_the_fix(
    files: frozenset[str],
) -> None:
    with pytest.raises(AdoptionRefused) as err:
        decide_adoption(P, ME, [LegacyRelease("r1", MINE), LegacyRelease("r9", files)], None)
    text = str(err.value)
    assert "'mail'" in text and "r9" in text and "r1" not in text.split("cannot tell")[0]
    assert P.legacy_releases_dir in text and P.releases_dir in text
    assert "Nothing was changed on the host" in text


@pytest.mark.parametrize(
    ("legacy", "journal"),
    [
        ([LegacyRelease("r2", THEIRS)], LegacyJournal("r1", None, finished=False)),  # names neither
        ([], LegacyJournal(None, None, finished=True)),  # a journal with no records at all
        (
            [LegacyRelease("r1", MINE), LegacyRelease("r2", THEIRS)],
            LegacyJournal("r1", "r2", finished=False),  # names one of each
        ),
    ],
)
def test_a_journal_that_cannot_be_attributed_is_refused(
    legacy: list[LegacyRelease], journal: LegacyJournal
) -> None:
    with pytest.raises(AdoptionRefused, match="rollback journal") as err:
        decide_adoption(P, ME, legacy, journal)
    assert P.legacy_journal_file in str(err.value) and P.journal_file in str(err.value)
