"""The lab's stack config, built from the lab's fixed constants (`lab.endpoints`).

It lives in `lab/` so that the pure core never imports the lab.

The lab writes `.lab/stack.yaml` with `dump_stack_config(lab_stack_config(...))`, so the flows
under test read exactly the kind of file an operator writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from lab import endpoints
from lab.blackbox import BLACKBOX_PORT
from lab.endpoints import LAB_COMPOSE_PROJECT
from mailu_core.config import StackConfig, stack_config_from_mapping
from mailu_core.services import SERVICES

LAB_SERVICES = tuple(spec.name for spec in SERVICES)  # every service the stack can run


def lab_stack_config(
    images: Mapping[str, str],
    stack_root: str,
    *,
    backup_dir: str | None = None,
    dns_provider: Literal["cloudflare", "rfc2136"] = "rfc2136",
    database: Literal["sqlite", "postgresql"] = "sqlite",
    mail_subnet: str = "172.30.5.0/24",
    public_ipv4: str = "127.0.0.1",
    block_prefix: str = "lab",
    prometheus_reload: bool = True,
    monitoring: bool = True,
) -> StackConfig:
    """A valid StackConfig for the lab: domain inlock.test, hostname mail.inlock.test, lab entrypoints.

    `images` maps service (front, admin, imap, smtp, antispam, webmail, redis, postgres) to a
    digest-pinned reference in the lab registry; `stack_root` is the managed host's stack directory.
    Block names are `<block_prefix>-ssh`, `-dns`, `-gpg-public`, `-gpg-private`, `-mailu-secrets`.
    Raises ConfigError if anything (an image reference, a path) is invalid.
    """
    data = {
        "name": "lab",
        "mailu": {
            "version": endpoints.MAILU_VERSION,
            "compose_project": LAB_COMPOSE_PROJECT,
            "domain": endpoints.ZONE,
            "hostnames": list(
                dict.fromkeys([endpoints.MAIL_HOSTNAME, endpoints.ADMIN_HOSTNAME, endpoints.WEBMAIL_HOSTNAME])
            ),
            "postmaster": "admin",
            "public_ipv4": public_ipv4,
            "webmail": "roundcube",
            # No ACME in the lab: the lab puts a self-signed cert.pem/key.pem into the certs volume.
            "tls_flavor": "mail",
            # Debian bookworm does not package Dovecot's fts_flatcurve (lab/images/mailu/imap/NOTES.md).
            "full_text_search": "off",
            # Probed every 3 s (30 s by default): the lab's tests deploy and recreate services many
            # times, and each wait ends at the first passing probe.
            "health_interval_s": 3,
        },
        "images": {service: images[service] for service in LAB_SERVICES if service in images},
        "database": {"flavor": database, "managed": True},
        "networks": {"mail_subnet": mail_subnet},
        "host": {"stack_root": stack_root, "certs_dir": "certs"},
        "traefik": {
            "mail_entrypoints": [
                {"port": ep.port, "name": ep.name, "published_port": ep.host_port}
                for ep in endpoints.MAIL_ENTRYPOINTS
            ],
            "websecure_published_port": endpoints.WEB_ENTRYPOINTS[1].host_port,
            "check_address": "127.0.0.1",
            "check_ca_file": str(endpoints.lab_dir() / "ca" / "ca.crt"),
            "web_entrypoint": endpoints.WEB_ENTRYPOINTS[0].name,
            "websecure_entrypoint": endpoints.WEB_ENTRYPOINTS[1].name,
            "mgmt_address": endpoints.TRAEFIK_MGMT_IP,
            "middlewares": dict(
                zip(
                    ("secure_headers", "admin_forward_auth", "allowed_admins", "rate_limit"),
                    endpoints.MIDDLEWARES,
                    strict=True,
                )
            ),
            "admin_host": endpoints.ADMIN_HOSTNAME,
            "webmail_host": endpoints.WEBMAIL_HOSTNAME,
            "api_url": endpoints.TRAEFIK_API_URL,
        },
        "dns": {
            "provider": dns_provider,
            "zone": endpoints.ZONE,
            "ttl": 60,
            "dkim_ttl": 60,
            "dmarc": {"policy": "quarantine", "rua": f"mailto:admin@{endpoints.ZONE}"},
            "nameservers": [endpoints.DNS_PRIMARY, endpoints.DNS_SECONDARY]
            if dns_provider == "rfc2136"
            else [],
            "nameserver_port": endpoints.DNS_PORT,
            "propagation_timeout_s": 60,
            "propagation_interval_s": 1,
        },
        "backup": {
            "volumes": ["mailu_mail_data", "mailu_dkim_data", "mailu_rspamd_data", "mailu_admin_data"]
            + (["mailu_postgres_data"] if database == "postgresql" else []),
            "destination_dir": backup_dir or f"{stack_root}/backups/mailu",
            "retention_daily": 3,
            "retention_weekly": 1,
        },
        # The lab's Prometheus (lab/services.py) watches these directories; the blackbox exporter the
        # tests run (lab/blackbox.py) reads the rendered modules and trusts the lab CA.
        "monitoring": {
            "enabled": monitoring,
            "file_sd_dir": "monitoring/file_sd",
            "rules_dir": "monitoring/rules",
            "reload_url": f"http://127.0.0.1:{endpoints.PROMETHEUS_PORT}/-/reload"
            if prometheus_reload
            else None,
            "blackbox_exporter": f"127.0.0.1:{BLACKBOX_PORT}",
            "probe_address": "127.0.0.1",
            "probe_ca_file": str(endpoints.lab_dir() / "ca" / "ca.crt"),
            "textfile_dir": f"{stack_root}/monitoring/textfile",
        },
        "blocks": {
            "ssh_host": f"{block_prefix}-ssh",
            "dns_provider": f"{block_prefix}-dns",
            "gpg_public_key": f"{block_prefix}-gpg-public",
            "gpg_private_key": f"{block_prefix}-gpg-private",
            "backup_signing_key": f"{block_prefix}-backup-signing",
            "mailu_secrets": f"{block_prefix}-mailu-secrets",
        },
        # The canary (on when a config adds blocks.canary_password and the mailbox to accounts, as
        # with_canary() does; the lab's tests do); its inbound probe comes from
        # this host as a real outside server would (endpoints.RUNNER_*: A, PTR, example.org's SPF).
        "canary": {
            "inbound_sender": "canary-probe@example.org",
            "inbound_helo": endpoints.RUNNER_NAME,
            "resolvers": [f"{endpoints.DNS_PRIMARY}:{endpoints.DNS_PORT}"],
            "delivery_timeout_s": 120,
            # the lab's tests run the canary themselves; a schedule would send probes during other tests
            "scheduled": False,
        },
    }
    return stack_config_from_mapping(data, source="lab_stack_config")


def with_canary(config: StackConfig, block_prefix: str = "lab") -> StackConfig:
    """`config` with the mail canary on: its password block named and its mailbox declared in accounts."""
    data = config.model_dump(mode="json")
    block = f"{block_prefix}-canary-password"
    mailbox = config.canary.mailbox_for(config.mailu.domain)
    data["blocks"]["canary_password"] = block
    data["accounts"]["users"] = [*data["accounts"]["users"], {"address": mailbox, "password_block": block}]
    return stack_config_from_mapping(data, source="with_canary")
