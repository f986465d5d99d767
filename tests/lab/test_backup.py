"""Backups against the lab's real parts: its sshd (as the deploy user), docker, gpg and Prefect server.

Every test works on its own docker volumes (`mlt-bk-<random>-*`, holding marker files) and its own
backup directories; both are removed afterwards. Fault tests corrupt copies of one good backup.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.endpoints import lab_dir
from mailu_core.backup import MANIFEST_NAME, SIGNATURE_NAME, Manifest, backup_id_for, sign_manifest
from mailu_core.config import StackConfig, load_stack_config
from mailu_flows.backup import BackupError, LocalDirectory, RestoreRefused, prune, restore_backup, run_backup
from mailu_flows.backup.gpg import encrypt_stream, encryption_keyring
from mailu_flows.backup.stream import TarInspector
from mailu_flows.blocks.gpg import GpgBackupPrivateKey, GpgBackupPublicKey
from mailu_flows.flows.backup import backup
from mailu_flows.flows.backup_verify import backup_verify
from mailu_flows.remote import RemoteHost
from mailu_flows.tasks.backup import load_private_key, load_public_key, load_signing_key

pytestmark = pytest.mark.lab

MARKER = b"marker \x00\x01\xff " + secrets.token_bytes(64)
BLOCKS_DATA = Path(__file__).parent.parent / "blocks" / "data"


def _host(lab: dict[str, Any]) -> RemoteHost:
    ssh = lab["ssh"]
    pinned = " ".join(Path(ssh["known_hosts_file"]).read_text().split()[1:3])
    return RemoteHost(
        ssh["host"], ssh["port"], ssh["user"], Path(ssh["private_key_file"]).read_text(), pinned
    )


def _keys(config: StackConfig) -> tuple[GpgBackupPublicKey, GpgBackupPrivateKey, bytes]:
    """What restore_backup takes from the blocks: public, private and signing key."""
    return load_public_key(config), load_private_key(config), load_signing_key(config)


def _fill(image: str, volume: str, files: dict[str, bytes]) -> None:
    """Create `volume` holding `files` (owner 8:12, mode 0640, like Mailu's mail user)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), 8, 12, 0o640
            archive.addfile(info, io.BytesIO(data))
    subprocess.run(["docker", "volume", "create", volume], check=True, capture_output=True)
    subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-i",
            "-v",
            f"{volume}:/v",
            "--entrypoint",
            "tar",
            image,
            "-C",
            "/v",
            "-xf",
            "-",
        ],
        input=buf.getvalue(),
        check=True,
        capture_output=True,
    )


def _read(image: str, volume: str, path: str) -> bytes:
    return subprocess.run(
        ["docker", "run", "--rm", "-v", f"{volume}:/v:ro", "--entrypoint", "cat", image, f"/v/{path}"],
        check=True,
        capture_output=True,
    ).stdout


def _dkim_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Setup:
    base: StackConfig
    config: StackConfig
    image: str
    prefix: str
    names: dict[str, str]
    dest: Path
    good: str  # id of the good backup made by the flow

    def config_with(self, dest: Path | None = None, **changes: Any) -> StackConfig:
        data = self.config.model_dump()
        data["backup"]["destination_dir"] = str(dest or self.dest)
        for key, value in changes.items():
            section, field = key.split("__")
            data[section][field] = value
        return StackConfig.model_validate(data)

    def store(self, dest: Path | None = None) -> LocalDirectory:
        """The stack's backups under `dest` (default: the module's destination)."""
        return LocalDirectory(dest or self.dest, self.config.name)

    def backup_dir(self, dest: Path | None = None) -> Path:
        """The good backup's directory under `dest`."""
        return (dest or self.dest) / self.config.name / self.good

    def copy_good(self, tmp: Path) -> Path:
        target = tmp / "dest"
        (target / self.config.name).mkdir(mode=0o700, parents=True)
        shutil.copytree(self.dest / self.config.name / self.good, target / self.config.name / self.good)
        return target


