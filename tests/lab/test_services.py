"""The lab's host services for real: Prometheus (file_sd, rules, lifecycle), Prefect server + UI, GnuPG."""

from __future__ import annotations

import json
import stat
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import gnupg
import pytest

from lab import endpoints as ep
from lab import services

pytestmark = pytest.mark.lab


def _get_json(url: str, data: bytes | None = None) -> Any:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read()
    try:
        return json.loads(body)
    except ValueError:
        return body


def test_prometheus_loads_rules_from_the_stack_root_glob_on_reload(lab: dict[str, Any]) -> None:
    base = lab["prometheus"]
    rule_file = services.monitoring_dirs()["rules"] / "zz-lab-test.yml"
    rule_file.write_text(
        "groups:\n- name: zz-lab-test\n  rules:\n  - alert: LabTestAlways\n    expr: vector(1)\n"
    )
    try:
        _get_json(f"{base}/-/reload", data=b"")  # the lifecycle API is on
        groups = _get_json(f"{base}/api/v1/rules")["data"]["groups"]
        assert "zz-lab-test" in {g["name"] for g in groups}
    finally:
        rule_file.unlink()
        _get_json(f"{base}/-/reload", data=b"")
    groups = _get_json(f"{base}/api/v1/rules")["data"]["groups"]
    assert "zz-lab-test" not in {g["name"] for g in groups}


def test_prometheus_discovers_file_sd_targets(lab: dict[str, Any]) -> None:
    base = lab["prometheus"]
    target_file = services.monitoring_dirs()["file_sd"] / "zz-lab-test.yml"
    target_file.write_text(f"- targets: ['127.0.0.1:{ep.PROMETHEUS_PORT}']\n  labels: {{lab_test: 'yes'}}\n")
    try:
        deadline = time.monotonic() + 20
        found = False
        while time.monotonic() < deadline and not found:
            active = _get_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
            found = any(t["labels"].get("lab_test") == "yes" for t in active)
            time.sleep(0.5)
        assert found, "file_sd target not discovered"
    finally:
        target_file.unlink()


def test_prefect_server_and_ui(lab: dict[str, Any]) -> None:
    assert _get_json(f"{lab['prefect']['api']}/health") is True
    settings = _get_json(f"{lab['prefect']['ui']}/ui-settings")
    assert settings["api_url"] == ep.PREFECT_API_URL  # the UI calls the right port
    with urllib.request.urlopen(lab["prefect"]["ui"], timeout=5) as resp:
        assert resp.status == 200
        assert b"<html" in resp.read().lower()


def test_gpg_backup_key_pair_round_trips_and_files_are_private(lab: dict[str, Any]) -> None:
    info = services.ensure_gpg()
    for path in (info.public_key_file, info.private_key_file, info.passphrase_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert "PRIVATE KEY" not in info.public_key_file.read_text()
    with (
        tempfile.TemporaryDirectory(dir="/tmp") as enc_home,
        tempfile.TemporaryDirectory(dir="/tmp") as dec_home,
    ):
        encryptor = gnupg.GPG(gnupghome=enc_home)  # the backup side holds only the public key
        assert encryptor.import_keys(info.public_key_file.read_text()).fingerprints == [info.fingerprint]
        sealed = encryptor.encrypt(b"marker", [info.fingerprint], always_trust=True, armor=False)
        assert sealed.ok, sealed.status
        decryptor = gnupg.GPG(gnupghome=dec_home)
        Path(dec_home, "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
        decryptor.import_keys(info.private_key_file.read_text())
        wrong = decryptor.decrypt(sealed.data, passphrase="wrong", always_trust=True)
        assert not wrong.ok
        opened = decryptor.decrypt(
            sealed.data, passphrase=info.passphrase_file.read_text(), always_trust=True
        )
        assert opened.ok and opened.data == b"marker"
        for home in (enc_home, dec_home):
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)
