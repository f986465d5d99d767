"""`compose/mailu.yml`: every Mailu service, hardened, on the stack's own networks.

Networks (and why):
- `<mail>` (networks.mail, `internal: true`, subnet = SUBNET): every Mailu service. Postfix trusts
  this subnet (mynetworks, XCLIENT), so nothing else joins it: not Traefik, not webmail.
- `<mail>-webmail` (`internal: true`): front and webmail only, as in Mailu's template, so the PHP
  webmail never gets an address Postfix trusts.
- `<mail>-egress` (not internal): smtp (outbound mail), antispam (map updates) and the resolver
  (recursion from the root servers). front never joins it: if front and smtp shared two networks,
  front could reach smtp from an address outside SUBNET and Postfix would refuse its XCLIENT. admin
  never joins it either: admin tells front where smtp and imap are by resolving their names, and
  Docker's DNS answers with the address on a network the asker shares (non-internal first), which
  front could not reach.
- the resolver (Mailu's unbound, as Mailu's generator puts in every stack) has Mailu's fixed address
  subnet[-2] on `<mail>`; every Mailu service but webmail uses it (`dns:`), so admin's start-up
  check (a DNSSEC-validated answer) and rspamd's DKIM/SPF/DMARC lookups go through it.
- `<mail>-acme` (not internal, letsencrypt flavors only): front alone, so certbot reaches Let's
  Encrypt without front sharing a second network with smtp.
- networks.mgmt (external): front only; Traefik reaches it there under a project-unique alias
  (`front_alias`): a bare `front` would also match any other stack's `front` on the shared network.
- networks.internal (external): admin only, and only for a shared (unmanaged) PostgreSQL.
- with monitoring enabled, antispam gets a fixed address on `<mail>` so that the host's Prometheus
  can scrape rspamd's /metrics there (render/monitoring.py says why that path).
- never `edge`: mail ports reach front through Traefik's TCP routers.

Volumes carry the config's names verbatim (`name:`), so the backup flows find them; nothing here
removes a volume. Secrets are compose file secrets from the secrets dir, mounted per service.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from mailu_core.config import StackConfig
from mailu_core.render.monitoring import rspamd_address
from mailu_core.render.secrets import SecretFileSpec, secret_file_specs
from mailu_core.render.yamlout import dump_yaml, indent
from mailu_core.services import service_spec, services_of

__all__ = [
    "HARDENING",
    "LOGGING",
    "front_alias",
    "network_keys",
    "render_compose",
    "resolver_address",
    "service_capabilities",
]

# Common to every service through the `x-hardening` anchor.
HARDENING: dict[str, Any] = {"security_opt": ["no-new-privileges:true"], "cap_drop": ["ALL"]}
LOGGING: dict[str, Any] = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "5"}}


def service_capabilities(service: str) -> tuple[str, ...]:
    """The capabilities added back for `service` after `cap_drop: ALL`."""
    return service_spec(service).capabilities


def front_alias(cfg: StackConfig) -> str:
    """front's name on the shared mgmt network (what Traefik connects to)."""
    return f"{cfg.mailu.compose_project}-front"


def network_keys(cfg: StackConfig) -> dict[str, str]:
    """Compose keys of the stack's own networks: mail, webmail, egress, acme."""
    mail = cfg.networks.mail
    return {"mail": mail, "webmail": f"{mail}-webmail", "egress": f"{mail}-egress", "acme": f"{mail}-acme"}


def _uses_acme(cfg: StackConfig) -> bool:
    return cfg.mailu.tls_flavor in ("letsencrypt", "mail-letsencrypt")


def _shared_db(cfg: StackConfig) -> bool:
    return cfg.database.flavor == "postgresql" and not cfg.database.managed


def resolver_address(cfg: StackConfig) -> str:
    """Mailu's resolver address: subnet[-2] of the mail network, as Mailu's setup computes it."""
    return str(ipaddress.ip_network(cfg.networks.mail_subnet)[-2])


def _networks_of(cfg: StackConfig, service: str) -> dict[str, Any]:
    keys = network_keys(cfg)
    nets: dict[str, Any] = {}
    if service == "resolver":
        nets[keys["mail"]] = {"ipv4_address": resolver_address(cfg)}
    elif service != "webmail":
        nets[keys["mail"]] = None
    if service in ("front", "webmail") and cfg.mailu.webmail != "none":
        nets[keys["webmail"]] = None
    if service in ("smtp", "antispam", "resolver"):
        nets[keys["egress"]] = None
    if service == "front":
        if _uses_acme(cfg):
            nets[keys["acme"]] = None
        nets[cfg.networks.mgmt] = {"aliases": [front_alias(cfg)]}
    if service == "admin" and _shared_db(cfg):
        nets[cfg.networks.internal] = None
    if service == "antispam" and cfg.monitoring.enabled and cfg.monitoring.scrape_rspamd:
        # A fixed address, so the host's Prometheus has a stable target (render/monitoring.py).
        nets[keys["mail"]] = {"ipv4_address": rspamd_address(cfg)}
    if service == "postgres" and cfg.database.host != "postgres":
        nets[keys["mail"]] = {"aliases": [cfg.database.host]}
    return nets


