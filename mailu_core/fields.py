"""Constrained string types shared by the stack config and the credential blocks.

Each type carries its regex into the JSON schema (so the Prefect server rejects a bad value when a
run is created; the server checks `pattern` but not `format`) and re-checks it in Python with a
message that names the bad value and what is allowed. Some types add a Python-only check the
regex cannot express (an IP octet range, CIDR host bits, a `..` path segment).

Patterns are written in the common subset of Python and ECMA-262 regex syntax (the UI is
JavaScript), anchored with `^...$`, and matched here with `re.fullmatch`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

# Error type used for every problem this project detects itself; `ConfigError` formatting relies on it.
INVALID = "invalid_value"


def invalid(detail: str) -> PydanticCustomError:
    """A validation error whose message is `detail` verbatim (braces in values are safe)."""
    return PydanticCustomError(INVALID, "{detail}", {"detail": detail})


@dataclass(frozen=True)
class Checked:
    """Annotated marker: a regex that lands in the JSON schema plus a Python check with a clear message.

    `allowed` completes the sentence "<value> is not ...". `explain`, called when the regex fails,
    may give a more specific reason (completing "<value> ..."). `extra`, called when the regex
    matches, may return a further complaint the regex cannot express, or None when all is fine.
    """

    pattern: str
    allowed: str
    extra: Callable[[str], str | None] | None = field(default=None, compare=False)
    explain: Callable[[str], str | None] | None = field(default=None, compare=False)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = self.pattern
        return json_schema

    def check(self, value: str) -> str:
        if not re.fullmatch(self.pattern, value):
            reason = self.explain(value) if self.explain is not None else None
            raise invalid(f"{value!r} {reason}" if reason else f"{value!r} is not {self.allowed}")
        if self.extra is not None:
            complaint = self.extra(value)
            if complaint:
                raise invalid(f"{value!r} {complaint}")
        return value


# --- building blocks of the patterns -------------------------------------------------------------

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TLD = r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = rf"^{_OCTET}(?:\.{_OCTET}){{3}}$"
# Loose on purpose: the full IPv6 grammar is unreadable as a regex; Python checks the rest.
IPV6_PATTERN = r"^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$"
DNS_NAME_PATTERN = rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)+{_TLD}$"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PATH_SEGMENT = r"[A-Za-z0-9._@+-]+"
_NO_DOT_SEGMENTS = r"(?!(?:.*/)?\.\.?(?:/|$))"


def _ip_complaint(version: int | None) -> Callable[[str], str | None]:
    def complaint(value: str) -> str | None:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return f"is not a valid IPv{version or '4 or IPv6'} address"
        if version is not None and address.version != version:
            return f"is an IPv{address.version} address; IPv{version} is required here"
        return None

    return complaint


def _cidr_complaint(version: int | None) -> Callable[[str], str | None]:
    def complaint(value: str) -> str | None:
        if "/" not in value:
            return "has no /prefix length, e.g. 192.168.203.0/24"
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"is not a valid IPv{version or '4 or IPv6'} network in CIDR notation"
        if version is not None and network.version != version:
            return f"is an IPv{network.version} network; IPv{version} is required here"
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError:
            return f"has host bits set; the network is {network.compressed}"
        return None

    return complaint


def _dns_name_explain(value: str) -> str | None:
    if value != value.lower():
        return f"must be lowercase ({value.lower()!r})"
    if value.endswith("."):
        return f"must not end with a dot ({value.rstrip('.')!r})"
    if "." not in value and re.fullmatch(_LABEL, value):
        return "needs at least two labels, e.g. mail.example.com"
    return None


def _refuse_edge(value: str) -> str | None:
    if value == "edge":
        return "is refused: the plan says NO edge network (mail ports go through Traefik TCP routing)"
    return None


# --- the types -----------------------------------------------------------------------------------

DnsName = Annotated[
    str,
    Checked(
        DNS_NAME_PATTERN,
        "a lowercase DNS name with at least two labels and no trailing dot, e.g. mail.example.com",
        explain=_dns_name_explain,
    ),
]
"""A fully qualified domain or host name (mail domain, Mailu hostname, DNS zone)."""

HostAddress = Annotated[
    str,
    Checked(
        rf"^(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$",
        "a host name or an IP address, e.g. mail.example.com or 192.0.2.10",
    ),
]
"""Where to connect: a host name (single label allowed) or an IPv4/IPv6 address."""

IPv4 = Annotated[
    str, Checked(IPV4_PATTERN, "an IPv4 address such as 192.0.2.10", _ip_complaint(4), _ip_complaint(4))
]
IPv6 = Annotated[
    str, Checked(IPV6_PATTERN, "an IPv6 address such as 2001:db8::10", _ip_complaint(6), _ip_complaint(6))
]
IPAny = Annotated[
    str,
    Checked(
        rf"(?:{IPV4_PATTERN})|(?:{IPV6_PATTERN})",
        "an IPv4 or IPv6 address such as 192.0.2.10 or 2001:db8::10",
        _ip_complaint(None),
        _ip_complaint(None),
    ),
]
IPv4Cidr = Annotated[
    str,
    Checked(
        rf"^{_OCTET}(?:\.{_OCTET}){{3}}/(?:3[0-2]|[12]?[0-9])$",
        "an IPv4 network in CIDR notation such as 192.168.203.0/24",
        _cidr_complaint(4),
        _cidr_complaint(4),
    ),
]
CidrAny = Annotated[
    str,
    Checked(
        rf"^(?:{_OCTET}(?:\.{_OCTET}){{3}}/(?:3[0-2]|[12]?[0-9])|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))$",
        "an IPv4 or IPv6 network in CIDR notation such as 198.51.100.0/24 or 2001:db8::/48",
        _cidr_complaint(None),
        _cidr_complaint(None),
    ),
]

DIGEST_HINT = "use <repo>@sha256:<64 hex> (docker inspect --format '{{index .RepoDigests 0}}' IMAGE)"
IMAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]*@sha256:[0-9a-f]{64}$"


def _check_image(value: str) -> str:
    if "@" not in value:
        raise invalid(f"{value!r} is not pinned by digest; {DIGEST_HINT}")
    name, _, digest = value.partition("@")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise invalid(f"{value!r}: digest {digest!r} is not 'sha256:' + 64 lowercase hex; {DIGEST_HINT}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:-]*", name) or name.endswith((":", "/")):
        raise invalid(f"{value!r}: {name!r} is not an image repository (with an optional :tag)")
    return value


@dataclass(frozen=True)
class _PinnedImage:
    """Marker for image references pinned by digest; a dedicated check gives the `docker inspect` hint."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_check_image, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = IMAGE_PATTERN
        return json_schema


