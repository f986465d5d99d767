"""The stack config: the one description of a Mailu stack that every flow reads.

`StackConfig` holds every value the implementation plan names (domains, hostnames, pinned images,
networks, volumes, host layout, Traefik routing, DNS, DKIM, backups, monitoring) and the *names*
of the Prefect blocks that hold credentials, never a credential itself (deployment parameters are
stored in plain text).

It is a flow parameter as well as a file format, so:
- plain types, `Literal` enums and `Field(description=..., ge=..., le=...)` render as a UI form;
- every pattern, enum and range lives in the JSON schema, so the Prefect server rejects a bad
  value when a run is created; checks across fields (the webmail image is needed only with a
  webmail, backup volumes must be declared volumes, ...) run when the flow validates its input;
- unknown keys are errors (`extra="forbid"`, `additionalProperties: false`), so typos never pass;
- no free text: every string has a pattern (or an enum) and a maximum length, and every pattern runs
  in linear time (the server checks patterns on every run it creates; see "field types" below).

`load_stack_config(path)` reads YAML and raises `ConfigError` with one line per bad field, naming
the field, the bad value, what is allowed and the YAML line. `dump_stack_config` writes YAML back.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from mailu_core.accounts import Accounts
from mailu_core.canary import CanarySettings
from mailu_core.errors import MailuFlowsError
from mailu_core.fields import (
    INVALID,
    AbsolutePath,
    BlockName,
    CidrAny,
    ComposeProject,
    DkimSelector,
    DnsName,
    DockerName,
    EntryPointName,
    FileName,
    HostAddress,
    HostPort,
    HttpUrl,
    IPAny,
    IPv4,
    IPv4Cidr,
    IPv6,
    LocalPart,
    MailtoUri,
    MailuVersion,
    Mountpoint,
    NetworkName,
    PinnedImage,
    RateLimit,
    StackName,
    StackPath,
    Timezone,
    TraefikName,
    UrlPath,
    invalid,
    newline_safe_patterns,
)
from mailu_core.fields import has_control as _has_control
from mailu_core.fields import shown as _short
from mailu_core.stack_paths import StackPaths

__all__ = [
    "DERIVED_NETWORKS",
    "Backup",
    "BlockNames",
    "ConfigError",
    "ConfigIssue",
    "Database",
    "Dkim",
    "Dmarc",
    "Dns",
    "HostLayout",
    "Images",
    "MailEntryPoint",
    "MailuSettings",
    "Middlewares",
    "Monitoring",
    "Networks",
    "RetiredSelector",
    "StackConfig",
    "Traefik",
    "Volumes",
    "dump_stack_config",
    "issues_from_validation_error",
    "load_stack_config",
    "parse_stack_config",
    "stack_config_from_mapping",
]

# --- field types ---------------------------------------------------------------------------------
#
# Every string type comes from mailu_core.fields (the one definition the blocks and the flow
# parameters share): each has a maximum length, checked before its pattern, and a linear-time pattern.


MailPort = Literal[25, 465, 587, 143, 993]

_CROSS_FIELD = "invalid_fields"


def _fail(problems: Sequence[tuple[str, str]]) -> None:
    """Raise one error carrying every cross-field problem; `ConfigError` splits it back per field."""
    if problems:
        summary = "; ".join(f"{where}: {detail}" for where, detail in problems)
        raise PydanticCustomError(
            _CROSS_FIELD, "{summary}", {"summary": summary, "problems": [list(p) for p in problems]}
        )


def _duplicates(values: Iterable[Any]) -> list[Any]:
    return [value for value, count in Counter(values).items() if count > 1]


def _unique(values: list[Any], what: str) -> list[Any]:
    dupes = _duplicates(values)
    if dupes:
        listed = ", ".join(repr(v) for v in dupes)
        raise PydanticCustomError(INVALID, "{detail}", {"detail": f"{what} listed more than once: {listed}"})
    return values


def _unique_items() -> dict[str, Any]:
    return {"uniqueItems": True}


class _Model(BaseModel):
    """Strict shape: unknown keys are errors and a loaded config is never mutated by a flow."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=newline_safe_patterns)


# --- Mailu ---------------------------------------------------------------------------------------


