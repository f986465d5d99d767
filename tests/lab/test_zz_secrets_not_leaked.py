"""Runs late (file name): after the flows of the session ran (the failed-run tests included), none of
the lab's secret values, plain or encoded (base64, URL-encoded, JSON-escaped, repr'd, a key's lines),
is in what the Prefect server stored (run logs, artifacts, parameters, every state message of every
run), in the results Prefect persisted, in the failure notifications, in the lab's daemon logs, or in
any file on the host but the stack's secrets directory and TLS key; and every file that does hold a
secret is readable by its owner only (the host's secret files: also by Mailu's group, see below).

The secret values: tests/lab/fixtures/secrets.py (the lab blocks' secret fields and the lab's secret
files). The argv of every process during deploy, backup and verify: test_zz_secrets_in_process_args.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets as pysecrets
import stat
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep
from mailu_core.config import StackConfig, load_stack_config
from tests.lab.fixtures.secrets import lab_secret_values, leaks, leaks_in_files

pytestmark = pytest.mark.lab

MAILU_GID = 1000  # Mailu's admin reads its secret files after dropping to this group (test_deploy)


@pytest.fixture(scope="module")
def secrets(lab: dict[str, Any]) -> dict[str, str]:
    values = lab_secret_values()
    assert len(values) >= 5
    return values


@pytest.fixture(scope="module")
def cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


def _api(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        f"{ep.PREFECT_API_URL}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _post_all(path: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = _api("POST", path, {**(body or {}), "limit": 200, "offset": offset})
        out += page
        if len(page) < 200:
            return out
        offset += 200


def _assert_clean(corpus: dict[str, str], secrets: dict[str, str]) -> None:
    found = {where: hits for where, text in corpus.items() if (hits := leaks(text, secrets))}
    assert not found, f"secret values (by label) found in: {found}"


# --- what the Prefect server stored ------------------------------------------------------------------


def test_a_failed_runs_traceback_state_and_result_are_masked(lab: dict[str, Any]) -> None:
    """End to end through Prefect 3's engine: a flow fails with a registered secret in its exception
    (as is, base64, JSON and URL-encoded, and in the exception it was raised from). The traceback that
    reaches the API through `prefect.flow_runs`, the failed state's message and the exception object
    the caller gets back are masked; the traceback and the exception's type are still there."""
    import urllib.parse

    from prefect import flow
    from prefect.logging.handlers import APILogHandler

    from mailu_flows import redact

    secret = f"canary-{pysecrets.token_urlsafe(24)}"

    @flow(name="secret-redaction-check", persist_result=True)
    def leaky() -> None:
        redact.install()
        redact.register_secret(secret)
        try:
            raise KeyError(json.dumps({"password": secret}))
        except KeyError as exc:
            encoded = base64.b64encode(secret.encode()).decode()
            raise RuntimeError(f"login {secret} ({encoded}, {urllib.parse.quote(secret)}) refused") from exc

    state = leaky(return_state=True)
    assert state.is_failed()
    APILogHandler().flush()  # the run's logs reach the server before they are read
    run_id = str(state.state_details.flow_run_id)
    logs = _post_all("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}})
    text = "\n".join(log["message"] for log in logs)
    stored = _api("GET", f"/flow_runs/{run_id}")["state"]
    forms = {"canary": secret}
    assert "Traceback (most recent call last)" in text and "RuntimeError" in text and "KeyError" in text
    assert "********" in text and "********" in str(stored["message"])
    assert not leaks(text, forms), "the traceback in the run's logs holds the secret"
    assert not leaks(str(stored["message"]), forms), "the failed state's message holds the secret"
    with pytest.raises(RuntimeError) as caught:
        state.result()
    assert not leaks(str(caught.value) + str(caught.value.__cause__), forms)
    # the exception persisted as the run's result (read back by the persisted-results test below)
    from prefect.settings import get_current_settings

    key = getattr(getattr(state.data, "metadata", None), "storage_key", None)
    assert key, f"the failed run's result was not persisted: {state.data!r}"
    persisted = Path(get_current_settings().results.local_storage_path, key)
    assert persisted.is_file(), persisted
    assert "RuntimeError" in _result_texts(persisted) and not leaks(_result_texts(persisted), forms)


def test_no_secret_in_logs_artifacts_or_parameters(secrets: dict[str, str]) -> None:
    logs = _post_all("/logs/filter")
    artifacts = _post_all("/artifacts/filter")
    runs = _post_all("/flow_runs/filter")
    assert runs, "no flow run on the server: the session ran no flow?"
    _assert_clean(
        {
            "logs": "\n".join(str(log.get("message", "")) for log in logs),
            "artifacts": "\n".join(json.dumps(a.get("data")) + str(a.get("description")) for a in artifacts),
            "parameters": "\n".join(json.dumps(r.get("parameters")) for r in runs),
        },
        secrets,
    )
    (ep.lab_dir() / "leak-check.txt").write_text(
        f"{len(secrets)} secret values checked against {len(logs)} logs, {len(artifacts)} artifacts, "
        f"{len(runs)} flow runs\n"
    )


def test_no_secret_in_any_state_message_of_any_run(secrets: dict[str, str]) -> None:
    """Every state each flow run went through (a failed run's message is its exception's text, and it
    is what the failure notification sends), and each task run's final state."""
    runs = _post_all("/flow_runs/filter")
    failed = [r for r in runs if (r.get("state") or {}).get("type") in ("FAILED", "CRASHED")]
    assert failed, "no failed flow run on the server: the failed-run tests did not run?"
    with ThreadPoolExecutor(8) as pool:
        histories = list(pool.map(lambda r: _api("GET", f"/flow_run_states/?flow_run_id={r['id']}"), runs))
    task_runs = _post_all("/task_runs/filter")
    _assert_clean(
        {
            "flow run states": "\n".join(
                f"{s.get('message')} {json.dumps(s.get('data'))}" for h in histories for s in h
            ),
            "task run states": "\n".join(str((t.get("state") or {}).get("message")) for t in task_runs),
        },
        secrets,
    )


def _result_texts(path: Path) -> str:
    """A persisted result as text: the file, and the base64 payload it holds decoded (a pickled
    exception of a failed run; a result record's `result` field)."""
    raw = path.read_bytes()
    texts = [raw.decode("latin-1")]
    payloads = [b"".join(raw.split())]
    try:
        record = json.loads(raw)
        if isinstance(record, dict) and isinstance(record.get("result"), str):
            payloads.append(record["result"].encode())
    except ValueError:
        pass
    for payload in payloads:
        try:
            texts.append(base64.b64decode(payload, validate=True).decode("latin-1"))
        except (binascii.Error, ValueError):
            continue
    return "\n".join(texts)


def test_no_secret_in_persisted_results(secrets: dict[str, str]) -> None:
    from prefect.settings import get_current_settings

    stores = {get_current_settings().results.local_storage_path, ep.lab_dir() / "prefect" / "storage"}
    files = [p for store in stores if Path(store).is_dir() for p in Path(store).iterdir() if p.is_file()]
    found = {str(p): hits for p in files if (hits := leaks(_result_texts(p), secrets))}
    assert not found, f"secret values (by label) in persisted results: {found}"


# --- files -------------------------------------------------------------------------------------------


def _secret_stores(cfg: StackConfig) -> list[Path]:
    """Where secrets belong, and only there: the lab's secret, key and daemon-config files, every
    stack root's secrets directory and TLS key (the lab's root and the roots the tests deploy beside
    it), the GnuPG and Prefect homes, the ACME storage, and the backups' ciphertext."""
    lab = ep.lab_dir()
    stores = [
        lab / "secrets",
        lab / "ssh" / "client_ed25519",
        lab / "ssh" / "host_ed25519",
        lab / "gnupg",
        lab / "prefect",
        lab / "ca" / "ca.key",
        lab / "ca" / "key.pem",
        lab / "pebble" / "listener.key",
        lab / "traefik" / "certs" / "key.pem",
        lab / "traefik" / "acme",
        lab / "dns" / "primary" / "knot.conf",
        lab / "dns" / "secondary" / "knot.conf",
    ]
    for root in (p for p in (lab / "host").iterdir() if p.is_dir()):
        stores.append(root / cfg.host.secrets_dir)
        if cfg.host.certs_dir is not None:
            stores.append(root / cfg.host.certs_dir / cfg.mailu.tls_key_file)
    return stores


def _files(top: Path) -> Iterator[Path]:
    for root, _dirs, files in os.walk(top):
        for name in files:
            path = Path(root, name)
            if path.is_file() and not path.is_symlink():
                yield path


def _inside(path: Path, stores: list[Path]) -> bool:
    return any(path == s or s in path.parents for s in stores)


def test_no_secret_in_any_file_outside_the_secret_stores(secrets: dict[str, str], cfg: StackConfig) -> None:
    """The rendered files on the host (compose file, env files, Traefik's dynamic file, the release
    snapshots, monitoring files), the failure notifications, the daemons' logs (the deployments'
    serve process logs its runs there), the backups' manifests and records: no secret value."""
    lab = ep.lab_dir()
    stores = _secret_stores(cfg)
    skip = {lab / "registry", lab / "prometheus" / "data"}  # image layers, TSDB blocks
    files = [
        p
        for p in _files(lab)
        if not _inside(p, stores) and not _inside(p, list(skip)) and not p.name.endswith(".gpg")
    ]
    root = Path(cfg.host.stack_root)
    rendered = [
        Path(cfg.host.resolve(cfg.host.compose_file)),
        Path(cfg.host.resolve(cfg.host.traefik_dynamic_dir)) / cfg.host.traefik_dynamic_file,
        *(root / "compose" / "mailu-env").glob("*.env"),
    ]
    assert all(p in files for p in rendered) and len(rendered) > 3, rendered
    from lab.webhook import webhook_log

    assert webhook_log() in files or not webhook_log().exists()
    assert any(p.parent == lab / "logs" for p in files)
    found = leaks_in_files(files, secrets)
    assert not found, f"secret values (by label) in files outside the secret stores: {found}"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_files_holding_secrets_are_readable_by_their_owner_only(
    secrets: dict[str, str], cfg: StackConfig
) -> None:
    """Every file of the lab that holds a secret value or a private key: 0600 or narrower. The stack's
    secret files on the host: 0600, or 0640 with Mailu's group (its admin drops to it before reading
    them; the directory is 0700 and the containers get the file alone), never readable by others."""
    lab = ep.lab_dir()
    host_secret_dirs = [root / cfg.host.secrets_dir for root in (lab / "host").iterdir() if root.is_dir()]
    skip = [lab / "registry", lab / "prometheus" / "data", lab / "prefect"]
    wide: list[str] = []
    checked = 0
    for path in _files(lab):
        if _inside(path, skip) or path.name.endswith(".gpg"):
            continue
        try:
            text = path.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if not ("PRIVATE KEY-----" in text or leaks(text, secrets)):
            continue
        checked += 1
        mode = _mode(path)
        if _inside(path, host_secret_dirs):
            if mode & 0o007 or mode & 0o030 or (mode & 0o040 and path.stat().st_gid != MAILU_GID):
                wide.append(f"{path} {oct(mode)} gid {path.stat().st_gid}")
        elif mode & 0o077:
            wide.append(f"{path} {oct(mode)}")
    assert checked >= 8, f"only {checked} files holding secrets found: is the lab up?"
    assert not wide, f"files holding secrets readable by others than their owner: {wide}"


def test_secret_directories_are_0700(cfg: StackConfig) -> None:
    """The directories that exist to hold secrets, on this side and on the host: 0700."""
    lab = ep.lab_dir()
    dirs = [
        lab / "secrets",
        lab / "ssh",
        lab / "gnupg",
        lab / "prefect",
        lab / "traefik" / "acme",
        lab / "dns" / "primary",
        lab / "dns" / "secondary",
        *(root / cfg.host.secrets_dir for root in (lab / "host").iterdir() if root.is_dir()),
    ]
    dirs = [d for d in dirs if d.is_dir()]
    assert Path(cfg.host.resolve(cfg.host.secrets_dir)) in dirs
    wide = [f"{d} {oct(_mode(d))}" for d in dirs if _mode(d) != 0o700]
    assert not wide, f"secret directories wider than 0700: {wide}"


def test_the_backup_destination_is_private(cfg: StackConfig) -> None:
    """The lab's backups (ciphertext, manifests, verification records, state): directories 0700,
    files 0600."""
    dest = Path(cfg.backup.destination_dir)
    entries = [dest, *dest.rglob("*")]
    assert any(p.is_file() for p in entries), f"no backup in {dest}: the backup tests did not run?"
    wide = [
        f"{p} {oct(_mode(p))}"
        for p in entries
        if (p.is_dir() and _mode(p) != 0o700) or (p.is_file() and _mode(p) & 0o077)
    ]
    assert not wide, f"backup files wider than 0600 / directories wider than 0700: {wide}"


def test_no_private_key_is_left_in_a_temporary_gnupg_homedir() -> None:
    """Backup verification and restore import the private key into a throwaway homedir under /tmp,
    removed when they end; one whose process was killed stays, with the key. None may hold one."""
    left = [str(p) for p in Path("/tmp").glob("mfg-*/private-keys-v1.d/*") if p.is_file()]
    assert not left, f"private keys left in temporary GnuPG homedirs: {left}"
