"""The host's existing Traefik v3, as the seed describes it: a container on `edge` + `mgmt`, a file
provider watching `<stack root>/traefik/dynamic/`, the host's own routers and middlewares, and one
entrypoint per mail port plus HTTP(S), published on loopback high ports.

The product never edits Traefik's static config or the files written here (`routers.yml`,
`services.yml`, `middlewares.yml`, `tls.yml`); Mailu's routes go into a file of their own.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from lab import endpoints as ep
from lab.ca import CaFiles
from lab.files import write_if_changed
from lab.host import host_root, run
from lab.procs import LabError

TRAEFIK_CONTAINER = "mailu-lab-traefik"
FORWARD_AUTH_CONTAINER = "mailu-lab-forward-auth"
FORWARD_AUTH_ALIAS = "forward-auth"
FORWARD_AUTH_PORT = 4181
CONTAINER_CERT_DIR = "/etc/traefik/certs"
CONTAINER_DYNAMIC_DIR = "/etc/traefik/dynamic"
# Who may reach admin routes in the lab: loopback and the lab's docker networks.
ADMIN_SOURCE_RANGES = ["127.0.0.1/32", *ep.NETWORKS.values()]


def dynamic_dir() -> Path:
    return host_root() / "traefik" / "dynamic"


ACME_RESOLVER = "pebble"
CONTAINER_ACME_DIR = "/acme"


def static_config() -> dict[str, Any]:
    """Traefik's static config: entrypoints, the file provider, the API; never touched by a flow."""
    entry_points: dict[str, Any] = {e.name: {"address": f":{e.port}"} for e in ep.MAIL_ENTRYPOINTS}
    entry_points["web"] = {"address": ":80"}
    entry_points["websecure"] = {"address": ":443", "http": {"tls": {}}}
    entry_points["traefik"] = {"address": ":8080"}
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": entry_points,
        "providers": {"file": {"directory": CONTAINER_DYNAMIC_DIR, "watch": True}},
        # The lab's ACME server (lab/pebble.py) as a resolver routers may name (`traefik.cert_resolver`).
        # TLS-ALPN-01: HTTP-01 on :80 belongs to Mailu's certbot (Mailu's docs/reverse.rst).
        "certificatesResolvers": {
            ACME_RESOLVER: {
                "acme": {
                    "caServer": ep.ACME_DIRECTORY,
                    "email": f"admin@{ep.ZONE}",
                    "storage": f"{CONTAINER_ACME_DIR}/acme.json",
                    "tlsChallenge": {},
                }
            }
        },
        "api": {"insecure": True, "dashboard": True},
        "ping": {"entryPoint": "traefik"},
        "log": {"level": "INFO", "noColor": True},
        "accessLog": {},
    }