class MailuSettings(_Model):
    """What Mailu itself is told (rendered into its env file)."""

    version: MailuVersion = Field(
        "2024.06", description="Mailu release (MAILU_VERSION); images pin the exact build."
    )
    compose_project: ComposeProject = Field(
        "mailu",
        description="Compose project name (COMPOSE_PROJECT_NAME); prefixes container and network names.",
    )
    domain: DnsName = Field(description="Primary mail domain (DOMAIN), e.g. inlock.ai.")
    alternative_domains: list[DnsName] = Field(
        default_factory=list,
        description="Alternative domains served by the same mailboxes; signed with the primary DKIM key.",
        json_schema_extra=_unique_items(),
    )
    hostnames: list[DnsName] = Field(
        min_length=1,
        description="Mail hostnames (HOSTNAMES); the first is Mailu's HOSTNAME: banner, MX and SPF target.",
        json_schema_extra=_unique_items(),
    )
    postmaster: LocalPart = Field("admin", description="Postmaster local part (POSTMASTER), e.g. admin.")
    public_ipv4: IPv4 = Field(description="The host's public IPv4 address (A record of the hostname).")
    public_ipv6: IPv6 | None = Field(
        None, description="The host's public IPv6 address (AAAA record), if any."
    )
    webmail: Literal["roundcube", "snappymail", "none"] = Field("roundcube", description="Webmail (WEBMAIL).")
    admin_path: UrlPath = Field("/admin", description="Admin UI path (WEB_ADMIN), routed with forward-auth.")
    webmail_path: UrlPath = Field(
        "/webmail", description="Webmail path (WEB_WEBMAIL); the web root redirects here."
    )
    api_enabled: bool = Field(
        True,
        description=(
            "Mailu's REST API (API). Must stay true: the deploy ensures the domains and the postmaster "
            "through it, from inside the admin container; Traefik answers 403 on api_path, so it is never "
            "exposed."
        ),
    )
    api_path: UrlPath = Field("/api", description="REST API path (WEB_API).")
    tls_flavor: Literal["cert", "letsencrypt", "mail", "mail-letsencrypt"] = Field(
        "mail-letsencrypt",
        description=(
            "TLS_FLAVOR. 'mail*' flavors keep TLS on the mail ports and serve the web on plain :80 for "
            "Traefik to terminate HTTPS; '*letsencrypt' makes Mailu fetch certificates (HTTP-01 on :80); "
            "'cert'/'mail' read tls_cert_file/tls_key_file from the certs volume."
        ),
    )
    certificate_wait_s: int = Field(
        900,
        ge=60,
        le=86400,
        description=(
            "ACME flavors: how long a deploy waits for Mailu's first certificate after the DNS step "
            "(HTTP-01 can only succeed once the A record resolves and Traefik routes the challenge)."
        ),
    )
    health_interval_s: int = Field(
        30,
        ge=2,
        le=600,
        description=(
            "Seconds between Docker's health probes of each Mailu container. A deploy waits for each "
            "recreated service's first passing probe, so a shorter interval ends deploys sooner for more "
            "probes; 3 failing probes mark a service unhealthy, counted only after its start period."
        ),
    )
    tls_cert_file: FileName = Field(
        "cert.pem", description="Certificate file in the certs volume (cert, mail)."
    )
    tls_key_file: FileName = Field(
        "key.pem", description="Private key file in the certs volume (cert, mail)."
    )
    message_size_limit: int = Field(
        50_000_000, ge=1_000_000, le=1_000_000_000, description="Largest accepted message in bytes."
    )
    message_ratelimit: RateLimit = Field(
        "200/day", description="Outgoing messages per user (MESSAGE_RATELIMIT)."
    )
    auth_ratelimit_ip: RateLimit = Field(
        "5/hour", description="Failed logins per client network (AUTH_RATELIMIT_IP)."
    )
    auth_ratelimit_user: RateLimit = Field(
        "50/day", description="Failed logins per user (AUTH_RATELIMIT_USER)."
    )
    timezone: Timezone = Field("Etc/UTC", description="TZ for all containers.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="LOG_LEVEL.")
    disable_statistics: bool = Field(True, description="Do not send Mailu's anonymous usage ping.")
    full_text_search: str = Field(
        "en",
        pattern=r"^(?:off|[a-z]{2}(?:,[a-z]{2}){0,15})$",
        max_length=47,
        description="FULL_TEXT_SEARCH: Dovecot's search index languages (Mailu's default en), or off. "
        "Dovecot's fts_flatcurve plugin must be in the imap image for anything but off.",
    )

    @field_validator("hostnames", "alternative_domains")
    @classmethod
    def _no_repeats(cls, values: list[str]) -> list[str]:
        return _unique(values, "name")

    @model_validator(mode="after")
    def _consistent(self) -> MailuSettings:
        problems: list[tuple[str, str]] = []
        if not self.api_enabled:  # an option the deploy cannot honour is refused, not ignored
            problems.append(
                (
                    "api_enabled",
                    "false is not supported: the deploy creates the domains and the postmaster through "
                    "Mailu's API inside the admin container (Traefik answers 403 on api_path, so the API is "
                    "never exposed); remove the line or set it to true",
                )
            )
        if self.domain in self.alternative_domains:
            problems.append(
                ("alternative_domains", f"{self.domain!r} is the primary domain; list it only once")
            )
        paths = {"admin_path": self.admin_path, "webmail_path": self.webmail_path, "api_path": self.api_path}
        for path, count in Counter(paths.values()).items():
            if count > 1:
                names = [name for name, value in paths.items() if value == path]
                problems.append(
                    (names[-1], f"{path!r} is also used by {names[0]}; each web path must differ")
                )
        _fail(problems)
        return self


class Images(_Model):
    """Every image the stack runs, pinned by sha256 digest (a moving tag is refused)."""

    front: PinnedImage = Field(description="ghcr.io/mailu/nginx@sha256:…")
    admin: PinnedImage = Field(description="ghcr.io/mailu/admin@sha256:…")
    imap: PinnedImage = Field(description="ghcr.io/mailu/dovecot@sha256:…")
    smtp: PinnedImage = Field(description="ghcr.io/mailu/postfix@sha256:…")
    antispam: PinnedImage = Field(description="ghcr.io/mailu/rspamd@sha256:…")
    resolver: PinnedImage = Field(
        description="ghcr.io/mailu/unbound@sha256:… (the DNSSEC-validating resolver every Mailu stack runs)."
    )
    webmail: PinnedImage | None = Field(
        None, description="ghcr.io/mailu/webmail@sha256:… (needed unless webmail is none)."
    )
    redis: PinnedImage = Field(description="redis:<version>-alpine@sha256:…")
    postgres: PinnedImage | None = Field(
        None, description="postgres:<version>@sha256:… (needed when the stack runs its own PostgreSQL)."
    )


class Database(_Model):
    """Mailu's database: its own SQLite file, or PostgreSQL (the plan: separate PostgreSQL, for isolation)."""

    flavor: Literal["sqlite", "postgresql"] = Field(
        "postgresql",
        description="sqlite = Mailu's own file in the admin data volume; postgresql = DB_FLAVOR.",
    )
    managed: bool = Field(
        True,
        description="postgresql only: run a dedicated PostgreSQL container in this stack (else use an "
        "existing server reached over the internal network).",
    )
    host: str = Field(
        "mailu-postgres",
        pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$",
        max_length=253,
        description="DB_HOST: the service name of the managed container, or the shared server's name.",
    )
    port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port.")
    name: str = Field("mailu", pattern=r"^[a-z_][a-z0-9_]{0,62}$", max_length=63, description="DB_NAME.")
    user: str = Field(
        "mailu",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        max_length=63,
        description="DB_USER (password: Mailu secrets block).",
    )


# --- Docker --------------------------------------------------------------------------------------


# The networks the compose file derives from networks.mail: `<mail>-webmail`, `<mail>-egress`, `<mail>-acme`.
DERIVED_NETWORKS = ("webmail", "egress", "acme")


class Networks(_Model):
    """Docker networks: `mail` belongs to the stack; `mgmt` and `internal` already exist. No `edge`."""

    mail: NetworkName = Field("mail", description="The stack's own network (compose key), internal to Mailu.")
    mail_subnet: IPv4Cidr = Field(
        "192.168.203.0/24",
        description="SUBNET of the mail network. Postfix trusts it (mynetworks): it must hold no proxy or "
        "foreign container.",
    )
    mgmt: NetworkName = Field("mgmt", description="Existing external network Traefik reaches the stack on.")
    internal: NetworkName = Field("internal", description="Existing external network for a shared database.")

    @field_validator("mail_subnet")
    @classmethod
    def _private(cls, value: str) -> str:
        if not ipaddress.ip_network(value).is_private:
            raise PydanticCustomError(
                INVALID,
                "{detail}",
                {"detail": f"{value!r} is not a private range (use e.g. 192.168.203.0/24)"},
            )
        return value

    def own(self) -> dict[str, str]:
        """Compose keys of the stack's own networks, derived from `mail` (render/compose.py uses them)."""
        return {"mail": self.mail, **{role: f"{self.mail}-{role}" for role in DERIVED_NETWORKS}}

    @model_validator(mode="after")
    def _distinct(self) -> Networks:
        names = {"mail": self.mail, "mgmt": self.mgmt, "internal": self.internal}
        problems = []
        for value in _duplicates(names.values()):
            first, *others = [k for k, v in names.items() if v == value]
            problems += [
                (o, f"{value!r} is also the {first} network; mail, mgmt and internal differ") for o in others
            ]
        derived = {key: role for role, key in self.own().items() if role != "mail"}
        for field in ("mgmt", "internal"):
            value = names[field]
            if value in derived:
                problems.append(
                    (
                        field,
                        f"{value!r} is also the stack's own {derived[value]} network (networks.mail + "
                        f"'-{derived[value]}'); an external network needs a name the stack does not derive",
                    )
                )
        _fail(problems)
        return self


class Volumes(_Model):
    """Docker volume names (the plan's `mailu_*_data` naming)."""

    mail: DockerName = Field("mailu_mail_data", description="Mailboxes (imap /mail).")
    dkim: DockerName = Field("mailu_dkim_data", description="DKIM private keys (admin /dkim); critical.")
    rspamd: DockerName = Field("mailu_rspamd_data", description="Rspamd state (antispam /var/lib/rspamd).")
    redis: DockerName = Field("mailu_redis_data", description="Redis (rate limits, Bayes) (/data).")
    admin: DockerName = Field(
        "mailu_admin_data", description="Admin data: SQLite DB, instance id (admin /data)."
    )
    webmail: DockerName = Field("mailu_webmail_data", description="Webmail data (webmail /data).")
    certs: DockerName = Field("mailu_certs", description="TLS certificates (front /certs).")
    mailqueue: DockerName = Field("mailu_mailqueue", description="Postfix queue (smtp /queue).")
    postgres: DockerName = Field("mailu_postgres_data", description="Managed PostgreSQL data.")

    @model_validator(mode="after")
    def _distinct(self) -> Volumes:
        names = self.model_dump()
        problems = []
        for value in _duplicates(names.values()):
            first, *others = [k for k, v in names.items() if v == value]
            problems += [
                (other, f"{value!r} is also the {first} volume; each volume name must differ")
                for other in others
            ]
        _fail(problems)
        return self


class HostLayout(_Model):
    """Where things live on the Docker host. Relative paths are under `stack_root`."""

    stack_root: AbsolutePath = Field(
        "/home/comzis/apps", description="Absolute directory holding the stacks."
    )
    compose_file: StackPath = Field("compose/mailu.yml", description="The Mailu compose file.")
    max_command_s: int | None = Field(
        None,
        ge=10,
        le=7200,
        description="Ceiling on every remote command's deadline, in seconds (a wedged Docker daemon fails "
        "the run within it). Default: each command's own deadline (600 s; compose up 900 s).",
    )
    traefik_dynamic_dir: StackPath = Field(
        "traefik/dynamic", description="Traefik's file-provider directory."
    )
    traefik_dynamic_file: FileName = Field(
        "mailu.yml", description="The file in traefik_dynamic_dir holding all Mailu routers and services."
    )
    secrets_dir: StackPath = Field(
        "secrets-real", description="Directory of file-based Docker secrets (mode 600)."
    )
    certs_dir: StackPath | None = Field(
        None,
        description="Host directory holding mailu.tls_cert_file and tls_key_file (cert/mail flavors), "
        "mounted read-only at front's /certs; default: the certs volume (Mailu's own ACME state).",
    )

    @model_validator(mode="after")
    def _outside_traefik_dir(self) -> HostLayout:
        """Traefik's file provider reads every file in its directory and below: secrets or TLS keys
        there would be parsed by another service and sit in a directory that service watches."""
        watched = self.resolve(self.traefik_dynamic_dir)
        problems = []
        for key, example in (("secrets_dir", "secrets-real"), ("certs_dir", "certs")):
            value = getattr(self, key)
            if value is not None and watched in (self.resolve(value), *self.resolve(value).parents):
                problems.append(
                    (
                        key,
                        f"{value!r} is inside traefik_dynamic_dir {self.traefik_dynamic_dir!r}, which "
                        f"Traefik reads file by file; choose a directory outside it, e.g. {example}",
                    )
                )
        _fail(problems)
        return self

    def resolve(self, path: str) -> PurePosixPath:
        """An absolute path on the host for a config path (relative ones are under stack_root)."""
        return PurePosixPath(self.stack_root) / path


# --- Traefik -------------------------------------------------------------------------------------


class MailEntryPoint(_Model):
    """One Traefik entrypoint carrying exactly one mail port (server-first protocols need their own)."""

    port: MailPort = Field(description="Mail port: 25, 465, 587, 143 or 993.")
    name: EntryPointName = Field(description="Traefik entrypoint name, e.g. smtp.")
    published_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Host port where Traefik publishes this entrypoint; default: the mail port itself.",
    )

    @property
    def host_port(self) -> int:
        return self.published_port or self.port


