"""The lab's host-side services: GnuPG backup keys, a Prefect server with its UI, and Prometheus."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab import endpoints as ep
from lab.files import write_atomic
from lab.host import host_root
from lab.procs import LabError, start_daemon, stop_daemon


def secrets_dir() -> Path:
    d = ep.lab_dir() / "secrets"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    return d


def ensure_secret(name: str, nbytes: int = 24) -> Path:
    """A random token in `<lab>/secrets/<name>`, generated once."""
    path = secrets_dir() / name
    if not path.exists():
        write_atomic(path, secrets.token_urlsafe(nbytes))
    return path


# --- GnuPG ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpgInfo:
    """The lab's backup key pair: armored public and private keys and the passphrase, each in a 0600 file."""

    fingerprint: str
    public_key_file: Path
    private_key_file: Path
    passphrase_file: Path


def ensure_gpg() -> GpgInfo:
    """A backup key pair (ed25519 + cv25519) in a homedir of its own, exported for the Prefect blocks."""
    import gnupg  # imported here: `lab status` should not need it

    home = ep.lab_dir() / "gnupg"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    sdir = secrets_dir()
    pub, priv, fpr_file = sdir / "gpg-backup.pub.asc", sdir / "gpg-backup.sec.asc", sdir / "gpg-backup.fpr"
    passphrase_file = ensure_secret("gpg-passphrase")
    if pub.exists() and priv.exists() and fpr_file.exists():
        return GpgInfo(fpr_file.read_text().strip(), pub, priv, passphrase_file)
    gpg = gnupg.GPG(gnupghome=str(home))
    passphrase = passphrase_file.read_text()
    params = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        subkey_type="ECDH",
        subkey_curve="cv25519",
        name_real="mailu-flows lab backup",
        name_email=f"backup@{ep.ZONE}",
        expire_date=0,
        passphrase=passphrase,
    )
    result = gpg.gen_key(params)
    fingerprint = str(result.fingerprint or "")
    if not fingerprint:
        raise LabError(f"gpg key generation failed: {result.status}")
    write_atomic(pub, str(gpg.export_keys(fingerprint)))
    write_atomic(priv, str(gpg.export_keys(fingerprint, secret=True, passphrase=passphrase)))
    write_atomic(fpr_file, fingerprint)
    return GpgInfo(fingerprint, pub, priv, passphrase_file)


# --- Prefect server ---------------------------------------------------------------------------


def prefect_env() -> dict[str, str]:
    """Environment for Prefect clients and the server of the lab (no secrets in it)."""
    return {
        "PREFECT_HOME": str(ep.lab_dir() / "prefect"),
        "PREFECT_API_URL": ep.PREFECT_API_URL,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(ep.PREFECT_PORT),  # --port alone leaves the UI on 4200
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def prefect_healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{ep.PREFECT_API_URL}/health", timeout=1) as resp:
            healthy: object = json.loads(resp.read())
            return healthy is True
    except Exception:
        return False


def prefect_encryption_key_file() -> Path:
    """The lab's block encryption key (0600), made once; every lab Prefect server encrypts blocks with it."""
    key_file = secrets_dir() / "prefect-encryption-key"
    if not key_file.exists():
        from cryptography.fernet import Fernet

        write_atomic(key_file, Fernet.generate_key().decode())
    return key_file


def ensure_prefect() -> str:
    """A Prefect server with its UI on loopback; blocks are encrypted at rest with a lab key."""
    if prefect_healthy():
        return ep.PREFECT_API_URL
    key_file = secrets_dir() / "prefect-encryption-key"
    if not key_file.exists():
        from cryptography.fernet import Fernet

        write_atomic(key_file, Fernet.generate_key().decode())
    env = prefect_env()
    home = Path(env["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)  # its database holds the (encrypted) blocks
    env["PREFECT_SERVER_ENCRYPTION_KEY"] = key_file.read_text().strip()  # env, never argv
    prefect = shutil.which("prefect") or str(Path(sys.executable).parent / "prefect")
    start_daemon(
        "prefect-server",
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(ep.PREFECT_PORT)],
        env=env,
        ready=prefect_healthy,
        timeout=90,
    )
    return ep.PREFECT_API_URL


# --- Prometheus -------------------------------------------------------------------------------


def monitoring_dirs() -> dict[str, Path]:
    """Where the host's Prometheus looks for targets and rules (the deploy writes there)."""
    base = host_root() / "monitoring"
    return {
        "file_sd": base / "file_sd",
        "blackbox_sd": base / "file_sd" / "blackbox",
        "rules": base / "rules",
    }


def prometheus_config() -> dict[str, Any]:
    dirs = monitoring_dirs()
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [str(dirs["rules"] / "*.yml")],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{ep.PROMETHEUS_PORT}"]}]},
            {"job_name": "file_sd", "file_sd_configs": [{"files": [str(dirs["file_sd"] / "*.yml")]}]},
            {
                "job_name": "blackbox",
                "metrics_path": "/probe",
                "file_sd_configs": [{"files": [str(dirs["blackbox_sd"] / "*.yml")]}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["module"], "target_label": "__param_module"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"source_labels": ["exporter"], "target_label": "__address__"},
                ],
            },
        ],
    }


def prometheus_ready() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ep.PROMETHEUS_PORT}/-/ready", timeout=1) as resp:
            status: int = resp.status
            return status == 200
    except Exception:
        return False


def ensure_prometheus() -> str:
    """Debian's Prometheus with the lifecycle API on, watching file_sd and rule globs under the stack root."""
    for d in monitoring_dirs().values():
        d.mkdir(parents=True, exist_ok=True)
        shutil.chown(d, ep.SSH_USER, ep.SSH_USER)
    shutil.chown(host_root() / "monitoring", ep.SSH_USER, ep.SSH_USER)
    conf_dir = ep.lab_dir() / "prometheus"
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = conf_dir / "prometheus.yml"
    conf.write_text(yaml.safe_dump(prometheus_config(), sort_keys=False))
    url = f"http://127.0.0.1:{ep.PROMETHEUS_PORT}"
    start_daemon(
        "prometheus",
        [
            "/usr/bin/prometheus",
            f"--config.file={conf}",
            f"--storage.tsdb.path={conf_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{ep.PROMETHEUS_PORT}",
            "--web.enable-lifecycle",
        ],
        ready=prometheus_ready,
        timeout=60,
    )
    return url


def stop_gpg_agent() -> None:
    """gpg-agent daemonizes and outlives its caller; stop the lab homedir's agent."""
    home = ep.lab_dir() / "gnupg"
    if home.exists():
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, capture_output=True
        )


def stop_services() -> list[str]:
    return [name for name in ("prometheus", "prefect-server") if stop_daemon(name)]
