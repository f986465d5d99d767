"""Release records on the host: every deploy that changes something leaves a release directory with
the files it rendered, the files it replaced, the image digests and the config checksum, so that the
previous good release can be put back, and every file we replaced can be restored.

    <stack_root>/.mailu-flows/releases/<id>/release.json
    <stack_root>/.mailu-flows/releases/<id>/files/<path>      (what this release wrote)
    <stack_root>/.mailu-flows/releases/<id>/replaced/<path>   (what was there before, if not ours)
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Literal

from mailu_flows.remote import RemoteHost

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


def releases_dir(stack_root: str) -> str:
    return str(PurePosixPath(stack_root) / ".mailu-flows" / "releases")


def new_release_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def list_releases(host: RemoteHost, stack_root: str) -> list[Release]:
    """All release records, oldest first (one round trip)."""
    base = releases_dir(stack_root)
    out = host.run(
        f'for f in {shlex.quote(base)}/*/release.json; do [ -f "$f" ] && cat "$f" && echo; done; true'
    ).text()
    releases = [Release(**json.loads(line)) for line in out.splitlines() if line.strip()]
    return sorted(releases, key=lambda r: r.id)


def last_good(releases: list[Release]) -> Release | None:
    good = [r for r in releases if r.status == "good"]
    return good[-1] if good else None


def save_release(host: RemoteHost, stack_root: str, release: Release) -> None:
    path = f"{releases_dir(stack_root)}/{release.id}/release.json"
    host.write_file(path, json.dumps(asdict(release), sort_keys=True).encode() + b"\n", mode=0o600)


def start_release(
    host: RemoteHost,
    stack_root: str,
    release: Release,
    contents: dict[str, bytes],
    replaced: list[str],
) -> None:
    """Create the release directory: copy what we are about to replace, then store what we write."""
    base = f"{releases_dir(stack_root)}/{release.id}"
    dirs = {f"{base}/files/{PurePosixPath(p).parent}" for p in contents}
    dirs |= {f"{base}/replaced/{PurePosixPath(p).parent}" for p in replaced}
    script = ["umask 077", "mkdir -p " + " ".join(shlex.quote(d) for d in sorted(dirs | {base}))]
    for rel in replaced:
        live = str(PurePosixPath(stack_root) / rel)  # a file the config places by absolute path stays there
        script.append(f"cp -p {shlex.quote(live)} {shlex.quote(f'{base}/replaced/{rel}')}")
    host.run(" && ".join(script))
    for rel, data in contents.items():
        host.write_file(f"{base}/files/{rel}", data, mode=0o600)
    release.replaced = list(replaced)
    save_release(host, stack_root, release)


def release_file(host: RemoteHost, stack_root: str, release_id: str, rel: str) -> bytes | None:
    return host.read_file(f"{releases_dir(stack_root)}/{release_id}/files/{rel}")


def prune_releases(
    host: RemoteHost, stack_root: str, releases: list[Release], keep: int = KEEP_RELEASES
) -> None:
    """Keep the newest `keep` releases and always the newest good one."""
    good = last_good(releases)
    old = [r for r in releases[:-keep] if good is None or r.id != good.id] if len(releases) > keep else []
    if old:
        base = releases_dir(stack_root)
        host.run(["rm", "-rf", *[f"{base}/{r.id}" for r in old]])