class Middlewares(_Model):
    """Names of middlewares that already exist in Traefik (referenced, never defined, by the flows)."""

    secure_headers: TraefikName = Field("secure-headers", description="Security headers (admin and webmail).")
    admin_forward_auth: TraefikName = Field(
        "admin-forward-auth", description="OAuth2-Proxy forward-auth (admin)."
    )
    allowed_admins: TraefikName = Field("allowed-admins", description="IP allowlist of admins (admin).")
    rate_limit: TraefikName = Field("mgmt-ratelimit", description="Rate limit (admin, and public webmail).")


def _default_mail_entrypoints() -> list[MailEntryPoint]:
    names = {25: "smtp", 465: "submissions", 587: "submission", 143: "imap", 993: "imaps"}
    return [MailEntryPoint(port=port, name=name) for port, name in names.items()]


class Traefik(_Model):
    """How Traefik routes to Mailu: TCP per mail port, HTTP(S) for admin and webmail."""

    mail_entrypoints: list[MailEntryPoint] = Field(
        default_factory=_default_mail_entrypoints,
        min_length=1,
        description="One entrypoint per mail port; port 25 is required.",
    )
    web_entrypoint: EntryPointName = Field("web", description="HTTP entrypoint (:80).")
    websecure_entrypoint: EntryPointName = Field("websecure", description="HTTPS entrypoint (:443).")
    mgmt_address: IPAny = Field(
        description="Traefik's address on the mgmt network; Mailu trusts only it (REAL_IP_FROM)."
    )
    proxy_protocol: bool = Field(
        True,
        description="Traefik sends PROXY protocol v2 on mail ports so Mailu sees client IPs (without it, "
        "all clients share Traefik's IP: rate limits and bans hit everyone).",
    )
    tcp_allowlist: list[CidrAny] = Field(
        default_factory=list,
        description="If set, only these networks may reach 465/587/143/993; port 25 always stays open.",
        json_schema_extra=_unique_items(),
    )
    middlewares: Middlewares = Field(default_factory=Middlewares, description="Existing middleware names.")
    admin_host: DnsName | None = Field(None, description="Host of the admin UI; default: the first hostname.")
    webmail_host: DnsName | None = Field(
        None, description="Host of the webmail; default: the first hostname."
    )
    webmail_exposure: Literal["public", "forward-auth"] = Field(
        "public",
        description="public = secure headers + rate limit (the plan's decision); forward-auth = plus OAuth2.",
    )
    cert_resolver: TraefikName | None = Field(
        None, description="certResolver for the HTTPS routers; none = Traefik's default certificate."
    )
    api_url: HttpUrl = Field(
        "http://127.0.0.1:8080", description="Traefik API, used to check routers are loaded."
    )
    websecure_published_port: int = Field(
        443, ge=1, le=65535, description="Host port where Traefik publishes the HTTPS entrypoint."
    )
    check_address: IPAny | None = Field(
        None,
        description="Address the post-deploy checks connect to (Traefik's entrypoints); "
        "default: mailu.public_ipv4.",
    )
    check_ca_file: AbsolutePath | None = Field(
        None,
        description="Absolute path of a CA bundle (on the machine running the flows) that the post-deploy "
        "TLS checks trust; default: the system's.",
    )

    @field_validator("mail_entrypoints")
    @classmethod
    def _one_per_port(cls, entrypoints: list[MailEntryPoint]) -> list[MailEntryPoint]:
        problems: list[str] = []
        for port in _duplicates(ep.port for ep in entrypoints):
            problems.append(f"port {port} appears more than once; each mail port has exactly one entrypoint")
        for name in _duplicates(ep.name for ep in entrypoints):
            problems.append(
                f"entrypoint name {name!r} is used for more than one port; each port needs its own"
            )
        if 25 not in {ep.port for ep in entrypoints}:
            problems.append("port 25 is missing; inbound mail needs it")
        if problems:
            raise PydanticCustomError(INVALID, "{detail}", {"detail": "; ".join(problems)})
        return entrypoints

    @model_validator(mode="after")
    def _names_distinct(self) -> Traefik:
        mail_names = {ep.name for ep in self.mail_entrypoints}
        _fail(
            [
                (key, f"{value!r} is also a mail entrypoint; HTTP and mail ports need separate entrypoints")
                for key, value in (
                    ("web_entrypoint", self.web_entrypoint),
                    ("websecure_entrypoint", self.websecure_entrypoint),
                )
                if value in mail_names
            ]
            + (
                [("websecure_entrypoint", "must differ from web_entrypoint")]
                if self.web_entrypoint == self.websecure_entrypoint
                else []
            )
        )
        return self

    def admin_middlewares(self) -> list[str]:
        """The admin UI always gets all four: headers, forward-auth, admin allowlist, rate limit."""
        m = self.middlewares
        return [m.secure_headers, m.admin_forward_auth, m.allowed_admins, m.rate_limit]

    def webmail_middlewares(self) -> list[str]:
        m = self.middlewares
        if self.webmail_exposure == "forward-auth":
            return [m.secure_headers, m.admin_forward_auth, m.rate_limit]
        return [m.secure_headers, m.rate_limit]


