"""Each service's environment: only the settings it reads, and never a secret value.

Mailu's own setup puts every setting into one shared `mailu.env`, so any change recreates every
container. Here each service gets its own env file holding only what its start script and
templates read (`SETTINGS` below, the one table of who reads what), so changing, say,
MESSAGE_SIZE_LIMIT recreates front, smtp and webmail and nothing else.

Secrets reach containers as files: the `*_FILE` variables come from `secrets.secret_file_specs`.
`REAL_IP_HEADER` is never set (it must be unset with PROXY_PROTOCOL; setting it without a trusted
`REAL_IP_FROM` would let clients spoof their address).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailu_core.config import StackConfig
from mailu_core.render.secrets import SecretFileSpec, secret_file_specs
from mailu_core.services import MAILU_SERVICES, POSTGRES_DATA_DIR, service_spec, services_of

__all__ = [
    "MAILU_SERVICES",
    "SETTINGS",
    "Setting",
    "all_settings",
    "render_env_file",
    "service_env",
    "services_of",
    "settings_read_by",
]

_M = MAILU_SERVICES


@dataclass(frozen=True)
class Setting:
    """One environment variable, the services that read it, and why (Mailu 2024.06 source)."""

    name: str
    readers: tuple[str, ...]
    why: str


# The one table of who reads what. A setting missing from `all_settings(cfg)` (e.g. TLS file names
# with a letsencrypt flavor, DB_* with SQLite) is simply not written.
SETTINGS: tuple[Setting, ...] = (
    Setting("TZ", (*_M, "redis", "postgres"), "libc time zone of every container"),
    Setting("LOG_LEVEL", _M, "socrate logging in every Mailu start script"),
    Setting("SUBNET", _M, "postfix mynetworks/xclient, dovecot/rspamd trusted nets; tied to the network"),
    Setting("DOMAIN", ("front", "admin", "imap", "smtp"), "certbot email, postmaster, postfix mydomain"),
    Setting(
        "HOSTNAMES",
        ("front", "admin", "imap", "smtp", "webmail"),
        "banner hostname, certificate names, DNS; webmail's start.py exits without it",
    ),
    Setting("POSTMASTER", ("front", "admin", "imap", "smtp"), "postmaster address, certbot email"),
    Setting("TLS_FLAVOR", ("front", "admin"), "front: certificates and listeners; admin: TLSA/autoconfig"),
    Setting("TLS_CERT_FILENAME", ("front",), "certificate file in /certs (cert, mail flavors)"),
    Setting("TLS_KEYPAIR_FILENAME", ("front",), "key file in /certs (cert, mail flavors)"),
    Setting("PORTS", ("front", "admin"), "front: listeners (587/143 are off unless listed); admin: SRV"),
    Setting("PROXY_PROTOCOL", ("front",), "exactly the mail ports Traefik sends PROXY v2 to"),
    Setting("REAL_IP_FROM", ("front",), "Traefik's mgmt address only: nginx real_ip, dovecot haproxy"),
    Setting("ADMIN", ("front",), "front proxies WEB_ADMIN to admin"),
    Setting("WEB_ADMIN", ("front", "admin"), "admin UI path"),
    Setting("API", ("front", "admin"), "front proxies WEB_API to admin"),
    Setting("WEB_API", ("front", "admin"), "REST API path"),
    Setting("WEBMAIL", ("front", "admin", "webmail"), "which webmail (one image for both)"),
    Setting("WEB_WEBMAIL", ("front", "admin", "webmail"), "webmail path"),
    Setting("WEBROOT_REDIRECT", ("front",), "where / redirects"),
    Setting("MESSAGE_SIZE_LIMIT", ("front", "smtp", "webmail"), "nginx body/submission, postfix, Roundcube"),
    Setting("MESSAGE_RATELIMIT", ("admin", "antispam"), "rspamd ratelimit; admin's config"),
    Setting("AUTH_RATELIMIT_IP", ("admin",), "admin's login limiter"),
    Setting("AUTH_RATELIMIT_USER", ("admin",), "admin's login limiter"),
    Setting("DKIM_SELECTOR", ("admin",), "DKIM key path and records"),
    Setting("FULL_TEXT_SEARCH", ("imap",), "Dovecot full-text search (unset means on, with Mailu's `en`)"),
    Setting("DISABLE_STATISTICS", ("admin",), "no `flask mailu advertise` stats lookup"),
    Setting("DB_FLAVOR", ("admin",), "postgresql (unset: SQLite in /data)"),
    Setting("DB_HOST", ("admin",), "database host[:port]"),
    Setting("DB_USER", ("admin",), "database user"),
    Setting("DB_NAME", ("admin",), "database name"),
    Setting("POSTGRES_USER", ("postgres",), "managed PostgreSQL: owner role"),
    Setting("POSTGRES_DB", ("postgres",), "managed PostgreSQL: database"),
    Setting("PGDATA", ("postgres",), "managed PostgreSQL: data directory (the volume's mount point)"),
)
# The `*_FILE` variables (SECRET_KEY_FILE: admin, webmail; API_TOKEN_FILE: admin; DB_PW_FILE: admin;
# POSTGRES_PASSWORD_FILE: postgres) come from secrets.secret_file_specs, which names their readers.


def settings_read_by(service: str) -> tuple[str, ...]:
    """The settings `service` reads (SETTINGS is keyed by setting; this is its view per service)."""
    service_spec(service)  # a KeyError for a service the stack does not know
    return tuple(s.name for s in SETTINGS if service in s.readers)


def _cidr_of(address: str) -> str:
    """A single-address network: /32 for IPv4, /128 for IPv6."""
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def routed_mail_ports(cfg: StackConfig) -> list[int]:
    """The mail ports Traefik routes to front (sorted)."""
    return cfg.mail_ports


def front_ports(cfg: StackConfig) -> list[int]:
    """What front listens on: HTTP 80 for Traefik, 443 too when front serves HTTPS itself, and the
    routed mail ports; nothing else (110/995/4190 stay closed)."""
    web = [80, 443] if cfg.mailu.tls_flavor in ("cert", "letsencrypt") else [80]
    return sorted({*web, *routed_mail_ports(cfg)})


def proxy_protocol_ports(cfg: StackConfig) -> list[int]:
    """Ports on which front expects a PROXY v2 header: exactly the routed mail ports (or none)."""
    return routed_mail_ports(cfg) if cfg.traefik.proxy_protocol else []


def _csv(values: list[int] | list[str]) -> str:
    return ",".join(str(v) for v in values)


def all_settings(cfg: StackConfig) -> dict[str, str]:
    """Every non-secret setting this config defines, by variable name (not yet split per service)."""
    m, db = cfg.mailu, cfg.database
    values: dict[str, str] = {
        "TZ": m.timezone,
        "LOG_LEVEL": m.log_level,
        "SUBNET": cfg.networks.mail_subnet,
        "DOMAIN": m.domain,
        "HOSTNAMES": ",".join(m.hostnames),
        "POSTMASTER": m.postmaster,
        "TLS_FLAVOR": m.tls_flavor,
        "PORTS": _csv(front_ports(cfg)),
        "ADMIN": "true",
        "WEB_ADMIN": m.admin_path,
        "API": "true" if m.api_enabled else "false",
        "WEB_API": m.api_path,
        "WEBMAIL": m.webmail,
        "WEB_WEBMAIL": m.webmail_path,
        "WEBROOT_REDIRECT": m.webmail_path if m.webmail != "none" else m.admin_path,
        "MESSAGE_SIZE_LIMIT": str(m.message_size_limit),
        "MESSAGE_RATELIMIT": m.message_ratelimit,
        "AUTH_RATELIMIT_IP": m.auth_ratelimit_ip,
        "AUTH_RATELIMIT_USER": m.auth_ratelimit_user,
        "DKIM_SELECTOR": cfg.dns.dkim.selector,
        "FULL_TEXT_SEARCH": m.full_text_search,
        "DISABLE_STATISTICS": "true" if m.disable_statistics else "false",
    }
    if m.tls_flavor in ("cert", "mail"):
        values["TLS_CERT_FILENAME"] = m.tls_cert_file
        values["TLS_KEYPAIR_FILENAME"] = m.tls_key_file
    pp = proxy_protocol_ports(cfg)
    if pp:
        values["PROXY_PROTOCOL"] = _csv(pp)
        values["REAL_IP_FROM"] = _cidr_of(cfg.traefik.mgmt_address)
    if db.flavor == "postgresql":
        values["DB_FLAVOR"] = "postgresql"
        values["DB_HOST"] = db.host if db.port == 5432 else f"{db.host}:{db.port}"
        values["DB_USER"] = db.user
        values["DB_NAME"] = db.name
        if db.managed:
            values["POSTGRES_USER"] = db.user
            values["POSTGRES_DB"] = db.name
            values["PGDATA"] = POSTGRES_DATA_DIR
    return values


def service_env(
    cfg: StackConfig, service: str, secrets: list[SecretFileSpec] | None = None
) -> dict[str, str]:
    """The environment of one service, sorted by name: its settings plus its `*_FILE` paths."""
    values = all_settings(cfg)
    env = {s.name: values[s.name] for s in SETTINGS if service in s.readers and s.name in values}
    for spec in secrets if secrets is not None else secret_file_specs(cfg):
        var = spec.env_var(service)
        if var is not None:
            env[var] = spec.container_path
    return dict(sorted(env.items()))


def render_env_file(cfg: StackConfig, service: str, secrets: list[SecretFileSpec] | None = None) -> str:
    """The `<service>.env` text for compose's `env_file` (KEY=value lines, sorted, no secret values)."""
    lines = [
        f"# {service}: generated by mailu-flows from the stack config; do not edit: a deploy overwrites it.",
        "# Only the settings this service reads; secrets are *_FILE paths under /run/secrets.",
    ]
    lines += [f"{key}={value}" for key, value in service_env(cfg, service, secrets).items()]
    return "\n".join(lines) + "\n"
