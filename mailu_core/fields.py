"""Constrained types shared by the stack config, the credential blocks and the flow parameters.

The one definition of each: `mailu_core.config`, `blocks/` and `flows/` import them from here, so a
bound added here holds everywhere a value can come in (a YAML file, a block form, a run's parameters).

Each string type has a maximum length, checked before its pattern (the JSON schema carries
`maxLength`; no pattern ever runs over a megabyte), and carries its regex into the JSON schema (so
the Prefect server rejects a bad value when a run is created; the server checks `pattern` but not
`format`) and re-checks it in Python with a message that names the bad value and what is allowed.
Some types add a Python-only check the regex cannot express (an IP octet range, CIDR host bits).

Patterns are written in the common subset of Python and ECMA-262 regex syntax (the UI is
JavaScript), anchored with `^...$`, and matched here with `re.fullmatch`. Every pattern must run in
linear time, in Python's `re` (pydantic, and the Prefect server's JSON-schema check on every run it
creates) and in the browser: at each point of the input at most one branch of the pattern may go on
matching. So no repeated group may start with something the text before it could also have consumed
(the old time zone pattern `[A-Za-z]+(?:[/_+-][A-Za-z0-9_+-]+)*` took exponential time on
"a" + "_" * 40 + "!"), and no star may share a character with what follows it (the old IPv6 pattern
`[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*` was quadratic on a long run of ':').
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, GetCoreSchemaHandler, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

# Error type used for every problem this project detects itself; `ConfigError` formatting relies on it.
INVALID = "invalid_value"


def invalid(detail: str) -> PydanticCustomError:
    """A validation error whose message is `detail` verbatim (braces in values are safe)."""
    return PydanticCustomError(INVALID, "{detail}", {"detail": detail})


def shown(value: Any) -> str:
    """repr(value), cut to 120 characters: error messages stay readable for a 100k-character value."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def has_control(value: str) -> bool:
    """True if `value` holds a C0 control character (newline, NUL, ...) or DEL."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def schema_pattern(pattern: str) -> str:
    """`pattern` as the JSON schema carries it: the Prefect server checks it with Python's `re.search`,
    where `$` also matches before a final newline ("mail.example.com\n" would pass); the lookahead
    refuses any newline, and `^` first keeps the search linear (a valid ECMA-262 pattern too)."""
    return rf"^(?![^\n]*\n)(?:{pattern})"


def newline_safe_patterns(schema: dict[str, Any]) -> None:
    """`json_schema_extra` of a model: every other `pattern` in its schema (a `Field(pattern=...)`)
    gets `schema_pattern`'s guard too; `Checked` types already carry it."""
    guard = schema_pattern("")[: -len("(?:)")]
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str) and not value.startswith(guard):
            schema[key] = schema_pattern(value)
        elif isinstance(value, dict):
            newline_safe_patterns(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    newline_safe_patterns(item)


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
        json_schema["pattern"] = schema_pattern(self.pattern)
        return json_schema

    def check(self, value: str) -> str:
        if not re.fullmatch(self.pattern, value):
            reason = self.explain(value) if self.explain is not None else None
            raise invalid(f"{shown(value)} {reason}" if reason else f"{shown(value)} is not {self.allowed}")
        if self.extra is not None:
            complaint = self.extra(value)
            if complaint:
                raise invalid(f"{shown(value)} {complaint}")
        return value


# --- building blocks of the patterns -------------------------------------------------------------

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TLD = r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
IPV4_PATTERN = rf"^{_IPV4}$"
# Loose on purpose (the full IPv6 grammar is unreadable as a regex; Python checks the rest), and
# no ':' before the first ':', so where the first one is never has to be guessed (linear).
_IPV6 = r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*"
IPV6_PATTERN = rf"^{_IPV6}$"
DNS_NAME_PATTERN = rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)+{_TLD}$"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PATH_SEGMENT = r"[A-Za-z0-9._@+-]+"
_NO_DOT_SEGMENTS = r"(?!(?:.*/)?\.\.?(?:/|$))"
_URL_HOST = r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])"
HTTP_URL_PATTERN = rf"^https?://{_URL_HOST}(?::[0-9]{{1,5}})?(?:/[A-Za-z0-9._~%+=@:/-]*)?$"

PATH_MAX = 1024
SECRET_MAX = 1024  # the blocks' passwords, passphrases and tokens: a bound far above any real one
URL_MAX = 2048
IP_MAX = 45  # the longest IPv6 text form (with an embedded IPv4 address)


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