# --- DNS -----------------------------------------------------------------------------------------


class RetiredSelector(_Model):
    """A DKIM selector kept published after a rotation, so mail signed with it still verifies."""

    selector: DkimSelector = Field(description="The old selector.")
    remove_after: date = Field(description="Date (YYYY-MM-DD) after which its TXT record may be deleted.")


class Dkim(_Model):
    selector: DkimSelector = Field(
        "dkim", description="Current selector (DKIM_SELECTOR); record <selector>._domainkey."
    )
    key_bits: Literal[2048, 3072, 4096] = Field(2048, description="RSA key size for new keys.")
    retired_selectors: list[RetiredSelector] = Field(
        default_factory=list, description="Previous selectors still published until their date."
    )

    @model_validator(mode="after")
    def _selectors_distinct(self) -> Dkim:
        problems = []
        retired = [r.selector for r in self.retired_selectors]
        if self.selector in retired:
            problems.append(
                ("retired_selectors", f"{self.selector!r} is the current selector; it cannot be retired")
            )
        problems += [("retired_selectors", f"{s!r} listed more than once") for s in _duplicates(retired)]
        _fail(problems)
        return self


class Dmarc(_Model):
    policy: Literal["none", "quarantine", "reject"] = Field(
        "quarantine", description="p= of the DMARC record."
    )
    rua: MailtoUri | None = Field(None, description="Aggregate report address, e.g. mailto:admin@inlock.ai.")
    pct: int = Field(100, ge=0, le=100, description="pct= (percentage of mail the policy applies to).")

    def record(self) -> str:
        """The TXT value at _dmarc.<domain>, e.g. `v=DMARC1; p=quarantine; rua=mailto:admin@inlock.ai`."""
        parts = ["v=DMARC1", f"p={self.policy}"]
        if self.pct != 100:
            parts.append(f"pct={self.pct}")
        if self.rua:
            parts.append(f"rua={self.rua}")
        return "; ".join(parts)


