"""Credentials of the two DNS providers a stack config can name (`dns.provider`)."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator

from mailu_core.fields import SECRET_MAX, HttpUrl, IPAny
from mailu_flows.blocks.meta import DOCS_URL, LOGO_URL

CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"


class CloudflareDns(Block):
    """A Cloudflare API token allowed to edit the zone's DNS records (Zone.DNS:Edit, Zone:Read)."""

    # A failed validation must not print the offending value: it may be a secret.
    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "Mailu Cloudflare DNS"
    _block_type_slug = "mailu-cloudflare"
    _description = "Cloudflare API token for publishing a Mailu stack's DNS records."
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL
    _code_example = """
    ```python
    from mailu_flows.blocks import CloudflareDns

    cloudflare = CloudflareDns.load("BLOCK_NAME")  # the stack config's blocks.dns_provider
    print(cloudflare.base_url)  # the token stays in cloudflare.api_token (a SecretStr)
    ```
    """

    api_token: SecretStr = Field(
        max_length=SECRET_MAX, description="API token scoped to the zone (Zone.DNS:Edit and Zone:Read)."
    )
    base_url: HttpUrl = Field(
        CLOUDFLARE_API, description="API base URL; change only to point at an emulator."
    )

    @field_validator("base_url")
    @classmethod
    def _https_unless_loopback(cls, value: str) -> str:
        """The token travels in every request: only https, except to an emulator on this machine."""
        import ipaddress
        from urllib.parse import urlsplit

        host = (urlsplit(value).hostname or "").lower()
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not value.startswith("https://") and not loopback:
            raise ValueError(
                f"base_url {value!r} is not https: the API token would travel in clear text; use "
                "https://, or http:// only for an emulator on a loopback address"
            )
        return value

    @field_validator("api_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()  # a line break or space copied with it is not part of it
        if not token:
            raise ValueError("the API token is empty")
        if any(c.isspace() for c in token):
            raise ValueError("the API token contains whitespace (a copy-paste accident?)")
        return SecretStr(token)


class Rfc2136Dns(Block):
    """A primary nameserver that accepts RFC 2136 dynamic updates signed with a TSIG key."""

    # A failed validation must not print the offending value: it may be a secret.
    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "Mailu RFC 2136 DNS"
    _block_type_slug = "mailu-rfc2136"
    _description = "Nameserver and TSIG key for RFC 2136 dynamic updates of a Mailu stack's records."
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL
    _code_example = """
    ```python
    from mailu_flows.blocks import Rfc2136Dns

    ddns = Rfc2136Dns.load("BLOCK_NAME")  # the stack config's blocks.dns_provider
    print(ddns.server, ddns.port, ddns.tsig_key_name, ddns.tsig_algorithm)
    ```
    """

    server: IPAny = Field(description="Address of the primary nameserver that accepts updates.")
    port: int = Field(53, ge=1, le=65535, description="Its DNS port.")
    tsig_key_name: str = Field(
        max_length=253,
        pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$",
        description="TSIG key name as configured on the server, e.g. mailu-ddns.",
    )
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"] = Field(
        "hmac-sha256", description="TSIG algorithm."
    )
    tsig_secret: SecretStr = Field(
        max_length=SECRET_MAX, description="TSIG secret, base64 (as in the server's key file)."
    )

    @field_validator("tsig_secret")
    @classmethod
    def _secret_is_base64(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if not text:
            raise ValueError("the TSIG secret is empty")
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "the TSIG secret is not valid base64 (copy the 'secret' value of the key)"
            ) from None
        return SecretStr(text)
