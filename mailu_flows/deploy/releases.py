"""Release records on the host: every deploy that changes something leaves a release directory with
the files it rendered, the files it replaced, the image digests and the config checksum, so that the
previous good release can be put back, and every file we replaced can be restored. Each stack has
its own (StackConfig.paths, mailu_core/stack_paths.py), apart from other stacks in the same root:

    <releases_dir>/<id>/release.json
    <releases_dir>/<id>/files/<path>      (what this release wrote)
    <releases_dir>/<id>/replaced/<path>   (what was there before, if not ours)

with <releases_dir> = <stack_root>/.mailu-flows/stacks/<name>/releases. Records from before (in
<stack_root>/.mailu-flows/releases, shared by every stack of the root) are adopted by the first
deploy or rollback under the stack's lock (adopt_legacy_records).
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Literal

from mailu_core.config import StackConfig
from mailu_core.render import traefik_file_path
from mailu_core.stack_paths import (
    Adoption,
    LegacyJournal,
    LegacyRelease,
    StackIdentity,
    StackPaths,
    decide_adoption,
)
from mailu_flows.deploy.hoststate import Fact
from mailu_flows.host import Host
from mailu_flows.remote import HostBusy, HostLock, RemoteError

ReleaseStatus = Literal["pending", "good", "failed", "rolled-back"]
KEEP_RELEASES = 5


@dataclass
class Release:
    id: str
    created: str
    config_sha256: str
    images: dict[str, str]
    files: dict[str, dict[str, str | int]]  # relpath -> {"sha256":..., "mode":...}
    status: ReleaseStatus = "pending"
    previous_good: str | None = None
    replaced: list[str] = field(default_factory=list)
    note: str = ""


def new_release_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def list_releases(host: Host, paths: StackPaths) -> list[Release]:
    """This stack's release records, oldest first (one round trip)."""
    return _read_releases(host, [paths.releases_dir])


class UnreadableRelease(RemoteError):
    """A release record on the host is not a release (garbage bytes, cut short): named, never guessed
    around, so that a deploy or rollback does not pick the wrong previous release."""


def _records_script(dirs: list[str]) -> str:
    """Prints every record under `dirs`, one line each: `<path> <base64 of its bytes>`."""
    loop = " ".join(f"{shlex.quote(d)}/*/release.json" for d in dirs)
    return f'for f in {loop}; do [ -f "$f" ] && printf "%s " "$f" && base64 -w0 < "$f" && echo; done; true'


def parse_records(label: str, output: str) -> list[Release]:
    """The records `_records_script` printed, oldest first: a damaged record is told apart from the
    others and named, whatever bytes it holds."""
    releases = []
    for line in output.splitlines():
        if not line.strip():
            continue
        path, _, encoded = line.rpartition(" ")
        try:
            releases.append(Release(**json.loads(base64.b64decode(encoded))))
        except (ValueError, TypeError) as exc:
            raise UnreadableRelease(
                f"release record {path} on {label} is unreadable ({type(exc).__name__}); nothing "
                f"was changed. Move it aside (mv {shlex.quote(path)} {shlex.quote(path + '.unreadable')}) "
                "or put it back from a backup, then run again"
            ) from None
    return sorted(releases, key=lambda r: r.id)


def _read_releases(host: Host, dirs: list[str]) -> list[Release]:
    """Every record under `dirs` (one round trip)."""
    return parse_records(host.label, host.run(_records_script(dirs)).text())


@dataclass(frozen=True)
class RecordsRead:
    """The `StackReleases` fact: whether the stack's releases directory exists (when it does, there is
    nothing to adopt from the legacy place), and its records as printed, parsed when they are used
    (`parse_records`), so that a damaged one is named where the deploy reads its releases."""

    dir_exists: bool
    output: str


@dataclass(frozen=True)
class StackReleases(Fact[RecordsRead]):
    """This stack's release records, as a fact of the deploy's one round trip."""

    releases_dir: str
    name: str = "releases"

    def command(self) -> str:
        d = shlex.quote(self.releases_dir)
        return (
            f"if [ -d {d} ]; then echo present; {_records_script([self.releases_dir])}; else echo absent; fi"
        )

    def parse(self, output: str) -> RecordsRead:
        first, _, rest = output.partition("\n")
        return RecordsRead(first.strip() == "present", rest)


def last_good(releases: list[Release]) -> Release | None:
    good = [r for r in releases if r.status == "good"]
    return good[-1] if good else None


def save_release(host: Host, paths: StackPaths, release: Release) -> None:
    path = f"{paths.releases_dir}/{release.id}/release.json"
    host.write_file(path, json.dumps(asdict(release), sort_keys=True).encode() + b"\n", mode=0o600)


def start_release(
    host: Host,
    paths: StackPaths,
    release: Release,
    contents: dict[str, bytes],
    replaced: list[str],
) -> None:
    """Create the release directory: copy what we are about to replace, then store what we write."""
    base = f"{paths.releases_dir}/{release.id}"
    dirs = {f"{base}/files/{PurePosixPath(p).parent}" for p in contents}
    dirs |= {f"{base}/replaced/{PurePosixPath(p).parent}" for p in replaced}
    script = ["umask 077", "mkdir -p " + " ".join(shlex.quote(d) for d in sorted(dirs | {base}))]
    for rel in replaced:
        # a file the config places by absolute path stays there
        live = str(PurePosixPath(paths.stack_root) / rel)
        script.append(f"cp -p {shlex.quote(live)} {shlex.quote(f'{base}/replaced/{rel}')}")
    host.run(" && ".join(script))
    for rel, data in contents.items():
        host.write_file(f"{base}/files/{rel}", data, mode=0o600)
    release.replaced = list(replaced)
    save_release(host, paths, release)


