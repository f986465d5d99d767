"""The lab's own stack config (`.lab/stack.yaml`) and the Prefect blocks holding the lab's credentials.

Blocks are saved in the lab's Prefect server from the lab's 0600 secret files; values never pass
through a command line. The Mailu secrets block is created empty once (a deploy fills it) and never
overwritten afterwards: it is the source of truth.
"""

from __future__ import annotations

from pathlib import Path

from lab import endpoints as ep
from lab.host import host_root
from lab.stack_config import lab_stack_config

BLOCK_PREFIX = "lab"
CLOUDFLARE_BLOCK = f"{BLOCK_PREFIX}-cloudflare"


def save_lab_blocks() -> list[str]:
    """Save a block for every lab credential in the lab's Prefect server; returns their names."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from pydantic import SecretStr

    from lab.cf_emulator import read_token
    from lab.dns import read_tsig_secret
    from lab.services import ensure_gpg, ensure_secret
    from mailu_flows.blocks import (
        BackupSigningKey,
        CloudflareDns,
        GpgBackupPrivateKey,
        GpgBackupPublicKey,
        MailuSecrets,
        Rfc2136Dns,
        SshHost,
    )
    from mailu_flows.blocks.registry import register_block_types

    d = ep.lab_dir()
    gpg = ensure_gpg()
    host_pub = " ".join((d / "ssh" / "host_ed25519.pub").read_text().split()[:2])
    saved: list[str] = []
    with temporary_settings({PREFECT_API_URL: ep.PREFECT_API_URL}):
        register_block_types()
        blocks = {
            f"{BLOCK_PREFIX}-ssh": SshHost(
                address=ep.SSH_HOST,
                port=ep.SSH_PORT,
                user=ep.SSH_USER,
                private_key=SecretStr((d / "ssh" / "client_ed25519").read_text()),
                host_keys=[host_pub],
            ),
            f"{BLOCK_PREFIX}-dns": Rfc2136Dns(
                server=ep.DNS_PRIMARY,
                port=ep.DNS_PORT,
                tsig_key_name=ep.TSIG_KEY_NAME,
                tsig_algorithm="hmac-sha256",
                tsig_secret=SecretStr(read_tsig_secret()),
            ),
            CLOUDFLARE_BLOCK: CloudflareDns(api_token=SecretStr(read_token()), base_url=ep.CF_BASE_URL),
            f"{BLOCK_PREFIX}-gpg-public": GpgBackupPublicKey(
                armored_public_key=gpg.public_key_file.read_text(),
                fingerprint=gpg.fingerprint,
            ),
            f"{BLOCK_PREFIX}-backup-signing": BackupSigningKey(
                key=SecretStr(ensure_secret("backup-signing-key", 32).read_text())
            ),
            f"{BLOCK_PREFIX}-canary-password": Secret(
                value=SecretStr(ensure_secret("canary-password").read_text())
            ),
            f"{BLOCK_PREFIX}-gpg-private": GpgBackupPrivateKey(
                armored_private_key=SecretStr(gpg.private_key_file.read_text()),
                passphrase=SecretStr(gpg.passphrase_file.read_text()),
                fingerprint=gpg.fingerprint,
            ),
        }
        for name, block in blocks.items():
            block.save(name, overwrite=True)
            saved.append(name)
        secrets_name = f"{BLOCK_PREFIX}-mailu-secrets"
        try:
            MailuSecrets.load(secrets_name)
        except ValueError:  # not there yet: create it empty, once
            MailuSecrets().save(secrets_name)
        saved.append(secrets_name)
    return saved


def install_lab_certs() -> None:
    """Put the lab CA's mail certificate where the lab config's `host.certs_dir` points, as a host's
    certificate tooling would (front mounts it read-only at /certs)."""
    import shutil

    from lab.ca import ensure_ca
    from lab.files import write_if_changed

    ca = ensure_ca(ep.lab_dir() / "ca")
    certs = host_root() / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    for src, name, mode in ((ca.cert, "cert.pem", 0o644), (ca.key, "key.pem", 0o600)):
        write_if_changed(certs / name, src.read_bytes(), mode)
    shutil.chown(certs, ep.SSH_USER, ep.SSH_USER)


def write_lab_stack_config(images: dict[str, str]) -> Path:
    """Write `.lab/stack.yaml` (the lab's stack config, pinned to the images just built) and save the
    lab's blocks."""
    from mailu_core.config import dump_stack_config

    install_lab_certs()
    config = lab_stack_config(images, str(host_root()), backup_dir=str(ep.lab_dir() / "backups"))
    path = ep.lab_dir() / "stack.yaml"
    text = dump_stack_config(config)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    save_lab_blocks()
    return path
