"""Backups are authenticated, and nothing read from a destination can become a path or a mount.

The attacker here can write to the backup destination and holds the public key (so their archives
decrypt), but not the signing key held in a block. No lab needed: destinations are temporary
directories, and retention works on manifests alone.
"""

from __future__ import annotations

import copy
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from mailu_core.backup import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    ArchiveEntry,
    Manifest,
    archive_file_name,
    backup_id_for,
    check_signature,
    identity_problems,
    parse_backup_stack,
    sign_manifest,
)
from mailu_core.config import StackConfig
from mailu_flows.backup.destination import LocalDirectory, UnsafeName, safe_member
from mailu_flows.backup.engine import changed_while_read, prune
from mailu_flows.backup.signing import BackupNotAuthentic, authentic_manifest
from mailu_flows.blocks.backup import BackupSigningKey
from mailu_flows.dockercmd import volume_mount
from tests.core.test_config import MINIMAL

KEY = b"k" * 40
OTHER_KEY = b"o" * 40
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _entry(name: str = "mailu_mail_data") -> ArchiveEntry:
    return ArchiveEntry(
        name=name, kind="volume", file=archive_file_name(name, "volume"), plain_bytes=10240, entries=3,
        file_count=2, listing_sha256="ab" * 32, cipher_bytes=10391, cipher_sha256="cd" * 32,
    )  # fmt: skip


def _manifest(stack: str, when: datetime, tag: str | None = None) -> Manifest:
    return Manifest(
        backup_id=backup_id_for(stack, when, tag), stack=stack, tag=tag, created=when,
        finished=when + timedelta(seconds=5), mailu_version="2024.06",
        images={"admin": "ghcr.io/mailu/admin@sha256:" + "0" * 64}, key_fingerprint="A" * 40,
        archives=[_entry()],
    )  # fmt: skip


def _store(base: Path, manifest: Manifest, key: bytes | None = KEY, raw: bytes | None = None) -> Path:
    """Put a backup directory (manifest, signature, no archives) where a backup run would."""
    directory = base / manifest.stack / manifest.backup_id
    directory.mkdir(parents=True)
    data = raw if raw is not None else manifest.model_dump_json(indent=2).encode()
    (directory / MANIFEST_NAME).write_bytes(data)
    if key is not None:
        (directory / SIGNATURE_NAME).write_bytes(sign_manifest(key, data))
    return directory


def _config(base: Path, name: str = "mini") -> StackConfig:
    data = copy.deepcopy(MINIMAL)
    data["name"] = name
    data["backup"] = {
        **data["backup"],
        "destination_dir": str(base),
        "retention_daily": 2,
        "retention_weekly": 0,
    }
    return StackConfig.model_validate(data)


# --- the signature ------------------------------------------------------------------------------


def test_a_signed_manifest_verifies_and_any_change_or_other_key_does_not() -> None:
    data = _manifest("mini", NOW).model_dump_json().encode()
    signature = sign_manifest(KEY, data)
    assert check_signature(KEY, data, signature) is None
    changed = data.replace(b"2024.06", b"2024.07")
    assert "changed after signing" in str(check_signature(KEY, changed, signature))
    assert "not with the signing key block's key" in str(check_signature(OTHER_KEY, data, signature))
    assert "not signed" in str(check_signature(KEY, data, None))
    assert "is not a" in str(check_signature(KEY, data, b"garbage"))
    # a forger who copies the key id but not the key
    forged = signature.split()[0] + b" " + signature.split()[1] + b" " + b"0" * 64
    assert "changed after signing" in str(check_signature(KEY, data, forged))


def test_the_block_refuses_a_short_key_without_showing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        BackupSigningKey(key="short-secret-value")
    assert "shorter than 32" in str(caught.value)
    assert "short-secret-value" not in str(caught.value)
    generated = BackupSigningKey.generate()
    assert len(generated.key_bytes()) >= 32 and len(generated.key_id) == 16


# --- what a manifest may say ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "file"),
    [
        ("/", "volume", "/.tar.gpg"),
        ("..", "volume", "...tar.gpg"),
        ("mail/../../etc", "volume", "mail/../../etc.tar.gpg"),
        ("mailu_mail_data", "volume", "../../../etc/shadow"),
        ("mailu_mail_data", "volume", "other.tar.gpg"),
        ("a,source=/,target=/v", "volume", "a,source=/,target=/v.tar.gpg"),
        ("-v", "volume", "-v.tar.gpg"),
        ("mailu_mail_data", "stack-files", "mailu_mail_data.tar.gpg"),
    ],
)
def test_an_archive_naming_a_path_an_option_or_another_file_is_invalid(
    name: str, kind: str, file: str
) -> None:
    fields = _entry().model_dump() | {"name": name, "kind": kind, "file": file}
    with pytest.raises(ValidationError):
        ArchiveEntry.model_validate(fields)


def test_a_manifest_with_a_traversal_id_or_stack_is_invalid() -> None:
    good = json.loads(_manifest("mini", NOW).model_dump_json())
    for field, value in (("backup_id", "../mini-20261130T120000Z"), ("stack", "../x"), ("tag", "a/b")):
        with pytest.raises(ValidationError):
            Manifest.model_validate(good | {field: value})
    with pytest.raises(ValidationError, match="twice"):
        Manifest.model_validate(good | {"archives": [good["archives"][0]] * 2})


