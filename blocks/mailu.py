"""Mailu's own secrets. Any may start empty: the first deploy generates it once and saves the block.

A later deploy must never regenerate a value: a new SECRET_KEY invalidates sessions and tokens, a
new DB password locks Mailu out of its database. `missing()` and `filled()` support that
fill-once pattern.
"""

from __future__ import annotations

import secrets
import string

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator

from mailu_core.fields import SECRET_MAX
from mailu_flows.blocks.meta import DOCS_URL, LOGO_URL

# Mailu's setup draws SECRET_KEY from A-Z0-9 (16 chars) and API_TOKEN from the same (32 chars).
_MAILU_ALPHABET = string.ascii_uppercase + string.digits
_PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-_.+="
GENERATED_LENGTH = {"secret_key": 16, "admin_password": 24, "db_password": 32, "api_token": 32}


def _no_line_breaks(value: SecretStr, what: str) -> None:
    if "\n" in value.get_secret_value() or "\r" in value.get_secret_value():
        raise ValueError(f"the {what} contains a line break")


class MailuSecrets(Block):
    """SECRET_KEY, the initial admin password, the DB password and the API token of one Mailu stack."""

    # A failed validation must not print the offending value: it may be a secret.
    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "Mailu Secrets"
    _block_type_slug = "mailu-secrets"
    _description = (
        "Mailu's secret key, admin password, DB password and API token; empty ones are generated once."
    )
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL
    _code_example = """
    ```python
    from mailu_flows.blocks import MailuSecrets

    secrets = MailuSecrets.load("BLOCK_NAME")  # the stack config's blocks.mailu_secrets
    print(secrets.missing())  # the fields the next deploy generates
    ```
    """

    secret_key: SecretStr = Field(
        default=SecretStr(""),
        max_length=SECRET_MAX,
        description="SECRET_KEY (16+ chars). Changing it logs everyone out. Empty: generate.",
    )
    admin_password: SecretStr = Field(
        default=SecretStr(""),
        max_length=SECRET_MAX,
        description="Password of the postmaster admin account. Empty: generate.",
    )
    db_password: SecretStr = Field(
        default=SecretStr(""), max_length=SECRET_MAX, description="DB_PW for PostgreSQL. Empty: generate."
    )
    api_token: SecretStr = Field(
        default=SecretStr(""),
        max_length=SECRET_MAX,
        description="API_TOKEN for Mailu's REST API (4+ chars). Empty: generate.",
    )

    @field_validator("secret_key")
    @classmethod
    def _secret_key_length(cls, value: SecretStr) -> SecretStr:
        _no_line_breaks(value, "secret key")
        if 0 < len(value.get_secret_value()) < 16:
            raise ValueError("the secret key must have at least 16 characters (Mailu's own is 16)")
        return value

    @field_validator("admin_password")
    @classmethod
    def _admin_password_quotable(cls, value: SecretStr) -> SecretStr:
        _no_line_breaks(value, "admin password")
        if "'" in value.get_secret_value():
            # Mailu's start.py interpolates INITIAL_ADMIN_PW inside single quotes in a shell command.
            raise ValueError(
                "the admin password must not contain a single quote (Mailu passes it through a shell)"
            )
        return value

    @field_validator("db_password")
    @classmethod
    def _db_password_line(cls, value: SecretStr) -> SecretStr:
        _no_line_breaks(value, "DB password")
        return value

    @field_validator("api_token")
    @classmethod
    def _api_token_length(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if any(c.isspace() for c in token):
            raise ValueError("the API token contains whitespace")
        if 0 < len(token) < 4:
            raise ValueError("the API token must have at least 4 characters (Mailu refuses shorter ones)")
        return value

    def missing(self) -> list[str]:
        """Names of the fields still empty."""
        return [name for name in GENERATED_LENGTH if not getattr(self, name).get_secret_value()]

    def filled(self) -> tuple[MailuSecrets, list[str]]:
        """A copy with every empty field generated, plus the generated names; set values are kept."""
        updates: dict[str, SecretStr] = {}
        for name in self.missing():
            alphabet = _MAILU_ALPHABET if name in ("secret_key", "api_token") else _PASSWORD_ALPHABET
            value = "".join(secrets.choice(alphabet) for _ in range(GENERATED_LENGTH[name]))
            updates[name] = SecretStr(value)
        return self.model_copy(update=updates), list(updates)