def baseline_dynamic_files() -> dict[str, dict[str, Any]]:
    """The host's own dynamic config, which exists before Mailu and must survive it untouched."""
    auth_url = f"http://{FORWARD_AUTH_ALIAS}:{FORWARD_AUTH_PORT}/verify"
    middlewares = {
        "http": {
            "middlewares": {
                "secure-headers": {
                    "headers": {
                        "stsSeconds": 31536000,
                        "stsIncludeSubdomains": True,
                        "frameDeny": True,
                        "contentTypeNosniff": True,
                        "browserXssFilter": True,
                        "referrerPolicy": "strict-origin-when-cross-origin",
                    }
                },
                "admin-forward-auth": {
                    "forwardAuth": {
                        "address": auth_url,
                        "trustForwardHeader": False,
                        "authResponseHeaders": ["X-Auth-User"],
                    }
                },
                "allowed-admins": {"ipAllowList": {"sourceRange": ADMIN_SOURCE_RANGES}},
                "mgmt-ratelimit": {"rateLimit": {"average": 50, "period": "1s", "burst": 100}},
            }
        }
    }
    routers = {
        "http": {
            "routers": {
                "traefik-dashboard": {
                    "entryPoints": ["websecure"],
                    "rule": f"Host(`traefik.{ep.ZONE}`)",
                    "service": "api@internal",
                    "middlewares": [
                        "secure-headers",
                        "admin-forward-auth",
                        "allowed-admins",
                        "mgmt-ratelimit",
                    ],
                },
                "whoami": {
                    "entryPoints": ["websecure"],
                    "rule": f"Host(`whoami.{ep.ZONE}`)",
                    "service": "whoami",
                    "middlewares": ["secure-headers"],
                },
            }
        }
    }
    services = {
        "http": {
            "services": {
                "whoami": {
                    "loadBalancer": {
                        "servers": [{"url": f"http://{FORWARD_AUTH_ALIAS}:{FORWARD_AUTH_PORT}/whoami"}]
                    }
                },
            }
        }
    }
    tls = {
        "tls": {
            "stores": {
                "default": {
                    "defaultCertificate": {
                        "certFile": f"{CONTAINER_CERT_DIR}/cert.pem",
                        "keyFile": f"{CONTAINER_CERT_DIR}/key.pem",
                    }
                }
            },
            "options": {"default": {"minVersion": "VersionTLS12"}},
        }
    }
    return {"middlewares.yml": middlewares, "routers.yml": routers, "services.yml": services, "tls.yml": tls}


def container_running(name: str) -> bool:
    proc = run(["docker", "inspect", "--format", "{{.State.Running}}", name], check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def _container_image(name: str) -> str | None:
    proc = run(["docker", "inspect", "--format", "{{.Config.Image}}", name], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_forward_auth(image: str) -> None:
    """The host's SSO gate behind `admin-forward-auth` (a small lab server): 401 without credentials."""
    if container_running(FORWARD_AUTH_CONTAINER) and _container_image(FORWARD_AUTH_CONTAINER) == image:
        return
    run(["docker", "rm", "-f", FORWARD_AUTH_CONTAINER], check=False)
    run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            FORWARD_AUTH_CONTAINER,
            "--restart",
            "unless-stopped",
            "--label",
            "org.mailu-flows.lab=1",
            "--network",
            "mgmt",
            "--network-alias",
            FORWARD_AUTH_ALIAS,
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            image,
        ]
    )