def _url_path_explain(value: str) -> str | None:
    if not value.startswith("/"):
        return None
    if has_control(value) or any(c.isspace() for c in value):
        return "contains whitespace or a control character; a URL path is /segment[/segment...]"
    if "//" in value or value.endswith("/"):
        return "has an empty segment ('//' or a trailing '/'); a URL path is /segment[/segment...]"
    if any(segment in (".", "..") for segment in value.split("/")):
        return "has a '.' or '..' segment; name the path itself, e.g. /admin"
    return None


def _url_port(value: str) -> str | None:
    authority = value.split("://", 1)[1].split("/", 1)[0]
    port = authority.rsplit("]", 1)[-1].partition(":")[2]
    if port and not 1 <= int(port) <= 65535:
        return f"has port {port}; a port is 1..65535"
    return None


# --- names and addresses -------------------------------------------------------------------------

DnsName = Annotated[
    str,
    StringConstraints(max_length=253),
    Checked(
        DNS_NAME_PATTERN,
        "a lowercase DNS name with at least two labels and no trailing dot, e.g. mail.example.com",
        explain=_dns_name_explain,
    ),
]
"""A fully qualified domain or host name (mail domain, Mailu hostname, DNS zone)."""

HostAddress = Annotated[
    str,
    StringConstraints(max_length=253),
    Checked(
        rf"^(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|{_IPV6})$",
        "a host name or an IP address, e.g. mail.example.com or 192.0.2.10",
    ),
]
"""Where to connect: a host name (single label allowed) or an IPv4/IPv6 address."""

IPv4 = Annotated[
    str,
    StringConstraints(max_length=15),
    Checked(IPV4_PATTERN, "an IPv4 address such as 192.0.2.10", _ip_complaint(4), _ip_complaint(4)),
]
IPv6 = Annotated[
    str,
    StringConstraints(max_length=IP_MAX),
    Checked(IPV6_PATTERN, "an IPv6 address such as 2001:db8::10", _ip_complaint(6), _ip_complaint(6)),
]
IPAny = Annotated[
    str,
    StringConstraints(max_length=IP_MAX),
    Checked(
        rf"(?:{IPV4_PATTERN})|(?:{IPV6_PATTERN})",
        "an IPv4 or IPv6 address such as 192.0.2.10 or 2001:db8::10",
        _ip_complaint(None),
        _ip_complaint(None),
    ),
]
IPv4Cidr = Annotated[
    str,
    StringConstraints(max_length=18),
    Checked(
        rf"^{_IPV4}/(?:3[0-2]|[12]?[0-9])$",
        "an IPv4 network in CIDR notation such as 192.168.203.0/24",
        _cidr_complaint(4),
        _cidr_complaint(4),
    ),
]
CidrAny = Annotated[
    str,
    StringConstraints(max_length=IP_MAX + 4),
    Checked(
        rf"^(?:{_IPV4}/(?:3[0-2]|[12]?[0-9])|{_IPV6}/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))$",
        "an IPv4 or IPv6 network in CIDR notation such as 198.51.100.0/24 or 2001:db8::/48",
        _cidr_complaint(None),
        _cidr_complaint(None),
    ),
]

# --- images --------------------------------------------------------------------------------------

DIGEST_HINT = "use <repo>@sha256:<64 hex> (docker inspect --format '{{index .RepoDigests 0}}' IMAGE)"
IMAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]*@sha256:[0-9a-f]{64}$"


def _check_image(value: str) -> str:
    if "@" not in value:
        raise invalid(f"{shown(value)} is not pinned by digest; {DIGEST_HINT}")
    name, _, digest = value.partition("@")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise invalid(
            f"{shown(value)}: digest {shown(digest)} is not 'sha256:' + 64 lowercase hex; {DIGEST_HINT}"
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:-]*", name) or name.endswith((":", "/")):
        raise invalid(f"{shown(value)}: {shown(name)} is not an image repository (with an optional :tag)")
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
        json_schema["pattern"] = schema_pattern(IMAGE_PATTERN)
        return json_schema


PinnedImage = Annotated[str, StringConstraints(max_length=512), _PinnedImage()]
"""An image reference pinned by digest: `repo[:tag]@sha256:<64 hex>` (the tag, if any, is informative)."""

# --- object names --------------------------------------------------------------------------------