def test_identity_checks_directory_stack_and_the_clock() -> None:
    manifest = _manifest("mini", NOW)
    assert identity_problems(manifest, manifest.backup_id, "mini", NOW) == []
    assert (
        "its directory is"
        in identity_problems(manifest, backup_id_for("mini", NOW - timedelta(days=1)), "mini", NOW)[0]
    )
    assert any(
        "belongs to stack 'mini'" in p for p in identity_problems(manifest, manifest.backup_id, "other", NOW)
    )
    future = _manifest("mini", NOW + timedelta(days=30))
    assert any("in the future" in p for p in identity_problems(future, future.backup_id, "mini", NOW))
    # a few minutes of clock skew between machines is tolerated
    skewed = _manifest("mini", NOW + timedelta(minutes=2))
    assert identity_problems(skewed, skewed.backup_id, "mini", NOW) == []
    assert parse_backup_stack("a-b-20261130T120000Z-safety") == "a-b"
    assert parse_backup_stack("a-20261399T999999Z") is None


# --- the destination ------------------------------------------------------------------------------


def test_member_names_from_a_manifest_never_leave_the_backup_directory(tmp_path: Path) -> None:
    for backup_id, file in (("..", "x"), ("mini-20261130T120000Z", "../x"), ("mini-20261130T120000Z", "/etc"),
                            ("mini-20261130T120000Z", ".."), ("/", "x")):  # fmt: skip
        with pytest.raises(UnsafeName):
            safe_member(backup_id, file)
    store = LocalDirectory(tmp_path, "mini")
    with pytest.raises(UnsafeName):
        store.open_reader("mini-20261130T120000Z", "../../../etc/passwd")


def test_a_symlink_planted_in_the_destination_is_not_followed(tmp_path: Path) -> None:
    manifest = _manifest("mini", NOW)
    directory = _store(tmp_path, manifest)
    secret = tmp_path / "runner-secret"
    secret.write_text("runner's own file")
    (directory / MANIFEST_NAME).unlink()
    (directory / MANIFEST_NAME).symlink_to(secret)
    with pytest.raises(BackupNotAuthentic, match="cannot be read"):
        authentic_manifest(LocalDirectory(tmp_path, "mini"), manifest.backup_id, KEY, "mini", NOW)
    linked = tmp_path / "mini" / backup_id_for("mini", NOW + timedelta(seconds=1))
    linked.symlink_to(directory)
    assert linked.name not in LocalDirectory(tmp_path, "mini").list_backups()


def test_authentic_manifest_refuses_forged_foreign_and_future_backups(tmp_path: Path) -> None:
    store = LocalDirectory(tmp_path, "mini")
    real = _manifest("mini", NOW - timedelta(hours=1))
    _store(tmp_path, real)
    assert authentic_manifest(store, real.backup_id, KEY, "mini", NOW) == real

    forged = _manifest("mini", NOW - timedelta(hours=2))
    _store(tmp_path, forged, key=OTHER_KEY)  # the forger's own key
    with pytest.raises(BackupNotAuthentic, match="not with the signing key block's key"):
        authentic_manifest(store, forged.backup_id, KEY, "mini", NOW)

    unsigned = _manifest("mini", NOW - timedelta(hours=3))
    _store(tmp_path, unsigned, key=None)
    with pytest.raises(BackupNotAuthentic, match="not signed"):
        authentic_manifest(store, unsigned.backup_id, KEY, "mini", NOW)

    # a real backup of another stack, signed with the same key, copied into this stack's directory
    other = _manifest("other", NOW - timedelta(hours=4))
    copied = tmp_path / "mini" / backup_id_for("mini", other.created)
    source = _store(tmp_path, other)
    copied.mkdir()
    for item in source.iterdir():
        (copied / item.name).write_bytes(item.read_bytes())
    with pytest.raises(BackupNotAuthentic, match="belongs to stack 'other'"):
        authentic_manifest(store, copied.name, KEY, "mini", NOW)

    huge = _manifest("mini", NOW - timedelta(hours=5))
    _store(tmp_path, huge, raw=b" " * (2 << 20))
    with pytest.raises(BackupNotAuthentic, match="larger than"):
        authentic_manifest(store, huge.backup_id, KEY, "mini", NOW)


# --- retention ------------------------------------------------------------------------------------