def release_file(host: Host, paths: StackPaths, release_id: str, rel: str) -> bytes | None:
    return host.read_file(f"{paths.releases_dir}/{release_id}/files/{rel}")


def replaced_file_path(paths: StackPaths, release_id: str, rel: str) -> str:
    """Where a release kept the file it replaced (`cp -p`, with its mode)."""
    return f"{paths.releases_dir}/{release_id}/replaced/{rel}"


def prune_releases(host: Host, paths: StackPaths, releases: list[Release], keep: int = KEEP_RELEASES) -> None:
    """Keep the newest `keep` releases and always the newest good one."""
    good = last_good(releases)
    old = [r for r in releases[:-keep] if good is None or r.id != good.id] if len(releases) > keep else []
    if old:
        host.run(["rm", "-rf", *[f"{paths.releases_dir}/{r.id}" for r in old]])


# --- records from before each stack had its own place --------------------------------------------


def stack_identity(cfg: StackConfig) -> StackIdentity:
    """The two files that tell this stack's legacy release records from another stack's."""
    return StackIdentity(cfg.host.compose_file, traefik_file_path(cfg))


@dataclass
class StackRecords:
    """This stack's releases and the journal file to read, as they are, or (read-only) as they will be
    once the legacy records are adopted; `pending` says what that adoption will move."""

    releases: list[Release]
    journal_file: str
    pending: Adoption | None


def _legacy_journal(data: bytes | None) -> LegacyJournal | None:
    if data is None:
        return None
    try:
        raw = json.loads(data)
        return LegacyJournal(raw.get("from_release"), raw.get("to_release"), bool(raw.get("finished")))
    except (ValueError, AttributeError):
        return LegacyJournal(None, None, False)  # unreadable: it cannot say whose it is


def _pending_adoption(host: Host, cfg: StackConfig) -> tuple[Adoption | None, list[Release], set[str]]:
    """(adoption, this stack's releases it will move or has gathered, ids still in the legacy dir);
    no adoption when the stack already has its own releases directory or the legacy place is empty.
    Raises AdoptionRefused (before anything changes) when the legacy records cannot be attributed."""
    paths = cfg.paths
    if host.run(["test", "-d", paths.releases_dir], check=False).ok:
        return None, [], set()
    legacy = _read_releases(host, [paths.legacy_releases_dir])
    gathered = _read_releases(host, [paths.adopting_dir])
    adoption = decide_adoption(
        paths,
        stack_identity(cfg),
        [LegacyRelease(r.id, frozenset(r.files)) for r in legacy],
        _legacy_journal(host.read_file(paths.legacy_journal_file)),
        [r.id for r in gathered],
    )
    if adoption is None:
        return None, [], set()
    ours = sorted((r for r in [*legacy, *gathered] if r.id in adoption.ours), key=lambda r: r.id)
    return adoption, ours, {r.id for r in legacy}


def read_stack_records(host: Host, cfg: StackConfig) -> StackRecords:
    """This stack's records, read-only (no lock needed): legacy records it will adopt count as its own."""
    paths = cfg.paths
    adoption, ours, _ = _pending_adoption(host, cfg)
    if adoption is None:
        return StackRecords(list_releases(host, paths), paths.journal_file, None)
    journal = paths.legacy_journal_file if adoption.move_journal else paths.journal_file
    return StackRecords(ours, journal, adoption)


def adopt_legacy_records(
    host: Host, cfg: StackConfig, log: Callable[[str], None] = lambda _m: None
) -> Adoption | None:
    """Move this stack's legacy release records (and its journal) under its own directory; the caller
    holds the stack's lock. The legacy lock is taken too, so that a run of an older version, which
    still writes the legacy place, is not mid-way. Gathered first, then one rename into place: an
    interrupted adoption is finished by the next run. Refuses (AdoptionRefused, nothing moved) when the
    legacy records cannot be attributed."""
    paths = cfg.paths
    adoption, _, in_legacy = _pending_adoption(host, cfg)
    if adoption is None:
        return None
    q = shlex.quote
    script = ["set -e", "umask 077", f"mkdir -p {q(paths.adopting_dir)}"]
    script += [
        f"mv {q(f'{paths.legacy_releases_dir}/{rid}')} {q(f'{paths.adopting_dir}/{rid}')}"
        for rid in adoption.ours
        if rid in in_legacy
    ]
    if adoption.move_journal:
        script.append(f"mv {q(paths.legacy_journal_file)} {q(paths.journal_file)}")
    script.append(f"mv {q(paths.adopting_dir)} {q(paths.releases_dir)}")
    script.append(f"rmdir {q(paths.legacy_releases_dir)} 2>/dev/null || true")
    body = q("; ".join(script[:1]) + "; " + " && ".join(script[1:]))
    legacy_lock = q(paths.legacy_lock_file)
    res = host.run(
        f"if [ -e {legacy_lock} ]; then exec flock -n -E {HostLock.BUSY_EXIT} {legacy_lock} sh -c {body}; "
        f"else exec sh -c {body}; fi",
        check=False,
    )
    if res.returncode == HostLock.BUSY_EXIT:
        raise HostBusy(
            f"{host.label}: a run of an older mailu-flows holds the legacy lock {paths.legacy_lock_file}; "
            f"wait for it to finish, then run again (this stack's records in {paths.legacy_releases_dir} "
            "are adopted then)"
        )
    if not res.ok:
        raise RemoteError(
            f"{host.label}: moving stack {paths.name!r}'s legacy records into {paths.state_dir} failed "
            f"(exit {res.returncode}): {res.stderr.decode(errors='replace')[-300:]}; run again to finish "
            f"(it resumes from {paths.adopting_dir})"
        )
    for note in adoption.notes:
        log(note)
    return adoption
