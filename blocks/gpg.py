"""The backup encryption key, split in two blocks so the backup side never holds the private key.

The backup flow loads only `GpgBackupPublicKey`; verify and restore load `GpgBackupPrivateKey`.
Each carries the key's fingerprint, checked against the key when the block is created.
"""

from __future__ import annotations

import re

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from mailu_core.fields import SECRET_MAX
from mailu_core.openpgp import PRIVATE_ARMOR, PUBLIC_ARMOR, OpenPgpError, primary_fingerprint
from mailu_flows.blocks.meta import DOCS_URL, LOGO_URL
from mailu_flows.blocks.pasted import FlattenedKeyError, restore_armor

FINGERPRINT_PATTERN = r"^(?:[0-9A-F]{40}|[0-9A-F]{64})$"
FINGERPRINT_MAX = 128  # 64 hex digits with gpg's spaces and a 0x, and room to spare


def normalize_fingerprint(value: str) -> str:
    """Uppercase hex without spaces; `gpg --fingerprint` prints it in groups of four."""
    compact = re.sub(r"\s+", "", value).upper().removeprefix("0X")
    if not re.fullmatch(FINGERPRINT_PATTERN, compact):
        raise ValueError(f"{value!r} is not a key fingerprint (40 hex digits, or 64 for v6 keys)")
    return compact


def _restored(text: str) -> str:
    """The armored key with its line breaks back if a single-line form field took them."""
    try:
        return restore_armor(text)
    except FlattenedKeyError as exc:
        raise ValueError(f"{exc}: paste the exported key again, or use `blocks create`") from None


def _check_matches(armored: str, kind: str, fingerprint: str) -> None:
    try:
        actual = primary_fingerprint(armored, kind)
    except OpenPgpError as exc:
        if "not supported" in str(exc) or "unsupported" in str(exc):
            return  # a key we cannot parse here; gpg checks it at use
        raise ValueError(f"the armored key cannot be read: {exc}") from None
    if actual != fingerprint:
        raise ValueError(f"fingerprint {fingerprint} does not match the key, whose fingerprint is {actual}")


class GpgBackupPublicKey(Block):
    """The public key backups are encrypted to (safe to hold on the backup side)."""

    # A failed validation must not print the offending value: it may be a secret.
    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "Mailu GPG Backup Public Key"
    _block_type_slug = "mailu-gpg-public-key"
    _description = "Public key that Mailu volume backups are encrypted to."
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL
    _code_example = """
    ```python
    from mailu_flows.blocks import GpgBackupPublicKey

    public = GpgBackupPublicKey.load("BLOCK_NAME")  # the stack config's blocks.gpg_public_key
    print(public.fingerprint)
    ```
    """

    armored_public_key: str = Field(
        description="gpg --armor --export FINGERPRINT (pasted in the UI, its line breaks are restored)"
    )
    fingerprint: str = Field(max_length=FINGERPRINT_MAX, description="Primary key fingerprint (40 hex).")

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint_shape(cls, value: str) -> str:
        return normalize_fingerprint(value)

    @field_validator("armored_public_key")
    @classmethod
    def _armor_shape(cls, value: str) -> str:
        value = _restored(value)
        if "PRIVATE KEY BLOCK" in value:
            raise ValueError(
                "this is a PRIVATE key; this block holds only the public key (gpg --armor --export)"
            )
        if f"-----BEGIN {PUBLIC_ARMOR}-----" not in value:
            raise ValueError(f"expected an armored public key starting with '-----BEGIN {PUBLIC_ARMOR}-----'")
        return value + "\n"

    @model_validator(mode="after")
    def _fingerprint_matches(self) -> GpgBackupPublicKey:
        _check_matches(self.armored_public_key, PUBLIC_ARMOR, self.fingerprint)
        return self


class GpgBackupPrivateKey(Block):
    """The private key that decrypts backups; only verify and restore load it."""

    # A failed validation must not print the offending value: it may be a secret.
    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "Mailu GPG Backup Private Key"
    _block_type_slug = "mailu-gpg-private-key"
    _description = "Private key (and passphrase) that decrypts Mailu volume backups; for verify/restore only."
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL
    _code_example = """
    ```python
    from mailu_flows.blocks import GpgBackupPrivateKey

    private = GpgBackupPrivateKey.load("BLOCK_NAME")  # the stack config's blocks.gpg_private_key
    print(private.fingerprint)  # must match the public key block's
    ```
    """

    armored_private_key: SecretStr = Field(
        description="gpg --armor --export-secret-keys FINGERPRINT (pasted in the UI, its line breaks are "
        "restored)"
    )
    passphrase: SecretStr = Field(
        default=SecretStr(""), max_length=SECRET_MAX, description="Passphrase of the key; empty if none."
    )
    fingerprint: str = Field(
        max_length=FINGERPRINT_MAX,
        description="Primary key fingerprint (40 hex); must match the public key block.",
    )

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint_shape(cls, value: str) -> str:
        return normalize_fingerprint(value)

    @field_validator("armored_private_key")
    @classmethod
    def _armor_shape(cls, value: SecretStr) -> SecretStr:
        text = _restored(value.get_secret_value())
        if f"-----BEGIN {PUBLIC_ARMOR}-----" in text:
            raise ValueError(
                "this is a PUBLIC key; export the private one with gpg --armor --export-secret-keys"
            )
        if f"-----BEGIN {PRIVATE_ARMOR}-----" not in text:
            raise ValueError(
                f"expected an armored private key starting with '-----BEGIN {PRIVATE_ARMOR}-----'"
            )
        return SecretStr(text + "\n")

    @model_validator(mode="after")
    def _fingerprint_matches(self) -> GpgBackupPrivateKey:
        _check_matches(self.armored_private_key.get_secret_value(), PRIVATE_ARMOR, self.fingerprint)
        return self
