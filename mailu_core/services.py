"""One spec per service of the stack: the single table the compose renderer, the env renderer and the
lab derive from.

Adding a service means one `ServiceSpec` here (plus its image field in `config.Images` and, if it
keeps data, a volume field in `config.Volumes`); `tests/core/test_services.py` fails until the config
and the specs agree. Which environment settings a service reads stays in `render.env.SETTINGS`, the
table keyed by setting (each with the reason it is read), and `render.env.settings_read_by` answers it
per service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mailu_core.config import StackConfig

__all__ = ["MAILU_SERVICES", "SERVICES", "Mount", "ServiceSpec", "service_spec", "services_of"]

POSTGRES_DATA_DIR = "/var/lib/postgresql/data"


def _always(_cfg: StackConfig) -> bool:
    return True


@dataclass(frozen=True)
class Mount:
    """A named volume (a field of `config.Volumes`) mounted at `target` (Mailu's mount point, notes §1.1)."""

    volume: str
    target: str


@dataclass(frozen=True)
class ServiceSpec:
    """What the stack needs to know about one service.

    `why`: why it deviates from the seed's patterns (`read_only` + tmpfs, `user: "1000:1000"`), written
    as comments above the service in the compose file. `tmpfs` non-empty means the service runs
    read-only with those tmpfs mounts. `healthcheck` is a CMD-SHELL line that passes on Mailu's Alpine
    images and the lab's Debian builds alike (`$$` is compose's escape for a literal `$`).
    `depends_on`: services that must have started first (a conditional dependency, such as admin on
    a managed PostgreSQL, is the renderer's). `runs`: whether a config runs this service at all."""

    name: str
    upstream_image: str
    capabilities: tuple[str, ...]
    why: tuple[str, ...]
    healthcheck: str
    start_period: str
    mounts: tuple[Mount, ...] = ()
    tmpfs: tuple[str, ...] = ()
    mailu: bool = True
    uses_resolver: bool = False
    depends_on: tuple[str, ...] = ()
    hostname: str | None = None
    runs: Callable[[StackConfig], bool] = field(default=_always, compare=False)

    @property
    def image_field(self) -> str:
        """The `config.Images` field holding this service's pinned image."""
        return self.name

    @property
    def read_only(self) -> bool:
        return bool(self.tmpfs)


# Every master process (nginx, dovecot, postfix, rspamd, php-fpm) signals workers running as another
# user (KILL); Mailu's images start as root, render their config, chown their volumes and drop to
# service users (CHOWN, DAC_OVERRIDE, FOWNER, SETGID, SETUID); daemons binding ports below 1024 need
# NET_BIND_SERVICE and those that chroot need SYS_CHROOT.
_ROOT_START = ("CHOWN", "DAC_OVERRIDE", "FOWNER")
_DROP = ("SETGID", "SETUID")

# Postfix's master lives in /usr/libexec on Alpine and /usr/lib/postfix/sbin on Debian.
_POSTFIX_MASTER = "m=/usr/libexec/postfix/master; [ -x $$m ] || m=/usr/lib/postfix/sbin/master; ! $$m -t"

SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="resolver",
        upstream_image="ghcr.io/mailu/unbound",
        capabilities=(*_ROOT_START, "NET_BIND_SERVICE", *_DROP, "SYS_CHROOT"),
        why=(
            "resolver: Mailu's unbound starts as root (binds 53, renders its config) and drops to `unbound`;",
            "not read_only: start.py renders /etc/unbound/unbound.conf and unbound keeps its trust anchor"
            " there.",
        ),
        healthcheck="dig @127.0.0.1 || exit 1",
        start_period="30s",
    ),
    ServiceSpec(
        name="front",
        upstream_image="ghcr.io/mailu/nginx",
        capabilities=(*_ROOT_START, "KILL", "NET_BIND_SERVICE", *_DROP, "SYS_CHROOT"),
        why=(
            "front: root start (binds 25/80/465/587/143/993, chowns /certs, certbot), nginx and dovecot",
            "drop to their users; not read_only: start.py renders /etc/nginx and /etc/dovecot each start.",
        ),
        # Mailu's front image checks `kill -0 $(cat /run/dovecot/master.pid)`, but front's config.py, run
        # again by certbot's post-hook and by certwatcher on each certificate change, deletes /run/*.pid
        # while the daemons keep running, and that check then fails for good (lab/images/mailu/front/
        # NOTES.md (d)). Checking Dovecot by process name survives reloads; `killall` is there for
        # config.py itself.
        healthcheck="curl -m3 -skfLo /dev/null http://127.0.0.1:10204/health && killall -0 dovecot",
        start_period="60s",
        mounts=(Mount("certs", "/certs"),),
        uses_resolver=True,
        depends_on=("resolver",),
    ),
    ServiceSpec(
        name="admin",
        upstream_image="ghcr.io/mailu/admin",
        capabilities=(*_ROOT_START, *_DROP),
        why=(
            "admin: root start chowns /data and /dkim, then drops to `mailu`; read_only with tmpfs /tmp and",
            "/run (gunicorn and pid files); no `user:` (the chown needs root).",
        ),
        healthcheck="curl -m3 -skfLo /dev/null http://localhost:8080/ping",
        start_period="60s",
        mounts=(Mount("admin", "/data"), Mount("dkim", "/dkim")),
        tmpfs=("/tmp:mode=1777", "/run:mode=755"),
        uses_resolver=True,
        depends_on=("redis", "resolver"),
    ),
    ServiceSpec(
        name="imap",
        upstream_image="ghcr.io/mailu/dovecot",
        capabilities=(*_ROOT_START, "KILL", "NET_BIND_SERVICE", *_DROP, "SYS_CHROOT"),
        why=(
            "imap: dovecot master runs as root (login chroot, mail uid switch); not read_only: start.py",
            "renders /etc/dovecot each start.",
        ),
        healthcheck="kill -0 $$(cat /run/dovecot/master.pid)",
        start_period="30s",
        mounts=(Mount("mail", "/mail"),),
        uses_resolver=True,
        depends_on=("front", "resolver"),
    ),
    ServiceSpec(
        name="smtp",
        upstream_image="ghcr.io/mailu/postfix",
        capabilities=(*_ROOT_START, "KILL", "NET_BIND_SERVICE", *_DROP, "SYS_CHROOT"),
        why=(
            "smtp: postfix master runs as root (chroot, uid switch, queue ownership); not read_only:",
            "start.py renders /etc/postfix and runs postmap each start.",
        ),
        healthcheck=_POSTFIX_MASTER,
        start_period="30s",
        mounts=(Mount("mailqueue", "/queue"),),
        uses_resolver=True,
        depends_on=("front", "resolver"),
    ),
    ServiceSpec(
        name="antispam",
        upstream_image="ghcr.io/mailu/rspamd",
        capabilities=(*_ROOT_START, "KILL", *_DROP),
        why=(
            "antispam: rspamd starts as root and drops to its user; not read_only: start.py renders",
            "/etc/rspamd/local.d each start.",
        ),
        healthcheck="curl -m3 -skfLo /dev/null http://localhost:11334/",
        start_period="350s",
        mounts=(Mount("rspamd", "/var/lib/rspamd"),),
        uses_resolver=True,
        depends_on=("front", "redis", "resolver"),
        hostname="antispam",  # rspamd's own name in its headers and its Redis keys, as in Mailu's setup
    ),
    ServiceSpec(
        name="webmail",
        upstream_image="ghcr.io/mailu/webmail",
        capabilities=(*_ROOT_START, "KILL", "NET_BIND_SERVICE", *_DROP),
        why=(
            "webmail: nginx and php-fpm start as root and drop to www-data; not read_only: start.py",
            "renders nginx/PHP/Roundcube config each start.",
        ),
        healthcheck="curl -m3 -f -L http://localhost/ping || exit 1",
        start_period="30s",
        mounts=(Mount("webmail", "/data"),),
        depends_on=("front",),
        runs=lambda cfg: cfg.mailu.webmail != "none",
    ),
    ServiceSpec(
        name="redis",
        upstream_image="redis",
        capabilities=("CHOWN", *_DROP),
        why=(
            "redis: the entrypoint chowns /data as root, then drops to `redis`; read_only with tmpfs /tmp.",
        ),
        healthcheck="redis-cli ping | grep -q PONG",
        start_period="10s",
        mounts=(Mount("redis", "/data"),),
        tmpfs=("/tmp:mode=1777",),
        mailu=False,
    ),
    ServiceSpec(
        name="postgres",
        upstream_image="postgres",
        capabilities=(*_ROOT_START, *_DROP),
        why=(
            "postgres: the entrypoint chowns PGDATA as root, then drops to `postgres`; read_only with tmpfs",
            "/tmp and the socket dir.",
        ),
        healthcheck='pg_isready -q -h 127.0.0.1 -U "$${POSTGRES_USER}" -d "$${POSTGRES_DB}"',
        start_period="30s",
        mounts=(Mount("postgres", POSTGRES_DATA_DIR),),
        tmpfs=("/tmp:mode=1777", "/var/run/postgresql:mode=1777"),
        mailu=False,
        runs=lambda cfg: cfg.database.flavor == "postgresql" and cfg.database.managed,
    ),
)

_BY_NAME = {spec.name: spec for spec in SERVICES}

# Mailu's own images (built from Mailu's source in the lab), in the table's order.
MAILU_SERVICES: tuple[str, ...] = tuple(spec.name for spec in SERVICES if spec.mailu)


def service_spec(name: str) -> ServiceSpec:
    """The spec of `name`; a KeyError names the known services."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no service {name!r}; the stack's services are {', '.join(_BY_NAME)}") from None


def services_of(cfg: StackConfig) -> list[str]:
    """The compose services this config runs, in the table's fixed order."""
    return [spec.name for spec in SERVICES if spec.runs(cfg)]
