"""The lab's own certificate authority and the one leaf certificate the mail front and Traefik serve.

Real Mailu with `TLS_FLAVOR=cert` reads `/certs/cert.pem` and `/certs/key.pem`; the lab mounts the
files made here, and tests trust `ca_cert` so that hostname and chain verification really happen.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.endpoints import ZONE
from lab.files import write_atomic

LEAF_DNS_NAMES: tuple[str, ...] = (f"mail.{ZONE}", f"webmail.{ZONE}", f"*.{ZONE}", "localhost")
LEAF_IPS: tuple[str, ...] = ("127.0.0.1",)
_VALID_DAYS = 825
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class CaFiles:
    """Paths of the lab CA certificate and the leaf certificate (with its chain) and key."""

    ca_cert: Path
    cert: Path
    key: Path
    ca_key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _leaf_ok(files: CaFiles) -> bool:
    """True if all files exist, the leaf is signed by the CA, covers our names and is not near expiry."""
    try:
        ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        leaf = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return False
    try:
        leaf.verify_directly_issued_by(ca)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    names = set(san.get_values_for_type(x509.DNSName))
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    if not (set(LEAF_DNS_NAMES) <= names and set(LEAF_IPS) <= ips):
        return False
    soon = _now() + _RENEW_BEFORE
    return all(c.not_valid_after_utc > soon for c in (ca, leaf))


def issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    dns_names: Sequence[str],
    ips: Sequence[str],
    days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new P-256 key and a server certificate for `dns_names` and `ips` (the first name is the CN),
    signed by the lab CA: the mail front's leaf here, pebble's listener in lab/pebble.py."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    san += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def ensure_ca(directory: Path) -> CaFiles:
    """Create (once) the lab CA and a leaf cert/key for the mail names; reuse them while still valid.

    `cert` holds the leaf followed by the CA (a full chain, as Mailu's front expects in cert.pem).
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = CaFiles(
        ca_cert=directory / "ca.crt",
        cert=directory / "cert.pem",
        key=directory / "key.pem",
        ca_key=directory / "ca.key",
    )
    if _leaf_ok(files):
        for secret in (files.key, files.ca_key):
            secret.chmod(0o600)
        return files

    now = _now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailu-lab CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key, leaf = issue_leaf(ca_cert, ca_key, LEAF_DNS_NAMES, LEAF_IPS, _VALID_DAYS)
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    write_atomic(files.ca_key, ca_key.private_bytes(pem, pkcs8, none))
    write_atomic(files.key, leaf_key.private_bytes(pem, pkcs8, none))
    write_atomic(files.ca_cert, ca_cert.public_bytes(pem), mode=0o644)
    write_atomic(files.cert, leaf.public_bytes(pem) + ca_cert.public_bytes(pem), mode=0o644)
    return files
