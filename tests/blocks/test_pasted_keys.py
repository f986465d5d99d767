"""Keys pasted in the Prefect UI's single-line secret fields: the block restores their line breaks, or
refuses with a message naming the field (never quoting the key)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pydantic import ValidationError

from mailu_flows.blocks import CloudflareDns, GpgBackupPrivateKey, GpgBackupPublicKey, Rfc2136Dns, SshHost
from mailu_flows.blocks.pasted import FlattenedKeyError, restore_armor


def chromium_input(text: str) -> str:
    """What Chromium leaves of `text` typed or pasted into an <input>: trailing line breaks dropped,
    the others (CRLF counting as one) turned into spaces (tests/lab/test_blocks_pasted.py checks this
    against a real Chromium)."""
    return text.rstrip("\r\n").replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


FLATTENINGS: dict[str, Callable[[str], str]] = {
    "chromium-input": chromium_input,
    "literal-backslash-n": lambda text: text.replace("\n", "\\n"),  # JSON-escaped, from a secret manager
    "line-breaks-stripped": lambda text: text.replace("\n", ""),  # an input's value set by a script
    "crlf": lambda text: text.replace("\n", "\r\n"),
}


def _texts(data_dir: Path) -> dict[str, str]:
    return {
        "ssh_key": (data_dir / "ssh-test-key").read_text(),
        "host_key": (data_dir / "ssh-test-host-key.pub").read_text().strip(),
        "gpg_public": (data_dir / "gpg-test-public.asc").read_text(),
        "gpg_private": (data_dir / "gpg-test-private.asc").read_text(),
        "fingerprint": (data_dir / "gpg-test-fingerprint.txt").read_text().strip(),
    }


def _encrypted_rsa_pem(passphrase: bytes) -> str:
    """A traditional encrypted PEM key: its `Proc-Type:`/`DEK-Info:` header lines must come back too."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(passphrase),
    ).decode()


@pytest.mark.parametrize("flatten", FLATTENINGS.values(), ids=FLATTENINGS.keys())
@pytest.mark.parametrize("key_file", ["ssh-test-key", "gpg-test-public.asc", "gpg-test-private.asc"])
def test_restore_armor_gives_back_the_exact_key(data_dir: Path, key_file: str, flatten) -> None:
    original = (data_dir / key_file).read_text()
    flattened = flatten(original)
    assert flattened != original
    assert restore_armor(flattened) == original.strip()


def test_restore_armor_keeps_pem_header_lines() -> None:
    pem = _encrypted_rsa_pem(b"test-only-passphrase")
    assert "Proc-Type: 4,ENCRYPTED" in pem and "DEK-Info: " in pem
    for name, flatten in FLATTENINGS.items():
        if name == "line-breaks-stripped":  # `4,ENCRYPTEDDEK-Info:`: where a header ends is lost
            with pytest.raises(FlattenedKeyError, match="cannot be told apart from the key data"):
                restore_armor(flatten(pem))
        else:
            assert restore_armor(flatten(pem)) == pem.strip(), name


def test_restore_armor_keeps_openpgp_comment_headers(data_dir: Path) -> None:
    lines = (data_dir / "gpg-test-public.asc").read_text().strip().splitlines()
    with_comment = "\n".join([lines[0], "Comment: Mailu backups (test only)", *lines[1:]])
    assert restore_armor(chromium_input(with_comment)) == with_comment


def test_a_key_that_kept_its_lines_is_left_alone(data_dir: Path) -> None:
    original = (data_dir / "ssh-test-key").read_text()
    assert restore_armor(original) == original.strip()
    assert restore_armor("not a key at all") == "not a key at all"


def test_headers_that_ran_into_the_data_are_refused_without_quoting_the_key(data_dir: Path) -> None:
    lines = (data_dir / "gpg-test-public.asc").read_text().strip().splitlines()
    run_together = "".join([lines[0], "Comment: test", *lines[1:]])
    with pytest.raises(FlattenedKeyError, match="cannot be told apart from the key data"):
        restore_armor(run_together)
    with pytest.raises(ValidationError) as caught:
        GpgBackupPublicKey(armored_public_key=run_together, fingerprint=_texts(data_dir)["fingerprint"])
    message = str(caught.value)
    assert "armored_public_key" in message and "paste the exported key again" in message
    assert lines[2][:20] not in message


