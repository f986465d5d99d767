"""The key that signs backup manifests, held outside the backup destination.

The archives are encrypted to a public key, so write access to the destination and that public key
are enough to make a backup that decrypts. A backup counts only if its manifest carries a MAC under
this key: the backup flow signs with it, verify, restore and retention check with it. Keep a copy
of the block's value where you keep the GPG private key (a restore after losing the Prefect server
needs both).
"""

from __future__ import annotations

import secrets

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator

from mailu_core.backup import signing_key_id
from mailu_flows.blocks.meta import DOCS_URL, LOGO_URL

MIN_KEY_LENGTH = 32


class BackupSigningKey(Block):
    """A random secret (32+ printable characters) that authenticates this stack's backups."""

    # A failed validation must not print the offending value: it is the secret.
    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "Mailu Backup Signing Key"
    _block_type_slug = "mailu-backup-signing-key"
    _description = (
        "Secret that signs backup manifests (HMAC-SHA256); verify, restore and retention trust only "
        "backups signed with it. Generate with: head -c 32 /dev/urandom | base64"
    )
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL
    _code_example = """
    ```python
    from mailu_flows.blocks import BackupSigningKey

    signing = BackupSigningKey.load("BLOCK_NAME")  # the stack config's blocks.backup_signing_key
    print(signing.key_id)  # the key's public name, recorded beside each signature
    ```
    """

    key: SecretStr = Field(
        description="32+ printable characters without spaces, e.g. `head -c 32 /dev/urandom | base64`."
    )

    @field_validator("key")
    @classmethod
    def _key_shape(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if len(text) < MIN_KEY_LENGTH:
            raise ValueError(
                f"the key is shorter than {MIN_KEY_LENGTH} characters; generate one with "
                "`head -c 32 /dev/urandom | base64`"
            )
        if len(text) > 1024 or not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
            raise ValueError("the key must be at most 1024 printable ASCII characters without spaces")
        return SecretStr(text)

    @classmethod
    def generate(cls) -> BackupSigningKey:
        return cls(key=SecretStr(secrets.token_urlsafe(32)))

    def key_bytes(self) -> bytes:
        return self.key.get_secret_value().encode("ascii")

    @property
    def key_id(self) -> str:
        """Public name of the key (recorded beside each signature)."""
        return signing_key_id(self.key_bytes())