# An SPF record: printable ASCII terms after single or repeated spaces, ending in ~all, -all or ?all.
# `+all`, or a bare `all` (the same thing), authorises every host on the Internet to send as the
# domain. pydantic's regex engine has no lookahead, so the JSON schema gets a stricter version that
# also refuses `all`/`+all` as an earlier term; `Dns._spf_safe` refuses those with a clear message.
SPF_PATTERN = r"^v=spf1(?: +[!-~]+)* +[~?-]all$"
SPF_SCHEMA_PATTERN = r"^v=spf1(?: +(?![+]?[Aa][Ll][Ll](?: |$))[!-~]+)* +[~?-]all$"


def _spf_schema(schema: dict[str, Any]) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("pattern") == SPF_PATTERN:
            option["pattern"] = SPF_SCHEMA_PATTERN


class Dns(_Model):
    """Which provider holds the zone and what the flows publish there."""

    provider: Literal["cloudflare", "rfc2136"] = Field(
        "cloudflare",
        description="Cloudflare API, or RFC 2136 updates with TSIG; credentials: blocks.dns_provider.",
    )
    zone: DnsName = Field(description="The zone holding the mail records, e.g. inlock.ai.")
    ttl: int = Field(600, ge=60, le=86400, description="TTL of MX, A/AAAA, SPF and DMARC records (seconds).")
    dkim_ttl: int = Field(600, ge=60, le=86400, description="TTL of DKIM records (keep low: rotations).")
    mx_priority: int = Field(10, ge=0, le=65535, description="MX preference.")
    spf: str | None = Field(
        None,
        pattern=SPF_PATTERN,
        max_length=450,
        description="SPF TXT value, ending in ~all, -all or ?all (never +all); default: v=spf1 mx "
        "a:<hostname> ~all.",
        json_schema_extra=_spf_schema,
    )
    dmarc: Dmarc = Field(default_factory=Dmarc, description="DMARC policy and reports.")
    dkim: Dkim = Field(default_factory=Dkim, description="DKIM selector, key size, rotations.")
    nameservers: list[IPAny] = Field(
        default_factory=list,
        description="Check propagation on these addresses (hidden primaries); empty = the zone's NS set.",
        json_schema_extra=_unique_items(),
    )
    nameserver_port: int = Field(53, ge=1, le=65535, description="Port of the nameservers above.")
    propagation_timeout_s: int = Field(
        600, ge=0, le=7200, description="How long to wait for all nameservers to agree."
    )
    propagation_interval_s: int = Field(10, ge=1, le=600, description="Pause between propagation checks.")
    autoconfig: bool = Field(
        False, description="Also publish Mailu's autoconfig SRV records and autoconfig/autodiscover CNAMEs."
    )
    mta_sts_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9]{1,32}$",
        max_length=32,
        description="Publish the MTA-STS TXT (_mta-sts, v=STSv1; id=<this>) and the mta-sts CNAME.",
    )
    max_change_fraction: float = Field(
        0.3,
        gt=0,
        le=1,
        description="A DNS plan updating/deleting more than this fraction of the records mailu-flows owns "
        "in the zone (but always at least 2) refuses without force.",
    )

    @field_validator("spf", mode="before")
    @classmethod
    def _spf_safe(cls, value: Any) -> Any:
        """Clear messages for the dangerous mistakes (the pattern alone would only say "not matching")."""
        if not isinstance(value, str):
            return value
        if _has_control(value):
            raise invalid(
                f"{_short(value)} contains a newline or control character; an SPF record is one line "
                "of printable ASCII, e.g. v=spf1 mx ~all"
            )
        for term in value.split(" ")[1:]:
            if term.lower() in ("all", "+all"):
                raise invalid(
                    f"{_short(value)}: {term!r} authorises every host on the Internet to send mail as the "
                    "domain; end the record with ~all (soft fail) or -all (fail)"
                )
        return value

    @field_validator("spf")
    @classmethod
    def _spf_shape(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) > 450:
            raise PydanticCustomError(INVALID, "{detail}", {"detail": "SPF record longer than 450 bytes"})
        return value


# --- backups, monitoring, blocks -----------------------------------------------------------------


class Backup(_Model):
    """GPG-encrypted volume backups and their verification."""

    volumes: list[DockerName] = Field(
        default_factory=lambda: [
            "mailu_mail_data",
            "mailu_dkim_data",
            "mailu_rspamd_data",
            "mailu_redis_data",
            "mailu_admin_data",
            "mailu_webmail_data",
            "mailu_postgres_data",
        ],
        min_length=1,
        description="Volumes to back up (names from `volumes`); mail and dkim are mandatory.",
        json_schema_extra=_unique_items(),
    )
    destination_dir: AbsolutePath = Field(
        description="Absolute directory, on the machine that runs the flows (not the mail host), for the "
        "encrypted archives."
    )
    retention_daily: int = Field(7, ge=1, le=366, description="Daily archives to keep.")
    retention_weekly: int = Field(4, ge=0, le=260, description="Weekly archives to keep.")
    verify_max_age_hours: int = Field(
        26, ge=1, le=24 * 31, description="Verify fails if the newest archive is older."
    )

    @field_validator("volumes")
    @classmethod
    def _no_repeats(cls, values: list[str]) -> list[str]:
        return _unique(values, "volume")


