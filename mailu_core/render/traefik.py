"""`traefik/dynamic/<file>`: Mailu's routers, services and middlewares in a file of their own.

The host's `routers.yml`/`services.yml` are never touched; removing Mailu is removing this file.
The mail entrypoints belong to Traefik's static config (checked by preflight, never edited).

Mail (TCP), one router per entrypoint:
- rule `HostSNI(`*`)` and **no `tls` section on every mail port**, 465/993 included: alone on its
  entrypoint, a non-TLS catch-all router makes Traefik forward bytes at once, so server-first
  protocols (the SMTP/IMAP banner) work and STARTTLS on 25/587/143 stays Mailu's. For 465/993 the
  TLS handshake passes through untouched either way; this is the form of Mailu's own Traefik docs
  and needs no ClientHello sniffing in Traefik (`tls.passthrough` would work too, for no gain).
- each service sends PROXY protocol v2 (`serversTransports`) to front, on exactly the ports listed
  in Mailu's PROXY_PROTOCOL; front trusts only Traefik's address (REAL_IP_FROM).
- with `traefik.tcp_allowlist`, a TCP `ipAllowList` on every mail port but 25 (MX must stay open).

Web (HTTP), Traefik terminates HTTPS (the config's certResolver):
- `mailu-admin`: admin host + admin path (+ Mailu's `/sso/` and `/static/`, see `admin_paths`), with
  the host's secure-headers, forward-auth, admin allowlist and management rate limit (`<name>@file`).
- `mailu-webmail`: the webmail host, public: secure headers + a rate limit defined here (or
  forward-auth too, per `traefik.webmail_exposure`).
- `mailu-webmail-deny`: on the webmail host, the API path (and the admin path when the admin lives
  on another host) answers 403 for everyone: its `ipAllowList` admits only 0.0.0.0/32, an address
  no TCP client can have. It outranks `mailu-webmail` by explicit priority.
- with a letsencrypt flavor, `mailu-acme` on the web entrypoint sends
  `/.well-known/acme-challenge/` for every Mailu hostname to front:80 (Mailu's certbot).
Web traffic reaches front at `http://<alias>:80` with the `mail*` flavors (front serves the UI on
plain :80 behind a TLS-terminating proxy). With `cert`/`letsencrypt` front's :80 only redirects,
so the UI is at `https://<alias>:443`; that hop stays on the host's mgmt network and Traefik skips
verifying front's certificate there (with `cert` it is usually signed by a private CA Traefik does
not know), no weaker than the plain-HTTP hop of the `mail*` flavors.
"""

from __future__ import annotations

from typing import Any

from mailu_core.config import StackConfig
from mailu_core.render.compose import front_alias
from mailu_core.render.env import proxy_protocol_ports
from mailu_core.render.yamlout import dump_yaml

__all__ = [
    "ACME_ROUTER",
    "ADMIN_ROUTER",
    "DENY_MIDDLEWARE",
    "PROXY_TRANSPORT",
    "WEBMAIL_DENY_ROUTER",
    "WEBMAIL_RATELIMIT",
    "WEBMAIL_ROUTER",
    "mail_router_name",
    "render_traefik",
    "traefik_dynamic",
]

PREFIX = "mailu"
ADMIN_ROUTER = f"{PREFIX}-admin"
WEBMAIL_ROUTER = f"{PREFIX}-webmail"
WEBMAIL_DENY_ROUTER = f"{PREFIX}-webmail-deny"
ACME_ROUTER = f"{PREFIX}-acme"
WEB_SERVICE = f"{PREFIX}-web"
ACME_SERVICE = f"{PREFIX}-acme"
PROXY_TRANSPORT = f"{PREFIX}-proxy-v2"
FRONT_TLS_TRANSPORT = f"{PREFIX}-front-tls"
WEBMAIL_RATELIMIT = f"{PREFIX}-webmail-ratelimit"
DENY_MIDDLEWARE = f"{PREFIX}-deny-all"
MAIL_ALLOWLIST = f"{PREFIX}-mail-allowlist"

