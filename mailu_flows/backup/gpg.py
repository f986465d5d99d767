"""Throwaway GnuPG homedirs holding exactly one backup key, and streaming encrypt/decrypt.

Each use gets a fresh short homedir under /tmp (the agent socket path must stay under ~108 bytes),
with `default-cache-ttl 0` so the agent never answers from a cached passphrase; the agent is killed
and the homedir removed afterwards. The passphrase goes to gpg on its stdin (python-gnupg uses
`--pinentry-mode loopback --passphrase-fd 0`), never on argv or disk. Output is taken chunk by
chunk through `on_data`, so neither ciphertext nor plaintext piles up in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import gnupg

from mailu_core.errors import MailuFlowsError
from mailu_flows.blocks.gpg import GpgBackupPrivateKey, GpgBackupPublicKey
from mailu_flows.redact import register_secret

CHUNK = 1 << 18


class GpgError(MailuFlowsError, RuntimeError):
    """gpg refused a key or failed to encrypt/decrypt; the message carries gpg's status."""


@dataclass
class Keyring:
    gpg: gnupg.GPG
    fingerprint: str
    passphrase: str | None = None


HOMEDIR_PREFIX = "mfg-"
_OWNER = "owner.pid"


def _remove_homedir(home: str) -> None:
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


def remove_stale_homedirs(tmp: str = "/tmp") -> list[str]:
    """Homedirs of runs killed outright (their `finally` never ran): a verify's holds the imported
    private key, and its gpg-agent lives on. Each homedir names its process; remove those whose
    process is gone (only ours: same user)."""
    removed = []
    for entry in Path(tmp).glob(f"{HOMEDIR_PREFIX}*"):
        try:
            if entry.is_symlink() or not entry.is_dir() or entry.stat().st_uid != os.getuid():
                continue
            pid = int((entry / _OWNER).read_text().strip() or "0")
        except (OSError, ValueError):
            continue  # being created right now, or not ours to judge
        if pid > 0 and not Path(f"/proc/{pid}").exists():
            _remove_homedir(str(entry))
            removed.append(str(entry))
    return removed


@contextlib.contextmanager
def _homedir() -> Iterator[gnupg.GPG]:
    remove_stale_homedirs()
    home = tempfile.mkdtemp(prefix=HOMEDIR_PREFIX, dir="/tmp")
    try:
        os.chmod(home, 0o700)
        with open(os.path.join(home, _OWNER), "w") as fh:
            fh.write(str(os.getpid()))
        with open(os.path.join(home, "gpg-agent.conf"), "w") as fh:
            fh.write("default-cache-ttl 0\nmax-cache-ttl 0\nallow-loopback-pinentry\n")
        gpg = gnupg.GPG(gnupghome=home)
        gpg.buffer_size = CHUNK
        yield gpg
    finally:
        _remove_homedir(home)


def _import(gpg: gnupg.GPG, armored: str, fingerprint: str, what: str, passphrase: str | None) -> None:
    result: Any = gpg.import_keys(armored, passphrase=passphrase) if passphrase else gpg.import_keys(armored)
    if fingerprint not in (result.fingerprints or []):
        raise GpgError(f"the {what} block's key did not import as {fingerprint}: {result.results}")


@contextlib.contextmanager
def encryption_keyring(block: GpgBackupPublicKey) -> Iterator[Keyring]:
    """A homedir with only the public key: the backup side can encrypt, never decrypt."""
    with _homedir() as gpg:
        _import(gpg, block.armored_public_key, block.fingerprint, "public key", None)
        yield Keyring(gpg, block.fingerprint)


@contextlib.contextmanager
def decryption_keyring(block: GpgBackupPrivateKey) -> Iterator[Keyring]:
    """A homedir with the private key; the passphrase is registered for log redaction."""
    passphrase = block.passphrase.get_secret_value() or None
    register_secret(block.armored_private_key.get_secret_value())
    if passphrase:
        register_secret(passphrase)
    with _homedir() as gpg:
        _import(
            gpg, block.armored_private_key.get_secret_value(), block.fingerprint, "private key", passphrase
        )
        yield Keyring(gpg, block.fingerprint, passphrase)


@dataclass
class CipherStats:
    bytes: int = 0
    sha256: str = ""


def encrypt_stream(keyring: Keyring, source: BinaryIO, sink: BinaryIO) -> CipherStats:
    """Encrypt `source` to the keyring's recipient into `sink` (binary, no compression: the data is
    mostly compressed mail or random, and zlib made gpg 8x slower); returns size and sha256."""
    digest, stats = hashlib.sha256(), CipherStats()

    def on_data(chunk: bytes) -> bool:
        if chunk:
            sink.write(chunk)
            digest.update(chunk)
            stats.bytes += len(chunk)
        return False  # do not buffer in result.data

    keyring.gpg.on_data = on_data
    try:
        result: Any = keyring.gpg.encrypt_file(
            source,
            recipients=[keyring.fingerprint],
            armor=False,
            always_trust=True,
            extra_args=["--compress-algo", "none"],
        )
    finally:
        keyring.gpg.on_data = None
    failure = getattr(result, "on_data_failure", None)
    if failure is not None:
        raise GpgError(f"writing the ciphertext failed: {failure}")
    if not result.ok:
        raise GpgError(f"gpg could not encrypt: {result.status or 'no status'}")
    stats.sha256 = digest.hexdigest()
    return stats


def decrypt_stream(keyring: Keyring, source: BinaryIO, on_plain: Callable[[bytes], None]) -> None:
    """Decrypt `source`, handing each plaintext chunk to `on_plain` (never stored); raises GpgError."""

    def on_data(chunk: bytes) -> bool:
        if chunk:
            on_plain(chunk)
        return False

    keyring.gpg.on_data = on_data
    try:
        result: Any = keyring.gpg.decrypt_file(source, passphrase=keyring.passphrase, always_trust=True)
    finally:
        keyring.gpg.on_data = None
    failure = getattr(result, "on_data_failure", None)
    if failure is not None:
        raise GpgError(f"consuming the plaintext failed: {failure}")
    if not result.ok:
        last = [line for line in (result.stderr or "").splitlines() if "[GNUPG:]" not in line][-2:]
        raise GpgError(f"gpg could not decrypt ({result.status or 'no status'}): {' '.join(last)}".strip())
