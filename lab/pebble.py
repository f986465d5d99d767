"""The lab's ACME server: Debian's pebble, Let's Encrypt's test server, on the host.

It issues through real HTTP-01 (TLS-ALPN-01 for Traefik's resolver): it looks a name up on the lab's
Knot primary (authoritative for the lab zone) and dials port 80 (443) of the A address, where Traefik's
web entrypoints are published (`endpoints.public_address()`), as Let's Encrypt dials a real host.
Mailu's certbot (front) and Traefik reach it at `endpoints.ACME_DIRECTORY`; the name resolves in
the lab's root zone.

Its own listener certificate comes from the lab CA (Debian's package ships none). Pebble regenerates its
root and intermediate at every start and forgets its accounts: `issuing_roots()` reads the roots of the
running instance, and a test that needs certbot's account starts from an empty certs volume.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import ssl
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lab import endpoints as ep
from lab.ca import CaFiles, issue_leaf
from lab.files import write_atomic, write_if_changed
from lab.procs import LabError, running_pid, start_daemon, stop_daemon, tcp_open

DAEMON = "pebble"
# No random sleeps before validation, no deliberately bad nonces (certbot retries one only), and
# every order validated for real (no reused authorizations).
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}


def pebble_dir() -> Path:
    return ep.lab_dir() / "pebble"


def _listener_cert(ca: CaFiles, directory: Path, public: str) -> tuple[Path, Path]:
    """A listener cert for the ACME name, loopback and the public address, signed by the lab CA."""
    cert_path, key_path = directory / "listener.pem", directory / "listener.key"
    names = {ep.ACME_NAME}
    ips = {"127.0.0.1", public}
    try:
        have = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = have.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ok = (
            set(san.get_values_for_type(x509.DNSName)) == names
            and {str(i) for i in san.get_values_for_type(x509.IPAddress)} == ips
            and have.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
            and have.issuer == x509.load_pem_x509_certificate(ca.ca_cert.read_bytes()).subject
            and key_path.exists()
        )
    except (OSError, ValueError, x509.ExtensionNotFound):
        ok = False
    if ok:
        return cert_path, key_path
    ca_cert = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key, cert = issue_leaf(ca_cert, ca_key, sorted(names), sorted(ips), 365)
    pem = serialization.Encoding.PEM
    write_atomic(
        key_path,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    write_atomic(cert_path, cert.public_bytes(pem), mode=0o644)
    return cert_path, key_path


def ensure_pebble(ca: CaFiles) -> str:
    """Run pebble (restarted when its config changes); returns the ACME directory URL."""
    if shutil.which("pebble") is None:
        raise LabError("pebble not found: run lab/bootstrap.sh (installs Debian's pebble)")
    d = pebble_dir()
    d.mkdir(parents=True, exist_ok=True)
    cert, key = _listener_cert(ca, d, ep.public_address())
    config = {
        "pebble": {
            "listenAddress": f"0.0.0.0:{ep.ACME_PORT}",
            "managementListenAddress": f"0.0.0.0:{ep.ACME_MANAGEMENT_PORT}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    changed = write_if_changed(d / "pebble.json", json.dumps(config, indent=2) + "\n", 0o644)
    changed |= write_if_changed(d / "listener.sha256", _digest(cert), 0o644)
    if changed and running_pid(DAEMON) is not None:
        stop_daemon(DAEMON)
    start_daemon(
        DAEMON,
        ["pebble", "-config", str(d / "pebble.json"), "-dnsserver", f"{ep.DNS_PRIMARY}:{ep.DNS_PORT}"],
        env=PEBBLE_ENV,
        ready=lambda: tcp_open("127.0.0.1", ep.ACME_PORT) and tcp_open("127.0.0.1", ep.ACME_MANAGEMENT_PORT),
        timeout=30,
    )
    return ep.ACME_DIRECTORY


def _digest(path: Path) -> str:
    from lab.files import sha256_file

    return sha256_file(path) + "\n"


def issuing_roots(ca: CaFiles) -> str:
    """PEM of the running pebble's root(s) that issued certificates (its management API, over TLS
    verified with the lab CA): what the lab's clients trust for ACME-issued certificates."""
    context = ssl.create_default_context(cafile=str(ca.ca_cert))
    url = f"https://127.0.0.1:{ep.ACME_MANAGEMENT_PORT}/roots/0"
    with urllib.request.urlopen(url, context=context, timeout=10) as resp:
        return str(resp.read().decode())


def stop_pebble() -> bool:
    return stop_daemon(DAEMON)
