"""While a deploy, a backup and a backup-verify run on the lab, no process on this machine carries a
secret on its command line, and the flows' temporary files are never wider than their owner.

This machine is both sides: the flow runner (this test's process runs the flows) and the Docker host
(reached by the flows over the lab's sshd as the deploy user: its shells, `docker`, `docker compose`,
`docker exec`/`docker run` and the containers' processes show up in /proc here too). A separate
sampler process reads every /proc/*/cmdline every few milliseconds; it gets the secret values (and
their encoded forms) on stdin. Runs late (file name), before test_zz_secrets_not_leaked, which then
also checks the logs, states and files these runs left.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailu_core.config import StackConfig, load_stack_config
from tests.lab.fixtures.procsample import secret_assignments
from tests.lab.fixtures.secrets import encoded_forms, lab_secret_values

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


class Sampler:
    """The sampler process: started with the secrets on stdin, stopped to get what it saw."""

    def __init__(self, secrets: dict[str, list[str]], workdir: Path) -> None:
        self.out = workdir / "argv.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lab.fixtures.procsample", str(self.out)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(secrets))
        self.proc.stdin.close()
        deadline = time.monotonic() + 30
        while not self.out.with_suffix(".ready").exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, "the sampler did not start"
            time.sleep(0.05)

    def stop(self) -> dict[str, Any]:
        self.proc.terminate()
        assert self.proc.wait(timeout=60) == 0
        seen: dict[str, Any] = json.loads(self.out.read_text())
        return seen


@pytest.fixture(scope="module")
def cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def secrets() -> dict[str, str]:
    values = lab_secret_values()
    assert any(label.startswith("lab-ssh.private_key") for label in values)
    assert "lab-gpg-private.passphrase" in values and "lab-mailu-secrets.api_token" in values
    return values


@pytest.fixture(scope="module")
def backup_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sc-argv-backups-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def sampled(
    cfg: StackConfig, secrets: dict[str, str], backup_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Run deploy, backup and backup-verify in this process (as test_deploy and test_backup do) with
    the sampler watching, plus a canary: a short-lived process with a known value on its argv."""
    from mailu_flows.flows.backup import backup
    from mailu_flows.flows.backup_verify import backup_verify
    from mailu_flows.flows.deploy import deploy

    canary = f"sc-canary-{os.urandom(8).hex()}"
    forms = {label: sorted(set(encoded_forms(v).values())) for label, v in secrets.items()}
    forms["canary"] = [canary]
    before = set(glob.glob("/tmp/mfg-*"))  # left by another run (a killed one keeps its homedir)
    sampler = Sampler(forms, tmp_path_factory.mktemp("argv"))
    data = cfg.model_dump(mode="json")
    data["backup"]["destination_dir"] = str(backup_dir)
    backup_cfg = StackConfig.model_validate(data)
    states: dict[str, Any] = {}
    try:
        # a compound command: sh forks sleep and stays, with the canary on its argv, for 0.2 s
        subprocess.run(["sh", "-c", "sleep 0.2; true", "sh", "-e", f"CANARY={canary}"], check=True)
        states["deploy"] = deploy(config=cfg, return_state=True)
        states["backup"] = backup(config=backup_cfg, return_state=True)
        states["backup-verify"] = backup_verify(config=backup_cfg, return_state=True)
    finally:
        seen = sampler.stop()
    for name, state in states.items():
        assert state.is_completed(), f"{name}: {state.message}"
    seen["canary"] = canary
    seen["preexisting"] = sorted(before)
    return seen


def test_the_sampler_sees_both_sides_of_every_flow(sampled: dict[str, Any]) -> None:
    """The check below could fail: the sampler catches a 0.2 s process, and it saw the commands the
    flows run here (gpg) and on the host over SSH (the deadline wrapper, docker, compose, containers)."""
    assert sampled["sweeps"] > 100
    argv = "\n".join(sampled["argv"])
    canary = [leak for leak in sampled["leaks"] if leak["labels"] == ["canary"]]
    assert canary and "<canary>" in canary[0]["argv"], "the canary process was not seen"
    assert "CANARY" not in canary[0]["assignments"]  # a non-secret name: flagged by value only
    for expected in ("timeout --kill-after=10", "docker compose", "docker run", "gpg", "sshd"):
        assert expected in argv, f"no {expected!r} command line seen during the runs"


