"""SSH access to the Docker host: where, as whom, with which key, and which host key to expect.

The host key is pinned (no trust on first use): flows connect with a reject-unknown policy and
accept only the keys listed here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from mailu_core.fields import SECRET_MAX, HostAddress
from mailu_flows.blocks.meta import DOCS_URL, LOGO_URL
from mailu_flows.blocks.pasted import FlattenedKeyError, restore_armor, split_lines

HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
HOST_KEY_PATTERN = (
    r"^(?:" + "|".join(re.escape(t) for t in HOST_KEY_TYPES) + r") AAAA[0-9A-Za-z+/]+={0,3}(?: .*)?$"
)
_PRIVATE_KEY_ARMOR = re.compile(r"-----BEGIN ((?:OPENSSH|RSA|EC|DSA|ENCRYPTED) )?PRIVATE KEY-----")
_HOST_KEY_START = re.compile(r"\s(?=(?:" + "|".join(re.escape(t) for t in HOST_KEY_TYPES) + r") AAAA)")


def split_host_keys(entries: Any) -> Any:
    """One host key per entry, from entries pasted several to a box: line by line (`ssh-keyscan`
    output, `#` comments dropped), and a line whose breaks became spaces cut before each key type."""
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return entries  # pydantic says what is wrong with it
    return [
        key
        for line in split_lines(entries)
        # a known_hosts line (host first) is left whole: the check below says what to drop
        for key in (_HOST_KEY_START.split(line) if line.startswith(HOST_KEY_TYPES) else [line])
    ]


def check_host_key_line(line: str) -> str:
    """A pinned host key line `<type> <base64> [comment]`, checked for shape and a matching embedded type."""
    parts = line.strip().split(maxsplit=2)
    if len(parts) >= 2 and parts[0] not in HOST_KEY_TYPES and parts[1] in HOST_KEY_TYPES:
        raise ValueError(
            f"{line[:60]!r} looks like a known_hosts line; drop the host part and keep '<type> <base64>'"
        )
    if len(parts) < 2 or parts[0] not in HOST_KEY_TYPES:
        raise ValueError(
            f"{line[:60]!r} is not a host key line '<type> <base64> [comment]' with type one of "
            f"{', '.join(HOST_KEY_TYPES)} (get it with: ssh-keyscan -p PORT HOST, or the host's "
            "/etc/ssh/ssh_host_ed25519_key.pub)"
        )
    key_type, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"host key {key_type} {blob[:16]}...: the key data is not valid base64") from None
    embedded_length = int.from_bytes(raw[:4], "big")
    embedded = raw[4 : 4 + embedded_length].decode("ascii", "replace")
    if embedded != key_type:
        raise ValueError(f"host key {key_type} {blob[:16]}...: the key data says it is {embedded!r}")
    return " ".join(parts)


class SshHost(Block):
    """SSH login to the Docker host that runs the Mailu stack, with its host key pinned."""

    # A failed validation must not print the offending value: it may be a secret.
    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "Mailu SSH Host"
    _block_type_slug = "mailu-ssh-host"
    _description = "SSH login to the Docker host of a Mailu stack; the host key is pinned (no TOFU)."
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL
    _code_example = """
    ```python
    from mailu_flows.blocks import SshHost

    ssh = SshHost.load("BLOCK_NAME")  # the name in the stack config's blocks.ssh_host
    print(ssh.user, ssh.address, ssh.port, ssh.host_keys)
    ```
    """

    address: HostAddress = Field(description="Host name or IP address of the Docker host.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    user: str = Field(
        pattern=r"^[a-z_][a-z0-9_.-]{0,31}$", description="Login user (must be allowed to run docker)."
    )
    private_key: SecretStr = Field(
        max_length=32_768,
        description="Private key in OpenSSH or PEM format (pasted in the UI, its line breaks are restored).",
    )
    private_key_passphrase: SecretStr = Field(
        default=SecretStr(""),
        max_length=SECRET_MAX,
        description="Passphrase of the private key; empty if it has none.",
    )
    host_keys: list[str] = Field(
        min_length=1,
        description="Pinned host key lines '<type> <base64> [comment]', e.g. from ssh-keyscan; "
        "several pasted in one entry are split.",
        json_schema_extra={"items": {"type": "string", "pattern": HOST_KEY_PATTERN}},
    )

    @field_validator("private_key")
    @classmethod
    def _private_key_shape(cls, value: SecretStr) -> SecretStr:
        try:
            text = restore_armor(value.get_secret_value())
        except FlattenedKeyError as exc:
            raise ValueError(f"{exc}: paste the key file's content again, or use `blocks create`") from None
        if text.startswith(("ssh-", "ecdsa-", "sk-")):
            raise ValueError(
                "this is a public key; the private key starts with '-----BEGIN ... PRIVATE KEY-----'"
            )
        if not _PRIVATE_KEY_ARMOR.match(text):
            raise ValueError(
                "not a private key: expected '-----BEGIN OPENSSH PRIVATE KEY-----' (or RSA/EC PEM)"
            )
        if "-----END " not in text:
            raise ValueError("the private key is truncated: no '-----END ... PRIVATE KEY-----' line")
        return SecretStr(text + "\n")

    @field_validator("host_keys", mode="before")
    @classmethod
    def _one_key_per_entry(cls, value: Any) -> Any:
        return split_host_keys(value)

    @field_validator("host_keys")
    @classmethod
    def _host_keys_shape(cls, lines: list[str]) -> list[str]:
        checked = [check_host_key_line(line) for line in lines]
        if len(set(checked)) != len(checked):
            raise ValueError("a host key is listed more than once")
        return checked

    @model_validator(mode="after")
    def _key_loads(self) -> SshHost:
        """Read the key as the connection will, so that a bad key or passphrase is named here and not
        reported as a refused login on the host."""
        import io

        import paramiko

        text = self.private_key.get_secret_value()
        passphrase = self.private_key_passphrase.get_secret_value() or None
        for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                key_class.from_private_key(io.StringIO(text), password=passphrase)
                return self
            except paramiko.PasswordRequiredException:
                raise ValueError(
                    "private_key_passphrase: the private key is encrypted; give its passphrase"
                ) from None
            except (paramiko.SSHException, ValueError, TypeError):
                continue
        raise ValueError(
            "private_key: cannot be read as an ed25519, ECDSA or RSA key"
            + (" (or private_key_passphrase is wrong)" if passphrase else "")
        )