@pytest.mark.parametrize("flatten", FLATTENINGS.values(), ids=FLATTENINGS.keys())
def test_ssh_host_block_restores_a_pasted_key(data_dir: Path, flatten) -> None:
    t = _texts(data_dir)
    block = SshHost.model_validate(
        {
            "address": "127.0.0.1",
            "user": "deploy",
            "private_key": flatten(t["ssh_key"]),
            "host_keys": [t["host_key"]],
        }
    )
    assert block.private_key.get_secret_value() == t["ssh_key"]
    paramiko.Ed25519Key.from_private_key(io.StringIO(block.private_key.get_secret_value()))


def test_ssh_host_block_reads_an_encrypted_pem_key_with_its_passphrase(data_dir: Path) -> None:
    host_key = _texts(data_dir)["host_key"]
    pem = chromium_input(_encrypted_rsa_pem(b"test-only-passphrase"))
    fields = {"address": "127.0.0.1", "user": "deploy", "private_key": pem, "host_keys": [host_key]}
    block = SshHost.model_validate({**fields, "private_key_passphrase": "test-only-passphrase"})
    assert "Proc-Type: 4,ENCRYPTED\nDEK-Info: " in block.private_key.get_secret_value()

    with pytest.raises(ValidationError, match="private_key_passphrase: the private key is encrypted"):
        SshHost.model_validate(fields)
    with pytest.raises(ValidationError, match=r"or private_key_passphrase is wrong") as caught:
        SshHost.model_validate({**fields, "private_key_passphrase": "hunter2-wrong"})
    assert "hunter2" not in str(caught.value)


def test_a_mangled_ssh_key_is_named_at_validation_not_at_connect(data_dir: Path) -> None:
    t = _texts(data_dir)
    lines = t["ssh_key"].splitlines()
    truncated_body = "\n".join([lines[0], lines[1][:-8], *lines[2:]])  # a character lost in the copy
    with pytest.raises(ValidationError, match="private_key: cannot be read as an ed25519, ECDSA or RSA key"):
        SshHost(address="127.0.0.1", user="deploy", private_key=truncated_body, host_keys=[t["host_key"]])


def test_pinned_host_keys_pasted_several_to_a_box_are_split() -> None:
    ed25519_line = (
        "ssh-ed25519 "
        + _public_blob(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw())
        + " root@host"
    )
    other = "ssh-ed25519 " + _public_blob(
        ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    )
    scan = f"# 127.0.0.1:2222 SSH-2.0-OpenSSH_9.2\n{ed25519_line}\n\n{other}\n"
    for pasted in ([scan], [chromium_input(f"{ed25519_line}\n{other}")], [scan.replace("\n", "\\n")], scan):
        block = SshHost.model_validate(
            {
                "address": "127.0.0.1",
                "user": "deploy",
                "private_key": _throwaway_ssh_key(),
                "host_keys": pasted,
            }
        )
        assert block.host_keys == [ed25519_line, other], pasted


def _public_blob(raw: bytes) -> str:
    import base64

    name = b"ssh-ed25519"
    blob = len(name).to_bytes(4, "big") + name + len(raw).to_bytes(4, "big") + raw
    return base64.b64encode(blob).decode()


def _throwaway_ssh_key() -> str:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )


@pytest.mark.parametrize("flatten", FLATTENINGS.values(), ids=FLATTENINGS.keys())
def test_gpg_blocks_restore_pasted_keys_and_check_the_fingerprint(data_dir: Path, flatten) -> None:
    t = _texts(data_dir)
    public = GpgBackupPublicKey(armored_public_key=flatten(t["gpg_public"]), fingerprint=t["fingerprint"])
    private = GpgBackupPrivateKey(armored_private_key=flatten(t["gpg_private"]), fingerprint=t["fingerprint"])
    assert public.armored_public_key == t["gpg_public"]
    assert private.armored_private_key.get_secret_value() == t["gpg_private"]


def test_single_line_secrets_lose_what_was_copied_around_them() -> None:
    token = "cf-test-token-0123456789abcdef"
    assert CloudflareDns(api_token=f" {token}\n").api_token.get_secret_value() == token
    with pytest.raises(ValidationError, match=r"api_token\n.*contains whitespace"):
        CloudflareDns(api_token="cf-test token")
    tsig = "c2VjcmV0LXRzaWcta2V5LWZvci10ZXN0cy1vbmx5"
    block = Rfc2136Dns(server="127.0.0.2", tsig_key_name="k", tsig_secret=f"{tsig}\r\n")
    assert block.tsig_secret.get_secret_value() == tsig