class Monitoring(_Model):
    """Adding Mailu to the host's existing Prometheus/Grafana (relative paths are under host.stack_root).

    Nothing is rendered unless `enabled`: the deploy then writes file_sd target files, a rule file, a
    blackbox module file and a Grafana dashboard where the host's Prometheus already looks (file_sd
    and rule_files globs; `prometheus.yml` is never rewritten), and reloads Prometheus.
    """

    enabled: bool = Field(
        False, description="Render and install the Prometheus targets, alert rules and Grafana dashboard."
    )
    file_sd_dir: StackPath = Field(
        "monitoring/prometheus/file_sd", description="Prometheus file_sd directory (scraped targets)."
    )
    blackbox_sd_dir: StackPath | None = Field(
        None,
        description="file_sd directory of the host's blackbox job (targets carry `module` and `exporter` "
        "labels); default: <file_sd_dir>/blackbox.",
    )
    rules_dir: StackPath = Field("monitoring/prometheus/rules", description="Prometheus rule-file directory.")
    blackbox_modules_file: StackPath = Field(
        "monitoring/blackbox/mailu-modules.yml",
        description="Blackbox exporter modules for the Mailu probes (merge into the exporter's config, or "
        "run an exporter with --config.file pointing here).",
    )
    dashboard_file: StackPath = Field(
        "monitoring/grafana/dashboards/mailu.json",
        description="Grafana dashboard JSON (point a Grafana file provider at its directory).",
    )
    reload_url: HttpUrl | None = Field(
        None, description="POST here (from the host) to reload Prometheus (/-/reload), if enabled."
    )
    prometheus_url: HttpUrl | None = Field(
        None,
        description="Prometheus base URL on the host, for the post-deploy check that it lists the Mailu "
        "targets and rules; default: reload_url without /-/reload; none = no check.",
    )
    blackbox_exporter: HostPort = Field(
        "127.0.0.1:9115",
        description="host:port of the blackbox exporter the host's Prometheus sends probes to.",
    )
    probe_address: HostAddress | None = Field(
        None,
        description="Address the blackbox probes connect to (Traefik's entrypoints); default: the first "
        "hostname (so DNS is probed too).",
    )
    probe_ca_file: AbsolutePath | None = Field(
        None,
        description="CA bundle on the exporter's machine that the TLS probes trust; default: system roots.",
    )
    scrape_rspamd: bool = Field(
        True,
        description="Scrape rspamd's /metrics (controller 11334) at a fixed address on the mail network.",
    )
    rspamd_address: IPv4 | None = Field(
        None,
        description="antispam's fixed address on the mail network (scraped from the host); default: the "
        "third-last address of networks.mail_subnet.",
    )
    postfix_exporter: HostPort | None = Field(
        None,
        description="host:port of a Postfix exporter (postfix_* metrics) to scrape, if the host runs one.",
    )
    node_exporter_job: str = Field(
        "node",
        pattern=r"^[A-Za-z0-9_.-]+$",
        max_length=128,
        description="job label of the host's node exporter (disk usage and textfile-collector metrics).",
    )
    mail_volume_mountpoint: Mountpoint = Field(
        "/",
        description="Filesystem mountpoint holding the Docker volumes (node_filesystem_* metrics).",
    )
    port_down_minutes: int = Field(5, ge=1, le=1440, description="A mail probe failing this long alerts.")
    cert_expiry_days: int = Field(14, ge=1, le=90, description="Alert when a certificate expires sooner.")
    disk_usage_percent: int = Field(85, ge=10, le=99, description="Alert above this mail-volume disk usage.")
    queue_growth_minutes: int = Field(
        30, ge=5, le=1440, description="Alert when the deferred queue has grown for this long."
    )
    queue_max_messages: int = Field(
        50, ge=1, le=1_000_000, description="…and holds more than this many messages."
    )
    textfile_dir: AbsolutePath | None = Field(
        None,
        description="The host's node-exporter textfile-collector directory: backup-verify writes "
        "mailu_backup_last_verified_timestamp_seconds there after a green run; none = not written.",
    )

    @model_validator(mode="after")
    def _exporter_port(self) -> Monitoring:
        problems = []
        for key, value in (
            ("blackbox_exporter", self.blackbox_exporter),
            ("postfix_exporter", self.postfix_exporter),
        ):
            if value is not None and not 1 <= int(value.rsplit(":", 1)[1]) <= 65535:
                problems.append((key, f"{value!r}: port must be 1..65535"))
        _fail(problems)
        return self

    def blackbox_dir(self) -> str:
        return self.blackbox_sd_dir or f"{self.file_sd_dir}/blackbox"

    def prometheus_api(self) -> str | None:
        """Base URL of Prometheus' HTTP API, for the post-deploy check."""
        if self.prometheus_url:
            return self.prometheus_url.rstrip("/")
        if self.reload_url and self.reload_url.rstrip("/").endswith("/-/reload"):
            return self.reload_url.rstrip("/").removesuffix("/-/reload")
        return None


class BlockNames(_Model):
    """Names of the Prefect blocks that hold the credentials (never the credentials themselves)."""

    ssh_host: BlockName = Field(description="mailu-ssh-host block: address, user, key, pinned host keys.")
    dns_provider: BlockName = Field(description="mailu-cloudflare or mailu-rfc2136 block, per dns.provider.")
    gpg_public_key: BlockName = Field(description="mailu-gpg-public-key block: backups are encrypted to it.")
    gpg_private_key: BlockName = Field(
        description="mailu-gpg-private-key block: used only by verify/restore."
    )
    backup_signing_key: BlockName = Field(
        description="mailu-backup-signing-key block: signs backup manifests; verify, restore and retention "
        "trust only backups signed with it."
    )
    mailu_secrets: BlockName = Field(
        description="mailu-secrets block: secret key, admin/DB passwords, API token."
    )
    canary_password: BlockName | None = Field(
        None,
        description="Prefect Secret block holding the canary mailbox's password; none = no mail canary.",
    )

    @model_validator(mode="after")
    def _distinct_keys(self) -> BlockNames:
        if self.gpg_public_key == self.gpg_private_key:
            _fail(
                [
                    (
                        "gpg_private_key",
                        "must differ from gpg_public_key (the backup side never holds the private key)",
                    )
                ]
            )
        return self


# --- the whole stack -----------------------------------------------------------------------------