# Explicit priorities: the deny router must beat the webmail catch-all; the admin router (admin path
# on a host that may also serve webmail) beats both; ACME beats any catch-all on the web entrypoint.
_PRIORITY = {ADMIN_ROUTER: 300, WEBMAIL_DENY_ROUTER: 200, WEBMAIL_ROUTER: 100, ACME_ROUTER: 1000}

# Per client address: generous enough for a webmail page's assets, low enough to slow scripted abuse.
_WEBMAIL_RATE = {"average": 20, "period": "1s", "burst": 100}


def mail_router_name(entrypoint: str) -> str:
    """Name of the TCP router and service for a mail entrypoint."""
    return f"{PREFIX}-{entrypoint}"


def _file_ref(name: str) -> str:
    """A host middleware reference: `<name>@file` unless the config already names a provider."""
    return name if "@" in name else f"{name}@file"


def _tls(cfg: StackConfig) -> dict[str, Any]:
    resolver = cfg.traefik.cert_resolver
    return {"certResolver": resolver} if resolver else {}


def _host(host: str) -> str:
    return f"Host(`{host}`)"


def _prefixes(paths: list[str]) -> str:
    rules = [f"PathPrefix(`{p}`)" for p in paths]
    return rules[0] if len(rules) == 1 else "(" + " || ".join(rules) + ")"


def admin_paths(cfg: StackConfig) -> list[str]:
    """The paths of the admin router. Mailu's admin sends a signed-out browser to `/sso/login` on its own
    host and its pages load `/static/` (front serves both from admin: `location ~ ^/(sso|static)/`);
    without them the admin UI is a 404 on a host of its own. On a host shared with webmail, the webmail
    router carries them already, without forward-auth, as webmail's own login needs."""
    shared = cfg.admin_host == cfg.webmail_host and cfg.mailu.webmail != "none"
    return [cfg.mailu.admin_path] + ([] if shared else ["/sso/", "/static/"])


def _front_serves_http(cfg: StackConfig) -> bool:
    return cfg.mailu.tls_flavor in ("mail", "mail-letsencrypt")


def _tcp(cfg: StackConfig) -> dict[str, Any]:
    proxied = set(proxy_protocol_ports(cfg))
    front = front_alias(cfg)
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for ep in sorted(cfg.traefik.mail_entrypoints, key=lambda e: e.port):
        name = mail_router_name(ep.name)
        router: dict[str, Any] = {"entryPoints": [ep.name], "rule": "HostSNI(`*`)", "service": name}
        if cfg.traefik.tcp_allowlist and ep.port != 25:
            router["middlewares"] = [MAIL_ALLOWLIST]
        routers[name] = router
        balancer: dict[str, Any] = {"servers": [{"address": f"{front}:{ep.port}"}]}
        if ep.port in proxied:
            balancer["serversTransport"] = PROXY_TRANSPORT
        services[name] = {"loadBalancer": balancer}
    tcp: dict[str, Any] = {"routers": routers, "services": services}
    if cfg.traefik.tcp_allowlist:
        allowlist = {"ipAllowList": {"sourceRange": list(cfg.traefik.tcp_allowlist)}}
        tcp["middlewares"] = {MAIL_ALLOWLIST: allowlist}
    if proxied:
        tcp["serversTransports"] = {PROXY_TRANSPORT: {"proxyProtocol": {"version": 2}}}
    return tcp