PinnedImage = Annotated[str, _PinnedImage()]
"""An image reference pinned by digest: `repo[:tag]@sha256:<64 hex>` (the tag, if any, is informative)."""

BlockName = Annotated[
    str,
    Checked(
        r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$",
        "a Prefect block document name (lowercase letters, digits and dashes), e.g. inlock-ssh",
    ),
]
DockerName = Annotated[
    str,
    Checked(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        "a Docker object name (letters, digits, '_', '.', '-'; starting with a letter or digit)",
    ),
]
NetworkName = Annotated[
    str,
    Checked(
        r"^(?!edge$)[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        "a Docker network name (letters, digits, '_', '.', '-'; not 'edge')",
        explain=_refuse_edge,
    ),
]
ComposeProject = Annotated[
    str,
    Checked(r"^[a-z0-9][a-z0-9_-]{0,62}$", "a compose project name (lowercase letters, digits, '_', '-')"),
]
AbsolutePath = Annotated[
    str,
    Checked(
        rf"^{_NO_DOT_SEGMENTS}(?:/{_PATH_SEGMENT})+$",
        "an absolute path without '.' or '..' segments or a trailing slash, e.g. /home/comzis/apps",
    ),
]
StackPath = Annotated[
    str,
    Checked(
        rf"^{_NO_DOT_SEGMENTS}/?{_PATH_SEGMENT}(?:/{_PATH_SEGMENT})*$",
        "a path relative to host.stack_root (or absolute) without '.' or '..' segments or a trailing "
        "slash, e.g. compose/mailu.yml",
    ),
]
FileName = Annotated[
    str,
    Checked(r"^(?!\.\.?$)[A-Za-z0-9._@+-]+$", "a plain file name without '/', e.g. cert.pem"),
]
UrlPath = Annotated[
    str,
    Checked(r"^/[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*$", "a URL path with a leading '/', e.g. /admin"),
]
HttpUrl = Annotated[
    str,
    Checked(r"^https?://[^\s/?#]+(?:[/?#]\S*)?$", "an http(s) URL such as http://127.0.0.1:8080"),
]
TraefikName = Annotated[
    str,
    Checked(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]*(?:@[A-Za-z0-9-]+)?$",
        "a Traefik object name, optionally with a provider suffix, e.g. secure-headers or x@file",
    ),
]
EntryPointName = Annotated[
    str,
    Checked(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", "a Traefik entrypoint name (letters, digits, '_', '-')"),
]
LocalPart = Annotated[
    str,
    Checked(
        r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$",
        "the local part of an address (before the '@'), lowercase, e.g. admin",
    ),
]
DkimSelector = Annotated[
    str,
    Checked(rf"^{_LABEL}$", "a DKIM selector (one lowercase DNS label), e.g. dkim or dkim2025"),
]
MailtoUri = Annotated[
    str,
    Checked(
        r"^mailto:[A-Za-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$",
        "a mailto: URI with a lowercase domain, e.g. mailto:admin@example.com",
    ),
]
RateLimit = Annotated[
    str,
    Checked(
        r"^[1-9][0-9]*/(?:second|minute|hour|day)$", "a rate such as 5/hour (per second|minute|hour|day)"
    ),
]
MailuVersion = Annotated[
    str,
    Checked(r"^[0-9]{4}\.[0-9]{2}(?:\.[0-9]+)?$", "a Mailu release such as 2024.06 or 2024.06.57"),
]
StackName = Annotated[
    str,
    Checked(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", "a short name (lowercase letters, digits, '-')"),
]
Timezone = Annotated[
    str,
    Checked(
        r"^[A-Za-z]+(?:[/_+-][A-Za-z0-9_+-]+)*$", "an IANA time zone name such as Etc/UTC or Europe/Berlin"
    ),
]
