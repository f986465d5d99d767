"""Blocks made the Prefect UI's way work on the lab: keys pasted in the form's single-line secret fields
(flattened by a real Chromium) and saved with the form's own API calls connect to the lab's sshd and
encrypt/decrypt with gpg; `prefect block register -m mailu_flows.blocks` registers every block type."""

from __future__ import annotations

import html
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.blocks.core import Block
from prefect.settings import PREFECT_API_URL, temporary_settings

from lab import endpoints as ep
from mailu_core.config import StackConfig, dump_stack_config, load_stack_config
from mailu_flows.blocks import BLOCK_TYPES, GpgBackupPrivateKey, GpgBackupPublicKey, SshHost

pytestmark = pytest.mark.lab

API = ep.PREFECT_API_URL
# How the UI (Prefect 3.9's default, V2) renders a SecretStr field (JSON schema format "password"): a
# single-line <input type=password autocomplete=off> (its schema form's password widget).
UI_SECRET_INPUT = '<input id="field" type="password" autocomplete="off">'


def chromium_paste(text: str) -> str:
    """`text` as a real Chromium leaves it once inserted into the UI's secret input: the same editing
    path as a paste of plain text (the page is a 0600 file: the key never reaches a command line)."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="helperc-chromium-") as tmp:
        page = Path(tmp) / "paste.html"
        page.touch(mode=0o600)
        page.write_text(
            f"<!doctype html><html><body>{UI_SECRET_INPUT}<pre id='out'></pre><script>"
            "const f = document.getElementById('field'); f.focus();"
            f"document.execCommand('insertText', false, {json.dumps(text)});"
            "document.getElementById('out').textContent = JSON.stringify(f.value);"
            "</script></body></html>"
        )
        out = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp}/profile", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
    found = re.search(r"<pre id=\"out\">(.*?)</pre>", out, re.S)
    assert found, "chromium printed no result"
    value: str = json.loads(html.unescape(found[1]))
    return value


def ui_create_block(client: httpx.Client, block_type: type[Block], name: str, values: dict[str, Any]) -> str:
    """What the UI's "Create block" page sends: the form's values checked against the block schema by
    POST /ui/schemas/validate, then POST /block_documents/; returns the document id."""
    slug = block_type.get_block_type_slug()
    type_id = client.get(f"/block_types/slug/{slug}").raise_for_status().json()["id"]
    schema = (
        client.get(f"/block_schemas/checksum/{block_type._calculate_schema_checksum()}")
        .raise_for_status()
        .json()
    )
    verdict = client.post("/ui/schemas/validate", json={"schema": schema["fields"], "values": values})
    assert verdict.raise_for_status().json()["valid"], verdict.json()
    created = client.post(
        "/block_documents/",
        json={
            "block_schema_id": schema["id"],
            "block_type_id": type_id,
            "is_anonymous": False,
            "data": values,
            "name": name,
        },
    )
    document_id: str = created.raise_for_status().json()["id"]
    return document_id


@pytest.fixture
def ui(lab: dict[str, Any]) -> Iterator[tuple[httpx.Client, list[str]]]:
    """A client of the lab's Prefect API and the block documents to delete afterwards."""
    from mailu_flows.blocks.registry import register_block_types

    created: list[str] = []
    with temporary_settings({PREFECT_API_URL: API}), httpx.Client(base_url=API, timeout=30) as client:
        register_block_types()
        try:
            yield client, created
        finally:
            for document_id in created:
                client.delete(f"/block_documents/{document_id}")


def test_the_ui_secret_field_is_a_single_line_input_that_flattens_keys() -> None:
    schema = SshHost.model_json_schema()["properties"]["private_key"]
    assert schema["format"] == "password"  # what makes the UI render UI_SECRET_INPUT
    assert chromium_paste("line one\nline two\r\nline three\n") == "line one line two line three"


