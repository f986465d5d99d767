"""Credential blocks: save, load, secrets masked by the API, idempotent registration, safe creation."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from pydantic import SecretStr, ValidationError

from mailu_core.config import load_stack_config
from mailu_flows.blocks import (
    BLOCK_TYPES,
    BackupSigningKey,
    CloudflareDns,
    GpgBackupPrivateKey,
    GpgBackupPublicKey,
    MailuSecrets,
    MailuStack,
    Rfc2136Dns,
    SshHost,
    load_block,
    register_block_types,
)
from mailu_flows.blocks.create import secret_fields
from mailu_flows.cli import main

MASK = "********"
TSIG_SECRET = "c2VjcmV0LXRzaWcta2V5LWZvci10ZXN0cy1vbmx5"  # base64, test only
CF_TOKEN = "cf-test-token-0123456789abcdef"

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "inlock.ai.yaml"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _texts(data_dir: Path) -> dict[str, str]:
    return {
        "ssh_key": (data_dir / "ssh-test-key").read_text(),
        "host_key": (data_dir / "ssh-test-host-key.pub").read_text().strip(),
        "gpg_public": (data_dir / "gpg-test-public.asc").read_text(),
        "gpg_private": (data_dir / "gpg-test-private.asc").read_text(),
        "fingerprint": (data_dir / "gpg-test-fingerprint.txt").read_text().strip(),
    }


def sample_blocks(data_dir: Path) -> list[Block]:
    t = _texts(data_dir)
    return [
        SshHost(
            address="127.0.0.1",
            port=2222,
            user="mailu-lab",
            private_key=t["ssh_key"],
            host_keys=[t["host_key"]],
        ),
        CloudflareDns(api_token=CF_TOKEN, base_url="http://127.0.0.1:18787/client/v4"),
        Rfc2136Dns(server="127.0.0.2", tsig_key_name="mailu-lab-ddns", tsig_secret=TSIG_SECRET),
        GpgBackupPublicKey(armored_public_key=t["gpg_public"], fingerprint=t["fingerprint"]),
        GpgBackupPrivateKey(
            armored_private_key=t["gpg_private"],
            passphrase="test-only-passphrase",
            fingerprint=t["fingerprint"],
        ),
        BackupSigningKey(key="k" * 40),
        MailuSecrets(
            secret_key="S" * 16, admin_password="admin-pass-1", db_password="db-pass-1", api_token="TOKEN1234"
        ),
        MailuStack(
            config=load_stack_config(Path(__file__).resolve().parents[2] / "examples" / "inlock.ai.yaml")
        ),
    ]


def secret_values(block: Block) -> dict[str, str]:
    return {name: getattr(block, name).get_secret_value() for name in secret_fields(type(block))}


def test_every_block_type_has_a_mailu_slug_and_secret_fields() -> None:
    slugs = [t.get_block_type_slug() for t in BLOCK_TYPES]
    assert slugs == [
        "mailu-ssh-host",
        "mailu-cloudflare",
        "mailu-rfc2136",
        "mailu-gpg-public-key",
        "mailu-gpg-private-key",
        "mailu-backup-signing-key",
        "mailu-secrets",
        "mailu-stack",
    ]
    assert "armored_private_key" in secret_fields(GpgBackupPrivateKey)
    assert secret_fields(GpgBackupPublicKey) == []  # the backup side holds nothing secret


@pytest.mark.parametrize("index", range(len(BLOCK_TYPES)), ids=[t.get_block_type_slug() for t in BLOCK_TYPES])
def test_block_saves_loads_and_masks_secrets(index: int, data_dir: Path) -> None:
    block = sample_blocks(data_dir)[index]
    block_type = type(block)
    name = unique("t")
    block.save(name)

    loaded = load_block(block_type, name)
    assert secret_values(loaded) == secret_values(block)
    assert loaded.model_dump() == block.model_dump()

    # What the UI gets: the document read with secrets excluded.
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            name=name, block_type_slug=block_type.get_block_type_slug(), include_secrets=False
        )
    for field in secret_fields(block_type):
        assert document.data[field] == MASK, field
    shown = repr(document.data) + repr(loaded) + str(loaded)
    for value in secret_values(block).values():
        if value:
            assert value not in shown


def test_register_block_types_is_idempotent() -> None:
    first = register_block_types()
    with get_client(sync_client=True) as client:
        ids_before = {slug: client.read_block_type_by_slug(slug).id for slug in first}
        schemas_before = len(client.read_block_schemas())
    second = register_block_types()
    with get_client(sync_client=True) as client:
        ids_after = {slug: client.read_block_type_by_slug(slug).id for slug in second}
        schemas_after = len(client.read_block_schemas())
    assert first == second and ids_before == ids_after and schemas_before == schemas_after


def test_blocks_register_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["blocks", "register"]) == 0
    assert "registered mailu-ssh-host" in capsys.readouterr().out


# --- `mailu-flows blocks create` -----------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_create_ssh_host_from_files(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = _texts(data_dir)
    host_keys = tmp_path / "host-keys"
    host_keys.write_text(f"# pinned keys of the lab host\n{t['host_key']}\n\n")
    monkeypatch.setenv("LAB_SSH_PASSPHRASE", "")
    name = unique("ssh")
    code, output = run_cli(
        capsys,
        "blocks", "create", "ssh-host", name,
        "--field", "address=127.0.0.1",
        "--field", "port=2222",
        "--field", "user=mailu-lab",
        "--field", f"private_key=@{data_dir / 'ssh-test-key'}",
        "--field", "private_key_passphrase=env:LAB_SSH_PASSPHRASE",
        "--field", f"host_keys=@{host_keys}",
    )  # fmt: skip
    assert code == 0, output
    assert f"saved mailu-ssh-host/{name}" in output
    assert f"private_key: <secret, set> from file {data_dir / 'ssh-test-key'}" in output
    assert "host_keys: 1 entry" in output
    assert "PRIVATE KEY" not in output and t["ssh_key"].splitlines()[1] not in output

    loaded = load_block(SshHost, name)
    assert loaded.private_key.get_secret_value() == t["ssh_key"]
    assert loaded.host_keys == [t["host_key"]] and loaded.port == 2222


def test_create_from_env_prefix(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_DNS_SERVER", "127.0.0.2")
    monkeypatch.setenv("LAB_DNS_TSIG_KEY_NAME", "mailu-lab-ddns")
    monkeypatch.setenv("LAB_DNS_TSIG_SECRET", TSIG_SECRET)
    name = unique("dns")
    code, output = run_cli(capsys, "blocks", "create", "rfc2136", name, "--from-env", "LAB_DNS")
    assert code == 0, output
    assert TSIG_SECRET not in output
    assert "tsig_secret: <secret, set> from env LAB_DNS_TSIG_SECRET" in output
    loaded = load_block(Rfc2136Dns, name)
    assert loaded.tsig_secret.get_secret_value() == TSIG_SECRET and loaded.tsig_algorithm == "hmac-sha256"


def test_create_from_env_file_variables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "cf-token"
    token_file.write_text(CF_TOKEN + "\n")
    monkeypatch.setenv("LAB_CF_API_TOKEN_FILE", str(token_file))
    name = unique("cf")
    code, output = run_cli(
        capsys, "blocks", "create", "cloudflare", name, "--from-env", "LAB_CF_",
        "--field", "base_url=http://127.0.0.1:18787/client/v4",
    )  # fmt: skip
    assert code == 0, output
    assert CF_TOKEN not in output
    loaded = load_block(CloudflareDns, name)
    assert loaded.api_token.get_secret_value() == CF_TOKEN  # trailing newline stripped
    assert loaded.base_url == "http://127.0.0.1:18787/client/v4"


def test_create_empty_mailu_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("secrets")
    code, output = run_cli(capsys, "blocks", "create", "secrets", name)
    assert code == 0, output
    assert "secret_key: <secret, empty> from default" in output
    assert load_block(MailuSecrets, name).missing() == [
        "secret_key",
        "admin_password",
        "db_password",
        "api_token",
    ]


def test_create_refuses_a_secret_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(
        capsys, "blocks", "create", "cloudflare", unique("cf"), "--field", "api_token=literal-token-value"
    )
    assert code == 1
    assert "api_token is secret: give it as api_token=@FILE or api_token=env:VAR" in output
    assert "literal-token-value" not in output


def test_create_does_not_echo_an_invalid_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAD_TSIG", "not base64 !!! hunter2")
    code, output = run_cli(
        capsys, "blocks", "create", "rfc2136", unique("dns"),
        "--field", "server=127.0.0.2", "--field", "tsig_key_name=k", "--field", "tsig_secret=env:BAD_TSIG",
        "--field", "tsig_algorithm=hmac-md5",
    )  # fmt: skip
    assert code == 1
    assert "tsig_secret: the TSIG secret is not valid base64" in output
    assert "tsig_algorithm: Input should be 'hmac-sha256'" in output
    assert "hunter2" not in output


def test_create_reports_missing_sources_and_unknown_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(capsys, "blocks", "create", "ssh-host", unique("ssh"), "--field", "address=h")
    assert code == 1 and "user: required, but no source given" in output and "private_key: required" in output
    code, output = run_cli(capsys, "blocks", "create", "ssh-host", unique("ssh"), "--field", "hostt=h")
    assert code == 1 and "hostt: not a field of mailu-ssh-host" in output
    code, output = run_cli(
        capsys, "blocks", "create", "ssh-host", unique("ssh"), "--field", "x=env:NOPE_NOT_SET"
    )
    assert code == 1 and "environment variable NOPE_NOT_SET is not set" in output
    code, output = run_cli(capsys, "blocks", "create", "ftp", unique("x"))
    assert code == 1 and "unknown block kind 'ftp'" in output
    code, output = run_cli(capsys, "blocks", "create", "secrets", "Bad_Name")
    assert code == 1 and "is not a Prefect block document name" in output


def test_create_refuses_to_replace_without_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique("secrets")
    assert run_cli(capsys, "blocks", "create", "secrets", name)[0] == 0
    code, output = run_cli(capsys, "blocks", "create", "secrets", name)
    assert code == 1 and "--overwrite" in output
    api_token = tmp_path / "token"
    api_token.write_text("NEWTOKEN99")
    code, output = run_cli(
        capsys, "blocks", "create", "secrets", name, "--overwrite", "--field", f"api_token=@{api_token}"
    )
    assert code == 0, output
    assert load_block(MailuSecrets, name).api_token.get_secret_value() == "NEWTOKEN99"


def test_create_check_only_does_not_save(capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("secrets")
    code, output = run_cli(capsys, "blocks", "create", "secrets", name, "--check")
    assert code == 0 and "not saved" in output
    with pytest.raises(ValueError):
        load_block(MailuSecrets, name)


def test_kinds_command_lists_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(capsys, "blocks", "kinds", "--from-env", "LAB_SSH")
    assert code == 0
    assert "private_key (secret, required)  [LAB_SSH_PRIVATE_KEY | LAB_SSH_PRIVATE_KEY_FILE]" in output


# --- validation (no server needed) ---------------------------------------------------------------


def _ssh(data_dir: Path, **changes: Any) -> SshHost:
    t = _texts(data_dir)
    fields: dict[str, Any] = {
        "address": "127.0.0.1",
        "user": "deploy",
        "private_key": t["ssh_key"],
        "host_keys": [t["host_key"]],
    }
    return SshHost(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"port": 70000}, "less than or equal to 65535"),
        ({"address": "bad host!"}, "is not a host name or an IP address"),
        ({"user": "Root User"}, "String should match pattern"),
        ({"host_keys": []}, "at least 1 item"),
        ({"host_keys": ["ssh-ed25519"]}, "is not a host key line"),
        (
            {"host_keys": ["[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"]},
            "looks like a known_hosts line",
        ),
        (
            {"host_keys": ["ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIL/8H3NgEmSc9ZYV6Sf+ecTJjnA9hSpnir+gWvWCyN65"]},
            "says it is",
        ),
        ({"host_keys": ["ssh-ed25519 AAAA!!!"]}, "not valid base64"),
        ({"private_key": "ssh-ed25519 AAAAC3Nz... me@host"}, "this is a public key"),
        ({"private_key": "hunter2"}, "not a private key"),
    ],
)
def test_ssh_host_validation(data_dir: Path, changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _ssh(data_dir, **changes)
    assert expected in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_ssh_host_accepts_the_duplicate_free_pinned_keys(data_dir: Path) -> None:
    host_key = _texts(data_dir)["host_key"]
    assert _ssh(data_dir, host_keys=[f"  {host_key}  "]).host_keys == [host_key]
    with pytest.raises(ValidationError, match="more than once"):
        _ssh(data_dir, host_keys=[host_key, host_key])


def test_rfc2136_algorithm_and_secret(data_dir: Path) -> None:
    with pytest.raises(ValidationError, match="hmac-sha256"):
        Rfc2136Dns(server="127.0.0.2", tsig_key_name="k", tsig_secret=TSIG_SECRET, tsig_algorithm="hmac-md5")
    with pytest.raises(ValidationError, match="not valid base64"):
        Rfc2136Dns(server="127.0.0.2", tsig_key_name="k", tsig_secret="%%%")
    with pytest.raises(ValidationError, match="not a valid IPv4 or IPv6"):
        Rfc2136Dns(server="ns1.example.com", tsig_key_name="k", tsig_secret=TSIG_SECRET)
    with pytest.raises(ValidationError, match="less than or equal to 65535"):
        Rfc2136Dns(server="127.0.0.2", port=0 + 70000, tsig_key_name="k", tsig_secret=TSIG_SECRET)


def test_cloudflare_token_checks() -> None:
    with pytest.raises(ValidationError, match="empty"):
        CloudflareDns(api_token="")
    with pytest.raises(ValidationError, match="whitespace"):
        CloudflareDns(api_token="abc def")
    assert CloudflareDns(api_token="t").base_url == "https://api.cloudflare.com/client/v4"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://api.example.net/client/v4", False),  # the token would travel in clear text
        ("http://127.0.0.1.example.net/client/v4", False),
        ("https://api.example.net/client/v4", True),
        ("http://127.0.0.1:18787/client/v4", True),  # the lab's emulator
        ("http://localhost:18787/client/v4", True),
    ],
)
def test_cloudflare_base_url_is_https_unless_loopback(url: str, ok: bool) -> None:
    if ok:
        assert CloudflareDns(api_token="t", base_url=url).base_url == url
    else:
        with pytest.raises(ValidationError, match="not https"):
            CloudflareDns(api_token="t", base_url=url)


def test_gpg_fingerprint_must_match_the_key(data_dir: Path) -> None:
    t = _texts(data_dir)
    spaced = " ".join(t["fingerprint"][i : i + 4] for i in range(0, 40, 4)).lower()
    assert (
        GpgBackupPublicKey(armored_public_key=t["gpg_public"], fingerprint=spaced).fingerprint
        == t["fingerprint"]
    )
    other = "0" * 40
    with pytest.raises(ValidationError, match=f"fingerprint {other} does not match the key"):
        GpgBackupPublicKey(armored_public_key=t["gpg_public"], fingerprint=other)
    with pytest.raises(ValidationError, match="does not match"):
        GpgBackupPrivateKey(armored_private_key=t["gpg_private"], fingerprint=other)
    with pytest.raises(ValidationError, match="is not a key fingerprint"):
        GpgBackupPublicKey(armored_public_key=t["gpg_public"], fingerprint="abc")


def test_gpg_blocks_refuse_the_wrong_half(data_dir: Path) -> None:
    t = _texts(data_dir)
    with pytest.raises(ValidationError, match="this is a PRIVATE key") as caught:
        GpgBackupPublicKey(armored_public_key=t["gpg_private"], fingerprint=t["fingerprint"])
    assert "PRIVATE KEY BLOCK-----\n" not in str(caught.value)
    assert t["gpg_private"].splitlines()[2][:40] not in str(caught.value)
    with pytest.raises(ValidationError, match="this is a PUBLIC key"):
        GpgBackupPrivateKey(armored_private_key=t["gpg_public"], fingerprint=t["fingerprint"])


def test_mailu_secrets_rules_and_fill_once() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        MailuSecrets(secret_key="short")
    with pytest.raises(ValidationError, match="single quote"):
        MailuSecrets(admin_password="it's")
    with pytest.raises(ValidationError, match="at least 4 characters"):
        MailuSecrets(api_token="abc")

    partial = MailuSecrets(db_password="keep-me")
    assert partial.missing() == ["secret_key", "admin_password", "api_token"]
    filled, generated = partial.filled()
    assert generated == ["secret_key", "admin_password", "api_token"] and filled.missing() == []
    assert filled.db_password == SecretStr("keep-me")
    assert len(filled.secret_key.get_secret_value()) == 16
    assert filled.api_token.get_secret_value().isalnum()
    again, generated_again = filled.filled()
    assert generated_again == [] and again == filled
