"""Where one stack keeps its state on the host, and how records from before stacks had their own
place are adopted (pure: no SSH; mailu_flows/deploy/releases.py reads and moves the files).

Several stacks may share one stack root (same `host.stack_root`, different `name`). Each keeps its
release records, rollback journal and host lock under its own directory, so one stack's rollback
never reads another's releases and one stack's lock never blocks another:

    <stack_root>/.mailu-flows/stacks/<name>/releases/<id>/...   release records
    <stack_root>/.mailu-flows/stacks/<name>/rollback.json       the rollback journal
    <stack_root>/.mailu-flows/stacks/<name>/stack.lock          the host lock (+ .holder)

Before that, every stack in a root shared `<stack_root>/.mailu-flows/releases/`,
`<stack_root>/.mailu-flows/rollback.json` and `<stack_root>/.mailu-flows.lock` (the legacy place).
A release record names the files it wrote; every release writes the stack's compose file and its
Traefik file, and two stacks in one root cannot share either (they would overwrite each other), so
those two paths tell whose a legacy record is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from mailu_core.errors import MailuFlowsError

STATE_DIR = ".mailu-flows"


@dataclass(frozen=True)
class StackPaths:
    """The host paths of one stack's own state (derived from host.stack_root and name only)."""

    stack_root: str
    name: str

    def _root(self) -> PurePosixPath:
        return PurePosixPath(self.stack_root)

    @property
    def state_dir(self) -> str:
        return str(self._root() / STATE_DIR / "stacks" / self.name)

    @property
    def releases_dir(self) -> str:
        return f"{self.state_dir}/releases"

    @property
    def adopting_dir(self) -> str:
        """Where an adoption gathers legacy records before it renames them into releases_dir (one
        rename, so an interrupted adoption is finished by the next run, never half-seen)."""
        return f"{self.state_dir}/releases.adopting"

    @property
    def journal_file(self) -> str:
        return f"{self.state_dir}/rollback.json"

    @property
    def lock_file(self) -> str:
        """The host lock every mutating flow of this stack takes (deploy, rollback, restore,
        dkim-publish, backup); other stacks in the same root have their own."""
        return f"{self.state_dir}/stack.lock"

    @property
    def legacy_releases_dir(self) -> str:
        return str(self._root() / STATE_DIR / "releases")

    @property
    def legacy_journal_file(self) -> str:
        return str(self._root() / STATE_DIR / "rollback.json")

    @property
    def legacy_lock_file(self) -> str:
        return str(self._root() / f"{STATE_DIR}.lock")


@dataclass(frozen=True)
class StackIdentity:
    """What marks a release record as this stack's: the stack-relative paths of its compose file and
    its Traefik file (both written by every release, and never shared by two stacks in one root)."""

    compose_file: str
    traefik_file: str


@dataclass(frozen=True)
class LegacyRelease:
    id: str
    files: frozenset[str]


@dataclass(frozen=True)
class LegacyJournal:
    from_release: str | None
    to_release: str | None
    finished: bool


@dataclass(frozen=True)
class Adoption:
    """What to move from the legacy place into this stack's own directory."""

    ours: tuple[str, ...]  # legacy release ids to move
    foreign: tuple[str, ...]  # legacy release ids of another stack: left in place
    move_journal: bool
    notes: tuple[str, ...]  # one line each, for the run's log


class AdoptionRefused(MailuFlowsError, RuntimeError):
    """The legacy records cannot be attributed safely; the message names the paths and the fix."""


def decide_adoption(
    paths: StackPaths,
    identity: StackIdentity,
    legacy: Iterable[LegacyRelease],
    journal: LegacyJournal | None,
    adopting: Iterable[str] = (),
) -> Adoption | None:
    """Which legacy records are this stack's, for a stack without its own releases directory yet.

    `adopting`: release ids an interrupted adoption already gathered (they were judged ours).
    None when there is nothing in the legacy place. Raises AdoptionRefused when a record or the
    journal cannot be told apart, rather than start this stack with an empty history."""
    ours: list[str] = sorted(set(adopting))
    foreign: list[str] = []
    unclear: list[str] = []
    for rel in sorted(legacy, key=lambda r: r.id):
        mine = identity.compose_file in rel.files, identity.traefik_file in rel.files
        if all(mine):
            ours.append(rel.id)
        elif not any(mine) and rel.files:
            foreign.append(rel.id)
        else:
            unclear.append(rel.id)
    if not ours and not foreign and not unclear and journal is None:
        return None
    fix = (
        f"Move this stack's records by hand (mkdir -p {paths.releases_dir} && mv "
        f"{paths.legacy_releases_dir}/<id> {paths.releases_dir}/, and the journal to "
        f"{paths.journal_file}), or, if none of them are this stack's, create the empty directory "
        f"{paths.releases_dir}; then run again. Nothing was changed on the host."
    )
    if unclear:
        raise AdoptionRefused(
            f"stack {paths.name!r}: legacy release record(s) {', '.join(unclear)} in "
            f"{paths.legacy_releases_dir} write only one of this stack's compose file "
            f"({identity.compose_file}) and Traefik file ({identity.traefik_file}), or no files at all: "
            f"cannot tell whose they are. {fix}"
        )
    move_journal = False
    if journal is not None:
        ids = {i for i in (journal.from_release, journal.to_release) if i}
        if ids & set(ours) and ids & set(foreign):
            whose = None
        elif ids & set(ours):
            whose = "ours"
        elif ids & set(foreign):
            whose = "foreign"
        elif ours and not foreign:
            whose = "ours"  # every legacy record is this stack's: so is the journal
        else:
            whose = None
        if whose is None:
            state = "finished" if journal.finished else "unfinished"
            raise AdoptionRefused(
                f"stack {paths.name!r}: the {state} rollback journal {paths.legacy_journal_file} names "
                f"releases {sorted(ids) or 'none'}, which do not tell which stack it belongs to "
                f"(this stack's legacy releases: {', '.join(ours) or 'none'}; another stack's: "
                f"{', '.join(foreign) or 'none'}). If it is this stack's, move it to {paths.journal_file}; "
                f"if it is stale, remove it. {fix}"
            )
        move_journal = whose == "ours"
    notes = []
    if ours:
        notes.append(
            f"adopted {len(ours)} release record(s) of stack {paths.name!r} from {paths.legacy_releases_dir} "
            f"into {paths.releases_dir}: {', '.join(ours)}"
        )
    if move_journal:
        notes.append(f"adopted the rollback journal {paths.legacy_journal_file} as {paths.journal_file}")
    if foreign:
        notes.append(
            f"left {len(foreign)} release record(s) in {paths.legacy_releases_dir} for another stack "
            f"(they write neither {identity.compose_file} nor {identity.traefik_file}): "
            f"{', '.join(foreign)}"
        )
    if journal is not None and not move_journal:
        notes.append(f"left the rollback journal {paths.legacy_journal_file} for the stack it names")
    if not ours:
        notes.append(f"stack {paths.name!r} starts its own release history in {paths.releases_dir}")
    return Adoption(tuple(ours), tuple(foreign), move_journal, tuple(notes))
