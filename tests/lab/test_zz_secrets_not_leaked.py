"""Runs late (file name): after the flows of the session ran, no run log, artifact or run parameter
stored by the Prefect server contains any of the lab's secret values."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep

pytestmark = pytest.mark.lab


def _secret_values() -> set[str]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks import MailuSecrets, load_block

    values: set[str] = set()
    secrets = ep.lab_dir() / "secrets"
    for path in secrets.iterdir():
        if path.name.endswith((".pub.asc", ".fpr")) or not path.is_file():
            continue
        text = path.read_text().strip()
        if "BEGIN" in text:  # armored or PEM keys: every body line is secret material
            values |= {line.strip() for line in text.splitlines() if len(line.strip()) >= 40}
        else:
            values.add(text.split(":")[-1])  # tsig.key is alg:name:secret
    ssh_key = (ep.lab_dir() / "ssh" / "client_ed25519").read_text()
    values |= {line for line in ssh_key.splitlines() if len(line) >= 40 and "BEGIN" not in line}
    with temporary_settings({PREFECT_API_URL: ep.PREFECT_API_URL}):
        block = load_block(MailuSecrets, "lab-mailu-secrets")
        for field in ("secret_key", "admin_password", "db_password", "api_token"):
            value = getattr(block, field).get_secret_value()
            if value:
                values.add(value)
    return {v for v in values if len(v) >= 12}


def _post_all(path: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = json.dumps({"limit": 200, "offset": offset}).encode()
        req = urllib.request.Request(
            f"{ep.PREFECT_API_URL}{path}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            page = json.loads(resp.read())
        out += page
        if len(page) < 200:
            return out
        offset += 200


def test_no_secret_in_logs_artifacts_or_parameters(lab: dict[str, Any]) -> None:
    secrets = _secret_values()
    assert len(secrets) >= 5
    logs = _post_all("/logs/filter")
    artifacts = _post_all("/artifacts/filter")
    runs = _post_all("/flow_runs/filter")
    assert runs, "no flow run on the server: the session ran no flow?"
    corpus = {
        "logs": "\n".join(str(log.get("message", "")) for log in logs),
        "artifacts": "\n".join(json.dumps(a.get("data")) + str(a.get("description")) for a in artifacts),
        "parameters": "\n".join(json.dumps(r.get("parameters")) for r in runs),
    }
    for where, text in corpus.items():
        leaked = [s[:6] + "..." for s in secrets if s in text]
        assert not leaked, f"secret values found in {where}: {leaked}"
    Path(ep.lab_dir() / "leak-check.txt").write_text(
        f"{len(secrets)} secret values checked against {len(logs)} logs, {len(artifacts)} artifacts, "
        f"{len(runs)} flow runs\n"
    )