class StackConfig(_Model):
    """One Mailu stack on one Docker host: everything the flows need except secrets."""

    name: StackName = Field(description="Short name of this stack, used in run names and artifact keys.")
    mailu: MailuSettings
    images: Images
    database: Database = Field(default_factory=Database)
    networks: Networks = Field(default_factory=Networks)
    volumes: Volumes = Field(default_factory=Volumes)
    host: HostLayout = Field(default_factory=HostLayout)
    traefik: Traefik
    dns: Dns
    backup: Backup
    monitoring: Monitoring = Field(default_factory=Monitoring)
    canary: CanarySettings = Field(
        default_factory=CanarySettings,
        description="The scheduled mail round trip (flows/canary.py); on when blocks.canary_password is set.",
    )
    blocks: BlockNames
    accounts: Accounts = Field(
        default_factory=Accounts,
        description="Domains, users, aliases and relays the accounts flow keeps in Mailu (see accounts.py).",
    )

    @property
    def paths(self) -> StackPaths:
        """This stack's own state on the host (release records, rollback journal, host lock), apart
        from any other stack sharing host.stack_root (mailu_core/stack_paths.py)."""
        return StackPaths(str(self.host.stack_root), self.name)

    @property
    def hostname(self) -> str:
        """Mailu's HOSTNAME: the first of mailu.hostnames."""
        return self.mailu.hostnames[0]

    @property
    def mail_domains(self) -> list[str]:
        return [self.mailu.domain, *self.mailu.alternative_domains]

    @property
    def admin_host(self) -> str:
        return self.traefik.admin_host or self.hostname

    @property
    def webmail_host(self) -> str:
        return self.traefik.webmail_host or self.hostname

    @property
    def mail_ports(self) -> list[int]:
        return sorted(ep.port for ep in self.traefik.mail_entrypoints)

    def spf_record(self) -> str:
        return self.dns.spf or f"v=spf1 mx a:{self.hostname} ~all"

    def dmarc_record(self) -> str:
        return self.dns.dmarc.record()

    def summary(self) -> str:
        """One line for humans: what this config describes."""
        ports = ",".join(str(p) for p in self.mail_ports)
        return (
            f"stack {self.name}: {self.mailu.domain} on {self.hostname} (Mailu {self.mailu.version}, "
            f"{self.database.flavor}, webmail {self.mailu.webmail}), ports {ports}, "
            f"dns {self.dns.provider} zone {self.dns.zone}, host root {self.host.stack_root}"
        )

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        problems: list[tuple[str, str]] = []
        m, t = self.mailu, self.traefik

        if m.webmail != "none" and self.images.webmail is None:
            problems.append(("images.webmail", f"required because mailu.webmail is {m.webmail!r}"))
        managed_pg = self.database.flavor == "postgresql" and self.database.managed
        if managed_pg and self.images.postgres is None:
            problems.append(("images.postgres", "required because database is a managed postgresql"))

        for key, host in (("traefik.admin_host", t.admin_host), ("traefik.webmail_host", t.webmail_host)):
            if host is not None and host not in m.hostnames:
                problems.append(
                    (key, f"{host!r} is not in mailu.hostnames {m.hostnames}; add it there (certificates)")
                )

        # Compose names the stack's own networks <project>_<key>: an external network of that name
        # would be one of them (Traefik on the mail network, or the stack on the host's networks).
        docker_names = {f"{m.compose_project}_{key}": role for role, key in self.networks.own().items()}
        for field in ("mgmt", "internal"):
            value = getattr(self.networks, field)
            if value in docker_names:
                problems.append(
                    (
                        f"networks.{field}",
                        f"{value!r} is the Docker name of the stack's own {docker_names[value]} network "
                        "(mailu.compose_project + '_' + its compose key); an external network needs "
                        "another name",
                    )
                )

        mail_net = ipaddress.ip_network(self.networks.mail_subnet)
        if ipaddress.ip_address(t.mgmt_address) in mail_net:
            problems.append(
                (
                    "traefik.mgmt_address",
                    f"{t.mgmt_address!r} lies inside networks.mail_subnet {self.networks.mail_subnet}; "
                    "Postfix "
                    "trusts that subnet, so Traefik must sit outside it (open relay otherwise)",
                )
            )
        rspamd = self.monitoring.rspamd_address
        if rspamd is not None and ipaddress.ip_address(rspamd) not in mail_net:
            problems.append(
                (
                    "monitoring.rspamd_address",
                    f"{rspamd!r} is not in networks.mail_subnet {self.networks.mail_subnet}",
                )
            )
        for i, cidr in enumerate(t.tcp_allowlist):
            if ipaddress.ip_network(cidr).overlaps(mail_net):
                problems.append((f"traefik.tcp_allowlist[{i}]", f"{cidr!r} overlaps networks.mail_subnet"))

        zone = self.dns.zone

        def in_zone(name: str) -> bool:
            return name == zone or name.endswith("." + zone)

        if not in_zone(m.domain):
            problems.append(("dns.zone", f"{zone!r} does not contain mailu.domain {m.domain!r}"))
        for key, name in [("mailu.hostnames[0]", self.hostname)] + [
            (f"mailu.alternative_domains[{i}]", d) for i, d in enumerate(m.alternative_domains)
        ]:
            if in_zone(m.domain) and not in_zone(name):
                problems.append(
                    (key, f"{name!r} is outside dns.zone {zone!r}; its records could not be published")
                )
        declared = set(self.volumes.model_dump().values())
        for i, volume in enumerate(self.backup.volumes):
            if volume not in declared:
                problems.append(
                    (f"backup.volumes[{i}]", f"{volume!r} is not one of the volumes in `volumes`")
                )
        for must in ("mail", "dkim"):
            name = getattr(self.volumes, must)
            if name not in self.backup.volumes:
                problems.append(
                    ("backup.volumes", f"must include {name!r} (volumes.{must}); losing it loses mail/keys")
                )
        if self.database.flavor == "sqlite" and self.volumes.admin not in self.backup.volumes:
            problems.append(
                ("backup.volumes", f"must include {self.volumes.admin!r}: it holds the SQLite database")
            )
        canary = self.canary.mailbox_for(m.domain)
        if canary.rpartition("@")[2] not in self.mail_domains:
            problems.append(
                ("canary.mailbox", f"{canary!r} is not in a mail domain {self.mail_domains}; use one of them")
            )
        elif self.blocks.canary_password is not None:  # the canary's mailbox is ensured by accounts
            users = {u.address: u for u in self.accounts.users}
            user = users.get(canary)
            wanted = f"{{address: {canary}, password_block: {self.blocks.canary_password}}}"
            if user is None:
                problems.append(
                    ("canary.mailbox", f"{canary!r} is not a user in accounts.users; add {wanted} there")
                )
            elif (
                user.password_block != self.blocks.canary_password or user.password_block_holds != "password"
            ):
                problems.append(
                    (
                        "blocks.canary_password",
                        f"accounts.users declares {canary!r} with another password block; the canary logs "
                        f"in with the user's password: use {wanted}",
                    )
                )
        admin = f"{m.postmaster}@{m.domain}"
        problems += [(f"accounts.{w}", d) for w, d in self.accounts.problems(self.mail_domains, admin)]
        _fail(problems)
        return self