BlockName = Annotated[
    str,
    StringConstraints(max_length=100),
    Checked(
        r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$",
        "a Prefect block document name (lowercase letters, digits and dashes), e.g. inlock-ssh",
    ),
]
DOCKER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
DockerName = Annotated[
    str,
    StringConstraints(max_length=128),
    Checked(
        DOCKER_NAME_PATTERN,
        "a Docker object name (letters, digits, '_', '.', '-'; starting with a letter or digit)",
    ),
]
NetworkName = Annotated[
    str,
    StringConstraints(max_length=128),
    Checked(
        r"^(?!edge$)[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        "a Docker network name (letters, digits, '_', '.', '-'; not 'edge')",
        explain=_refuse_edge,
    ),
]
ComposeProject = Annotated[
    str,
    StringConstraints(max_length=63),
    Checked(r"^[a-z0-9][a-z0-9_-]{0,62}$", "a compose project name (lowercase letters, digits, '_', '-')"),
]
ComposeService = Annotated[
    str,
    StringConstraints(max_length=63),
    Checked(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        "a compose service name (letters, digits, '_', '.', '-'), e.g. imap",
    ),
]
"""A service of the stack's compose file (front, admin, imap, ...)."""
TraefikName = Annotated[
    str,
    StringConstraints(max_length=128),
    Checked(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]*(?:@[A-Za-z0-9-]+)?$",
        "a Traefik object name, optionally with a provider suffix, e.g. secure-headers or x@file",
    ),
]
EntryPointName = Annotated[
    str,
    StringConstraints(max_length=64),
    Checked(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", "a Traefik entrypoint name (letters, digits, '_', '-')"),
]
LocalPart = Annotated[
    str,
    StringConstraints(max_length=64),
    Checked(
        r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$",
        "the local part of an address (before the '@'), lowercase, e.g. admin",
    ),
]
MAIL_LOCAL_PART = r"[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?"
MAIL_DOMAIN = rf"(?=[a-z0-9.-]{{1,253}}$)(?:{_LABEL}\.)+{_TLD}"
MAIL_ADDRESS_PATTERN = rf"^{MAIL_LOCAL_PART}@{MAIL_DOMAIN}$"
MailAddress = Annotated[
    str,
    StringConstraints(max_length=320),
    Checked(MAIL_ADDRESS_PATTERN, "a lowercase mail address such as alice@example.com"),
]
DkimSelector = Annotated[
    str,
    StringConstraints(max_length=63),
    Checked(rf"^{_LABEL}$", "a DKIM selector (one lowercase DNS label), e.g. dkim or dkim2025"),
]
STACK_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
StackName = Annotated[
    str,
    StringConstraints(max_length=63),
    Checked(STACK_NAME_PATTERN, "a short name (lowercase letters, digits, '-')"),
]

# --- paths and URLs ------------------------------------------------------------------------------

AbsolutePath = Annotated[
    str,
    StringConstraints(max_length=PATH_MAX),
    Checked(
        rf"^{_NO_DOT_SEGMENTS}(?:/{_PATH_SEGMENT})+$",
        "an absolute path without '.' or '..' segments or a trailing slash, e.g. /home/comzis/apps",
    ),
]
StackPath = Annotated[
    str,
    StringConstraints(max_length=PATH_MAX),
    Checked(
        rf"^{_NO_DOT_SEGMENTS}/?{_PATH_SEGMENT}(?:/{_PATH_SEGMENT})*$",
        "a path relative to host.stack_root (or absolute) without '.' or '..' segments or a trailing "
        "slash, e.g. compose/mailu.yml",
    ),
]
FileName = Annotated[
    str,
    StringConstraints(max_length=255),
    Checked(r"^(?!\.\.?$)[A-Za-z0-9._@+-]+$", "a plain file name without '/', e.g. cert.pem"),
]
Mountpoint = Annotated[
    str,
    StringConstraints(max_length=PATH_MAX),
    Checked(
        rf"^{_NO_DOT_SEGMENTS}/(?:{_PATH_SEGMENT}(?:/{_PATH_SEGMENT})*)?$",
        "a filesystem mountpoint such as / or /var/lib/docker (no '.' or '..' segments)",
    ),
]
UrlPath = Annotated[
    str,
    StringConstraints(max_length=128),
    Checked(
        rf"^{_NO_DOT_SEGMENTS}/[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*$",
        "a URL path with a leading '/' and no '.' or '..' segment (letters, digits, '.', '_', '~', "
        "'-' between single '/'), e.g. /admin",
        explain=_url_path_explain,
    ),
]
HttpUrl = Annotated[
    str,
    StringConstraints(max_length=URL_MAX),
    Checked(
        HTTP_URL_PATTERN,
        "an http(s) URL such as http://127.0.0.1:8080 (host[:port] and a path of letters, digits and "
        "'._~%+=@:/-'; no credentials, query or shell characters)",
        extra=_url_port,
    ),
]
HostPort = Annotated[
    str,
    StringConstraints(max_length=260),
    Checked(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$", "host:port, e.g. 127.0.0.1:9115"),
]
MailtoUri = Annotated[
    str,
    StringConstraints(max_length=320),
    Checked(
        r"^mailto:[A-Za-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$",
        "a mailto: URI with a lowercase domain, e.g. mailto:admin@example.com",
    ),
]

# --- Mailu settings ------------------------------------------------------------------------------

RateLimit = Annotated[
    str,
    StringConstraints(max_length=32),
    Checked(
        r"^[1-9][0-9]*/(?:second|minute|hour|day)$", "a rate such as 5/hour (per second|minute|hour|day)"
    ),
]
MailuVersion = Annotated[
    str,
    StringConstraints(max_length=32),
    Checked(r"^[0-9]{4}\.[0-9]{2}(?:\.[0-9]+)?$", "a Mailu release such as 2024.06 or 2024.06.57"),
]
Timezone = Annotated[
    str,
    StringConstraints(max_length=64),
    Checked(
        # Segments separated by '/' only (the separator is in no segment): linear.
        r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*$",
        "an IANA time zone name such as Etc/UTC or Europe/Berlin",
    ),
]

# --- flow parameters -----------------------------------------------------------------------------


def _valid_stamp(stamp_format: str, stamp: str) -> str | None:
    try:
        datetime.strptime(stamp, stamp_format)
    except ValueError:
        return f"has no valid UTC timestamp ({stamp!r} is not a date and time)"
    return None


def _backup_id_stamp(value: str) -> str | None:
    return _valid_stamp("%Y%m%dT%H%M%SZ", re.findall(r"[0-9]{8}T[0-9]{6}Z", value)[-1])


def _release_id_stamp(value: str) -> str | None:
    return _valid_stamp("%Y%m%dT%H%M%S%fZ", value)


BackupId = Annotated[
    str,
    StringConstraints(max_length=128),
    Checked(
        # The stack name is bounded, so the '-' before the timestamp is found in bounded time.
        r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?-[0-9]{8}T[0-9]{6}Z(?:-[a-z0-9]{1,32})?$",
        "a backup id <stack>-YYYYmmddTHHMMSSZ[-tag] as the backup flow names them, e.g. "
        "inlock-ai-20250101T020000Z (list them in the backup destination)",
        extra=_backup_id_stamp,
    ),
]
"""A backup made by the backup flow: `<stack>-YYYYmmddTHHMMSSZ[-tag]` (mailu_core.backup.backup_id_for)."""

ReleaseId = Annotated[
    str,
    StringConstraints(max_length=22),
    Checked(
        r"^[0-9]{8}T[0-9]{12}Z$",
        "a release id YYYYmmddTHHMMSSffffffZ as the deploy flow names them, e.g. 20250101T020000123456Z "
        "(listed under <stack_root>/.mailu-flows/releases)",
        extra=_release_id_stamp,
    ),
]
"""A release recorded by the deploy flow (mailu_flows.deploy.releases.new_release_id)."""

ConfirmText = Annotated[
    str,
    StringConstraints(max_length=254),
    Checked(
        r"^[A-Za-z0-9.-]*$",
        "a host name typed to confirm (letters, digits, '.', '-'), e.g. mail.example.com",
    ),
]
"""Type-to-confirm text: hostile characters are refused here; the flow compares it with the hostname."""


def _dkim_has_key(value: str) -> str | None:
    if re.search(r"(?:^|;) *p=", value) is None:
        return "has no p= tag (the public key); a DKIM TXT value looks like v=DKIM1; k=rsa; p=MIIB..."
    return None


DkimTxtValue = Annotated[
    str,
    StringConstraints(max_length=4096),
    Checked(
        r"^[ A-Za-z0-9;=+/.:_*,-]+$",
        "a DKIM TXT value (tag=value pairs separated by ';'), e.g. 'v=DKIM1; k=rsa; p=MIIB...'",
        extra=_dkim_has_key,
    ),
]
"""The TXT value of a DKIM key record: only the characters DKIM tags use (no quote, newline or shell)."""

WaitSeconds = Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)]
"""A wait or time budget in seconds: 0 to a day, a finite number."""