def _http(cfg: StackConfig) -> dict[str, Any]:
    t, m = cfg.traefik, cfg.mailu
    mw = t.middlewares
    websecure = [t.websecure_entrypoint]
    routers: dict[str, Any] = {
        ADMIN_ROUTER: {
            "entryPoints": websecure,
            "rule": f"{_host(cfg.admin_host)} && {_prefixes(admin_paths(cfg))}",
            "priority": _PRIORITY[ADMIN_ROUTER],
            "middlewares": [_file_ref(n) for n in t.admin_middlewares()],
            "service": WEB_SERVICE,
            "tls": _tls(cfg),
        }
    }
    middlewares: dict[str, Any] = {}
    if m.webmail != "none":
        webmail_mw = [_file_ref(mw.secure_headers)]
        if t.webmail_exposure == "forward-auth":
            webmail_mw.append(_file_ref(mw.admin_forward_auth))
        webmail_mw.append(WEBMAIL_RATELIMIT)
        # Paths the webmail host must refuse: the API always, the admin UI unless this same host
        # carries the admin router (which then outranks the deny router for its path only).
        refused = [m.api_path] + ([] if cfg.admin_host == cfg.webmail_host else [m.admin_path])
        routers[WEBMAIL_DENY_ROUTER] = {
            "entryPoints": websecure,
            "rule": f"{_host(cfg.webmail_host)} && {_prefixes(refused)}",
            "priority": _PRIORITY[WEBMAIL_DENY_ROUTER],
            "middlewares": [_file_ref(mw.secure_headers), DENY_MIDDLEWARE],
            "service": WEB_SERVICE,
            "tls": _tls(cfg),
        }
        routers[WEBMAIL_ROUTER] = {
            "entryPoints": websecure,
            "rule": _host(cfg.webmail_host),
            "priority": _PRIORITY[WEBMAIL_ROUTER],
            "middlewares": webmail_mw,
            "service": WEB_SERVICE,
            "tls": _tls(cfg),
        }
        middlewares[WEBMAIL_RATELIMIT] = {"rateLimit": dict(_WEBMAIL_RATE)}
        middlewares[DENY_MIDDLEWARE] = {"ipAllowList": {"sourceRange": ["0.0.0.0/32"]}}
    front = front_alias(cfg)
    services: dict[str, Any] = {}
    if _front_serves_http(cfg):
        services[WEB_SERVICE] = {"loadBalancer": {"servers": [{"url": f"http://{front}:80"}]}}
    else:
        services[WEB_SERVICE] = {
            "loadBalancer": {
                "servers": [{"url": f"https://{front}:443"}],
                "serversTransport": FRONT_TLS_TRANSPORT,
            }
        }
    if m.tls_flavor in ("letsencrypt", "mail-letsencrypt"):
        hosts = " || ".join(_host(h) for h in m.hostnames)
        hosts = f"({hosts})" if len(m.hostnames) > 1 else hosts
        routers[ACME_ROUTER] = {
            "entryPoints": [t.web_entrypoint],
            "rule": f"{hosts} && PathPrefix(`/.well-known/acme-challenge/`)",
            "priority": _PRIORITY[ACME_ROUTER],
            "service": ACME_SERVICE,
        }
        services[ACME_SERVICE] = {"loadBalancer": {"servers": [{"url": f"http://{front}:80"}]}}
    http: dict[str, Any] = {"routers": routers, "services": services}
    if middlewares:
        http["middlewares"] = middlewares
    if not _front_serves_http(cfg):
        http["serversTransports"] = {
            FRONT_TLS_TRANSPORT: {"serverName": cfg.hostname, "insecureSkipVerify": True}
        }
    return http


def traefik_dynamic(cfg: StackConfig) -> dict[str, Any]:
    """The file-provider document as data (for tests and the plan)."""
    return {"tcp": _tcp(cfg), "http": _http(cfg)}


def render_traefik(cfg: StackConfig) -> str:
    """The file-provider YAML text."""
    header = (
        "# Mailu routes, generated by mailu-flows from the stack config; a deploy overwrites edits.\n"
        "# Mail ports: one HostSNI(`*`) router per entrypoint, no TLS (Mailu does TLS), PROXY v2 to front.\n"
        "# Removing Mailu from Traefik = removing this file; the host's own route files stay untouched.\n"
    )
    return header + dump_yaml(traefik_dynamic(cfg))