def test_keys_pasted_in_the_ui_connect_and_decrypt(
    ui: tuple[httpx.Client, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.services import ensure_gpg
    from mailu_flows.backup.gpg import decrypt_stream, decryption_keyring, encrypt_stream, encryption_keyring
    from mailu_flows.cli import main
    from mailu_flows.tasks.backup import load_private_key, load_public_key
    from mailu_flows.tasks.host import connect_host

    client, created = ui
    lab = ep.lab_dir()
    gpg = ensure_gpg()  # the lab's backup key pair, in 0600 files
    client_key = (lab / "ssh" / "client_ed25519").read_text()
    host_key = " ".join((lab / "ssh" / "host_ed25519.pub").read_text().split()[:2])
    fingerprint = gpg.fingerprint
    suffix = uuid.uuid4().hex[:8]
    names = {"ssh": f"ui-ssh-{suffix}", "pub": f"ui-gpg-public-{suffix}", "priv": f"ui-gpg-private-{suffix}"}

    pasted_key = chromium_paste(client_key)
    assert "\n" not in pasted_key and "-----BEGIN OPENSSH PRIVATE KEY----- " in pasted_key
    created.append(
        ui_create_block(
            client,
            SshHost,
            names["ssh"],
            {
                "address": ep.SSH_HOST,
                "port": ep.SSH_PORT,
                "user": ep.SSH_USER,
                "private_key": pasted_key,
                "host_keys": [chromium_paste(host_key + "\n")],
            },
        )
    )
    created.append(
        ui_create_block(
            client,
            GpgBackupPublicKey,
            names["pub"],
            {
                "armored_public_key": chromium_paste(gpg.public_key_file.read_text()),
                "fingerprint": fingerprint,
            },
        )
    )
    created.append(
        ui_create_block(
            client,
            GpgBackupPrivateKey,
            names["priv"],
            {
                "armored_private_key": chromium_paste(gpg.private_key_file.read_text()),
                "passphrase": chromium_paste(gpg.passphrase_file.read_text()),
                "fingerprint": fingerprint,
            },
        )
    )

    base: StackConfig = load_stack_config(lab / "stack.yaml")
    config = base.model_copy(
        update={
            "blocks": base.blocks.model_copy(
                update={
                    "ssh_host": names["ssh"],
                    "gpg_public_key": names["pub"],
                    "gpg_private_key": names["priv"],
                }
            )
        }
    )

    # The flows' own path: the SSH connection of a run, from the block the UI saved.
    host = connect_host(config)
    try:
        assert host.run(["id", "-un"]).text() == f"{ep.SSH_USER}\n"
    finally:
        host.close()

    # Backups are encrypted to the public key block and verified with the private one.
    plain = os.urandom(4096)
    cipher = tmp_path / "probe.gpg"
    with encryption_keyring(load_public_key(config)) as keyring, cipher.open("wb") as sink:
        encrypt_stream(keyring, io.BytesIO(plain), sink)
    received: list[bytes] = []
    with decryption_keyring(load_private_key(config)) as keyring, cipher.open("rb") as source:
        decrypt_stream(keyring, source, received.append)
    assert b"".join(received) == plain

    # And `blocks check` loads each as the flows will.
    config_file = tmp_path / "stack.yaml"
    config_file.write_text(dump_stack_config(config))
    assert main(["blocks", "check", "--config", str(config_file)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    for slug, name in (
        ("mailu-ssh-host", names["ssh"]),
        ("mailu-gpg-public-key", names["pub"]),
        ("mailu-gpg-private-key", names["priv"]),
    ):
        assert f"ok {slug}/{name}" in out


def test_prefect_block_register_registers_every_type(lab: dict[str, Any]) -> None:
    env = {**os.environ, "PREFECT_API_URL": API}
    prefect = str(Path(sys.executable).parent / "prefect")
    done = subprocess.run(
        [prefect, "block", "register", "-m", "mailu_flows.blocks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Successfully registered {len(BLOCK_TYPES)} blocks" in done.stdout
    with httpx.Client(base_url=API, timeout=30) as client:
        for block_type in BLOCK_TYPES:
            assert block_type.get_block_type_name() in done.stdout
            slug = block_type.get_block_type_slug()
            server = client.get(f"/block_types/slug/{slug}").raise_for_status().json()
            assert server["logo_url"] == str(block_type._logo_url)
            assert server["documentation_url"] == str(block_type._documentation_url)
            assert server["code_example"] == block_type.get_code_example()
            checksum = block_type._calculate_schema_checksum()
            schema = client.get(f"/block_schemas/checksum/{checksum}").raise_for_status().json()
            assert schema["block_type_id"] == server["id"]


def test_a_flow_command_that_cannot_find_a_block_names_the_server(lab: dict[str, Any]) -> None:
    """`mailu-flows plan` with a config whose blocks are on no server (the example's inlock-* names):
    the failure says which server was asked and how to point at the lab's."""
    env = {**os.environ, "PREFECT_API_URL": API}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mailu-flows"), "plan", "--local",
         "--config", "examples/inlock.ai.yaml"],
        env=env, capture_output=True, text=True, timeout=300, cwd=ep.REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    # the command's own verdict (Prefect's log lines and shutdown warnings surround it)
    verdict = [line for line in done.stderr.splitlines() if line.startswith("Failed: ")]
    assert verdict, done.stderr
    assert f"no mailu-ssh-host block named 'inlock-ssh' on the Prefect server at {API}" in verdict[0]
    assert "export PREFECT_API_URL=http://127.0.0.1:4200/api" in verdict[0]