def _depends_on(cfg: StackConfig, service: str) -> dict[str, Any]:
    started = {"condition": "service_started"}
    deps: dict[str, dict[str, str]] = {name: started for name in service_spec(service).depends_on}
    if service == "admin" and "postgres" in services_of(cfg):
        deps = {**deps, "postgres": {"condition": "service_healthy"}}
    return deps


def _bind(cfg: StackConfig, field: str) -> bool:
    """The certs come from a host directory (bind, read-only) when the config names one."""
    return field == "certs" and cfg.host.certs_dir is not None


def _mount(cfg: StackConfig, field: str, target: str) -> str:
    if _bind(cfg, field):
        return f"{cfg.host.resolve(str(cfg.host.certs_dir))}:{target}:ro"
    return f"{getattr(cfg.volumes, field)}:{target}"


def _service(
    cfg: StackConfig, service: str, env_files: dict[str, str], secrets: list[SecretFileSpec]
) -> dict[str, Any]:
    spec = service_spec(service)
    body: dict[str, Any] = {"image": getattr(cfg.images, spec.image_field), "restart": "unless-stopped"}
    if spec.hostname is not None:
        body["hostname"] = spec.hostname
    body["cap_add"] = list(spec.capabilities)
    if spec.read_only:
        body["read_only"] = True
        body["tmpfs"] = list(spec.tmpfs)
    body["env_file"] = [env_files[service]]
    body["networks"] = _networks_of(cfg, service)
    if spec.uses_resolver:
        body["dns"] = [resolver_address(cfg)]
    body["volumes"] = [_mount(cfg, m.volume, m.target) for m in spec.mounts]
    mounted = [secret.name for secret in secrets if service in secret.services]
    if mounted:
        body["secrets"] = mounted
    deps = _depends_on(cfg, service)
    if deps:
        body["depends_on"] = deps
    body["healthcheck"] = {
        "test": ["CMD-SHELL", spec.healthcheck],
        "interval": f"{cfg.mailu.health_interval_s}s",
        "timeout": "10s",
        "retries": 3,
        "start_period": spec.start_period,
    }
    return body


def _networks(cfg: StackConfig, services: list[str]) -> dict[str, Any]:
    keys = network_keys(cfg)
    nets: dict[str, Any] = {
        keys["mail"]: {
            "driver": "bridge",
            "internal": True,
            "ipam": {"config": [{"subnet": cfg.networks.mail_subnet}]},
        }
    }
    if "webmail" in services:
        nets[keys["webmail"]] = {"driver": "bridge", "internal": True}
    nets[keys["egress"]] = {"driver": "bridge"}
    if _uses_acme(cfg):
        nets[keys["acme"]] = {"driver": "bridge"}
    nets[cfg.networks.mgmt] = {"name": cfg.networks.mgmt, "external": True}
    if _shared_db(cfg):
        nets[cfg.networks.internal] = {"name": cfg.networks.internal, "external": True}
    return nets


def _volumes(cfg: StackConfig, services: list[str]) -> dict[str, Any]:
    names = sorted(
        {
            getattr(cfg.volumes, m.volume)
            for s in services
            for m in service_spec(s).mounts
            if not _bind(cfg, m.volume)
        }
    )
    return {name: {"name": name, "external": False} for name in names}


def render_compose(
    cfg: StackConfig, env_files: dict[str, str], secrets: list[SecretFileSpec] | None = None
) -> str:
    """The compose file text. `env_files` maps each service to its env file's absolute host path."""
    specs = secrets if secrets is not None else secret_file_specs(cfg)
    services = services_of(cfg)
    out = [
        "# Mailu stack, generated by mailu-flows from the stack config; do not edit: a deploy overwrites it.",
        "# Images are pinned by digest; secrets are files (`*_FILE`), never values in the environment.",
        "# No `ports:`: Traefik reaches front over the mgmt network (TCP routers per mail port).",
        dump_yaml({"name": cfg.mailu.compose_project}).rstrip("\n"),
        "",
        "# Every service: no privilege gain, all capabilities dropped (each adds back only what it needs).",
        "x-hardening: &hardening",
        indent(dump_yaml(HARDENING), 2).rstrip("\n"),
        "",
        "x-default-logging: &default-logging",
        indent(dump_yaml(LOGGING), 2).rstrip("\n"),
        "",
        "services:",
    ]
    for service in services:
        out += [f"  # {line}" for line in service_spec(service).why]
        out.append(f"  {service}:")
        out.append("    <<: *hardening")
        out.append("    logging: *default-logging")
        out.append(indent(dump_yaml(_service(cfg, service, env_files, specs)), 4).rstrip("\n"))
        out.append("")
    out.append(dump_yaml({"networks": _networks(cfg, services)}).rstrip("\n"))
    out.append("")
    out.append("# Named volumes keep the config's names; nothing in this file removes them.")
    out.append(dump_yaml({"volumes": _volumes(cfg, services)}).rstrip("\n"))
    used = [spec for spec in specs if spec.services]
    if used:
        out.append("")
        out.append("# File secrets (mode 0600 on the host), mounted at /run/secrets/<name> where listed.")
        files = {spec.name: {"file": spec.host_path} for spec in used}
        out.append(dump_yaml({"secrets": files}).rstrip("\n"))
    return "\n".join(out) + "\n"
