"""Which secret files the stack needs, where they live on the host and who mounts them.

The values live in the Mailu secrets block (the source of truth); this module names only the
files. Each file reaches exactly the containers that read it, as a compose file-based secret at
`/run/secrets/<name>`, referenced by a `*_FILE` variable so no value ever appears in an env file.

Settings Mailu cannot read from a file, and how the stack avoids them:
- `INITIAL_ADMIN_PW` (admin reads `os.environ` only): not used; the postmaster admin account is
  ensured through Mailu's REST API with the block's `admin_password`. So `admin_password` gets no
  file here: no container could read it, and a copy on disk would only widen exposure.
- `RELAYPASSWORD` (postfix): not used; the config has no authenticated relay host.
- `ROUNDCUBE_DB_PW` (webmail): not used; Roundcube keeps its own SQLite file in the webmail volume.

Mailu's admin reads its files after dropping to its `mailu` user, whose uid the image does not pin but
whose group is gid 1000 (`MAILU_GID`): a file admin reads is 0640 with that group (`gid`), never
world-readable. Files only root-started readers use stay 0600. Compose cannot set a file secret's
owner or mode (swarm only), so the host file itself carries them.

`SECRET_KEY_FILE` goes to admin and webmail only: in Mailu 2024.06 only they derive keys from it
(admin `set_env(['SECRET'])`, webmail `set_env(['ROUNDCUBE','SNUFFLEUPAGUS'])`); the others call
`set_env()` without derived keys and read the file only if the variable names it. Keeping it out
of front (internet-facing) means a compromised front cannot forge admin sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailu_core.config import StackConfig

__all__ = [
    "MAILU_GID",
    "SECRETS_MOUNT_DIR",
    "SECRET_KEY_READERS",
    "SecretField",
    "SecretFileSpec",
    "secret_file_specs",
]

SECRETS_MOUNT_DIR = "/run/secrets"
MAILU_GID = 1000
"""The group of Mailu's unprivileged `mailu` user (core/base/Dockerfile's MAILU_GID)."""
# Readers that open their secret files after dropping root, and the group that lets them.
_READER_GID: dict[str, int] = {"admin": MAILU_GID}
SECRET_KEY_READERS: tuple[str, ...] = ("admin", "webmail")

SecretField = Literal["secret_key", "admin_password", "db_password", "api_token"]
"""A field of the `MailuSecrets` block (blocks/mailu.py)."""


@dataclass(frozen=True)
class SecretFileSpec:
    """One secret file: its compose name, host path, source block field and the services mounting it.

    `env` pairs each reading service with the `*_FILE` variable it gets (pointing at `container_path`); the
    postgres container reads the DB password as `POSTGRES_PASSWORD_FILE` instead of `DB_PW_FILE`.
    """

    name: str
    host_path: str
    block_field: SecretField
    services: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    mode: int = 0o600
    gid: int | None = None
    """The group the host file must have so that an unprivileged reader can open it (None: any)."""

    @property
    def container_path(self) -> str:
        return f"{SECRETS_MOUNT_DIR}/{self.name}"

    def env_var(self, service: str) -> str | None:
        """The `*_FILE` variable `service` reads this secret through (None if it does not mount it)."""
        return dict(self.env).get(service)


def _services(cfg: StackConfig, wanted: tuple[str, ...]) -> tuple[str, ...]:
    present = {"admin", "webmail", "postgres"}
    if cfg.mailu.webmail == "none":
        present.discard("webmail")
    if not (cfg.database.flavor == "postgresql" and cfg.database.managed):
        present.discard("postgres")
    return tuple(s for s in wanted if s in present)


def secret_file_specs(cfg: StackConfig) -> list[SecretFileSpec]:
    """The secret files this config needs, sorted by name (deterministic)."""
    secrets_dir = cfg.host.resolve(cfg.host.secrets_dir)

    def spec(name: str, field: SecretField, services: tuple[str, ...], env: dict[str, str]) -> SecretFileSpec:
        readers = _services(cfg, services)
        gids = {_READER_GID[r] for r in readers if r in _READER_GID}
        gid = gids.pop() if len(gids) == 1 else None
        return SecretFileSpec(
            name=name,
            host_path=str(secrets_dir / name),
            block_field=field,
            services=readers,
            env=tuple((svc, var) for svc, var in env.items() if svc in readers),
            mode=0o640 if gid is not None else 0o600,
            gid=gid,
        )

    specs = [
        spec(
            "mailu-secret-key",
            "secret_key",
            SECRET_KEY_READERS,
            {svc: "SECRET_KEY_FILE" for svc in SECRET_KEY_READERS},
        )
    ]
    if cfg.mailu.api_enabled:
        specs.append(spec("mailu-api-token", "api_token", ("admin",), {"admin": "API_TOKEN_FILE"}))
    if cfg.database.flavor == "postgresql":
        specs.append(
            spec(
                "mailu-db-password",
                "db_password",
                ("admin", "postgres"),
                {"admin": "DB_PW_FILE", "postgres": "POSTGRES_PASSWORD_FILE"},
            )
        )
    return sorted(specs, key=lambda s: s.name)