# --- errors --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    """One bad field: where (dotted path), what is wrong (value and what is allowed), and the YAML line."""

    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.field} (line {self.line})" if self.line else self.field
        return f"{where}: {self.message}"


class ConfigError(MailuFlowsError, ValueError):
    """A stack config that cannot be used; `issues` has one entry per bad field."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{source}: {len(self.issues)} problem(s) in the stack config:\n{lines}")

    def lines(self) -> list[str]:
        return [str(issue) for issue in self.issues]


def _loc_to_str(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _parse_loc(text: str) -> list[str | int]:
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return parts


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class found by walking `loc` from StackConfig (for listing allowed keys)."""
    model: type[BaseModel] = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = _first_model(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _describe(error: ErrorDetails) -> str:
    kind, value, msg = error["type"], error.get("input"), error["msg"]
    if kind == "missing":
        return "required but missing"
    if kind == "extra_forbidden":
        parent = _model_at(error["loc"][:-1])
        if parent is None:
            return "unknown key (typo?)"
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, list(parent.model_fields), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key (typo?); {hint}allowed keys here: {', '.join(parent.model_fields)}"
    shown = _short(value) if not isinstance(value, dict | list) else type(value).__name__
    text = re.sub(r"^Input should be ", "expected ", msg)
    text = re.sub(r"^String should have at most ", "expected at most ", text)
    text = re.sub(r"^String should match pattern ", "expected a string matching ", text)
    text = re.sub(r"^Value error, ", "", text)
    return f"got {shown}; {text}"


def issues_from_validation_error(exc: ValidationError) -> list[ConfigIssue]:
    """One `ConfigIssue` per bad field, with the value and what is allowed."""
    issues: list[ConfigIssue] = []
    for error in exc.errors(include_url=False):
        loc = [p for p in error["loc"] if isinstance(p, int | str)]
        if error["type"] == _CROSS_FIELD:
            for where, detail in error["ctx"]["problems"]:
                issues.append(ConfigIssue(_loc_to_str([*loc, *_parse_loc(where)]), detail))
        elif error["type"] == INVALID:
            detail = str(error["ctx"]["detail"])
            value = error.get("input")
            if isinstance(value, str):  # a 100k-character value is shown cut, not in full
                detail = detail.replace(repr(value), _short(value))
            issues.append(ConfigIssue(_loc_to_str(loc), detail))
        else:
            issues.append(ConfigIssue(_loc_to_str(loc), _describe(error)))
    return issues


def stack_config_from_mapping(data: Any, source: str = "<config>") -> StackConfig:
    """Validate already-parsed data, raising `ConfigError` (not pydantic's error) on problems."""
    try:
        return StackConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, issues_from_validation_error(exc)) from None


# --- YAML ----------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based YAML line of the value at `loc` (or of the deepest ancestor that exists)."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if node is None:
                # an unknown key: point at the key itself
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    return node.start_mark.line + 1 if node is not None else line


def _key_line(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """Line of the last key in `loc` (used for unknown keys, which have no value node to point at)."""
    parent = root
    for part in loc[:-1]:
        if isinstance(parent, yaml.MappingNode):
            parent = next((v for k, v in parent.value if getattr(k, "value", None) == part), None)
        elif isinstance(parent, yaml.SequenceNode) and isinstance(part, int) and part < len(parent.value):
            parent = parent.value[part]
        else:
            return None
    if isinstance(parent, yaml.MappingNode):
        for k, _ in parent.value:
            if getattr(k, "value", None) == loc[-1]:
                return int(k.start_mark.line) + 1
    return None


def parse_stack_config(text: str, source: str = "<string>") -> StackConfig:
    """Parse YAML text into a StackConfig; every problem becomes a `ConfigError` naming `source`."""
    try:
        root = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ": ".join(p for p in (exc.context, exc.problem) if p)
        column = f" (column {mark.column + 1})" if mark else ""
        line = mark.line + 1 if mark else None
        raise ConfigError(source, [ConfigIssue("<yaml>", f"invalid YAML: {problem}{column}", line)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigIssue("<yaml>", f"invalid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise ConfigError(source, [ConfigIssue("<root>", f"expected a mapping of settings, got {got}")])
    try:
        return StackConfig.model_validate(data)
    except ValidationError as exc:
        issues = []
        for issue in issues_from_validation_error(exc):
            loc = _parse_loc(issue.field)
            line = _key_line(root, loc) if issue.message.startswith("unknown key") else _line_of(root, loc)
            issues.append(ConfigIssue(issue.field, issue.message, line))
        raise ConfigError(source, issues) from None


def load_stack_config(path: str | Path) -> StackConfig:
    """Load a stack config from a YAML file. Raises FileNotFoundError or ConfigError."""
    file = Path(path)
    return parse_stack_config(file.read_text(encoding="utf-8"), source=str(file))


def dump_stack_config(config: StackConfig) -> str:
    """YAML for a config, in field order; `parse_stack_config(dump_stack_config(c)) == c`."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100)


def differing_fields(mine: Any, theirs: Any, prefix: str = "", depth: int = 2) -> list[str]:
    """Dotted names of the fields whose values differ between two JSON-like configs (down to `depth`
    levels, so that a changed list or a nested section is named once)."""
    if isinstance(mine, dict) and isinstance(theirs, dict) and depth > 0:
        out: list[str] = []
        for key in sorted(set(mine) | set(theirs), key=str):
            out += differing_fields(mine.get(key), theirs.get(key), f"{prefix}{key}.", depth - 1)
        return out
    return [] if mine == theirs else [prefix.rstrip(".")]
