"""docs/setup.md, run as an operator would: every shell block of the guide, in order, against the lab,
from an empty host (a deploy user, service user and stack root made by the guide's own commands) to a
verified stack (deploy, DNS, backup, verify, and a second deploy that says `no changes`).

The lab's values reach the blocks through the guide's variables (its `guide-test: variables` block);
blocks marked `guide-test: skip (reason)` are not run, and there must stay few. The stack is the
lab's Mailu on a stack root, volumes and blocks of its own; the lab's own stack is deployed again
at the end (one Traefik routes the mail ports to one stack at a time).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import endpoints as ep
from lab.guide import GuideBlock, guide_blocks, start_guide_sshd, stop_guide_sshd
from mailu_core.config import StackConfig, dump_stack_config, load_stack_config
from tests.lab.fixtures.deploying import deploy_state, empty_volumes, exception_text, own_stack_config

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "setup.md"
MAX_SKIPPED = 9
DEPLOY_USER = "mailu-guide"
RUNNER_USER = "mailu-guide-run"
STACK = "guide-lab"
VOLUME_PREFIX = "mailu_guide_"
BLOCK_KINDS = {
    "ssh_host": "ssh",
    "dns_provider": "ddns",
    "gpg_public_key": "backup-gpg-public",
    "gpg_private_key": "backup-gpg-private",
    "backup_signing_key": "backup-signing",
    "mailu_secrets": "mailu-secrets",
}


def _blocks() -> list[GuideBlock]:
    return guide_blocks(GUIDE)


def _variables() -> list[str]:
    (block,) = [b for b in _blocks() if b.marker == "variables"]
    return re.findall(r"^([A-Z_]+)=", block.text, flags=re.M)


def _delete_blocks() -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for doc in client.read_block_documents():
            if doc.name and doc.name.startswith(f"{STACK}-"):
                client.delete_block_document(doc.id)


def _remove_user(name: str) -> None:
    subprocess.run(["userdel", "-r", name], capture_output=True, check=False)


def _guide_config(lab_cfg: StackConfig, root: Path, backups: Path) -> StackConfig:
    """stack.yaml as the operator would edit it from the example, with the lab's values: the lab's
    Mailu images, DNS and Traefik, this stack root and volumes, the blocks the guide creates, and
    monitoring files written (no Prometheus of its own to reload)."""
    from mailu_core.config import stack_config_from_mapping

    data = own_stack_config(lab_cfg, root, VOLUME_PREFIX).model_dump(mode="json")
    data["blocks"] = {field: f"{STACK}-{kind}" for field, kind in BLOCK_KINDS.items()}
    data["backup"]["destination_dir"] = str(backups)
    data["monitoring"] |= {"enabled": True, "reload_url": None, "prometheus_url": None, "textfile_dir": None}
    return stack_config_from_mapping(data, source="test_setup_guide")


@pytest.fixture(scope="module")
def lab_cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def walked(lab_cfg: StackConfig) -> Iterator[dict[str, Any]]:
    """Run every runnable block of the guide in order; yields the variables and what each block took."""
    from lab.ca import ensure_ca
    from lab.dns import read_tsig_secret
    from lab.host import host_root
    from lab.traefik import dynamic_dir

    for user in (DEPLOY_USER, RUNNER_USER):
        _remove_user(user)
    _delete_blocks()
    root = host_root().parent / "guide-apps"
    shutil.rmtree(root, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="guide-", dir="/tmp"))  # short: gpg-agent's socket path
    home, gnupg, etc, units, backups = (work / d for d in ("home", "gnupg", "etc", "systemd", "backups"))
    for d in (home, gnupg, units):
        d.mkdir(mode=0o700)
    operator = work / "operator"
    operator.mkdir()
    dyn = dynamic_dir()
    dyn_mode = dyn.stat().st_mode & 0o7777
    cfg = _guide_config(lab_cfg, root, backups)
    # What the operator brings: the TSIG secret (0600), the certificate files, the edited stack.yaml.
    (operator / "tsig-secret.txt").write_text(read_tsig_secret())
    (operator / "tsig-secret.txt").chmod(0o600)
    (operator / "stack.yaml").write_text(dump_stack_config(cfg))
    ca = ensure_ca(ep.lab_dir() / "ca")
    empty_volumes(cfg, VOLUME_PREFIX)
    port = start_guide_sshd(DEPLOY_USER)
    values = {
        "MAILU_HOST": ep.SSH_HOST,
        "SSH_PORT": str(port),
        "DEPLOY_USER": DEPLOY_USER,
        "DEPLOY_PUBKEY_FILE": str(home / ".ssh" / "mailu_deploy.pub"),
        "STACK_ROOT": str(root),
        "TRAEFIK_DYNAMIC_DIR": str(dyn),
        "TRAEFIK_CONTAINER": "mailu-lab-traefik",
        "TRAEFIK_API_URL": ep.TRAEFIK_API_URL,
        "MGMT_SUBNET": ep.NETWORKS["mgmt"],
        "TRAEFIK_MGMT_IP": ep.TRAEFIK_MGMT_IP,
        "MAIL_DOMAIN": ep.ZONE,
        "CERT_FILE": str(ca.cert),
        "KEY_FILE": str(ca.key),
        "STACK": STACK,
        "DNS_SERVER": ep.DNS_PRIMARY,
        "TSIG_KEY_NAME": ep.TSIG_KEY_NAME,
        "MAILU_FLOWS_DIR": str(REPO),
        "RUNNER_USER": RUNNER_USER,
        "CONFIG_DIR": str(etc),
        "BACKUP_DIR": str(backups),
        "SYSTEMD_DIR": str(units),
        "PREFECT_API_URL": ep.PREFECT_API_URL,
        "NOTIFY_BLOCK": "custom-webhook/lab-notify",
    }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        **values,
        "HOME": str(home),
        "GNUPGHOME": str(gnupg),
        "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    took: list[tuple[str, float]] = []
    try:
        for block in _blocks():
            if block.lang != "bash" or block.marker is not None:
                continue
            start = time.monotonic()
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.text],
                cwd=operator, env=env, capture_output=True, text=True, timeout=1200,
            )  # fmt: skip
            took.append((f"{block.section} (line {block.line})", time.monotonic() - start))
            assert proc.returncode == 0, (
                f"docs/setup.md line {block.line} ({block.section}) failed ({proc.returncode}):\n"
                f"{block.text}\n--- output ---\n{(proc.stdout + proc.stderr)[-3000:]}"
            )
        yield {"values": values, "took": took, "root": root, "operator": operator, "cfg": cfg}
    finally:
        try:
            compose = root / cfg.host.compose_file
            if compose.exists():  # the lab's deploy recreates its containers only if these are stopped
                subprocess.run(
                    ["docker", "compose", "-p", cfg.mailu.compose_project, "-f", str(compose), "stop"],
                    capture_output=True, check=False,
                )  # fmt: skip
            back = deploy_state(lab_cfg)
            assert back.is_completed(), exception_text(back)
        finally:
            shutil.chown(dyn, ep.SSH_USER, ep.SSH_USER)
            dyn.chmod(dyn_mode)
            stop_guide_sshd()
            subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"], check=False)
            empty_volumes(cfg, VOLUME_PREFIX)
            _delete_blocks()
            for user in (DEPLOY_USER, RUNNER_USER):
                _remove_user(user)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


def test_the_guide_takes_an_empty_host_to_a_verified_stack(walked: dict[str, Any]) -> None:
    slowest = sorted(walked["took"], key=lambda row: -row[1])[:8]
    print("slowest guide blocks:", "; ".join(f"{name}: {secs:.1f}s" for name, secs in slowest))
    # the last block is the checklist's second deploy: nothing to change on a verified stack
    again = (walked["operator"] / "deploy-again.json").read_text()
    assert '"summary": "no changes"' in again
    assert list((Path(walked["values"]["BACKUP_DIR"]) / "lab").glob("lab-*/verification.json"))
    # the deploy user got no particular uid from the guide, and the deploy still works
    assert pwd.getpwnam(DEPLOY_USER).pw_uid != 1000


def test_another_user_reads_the_monitoring_files_but_not_the_root_or_the_secrets(
    walked: dict[str, Any],
) -> None:
    """The host's Prometheus is another user: the 0751 stack root lets it read the monitoring files by
    path, but not list the root or read a secret."""
    root: Path = walked["root"]
    cfg: StackConfig = walked["cfg"]

    def as_nobody(*argv: str) -> int:
        return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True).returncode

    rules = root / cfg.monitoring.rules_dir
    assert list(rules.glob("*.yml"))
    assert as_nobody("sh", "-c", f"cat {rules}/*.yml >/dev/null") == 0
    assert as_nobody("ls", str(root)) != 0
    secret = next((root / cfg.host.secrets_dir).iterdir())
    assert as_nobody("cat", str(secret)) != 0


def test_the_services_are_defined_for_users_and_keys_the_guide_created(walked: dict[str, Any]) -> None:
    from cryptography.fernet import Fernet

    values = walked["values"]
    units = Path(values["SYSTEMD_DIR"])
    env_file = Path(values["CONFIG_DIR"]) / "prefect-server.env"
    assert (env_file.stat().st_mode & 0o777, env_file.stat().st_uid) == (0o600, 0)  # the key: root only
    settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    key = settings["PREFECT_SERVER_ENCRYPTION_KEY"]
    Fernet(key.encode())  # a valid key
    for unit in ("prefect-server.service", "mailu-flows.service"):
        text = (units / unit).read_text()
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        pwd.getpwnam(fields["User"])  # the user exists
        assert Path(fields["ExecStart"].split()[0]).is_file(), unit
    assert "PREFECT_API_URL=" in (units / "mailu-flows.service").read_text()


def test_the_guide_stays_runnable_few_blocks_are_skipped_each_with_a_reason() -> None:
    blocks = _blocks()
    skipped = [b for b in blocks if b.marker == "skip"]
    assert 0 < len(skipped) <= MAX_SKIPPED, [b.line for b in skipped]
    assert all(len(b.reason) > 10 for b in skipped), [(b.line, b.reason) for b in skipped]
    assert {b.marker for b in blocks} <= {None, "skip", "variables", "traefik-static", "prometheus-scrape"}
    assert all(b.lang in ("bash", "yaml", "ini", "") for b in blocks)
    # every variable a block uses is declared at the top, and the test gives each a lab value
    declared = set(_variables())
    runnable = [b for b in blocks if b.lang == "bash"]
    used = {v for b in runnable for v in re.findall(r"\$\{([A-Z_]+)[}:]", b.text)}
    local = {v for b in runnable for v in re.findall(r"^\s*([A-Z_]+)=", b.text, flags=re.M)}
    assert used - local - {"EDITOR"} <= declared, used - local - declared


def test_the_guides_traefik_and_prometheus_snippets_are_what_the_lab_runs() -> None:
    """The API snippet exposes /api/rawdata where preflight reads it (the lab's Traefik runs it), and
    the scrape config relabels blackbox targets as the lab's Prometheus does."""
    from lab.services import prometheus_config
    from lab.traefik import static_config

    by_marker = {b.marker: yaml.safe_load(b.text) for b in _blocks() if b.lang == "yaml" and b.marker}
    traefik, lab_traefik = by_marker["traefik-static"], static_config()
    assert traefik["api"]["insecure"] is True and lab_traefik["api"]["insecure"] is True
    assert traefik["entryPoints"]["traefik"] == lab_traefik["entryPoints"]["traefik"]
    assert traefik["providers"]["file"]["watch"] is True
    prometheus, lab_prometheus = by_marker["prometheus-scrape"], prometheus_config()
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    lab_jobs = {j["job_name"]: j for j in lab_prometheus["scrape_configs"]}
    assert jobs["blackbox"]["relabel_configs"] == lab_jobs["blackbox"]["relabel_configs"]
    assert jobs["blackbox"]["metrics_path"] == lab_jobs["blackbox"]["metrics_path"] == "/probe"
    assert [f.endswith("/file_sd/blackbox/*.yml") for f in jobs["blackbox"]["file_sd_configs"][0]["files"]]
    assert all(f.endswith("/rules/*.yml") for f in prometheus["rule_files"])