def ensure_traefik(image: str, ca: CaFiles) -> None:
    """Write the static and baseline dynamic config and run the Traefik container (recreated on change)."""
    conf_dir = ep.lab_dir() / "traefik"
    cert_dir = conf_dir / "certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    changed = write_if_changed(
        conf_dir / "traefik.yml", yaml.safe_dump(static_config(), sort_keys=False), 0o644
    )
    changed |= write_if_changed(cert_dir / "cert.pem", ca.cert.read_bytes(), 0o644)
    changed |= write_if_changed(cert_dir / "key.pem", ca.key.read_bytes(), 0o600)
    changed |= write_if_changed(cert_dir / "ca.crt", ca.ca_cert.read_bytes(), 0o644)
    acme_dir = conf_dir / "acme"
    acme_dir.mkdir(mode=0o700, exist_ok=True)
    public = ep.public_address()
    # HTTP(S) also on the host's public address, as on a real host: the ACME server dials the A address,
    # and Mailu's front reaches its own name through Docker's port proxy (hairpin).
    run_args = [f"public {public}"]
    changed |= write_if_changed(conf_dir / "run-args.txt", "\n".join(run_args) + "\n", 0o644)
    dyn = dynamic_dir()
    dyn.mkdir(parents=True, exist_ok=True)
    shutil.chown(dyn, ep.SSH_USER, ep.SSH_USER)
    shutil.chown(dyn.parent, ep.SSH_USER, ep.SSH_USER)
    for name, doc in baseline_dynamic_files().items():
        write_if_changed(dyn / name, yaml.safe_dump(doc, sort_keys=False), 0o644)
    if not changed and container_running(TRAEFIK_CONTAINER) and _container_image(TRAEFIK_CONTAINER) == image:
        return
    run(["docker", "rm", "-f", TRAEFIK_CONTAINER], check=False)
    publish: list[str] = []
    for e in (*ep.MAIL_ENTRYPOINTS, *ep.WEB_ENTRYPOINTS):
        publish += ["-p", f"127.0.0.1:{e.host_port}:{e.port}"]
    publish += ["-p", f"127.0.0.1:{ep.TRAEFIK_API_PORT}:8080"]
    publish += [a for e in ep.WEB_ENTRYPOINTS for a in ("-p", f"{public}:{e.port}:{e.port}")]
    run(
        [
            "docker",
            "create",
            "--name",
            TRAEFIK_CONTAINER,
            "--restart",
            "unless-stopped",
            "--label",
            "org.mailu-flows.lab=1",
            "--network",
            "mgmt",
            "--ip",
            ep.TRAEFIK_MGMT_IP,
            *publish,
            "-v",
            f"{conf_dir / 'traefik.yml'}:/etc/traefik/traefik.yml:ro",
            "-v",
            f"{cert_dir}:{CONTAINER_CERT_DIR}:ro",
            "-v",
            f"{dyn}:{CONTAINER_DYNAMIC_DIR}:ro",
            "-v",
            f"{acme_dir}:{CONTAINER_ACME_DIR}",
            "--add-host",
            f"{ep.ACME_NAME}:{public}",
            "-e",
            f"LEGO_CA_CERTIFICATES={CONTAINER_CERT_DIR}/ca.crt",
            "--read-only",
            "--security-opt",
            "no-new-privileges",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "NET_BIND_SERVICE",
            image,
            "--configFile=/etc/traefik/traefik.yml",
        ]
    )
    run(["docker", "network", "connect", "--ip", ep.TRAEFIK_EDGE_IP, "edge", TRAEFIK_CONTAINER])
    run(["docker", "start", TRAEFIK_CONTAINER])
    wait_for_api()


def api_get(path: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(f"{ep.TRAEFIK_API_URL}{path}", timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_for_api(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            api_get("/api/rawdata")
            return
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.2)
    logs = run(["docker", "logs", "--tail", "30", TRAEFIK_CONTAINER], check=False)
    raise LabError(f"Traefik API did not answer on {ep.TRAEFIK_API_URL}: {last}\n{logs.stdout}{logs.stderr}")


def disabled_objects(provider: str = "file") -> list[str]:
    """Every router, service and middleware of `provider` whose status is not `enabled`, with errors."""
    raw = api_get("/api/rawdata")
    bad: list[str] = []
    for section in ("routers", "services", "middlewares", "tcpRouters", "tcpServices", "tcpMiddlewares"):
        for name, obj in (raw.get(section) or {}).items():
            if name.endswith(f"@{provider}") and obj.get("status") != "enabled":
                bad.append(f"{section}/{name}: {obj.get('status')} {obj.get('error', '')}")
    return bad


def wait_until_loaded(names: list[str], timeout: float = 15.0) -> dict[str, Any]:
    """Wait until every `section/name@file` in `names` appears in /api/rawdata (hot reload takes ~2 s)."""
    deadline = time.monotonic() + timeout
    raw: dict[str, Any] = {}
    while time.monotonic() < deadline:
        raw = api_get("/api/rawdata")
        if all(name.split("/", 1)[1] in (raw.get(name.split("/", 1)[0]) or {}) for name in names):
            return raw
        time.sleep(0.2)
    raise LabError(f"Traefik did not load {names} within {timeout:.0f}s")


def remove_traefik() -> None:
    for name in (TRAEFIK_CONTAINER, FORWARD_AUTH_CONTAINER):
        run(["docker", "rm", "-f", name], check=False)