@pytest.fixture(scope="module")
def setup(lab: dict[str, Any]) -> Iterator[Setup]:
    base = load_stack_config(lab_dir() / "stack.yaml")
    image = base.images.redis
    prefix = f"mlt-bk-{secrets.token_hex(3)}"
    names = {
        key: f"{prefix}-{key}"
        for key in ("mail", "dkim", "rspamd", "redis", "admin", "webmail", "certs", "mailqueue", "postgres")
    }
    dest = Path(tempfile.mkdtemp(prefix="mlt-bk-"))
    try:
        _fill(image, names["mail"], {"u/cur/marker.eml": MARKER, "u/cur/big.eml": os.urandom(2_000_000)})
        _fill(image, names["dkim"], {f"{base.mailu.domain}.{base.dns.dkim.selector}.key": _dkim_pem()})
        _fill(image, names["admin"], {"main.db": b"SQLite format 3\x00" + os.urandom(4096)})
        _fill(image, names["rspamd"], {"stats.ucl": b"{}"})
        data = base.model_dump()
        data["volumes"] = names
        data["backup"] = {
            **data["backup"],
            "volumes": [names[k] for k in ("mail", "dkim", "admin", "rspamd")],
            "destination_dir": str(dest),
        }
        config = StackConfig.model_validate(data)
        report = backup(config=config)
        yield Setup(base, config, image, prefix, names, dest, report.backup_id)
    finally:
        for volume in names.values():
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
        shutil.rmtree(dest, ignore_errors=True)


def _verify_failure(config: StackConfig) -> str:
    state = backup_verify(config=config, return_state=True)
    assert state.is_failed(), "verify passed but should have failed"
    with pytest.raises(Exception) as caught:
        state.result()
    return str(caught.value)


# --- the happy path ----------------------------------------------------------------------------