def test_no_secret_on_any_command_line(sampled: dict[str, Any]) -> None:
    leaks = [leak for leak in sampled["leaks"] if leak["labels"] != ["canary"]]
    assert not leaks, "secrets (by label) on command lines:\n" + "\n".join(
        f"{leak['labels'] or leak['assignments']}: {leak['argv']}" for leak in leaks
    )


def test_secret_looking_assignments_on_argv_are_flagged() -> None:
    """The environment-on-argv rule the sampler applies (a secret-named variable given a value)."""
    assert secret_assignments(["docker", "run", "-e", "DB_PW=hunter2", "img"]) == ["DB_PW"]
    assert secret_assignments(["docker", "exec", "--env=API_TOKEN=abc", "admin"]) == ["API_TOKEN"]
    assert secret_assignments(["sh", "-c", "PGPASSWORD=x pg_dump mailu"]) == ["PGPASSWORD"]
    assert secret_assignments(["sh", "-c", "SECRET_KEY='literal' run"]) == ["SECRET_KEY"]
    assert secret_assignments(["sh", "-c", 'SECRET_KEY="$(cat /run/secrets/k)" run']) == []
    assert secret_assignments(["sh", "-c", "API_TOKEN= run"]) == []
    assert secret_assignments(["docker", "run", "-e", "SECRET_KEY_FILE=/run/secrets/k", "img"]) == []
    assert secret_assignments(["docker", "run", "-e", "TZ=Etc/UTC", "img"]) == []


def test_temporary_files_of_the_flows_are_private(sampled: dict[str, Any]) -> None:
    """The GnuPG homedirs of backup and verify (the private key and passphrase pass through them):
    directories 0700, files holding a secret or a key 0600; none is left behind."""
    temp: dict[str, dict[str, Any]] = sampled["temp"]
    homedirs = [p for p in temp if p.startswith("/tmp/mfg-") and p.count("/") == 2]
    new = [p for p in homedirs if p not in sampled["preexisting"]]
    assert new, "no GnuPG homedir seen during backup/verify"
    wide = [
        f"{path} {entry['mode']}"
        for path, entry in temp.items()
        if (entry["kind"] == "dir" and path.count("/") == 2 and int(entry["mode"], 8) != 0o700)
        or (
            entry["kind"] == "file"
            and (entry["labels"] or path.endswith(".key") or "private-keys" in path)
            and int(entry["mode"], 8) & 0o077
        )
    ]
    assert not wide, f"temporary files wider than their owner: {wide}"
    own = "/tmp/mailu-flows-prefect-"  # this test session's throwaway Prefect server (tests/conftest.py)
    left = [
        p
        for p in temp
        if p.count("/") == 2
        and os.path.exists(p)
        and p not in sampled["preexisting"]
        and not p.startswith(own)
    ]
    assert not left, f"temporary homedirs left by these runs: {left}"


def test_the_backup_destination_is_private(sampled: dict[str, Any], backup_dir: Path) -> None:
    """The backup these runs made: directories 0700, files 0600 (ciphertext, manifest, records)."""
    entries = list(backup_dir.rglob("*"))
    assert any(p.is_file() for p in entries)
    wide = [
        f"{p} {oct(p.stat().st_mode & 0o777)}"
        for p in entries
        if (p.is_dir() and p.stat().st_mode & 0o077) or (p.is_file() and p.stat().st_mode & 0o077)
    ]
    assert not wide, f"backup files wider than 0600 / directories wider than 0700: {wide}"


def test_no_process_has_a_block_secret_in_its_environment(
    sampled: dict[str, Any], secrets: dict[str, str]
) -> None:
    """Not argv but its neighbour: no process left running has a secret of the flows' blocks in its
    environment (a container started with `-e` or an env file holding one would). The lab's own
    daemons get theirs through their environment by design (the Prefect server's encryption key)."""
    found: list[str] = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        for label, value in secrets.items():
            if label.startswith("lab-") and value in environ:
                found.append(f"pid {pid} ({comm}): {label}")
    assert not found, f"secrets in process environments: {found}"
