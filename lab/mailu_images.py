"""Mailu 2024.06.9's own images, built from its source on the lab's Debian rootfs.

Mailu's Dockerfiles start from Alpine and fetch from PyPI, npm and GitHub inside the build. Here:
- `mailu/base` mirrors `core/base/Dockerfile`; its venv installs offline from a wheelhouse the lab
  builds on the host from Mailu's own requirements files (containers cannot reach PyPI);
- each service image mirrors its Mailu Dockerfile (`lab/images/mailu/<dir>/Dockerfile`), with the
  service's Mailu source copied into the build context as `src/` and Debian packages for Alpine's;
- generated inputs go into the context too: admin's static assets (built on the host with npm, as
  Mailu's `assets` stage does), the resolver's root hints and trust anchor (the lab's signed root).

Every image is keyed on a hash of its whole build context plus its base's reference, so a second
`lab up` with nothing changed builds nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.endpoints import CACHE_DIR, MAILU_VERSION, REGISTRY_HOST
from lab.files import hash_tree
from lab.procs import LabError, run_checked

MAILU_IMAGES_DIR = Path(__file__).resolve().parent / "images" / "mailu"
# Alpine builds Mailu with Python 3.12; Debian bookworm's is 3.11.2, whose markers need more wheels.
DEBIAN_PYTHON = "3.11.2"


def tree_hash(*roots: Path) -> str:
    h = hashlib.sha256()
    for root in roots:
        h.update(str(root.name).encode() + b"\0")
        hash_tree(h, root)
    return h.hexdigest()


def _cached_dir(name: str, key: str, fill: Callable[[Path], object]) -> Path:
    """`CACHE_DIR/<name>-<key>`, filled once by `fill`; a run cut short is redone (no `.complete` mark)."""
    out = CACHE_DIR / f"{name}-{key}"
    if (out / ".complete").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    fill(out)
    (out / ".complete").write_text(key + "\n")
    return out


def wheelhouse(base_src: Path) -> Path:
    """Wheels for Mailu's requirements-{build,prod}.txt, built once on the host, for Debian's Python.

    `pip wheel` builds the packages only published as sources (and socrate, podop); a second pass
    downloads binary wheels for Debian's exact Python, whose markers pull extra packages (redis wants
    async-timeout below 3.11.3).
    """
    return _cached_dir("mailu-wheels", tree_hash(base_src)[:16], lambda out: _build_wheels(base_src, out))


def _build_wheels(base_src: Path, out: Path) -> None:
    req_build = base_src / "requirements-build.txt"
    req_prod = base_src / "requirements-prod.txt"
    prod = req_prod.read_text().replace("file:///app/libs", f"file://{base_src / 'libs'}")
    pip = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory(prefix="mailu-req-") as tmp:
        local = Path(tmp) / "prod.txt"
        local.write_text(prod)
        from_index = Path(tmp) / "index.txt"
        from_index.write_text("\n".join(line for line in prod.splitlines() if "file://" not in line) + "\n")
        run_checked(
            [*pip, "wheel", "--no-cache-dir", "-q", "-w", str(out), "-r", str(req_build), "-r", str(local)]
        )
        run_checked(
            [
                *pip, "download", "--no-cache-dir", "-q", "--only-binary=:all:",
                "--python-version", DEBIAN_PYTHON, "--implementation", "cp", "--abi", "cp311",
                "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                "--platform", "manylinux_2_28_x86_64", "--find-links", str(out), "-d", str(out),
                "-r", str(from_index),
            ]
        )  # fmt: skip
        # pip evaluates python_full_version against the running interpreter: name the one it misses.
        run_checked(
            [
                *pip,
                "download",
                "--no-cache-dir",
                "-q",
                "--only-binary=:all:",
                "-d",
                str(out),
                "async-timeout>=4.0.3",
            ]
        )


def admin_assets(admin_src: Path) -> Path:
    """admin's built static files (Mailu's `assets` stage, run on the host with npm), cached by input."""
    script = MAILU_IMAGES_DIR / "admin" / "build_assets.sh"
    key = tree_hash(admin_src / "assets")[:16] + "-" + hashlib.sha256(script.read_bytes()).hexdigest()[:8]
    return _cached_dir(
        "mailu-admin-assets",
        key,
        lambda out: run_checked(["bash", str(script), str(admin_src), str(out)], timeout=3600),
    )


def _resolver_inputs(ctx: Path, src: Path) -> None:
    from lab.dnssec import resolver_build_inputs

    resolver_build_inputs(ctx)


def _admin_inputs(ctx: Path, src: Path) -> None:
    assets = admin_assets(src)
    shutil.copytree(assets, ctx / "static", ignore=shutil.ignore_patterns(".complete"))


@dataclass(frozen=True)
class MailuImage:
    """One Mailu image: logical name, registry repo, its lab dir and the Mailu source dir it builds from."""

    name: str
    repo: str
    context: str
    source: str
    extra_inputs: Callable[[Path, Path], None] | None = field(default=None, compare=False)


MAILU_IMAGES: tuple[MailuImage, ...] = (
    MailuImage("admin", "mailu/admin", "admin", "core/admin", _admin_inputs),
    MailuImage("front", "mailu/nginx", "front", "core/nginx"),
    MailuImage("imap", "mailu/dovecot", "imap", "core/dovecot"),
    MailuImage("smtp", "mailu/postfix", "smtp", "core/postfix"),
    MailuImage("antispam", "mailu/rspamd", "antispam", "core/rspamd"),
    MailuImage("resolver", "mailu/unbound", "resolver", "optional/unbound", _resolver_inputs),
    MailuImage("webmail", "mailu/webmail", "webmail", "webmails"),
)
BASE_IMAGE = MailuImage("mailu-base", "mailu/base", "base", "core/base")


def build_context(image: MailuImage, tree: Path, dest: Path, *, wheels: bool = True) -> Path:
    """Lay out `image`'s build context in `dest`: its lab dir, Mailu's source as src/, generated inputs.

    The base image's wheelhouse is large: with `wheels=False` only its key goes into the context
    (enough to hash it), and the wheels themselves are copied only for a real build.
    """
    src = tree / image.source
    if not src.is_dir():
        raise LabError(f"Mailu source tree {tree} has no {image.source}")
    ctx = dest / "ctx"
    shutil.copytree(MAILU_IMAGES_DIR / image.context, ctx, ignore=shutil.ignore_patterns("NOTES.md", "*.sh"))
    shutil.copytree(src, ctx / "src", symlinks=True)
    if image is BASE_IMAGE:
        house = wheelhouse(src)
        if wheels:
            shutil.copytree(house, ctx / "wheels", ignore=shutil.ignore_patterns(".complete"))
        else:
            (ctx / "wheels.key").write_text(house.name + "\n")
    if image.extra_inputs is not None:
        image.extra_inputs(ctx, src)
    return ctx


def build_ref(image: MailuImage, tag: str = MAILU_VERSION) -> str:
    return f"{REGISTRY_HOST}/{image.repo}:{tag}"


def ensure_mailu_images(
    lab_base_ref: str,
    record: dict[str, dict[str, str]],
    *,
    force: bool,
    build: Callable[[Path, str, str], str],
    has: Callable[[str], bool],
    save: Callable[[], None],
) -> dict[str, str]:
    """Build what changed (base first) and return name -> pinned ref, updating `record` as it goes."""
    from lab.mailu_source import source_tree

    tree = source_tree()
    refs: dict[str, str] = {}

    def one(image: MailuImage, base_ref: str) -> str:
        with tempfile.TemporaryDirectory(prefix="mailu-ctx-") as tmp:
            ctx = build_context(image, tree, Path(tmp), wheels=False)
            key = hashlib.sha256(f"{image.repo}\0{base_ref}\0{tree_hash(ctx)}".encode()).hexdigest()
        entry = record.get(f"mailu:{image.name}", {})
        if not force and entry.get("input") == key and has(entry.get("ref", "")):
            return entry["ref"]
        with tempfile.TemporaryDirectory(prefix="mailu-ctx-") as tmp:
            ctx = build_context(image, tree, Path(tmp))
            ref = build(ctx, base_ref, build_ref(image))
        record[f"mailu:{image.name}"] = {"input": key, "ref": ref}
        save()
        return ref

    base = one(BASE_IMAGE, lab_base_ref)
    for image in MAILU_IMAGES:
        refs[image.name] = one(image, base)
    return refs