def test_backup_of_every_volume_then_verify_is_green(setup: Setup) -> None:
    dest = setup.store()
    manifest = dest.read_manifest(setup.good)
    assert sorted(manifest.volumes) == sorted(setup.config.backup.volumes)
    assert manifest.archive("stack-files") is not None
    assert manifest.key_fingerprint == load_public_key(setup.config).fingerprint
    mail = manifest.archive(setup.names["mail"])
    assert mail is not None and mail.file_count == 2 and mail.plain_bytes > 2_000_000
    # Encrypted: the marker's bytes appear nowhere in the ciphertext.
    assert MARKER not in (setup.backup_dir() / mail.file).read_bytes()
    assert oct((setup.backup_dir() / mail.file).stat().st_mode & 0o777) == "0o600"

    record = backup_verify(config=setup.config)
    assert record.ok and record.backup_id == setup.good
    checks = {r.check for r in record.checks}
    assert {
        "age",
        "volumes",
        "key",
        "ciphertext-sha256",
        "decrypt",
        "tar-read",
        "listing",
        "dkim-key",
    } <= checks
    drills = [r for r in record.checks if r.check == "restore-drill"]
    assert len(drills) == len(manifest.archives) and all(r.ok for r in drills)
    assert setup.store().read_record(setup.good) == record
    # The drill's scratch volumes are gone.
    left = subprocess.run(["docker", "volume", "ls", "-q", "--filter", "label=mailu-flows.scratch"],
                          capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert left == []
    # The green run feeds the "newest verified backup too old" alert through the textfile collector.
    textfile = setup.config.monitoring.textfile_dir
    assert textfile is not None
    metric = Path(textfile, f"mailu_backup_{setup.config.name}.prom").read_text()
    assert f'mailu_backup_last_verified_timestamp_seconds{{stack="{setup.config.name}"}}' in metric
    value = float(metric.strip().splitlines()[-1].split()[-1])
    assert abs(value - time.time()) < 600


# --- each fault makes verify fail, naming the file and the check --------------------------------


def test_flipped_byte_fails_sha256_and_decrypt(setup: Setup, tmp_path: Path) -> None:
    dest = setup.copy_good(tmp_path)
    mail = setup.store(dest).read_manifest(setup.good).archive(setup.names["mail"])
    assert mail is not None
    path = setup.backup_dir(dest) / mail.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    message = _verify_failure(setup.config_with(dest))
    assert f"ciphertext-sha256 FAILED: {path}" in message
    assert f"decrypt FAILED: {path}" in message


def test_missing_volume_fails(setup: Setup, tmp_path: Path) -> None:
    dest = setup.copy_good(tmp_path)
    configured = [*setup.config.backup.volumes, setup.names["webmail"]]
    config = setup.config_with(dest, backup__volumes=configured)
    message = _verify_failure(config)
    manifest_path = setup.backup_dir(dest) / MANIFEST_NAME
    assert f"volumes FAILED: {manifest_path}: configured volume(s) missing from the backup: " in message
    assert setup.names["webmail"] in message
    # An archive file that vanished is named too.
    rspamd = setup.store(dest).read_manifest(setup.good).archive(setup.names["rspamd"])
    assert rspamd is not None
    (setup.backup_dir(dest) / rspamd.file).unlink()
    message = _verify_failure(setup.config_with(dest))
    assert f"ciphertext-sha256 FAILED: {setup.backup_dir(dest) / rspamd.file}: file is missing" in message


def test_wrong_key_fails(setup: Setup, tmp_path: Path) -> None:
    dest = setup.copy_good(tmp_path)
    name = f"{setup.prefix}-wrong-key"
    GpgBackupPrivateKey(
        armored_private_key=(BLOCKS_DATA / "gpg-test-private.asc").read_text(),
        passphrase="test-only-passphrase",
        fingerprint=(BLOCKS_DATA / "gpg-test-fingerprint.txt").read_text().strip(),
    ).save(name, overwrite=True)
    try:
        config = setup.config_with(dest, blocks__gpg_private_key=name)
        message = _verify_failure(config)
    finally:
        GpgBackupPrivateKey.delete(name, _sync=True)  # type: ignore[call-arg]
    mail = setup.store(dest).read_manifest(setup.good).archive(setup.names["mail"])
    assert mail is not None
    assert f"key FAILED: {setup.backup_dir(dest) / MANIFEST_NAME}" in message
    assert f"decrypt FAILED: {setup.backup_dir(dest) / mail.file}" in message


def _resign(directory: Path, manifest: Manifest, key: bytes, **changes: Any) -> Path:
    """Rewrite a backup as the backup flow would have made it with `changes` (signed with `key`),
    under the directory its (possibly new) id names; returns that directory."""
    updated = manifest.model_copy(update=changes)
    target = directory.parent / updated.backup_id
    if target != directory:
        directory.rename(target)
    data = updated.model_dump_json(indent=2).encode()
    (target / MANIFEST_NAME).write_bytes(data)
    (target / SIGNATURE_NAME).write_bytes(sign_manifest(key, data))
    return target


def test_stale_newest_backup_fails(setup: Setup, tmp_path: Path) -> None:
    dest = setup.copy_good(tmp_path)
    manifest = setup.store(dest).read_manifest(setup.good)
    old = (datetime.now(UTC) - timedelta(hours=setup.config.backup.verify_max_age_hours + 4)).replace(
        microsecond=0
    )
    directory = _resign(
        setup.backup_dir(dest), manifest, load_signing_key(setup.config),
        backup_id=backup_id_for(setup.config.name, old), created=old, finished=old + timedelta(seconds=9),
    )  # fmt: skip
    message = _verify_failure(setup.config_with(dest))
    assert f"age FAILED: {directory / MANIFEST_NAME}: newest backup created" in message


# --- forgeries: write access to the destination and the public key are not enough ----------------


def _forge_mail_archive(setup: Setup, dest: Path, files: dict[str, bytes]) -> Manifest:
    """Replace the mail archive of the copied good backup with the forger's files, encrypted to the
    real public key, and fix every hash and count in the manifest: all a forger without the signing
    key can do. Returns the forged manifest (not signed; the old signature stays in place)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.uid, info.gid, info.mode, info.mtime = len(data), 8, 12, 0o640, 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    plain = buf.getvalue()
    inspector = TarInspector()
    inspector.feed(plain)
    listing = inspector.close().listing
    directory = setup.backup_dir(dest)
    manifest = setup.store(dest).read_manifest(setup.good)
    mail = manifest.archive(setup.names["mail"])
    assert mail is not None
    with (
        encryption_keyring(load_public_key(setup.config)) as keyring,
        open(directory / mail.file, "wb") as sink,
    ):
        stats = encrypt_stream(keyring, io.BytesIO(plain), sink)
    forged_entry = mail.model_copy(
        update={
            "plain_bytes": len(plain), "entries": listing.entries, "file_count": listing.file_count,
            "listing_sha256": listing.hexdigest(), "cipher_bytes": stats.bytes, "cipher_sha256": stats.sha256,
        }
    )  # fmt: skip
    archives = [forged_entry if a.name == mail.name else a for a in manifest.archives]
    forged = manifest.model_copy(update={"archives": archives})
    (directory / MANIFEST_NAME).write_bytes(forged.model_dump_json(indent=2).encode())
    return forged


def test_a_backup_forged_with_the_public_key_is_refused_by_verify_and_restore(
    setup: Setup, lab: dict[str, Any], tmp_path: Path
) -> None:
    dest = setup.copy_good(tmp_path)
    forged = _forge_mail_archive(setup, dest, {"u/cur/marker.eml": b"the forger's mail"})
    manifest_path = setup.backup_dir(dest) / MANIFEST_NAME

    message = _verify_failure(setup.config_with(dest))
    assert f"signature FAILED: {manifest_path}" in message and "changed after signing" in message
    assert "decrypt" not in message  # nothing of it was decrypted
    (setup.backup_dir(dest) / SIGNATURE_NAME).unlink()
    assert "the backup is not signed" in _verify_failure(setup.config_with(dest))

    mail = setup.names["mail"]
    before = _read(setup.image, mail, "u/cur/marker.eml")
    config = setup.config_with(dest)
    with _host(lab) as host, pytest.raises(RestoreRefused, match="signature FAILED"):
        restore_backup(
            host, config, setup.store(dest), *_keys(config), setup.good, holder="forgery", volumes=[mail]
        )
    assert _read(setup.image, mail, "u/cur/marker.eml") == before
    assert setup.store(dest).list_backups() == [setup.good]  # no safety backup was even started

    # The forgery is complete in every other respect: signed with the block's key, it would pass.
    # So the signature is what stops it.
    _resign(setup.backup_dir(dest), forged, load_signing_key(config))
    record = backup_verify(config=config)
    assert record.ok and record.backup_id == setup.good


def test_restore_writes_only_into_volumes_the_config_declares(setup: Setup, lab: dict[str, Any]) -> None:
    config = setup.config
    for hostile in ("/", "/etc", setup.names["webmail"]):  # a host path; a real volume not in backup.volumes
        with _host(lab) as host, pytest.raises(RestoreRefused, match=r"not in backup\.volumes"):
            restore_backup(
                host, config, setup.store(), *_keys(config), setup.good, holder="hostile", volumes=[hostile]
            )
    assert setup.store().list_backups()[0] == setup.good


def test_a_future_dated_backup_is_flagged_and_never_taken_as_the_newest(setup: Setup, tmp_path: Path) -> None:
    dest = setup.copy_good(tmp_path)
    shutil.copytree(setup.backup_dir(dest), setup.backup_dir(dest).with_name("copy"))
    later = (datetime.now(UTC) + timedelta(days=400)).replace(microsecond=0)
    manifest = setup.store(dest).read_manifest(setup.good)
    future = _resign(
        setup.backup_dir(dest).with_name("copy"), manifest, load_signing_key(setup.config),
        backup_id=backup_id_for(setup.config.name, later), created=later, finished=later,
    )  # fmt: skip
    message = _verify_failure(setup.config_with(dest))
    assert f"future-dated FAILED: {future}" in message
    assert "age FAILED" not in message and "signature FAILED" not in message  # the real newest was verified
    # Retention neither counts nor deletes it, and keeps the real backup.
    plan = prune(setup.store(dest), setup.config_with(dest), load_signing_key(setup.config))
    assert future.name in plan.ignored and setup.good in plan.keep and plan.delete == []


# --- live copies ---------------------------------------------------------------------------------


def test_a_file_written_during_a_live_copy_is_named_in_the_manifest_and_the_backup_completes(
    setup: Setup, lab: dict[str, Any], tmp_path: Path
) -> None:
    busy = f"{setup.prefix}-busy"
    writer = f"{setup.prefix}-writer"
    dest = tmp_path / "dest"
    try:
        _fill(setup.image, busy, {"stats.ucl": os.urandom(30_000_000), "quiet.map": b"steady"})
        subprocess.run(
            ["docker", "run", "-d", "--rm", "--name", writer, "-v", f"{busy}:/v", "--entrypoint", "sh",
             setup.image, "-c", "while :; do head -c 4096 /dev/urandom >> /v/stats.ucl; done"],
            check=True, capture_output=True,
        )  # fmt: skip
        config = setup.config_with(dest)
        warnings: list[str] = []
        with _host(lab) as host:
            outcome = run_backup(
                host, config, setup.store(dest), load_public_key(config), load_signing_key(config),
                volumes=[busy], include_stack_files=False, warn=warnings.append,
            )  # fmt: skip
        archive = outcome.manifest.archive(busy)
        assert archive is not None and archive.changed_while_read == ["stats.ucl"]
        assert any("stats.ucl" in note and "torn" in note for note in outcome.manifest.consistency)
        assert any(w.startswith("WARNING") and busy in w for w in warnings)
        assert setup.store(dest).list_backups() == [outcome.manifest.backup_id]
    finally:
        subprocess.run(["docker", "rm", "-f", writer], capture_output=True, check=False)
        subprocess.run(["docker", "volume", "rm", "-f", busy], capture_output=True, check=False)


def test_truncated_archive_fails(setup: Setup, tmp_path: Path) -> None:
    dest = setup.copy_good(tmp_path)
    mail = setup.store(dest).read_manifest(setup.good).archive(setup.names["mail"])
    assert mail is not None
    path = setup.backup_dir(dest) / mail.file
    with open(path, "r+b") as fh:
        fh.truncate(mail.cipher_bytes // 2)
    message = _verify_failure(setup.config_with(dest))
    assert f"ciphertext-sha256 FAILED: {path}" in message
    assert f"tar-read FAILED: {path}" in message or f"decrypt FAILED: {path}" in message


# --- interruption ------------------------------------------------------------------------------


def test_connection_cut_mid_backup_leaves_no_backup_and_next_run_succeeds(
    setup: Setup, lab: dict[str, Any], tmp_path: Path
) -> None:
    big = f"{setup.prefix}-big"
    dest = tmp_path / "dest"
    try:
        subprocess.run(["docker", "volume", "create", big], check=True, capture_output=True)
        subprocess.run(
            ["docker", "run", "--rm", "-v", f"{big}:/v", "--entrypoint", "sh", setup.image, "-c",
             "head -c 200000000 /dev/urandom > /v/big"],
            check=True, capture_output=True,
        )  # fmt: skip
        config = setup.config_with(
            dest, volumes__mail=big, backup__volumes=[big, setup.names["dkim"], setup.names["admin"]]
        )
        host = _host(lab).connect()
        cut = threading.Event()

        def cutter() -> None:  # close the transport once ciphertext is flowing into the staging area
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for partial in dest.glob("*/.partial-*/*.tar.gpg") if dest.exists() else []:
                    if partial.stat().st_size > 5_000_000:
                        host.client.get_transport().close()  # type: ignore[union-attr]
                        cut.set()
                        return
                time.sleep(0.005)

        thread = threading.Thread(target=cutter)
        thread.start()
        try:
            with pytest.raises(BackupError, match=big):
                run_backup(host, config, setup.store(dest), load_public_key(config), load_signing_key(config))
        finally:
            thread.join()
            host.close()
        assert cut.is_set(), "the backup finished before the cut"
        assert setup.store(dest).list_backups() == []
        assert [p.name for p in (dest / config.name).iterdir() if not p.name.startswith(".")] == []

        # A run killed outright leaves its staging directory; the next run removes it and succeeds.
        leftover = dest / config.name / ".partial-lab-20200101T000000Z"
        leftover.mkdir()
        (leftover / f"{big}.tar.gpg").write_bytes(b"half")
        report = backup(config=config)
        assert report.removed_partials == [leftover.name]
        assert setup.store(dest).list_backups() == [report.backup_id]
        assert not leftover.exists()
        archive = setup.store(dest).read_manifest(report.backup_id).archive(big)
        assert archive is not None and archive.plain_bytes > 200_000_000
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", big], capture_output=True, check=False)


# --- restore -----------------------------------------------------------------------------------


def test_restore_brings_back_the_marker_bytes_after_a_safety_backup(
    setup: Setup, lab: dict[str, Any]
) -> None:
    mail = setup.names["mail"]
    # Damage the live volume: another marker, and a file that was not in the backup.
    subprocess.run(
        ["docker", "run", "--rm", "-v", f"{mail}:/v", "--entrypoint", "sh", setup.image, "-c",
         "echo damaged > /v/u/cur/marker.eml && echo new > /v/u/cur/extra.eml"],
        check=True, capture_output=True,
    )  # fmt: skip
    assert _read(setup.image, mail, "u/cur/marker.eml") == b"damaged\n"
    config = setup.config
    dest = setup.store()
    with _host(lab) as host:
        result = restore_backup(
            host, config, dest, *_keys(config), setup.good,
            holder="test_backup restore", volumes=[mail],
        )  # fmt: skip
    assert _read(setup.image, mail, "u/cur/marker.eml") == MARKER
    ls = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{mail}:/v:ro", "--entrypoint", "sh", setup.image, "-c",
         "cd /v && find . -type f | sort && stat -c '%u:%g %a' u/cur/marker.eml"],
        check=True, capture_output=True, text=True,
    ).stdout.split("\n")  # fmt: skip
    assert ls[:3] == ["./u/cur/big.eml", "./u/cur/marker.eml", "8:12 640"]
    assert [r.check for r in result.checks if r.check == "restore"] and all(r.ok for r in result.checks)
    # The safety backup holds the damaged state.
    assert result.safety_backup_id is not None and result.safety_backup_id.endswith("-safety")
    safety = dest.read_manifest(result.safety_backup_id)
    assert safety.volumes == [mail]
    archive = safety.archive(mail)
    assert archive is not None and archive.file_count == 3


def test_restore_refuses_a_running_stack_and_a_corrupt_backup(
    setup: Setup, lab: dict[str, Any], tmp_path: Path
) -> None:
    config = setup.config
    admin = setup.names["admin"]
    container = f"{setup.prefix}-user"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", container, "-v", f"{admin}:/data", "--entrypoint", "sleep",
         setup.image, "120"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        with _host(lab) as host, pytest.raises(RestoreRefused, match=f"{admin} is used by {container}"):
            restore_backup(
                host, config, setup.store(), *_keys(config),
                setup.good, holder="test_backup refuse", volumes=[admin],
            )  # fmt: skip
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)

    dest = setup.copy_good(tmp_path)
    manifest = setup.store(dest).read_manifest(setup.good)
    archive = manifest.archive(admin)
    assert archive is not None
    path = setup.backup_dir(dest) / archive.file
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    before = _read(setup.image, admin, "main.db")
    with _host(lab) as host, pytest.raises(RestoreRefused, match="ciphertext-sha256 FAILED"):
        restore_backup(
            host, config, setup.store(dest), *_keys(config),
            setup.good, holder="test_backup refuse", volumes=[admin],
        )  # fmt: skip
    assert _read(setup.image, admin, "main.db") == before
    assert setup.store(dest).list_backups() == [setup.good]  # no safety backup for a refused restore


# --- what a killed run leaves behind -------------------------------------------------------------


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def test_the_next_run_undoes_what_killed_runs_left_and_only_for_its_own_stack(
    setup: Setup, tmp_path: Path
) -> None:
    """A backup killed while services were paused, a restore killed with its throwaway PostgreSQL
    running, a verify killed with a decrypted drill volume: the next backup (under the host lock)
    and the next verify undo them, and touch nothing of another stack."""
    project = f"{setup.prefix}-proj"
    config = setup.config_with(tmp_path / "dest", mailu__compose_project=project)
    stack = f"label=mailu-flows.stack={config.name}"
    names = {k: f"{setup.prefix}-{k}" for k in ("paused", "restore-pg", "drill-pg", "drill-vol", "other-vol")}
    sleeper = ["--entrypoint", "sleep", setup.image, "300"]
    try:
        _docker(
            "run",
            "-d",
            "--name",
            names["paused"],
            "--label",
            f"com.docker.compose.project={project}",
            *sleeper,
        )
        _docker("pause", names["paused"])
        for role in ("restore", "drill"):
            _docker("run", "-d", "--name", names[f"{role}-pg"], "--label", f"mailu-flows.stack={config.name}",
                    "--label", f"mailu-flows.role={role}", *sleeper)  # fmt: skip
        _docker("volume", "create", "--label", "mailu-flows.scratch=restore-drill", "--label",
                f"mailu-flows.stack={config.name}", names["drill-vol"])  # fmt: skip
        _docker("volume", "create", "--label", "mailu-flows.scratch=restore-drill", "--label",
                "mailu-flows.stack=another-stack", names["other-vol"])  # fmt: skip

        backup(config=config)
        assert _docker("inspect", "-f", "{{.State.Status}}", names["paused"]) == "running"
        running = _docker("ps", "-a", "--format", "{{.Names}}", "--filter", stack)
        assert names["restore-pg"] not in running and names["drill-pg"] in running  # a verify may own it

        record = backup_verify(config=config)
        assert record.ok
        assert names["drill-pg"] not in _docker("ps", "-a", "--format", "{{.Names}}", "--filter", stack)
        volumes = _docker("volume", "ls", "-q", "--filter", "label=mailu-flows.scratch=restore-drill")
        assert names["drill-vol"] not in volumes and names["other-vol"] in volumes
    finally:
        for container in (names["paused"], names["restore-pg"], names["drill-pg"]):
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
        for volume in (names["drill-vol"], names["other-vol"]):
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)


def test_stack_files_outside_the_stack_root_are_in_the_backup(
    setup: Setup, lab: dict[str, Any], tmp_path: Path
) -> None:
    """A certificates directory the config places outside the stack root (absolute) used to be left out
    of the stack-files archive without a word; it is archived under host-root/<its path>."""
    from mailu_flows.backup.engine import OUTSIDE_ROOT
    from mailu_flows.backup.gpg import decryption_keyring
    from mailu_flows.backup.verify import read_archive

    certs = Path(tempfile.mkdtemp(prefix="mlt-bk-certs-"))
    # a stack root of its own: the lab's may hold no deployed compose file at this point of the run
    root = Path(tempfile.mkdtemp(prefix="mlt-bk-root-", dir=Path(setup.base.host.stack_root).parent))
    try:
        (certs / "cert.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\noutside the root\n")
        certs.chmod(0o755)
        compose = root / setup.base.host.compose_file
        compose.parent.mkdir(parents=True)
        compose.write_text("services: {}\n")
        owner = Path(setup.base.host.stack_root).stat()
        for path in (root, compose.parent, compose):
            os.chown(path, owner.st_uid, owner.st_gid)
        config = setup.config_with(tmp_path / "dest", host__certs_dir=str(certs), host__stack_root=str(root))
        with _host(lab) as host:
            public, _, signing = _keys(config)
            outcome = run_backup(
                host, config, setup.store(tmp_path / "dest"), public, signing, volumes=[setup.names["dkim"]]
            )
        archive = outcome.manifest.archive("stack-files")
        assert archive is not None
        inside = f"./{config.host.compose_file}"
        outside = f"{OUTSIDE_ROOT}{certs}/cert.pem"
        with decryption_keyring(load_private_key(config)) as keyring:
            read = read_archive(
                None, keyring, setup.store(tmp_path / "dest"), outcome.manifest.backup_id, archive,
                capture=(inside, outside),
            )  # fmt: skip
        assert all(row.ok for row in read.rows), [r.message() for r in read.rows if not r.ok]
        assert read.report.captured[outside].startswith(b"-----BEGIN CERTIFICATE-----\noutside the root")
        assert b"services:" in read.report.captured[config.host.compose_file]
    finally:
        shutil.rmtree(certs, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
