"""Fixed addresses, names and paths of the local lab.

Everything listens on loopback only. One module holds them so that the lab, its
tests and the generated `.lab/stack.yaml` agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def lab_dir() -> Path:
    """Where the lab keeps its state: `.lab/` at the repo root unless MAILU_LAB_DIR says otherwise."""
    return Path(os.environ.get("MAILU_LAB_DIR", REPO_ROOT / ".lab")).resolve()


# Caches that survive `lab down` and fresh checkouts on the same machine.
CACHE_DIR = Path("/var/cache/mailu-lab")
REGISTRY_STORAGE = Path("/var/lib/mailu-lab/registry")

# The managed host: sshd on loopback, a deploy user with a light shell.
SSH_HOST = "127.0.0.1"
SSH_PORT = 2222
SSH_USER = "mailu-lab"

# Local image registry (Debian docker-registry). 127.0.0.0/8 is an insecure registry by default.
REGISTRY_HOST = "127.0.0.1:5000"
MAILU_VERSION = "2024.06"

# The compose project the lab's stack config deploys (lab down removes it, keeping its volumes).
LAB_COMPOSE_PROJECT = "mailu-lab"

# The lab's mail domain and zone.
ZONE = "inlock.test"
MAIL_HOSTNAME = f"mail.{ZONE}"
ADMIN_HOSTNAME = f"mail.{ZONE}"
WEBMAIL_HOSTNAME = f"webmail.{ZONE}"

# Knot DNS: primary and secondary on their own loopback addresses, port 53.
DNS_PRIMARY = "127.0.0.2"
DNS_SECONDARY = "127.0.0.3"
DNS_PORT = 53
TSIG_KEY_NAME = "mailu-lab-ddns"

# Cloudflare API emulator.
CF_EMULATOR_PORT = 18787
CF_BASE_URL = f"http://127.0.0.1:{CF_EMULATOR_PORT}/client/v4"

# Prefect server with its UI.
PREFECT_PORT = 4200
PREFECT_API_URL = f"http://127.0.0.1:{PREFECT_PORT}/api"

# Prometheus (Debian package) with the lifecycle API on.
PROMETHEUS_PORT = 19090

# Docker networks the host "already has" (as the seed describes); mgmt has a fixed subnet so that
# Traefik's address is known (Mailu's REAL_IP_FROM must be Traefik's address only).
NETWORKS: dict[str, str] = {
    "edge": "172.30.1.0/24",
    "mgmt": "172.30.2.0/24",
    "internal": "172.30.3.0/24",
    "socket-proxy": "172.30.4.0/24",
}
TRAEFIK_MGMT_IP = "172.30.2.2"
TRAEFIK_EDGE_IP = "172.30.1.2"
# An "outside" mail server on edge with the DNS a real one has (A, PTR, SPF pass for example.org), so
# that Mailu's rspamd does not greylist it: tests send inbound mail from a container at this address.
OUTSIDE_MTA_IP = "172.30.1.200"
OUTSIDE_MTA_NAME = "mx.example.org"
# The flow runner (this host) as Mailu sees it when it connects to Traefik's published ports: Docker's
# address on edge, the first of the network's dynamic range (lab/host.py). It has forward and reverse
# DNS and example.org's SPF allows it, so the mail canary's inbound probe is judged as a real
# outside server's would be.
RUNNER_EDGE_IP = "172.30.1.64"
RUNNER_NAME = "runner.example.org"

# The lab's ACME server (Debian's pebble) on the host. Containers find it by this name in the lab's root
# zone; it dials HTTP-01 on port 80 and TLS-ALPN-01 on 443 of the name's A address.
ACME_NAME = "acme.test"
ACME_PORT = 14000
ACME_MANAGEMENT_PORT = 15000
ACME_DIRECTORY = f"https://{ACME_NAME}:{ACME_PORT}/dir"


def public_address() -> str:
    """The host's own address on its uplink (the source of its default route): what an A record of a
    real mail host points at. Traefik's web entrypoints are published there too, so that the ACME server
    and Mailu's front (hairpin through Docker's port proxy) reach them as they would on a real host."""
    import json
    import subprocess

    out = subprocess.run(
        ["ip", "-j", "-4", "route", "get", "198.51.100.1"], capture_output=True, text=True, check=False
    ).stdout
    try:
        src = json.loads(out)[0]["prefsrc"]
    except (ValueError, LookupError):
        src = None
    if not src or src.startswith("127."):
        raise RuntimeError("no IPv4 uplink address (`ip route get` found no source): the lab needs one")
    return str(src)


@dataclass(frozen=True)
class EntryPoint:
    """A Traefik entrypoint: its name, the container port, and the loopback port it is published on."""

    name: str
    port: int
    host_port: int


# One entrypoint per mail port (each holds exactly one HostSNI(`*`) router), plus HTTP(S).
MAIL_ENTRYPOINTS: tuple[EntryPoint, ...] = (
    EntryPoint("smtp", 25, 10025),
    EntryPoint("submissions", 465, 10465),
    EntryPoint("submission", 587, 10587),
    EntryPoint("imap", 143, 10143),
    EntryPoint("imaps", 993, 10993),
)
WEB_ENTRYPOINTS: tuple[EntryPoint, ...] = (
    EntryPoint("web", 80, 10080),
    EntryPoint("websecure", 443, 10443),
)
TRAEFIK_API_PORT = 18080  # Traefik's API (entrypoint "traefik"), published on loopback
TRAEFIK_API_URL = f"http://127.0.0.1:{TRAEFIK_API_PORT}"

# The host's existing Traefik middlewares that Mailu's routes reference.
MIDDLEWARES = ("secure-headers", "admin-forward-auth", "allowed-admins", "mgmt-ratelimit")