def test_retention_keeps_real_backups_whatever_is_planted_and_leaves_other_stacks_alone(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    days = [NOW - timedelta(days=d) for d in range(5)]
    real = [_manifest("mini", when) for when in days]
    for manifest in real:
        _store(tmp_path, manifest)
    # Future-dated forgeries (unsigned, and one signed with another key) and one real-looking
    # future-dated backup signed with the key (a runner's clock gone wrong): none may count.
    planted = [_manifest("mini", NOW + timedelta(days=d)) for d in (1, 2, 3)]
    _store(tmp_path, planted[0], key=None)
    _store(tmp_path, planted[1], key=OTHER_KEY)
    _store(tmp_path, planted[2])
    # Another stack sharing the destination: older than everything, far beyond its retention.
    theirs = [_manifest("other", NOW - timedelta(days=d)) for d in (30, 31)]
    for manifest in theirs:
        _store(tmp_path, manifest)

    plan = prune(LocalDirectory(tmp_path, "mini"), config, KEY, now=NOW)

    assert sorted(plan.keep) == sorted(m.backup_id for m in real[:2])  # 2 daily, newest among them
    assert sorted(plan.delete) == sorted(m.backup_id for m in real[2:])
    assert sorted(plan.ignored) == sorted(m.backup_id for m in planted)
    left = sorted(p.name for p in (tmp_path / "mini").iterdir() if not p.name.startswith("."))
    assert left == sorted([*(m.backup_id for m in real[:2]), *(m.backup_id for m in planted)])
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == sorted(m.backup_id for m in theirs)


def test_each_stack_has_its_own_lock_and_state(tmp_path: Path) -> None:
    mini, other = LocalDirectory(tmp_path, "mini"), LocalDirectory(tmp_path, "other")
    mini.write_state("verify", {"cursor": 3})
    assert other.read_state("verify") == {}
    with mini.lock(), other.lock():  # one stack's run does not block the other's
        pass
    assert oct((tmp_path / "mini").stat().st_mode & 0o777) == "0o700"
    with pytest.raises(ValueError, match="not a stack name"):
        LocalDirectory(tmp_path, "../mini")


# --- mounts and live copies -----------------------------------------------------------------------


def test_a_volume_mount_cannot_name_a_host_path_or_add_options() -> None:
    assert volume_mount("mailu_mail_data", "/v", read_only=True) == (
        "type=volume,source=mailu_mail_data,target=/v,readonly"
    )
    for hostile in ("/", "/etc", "../x", "a,type=bind", "a,source=/", "", "-v"):
        with pytest.raises(ValueError, match="not a Docker volume name"):
            volume_mount(hostile, "/v", read_only=False)


def test_files_that_changed_under_a_live_copy_are_named_and_other_tar_errors_are_not_excused() -> None:
    stderr = (
        "tar: ./rspamd_dynamic: file changed as we read it\n"
        "tar: ./stats.ucl: File shrank by 12 bytes; padding with zeros\n"
        "tar: ./rspamd_dynamic: file changed as we read it\n"
    )
    assert changed_while_read(stderr) == ["rspamd_dynamic", "stats.ucl"]
    assert (
        changed_while_read("tar: ./x: file changed as we read it\ntar: ./y: Cannot open: Permission denied\n")
        == []
    )
    assert changed_while_read("") == []
    # rspamd's volume holds its socket: tar says so beside the changed file (ci29), and that is no error
    live = "tar: ./rspamd.rrd: file changed as we read it\ntar: ./rspamd.sock: socket ignored\n"
    assert changed_while_read(live) == ["rspamd.rrd"]
    assert changed_while_read("tar: ./rspamd.sock: socket ignored\n") == []


def test_retention_of_a_large_destination_is_quick(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for n in range(300):
        _store(tmp_path, _manifest("mini", NOW - timedelta(hours=n)))
    started = time.perf_counter()
    plan = prune(LocalDirectory(tmp_path, "mini"), config, KEY, now=NOW)
    assert len(plan.delete) == 298 and time.perf_counter() - started < 10
    assert os.listdir(tmp_path / "mini")


def test_stack_files_outside_the_stack_root_are_mounted_and_archived_under_host_root(tmp_path: Path) -> None:
    """Absolute Traefik, secrets and certificate paths used to be silently left out of the backup."""
    import shlex

    from mailu_flows.backup.engine import OUTSIDE_ROOT, stack_files_source

    data = copy.deepcopy(MINIMAL)
    data["host"] = {
        "stack_root": "/srv/apps",
        "secrets_dir": "/etc/mailu/secrets",
        "traefik_dynamic_dir": "/etc/traefik/dynamic",
        "certs_dir": "certs",
    }
    config = StackConfig.model_validate(data)
    words = shlex.split(stack_files_source(config, "img", "mailu-backup-x").command)
    mounts = [words[i + 1] for i, w in enumerate(words) if w == "--mount"]
    assert mounts[0] == "type=bind,source=/srv/apps,target=/s,readonly"
    assert (
        f"type=bind,source=/etc/traefik/dynamic,target=/{OUTSIDE_ROOT}/etc/traefik/dynamic,readonly" in mounts
    )
    assert f"type=bind,source=/etc/mailu/secrets,target=/{OUTSIDE_ROOT}/etc/mailu/secrets,readonly" in mounts
    args = words[words.index("stack-files") + 1 :]
    assert "compose/mailu.yml" in args and "certs" in args
    outside = args[args.index("--") + 1 :]
    assert f"{OUTSIDE_ROOT}/etc/traefik/dynamic/mailu.yml" in outside
    assert f"{OUTSIDE_ROOT}/etc/mailu/secrets" in outside
    assert not any(a.startswith("/") for a in args)  # tar never sees an absolute member name
