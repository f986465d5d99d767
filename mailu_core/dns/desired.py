"""The records a Mailu stack needs, derived from the stack config (and the DKIM public keys).

Formats follow Mailu's own `dns_*` properties (`core/admin/mailu/models.py`): MX to the first
hostname, SPF/DMARC TXT at each mail domain, `<selector>._domainkey.<domain>` with
`v=DKIM1; k=rsa; p=<base64 SPKI>`. Alternative domains get the same records as the primary
(Mailu signs them with the primary domain's key under their own name).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailu_core.config import StackConfig
from mailu_core.dns.records import Record

__all__ = ["desired_records", "dkim_public_key_der", "dkim_txt_value"]

# RFC 6186 services Mailu advertises, by the mail port that offers them (Mailu: prio 20 plain, 10 TLS).
_SRV_BY_PORT: dict[int, tuple[str, int]] = {
    143: ("_imap._tcp", 20),
    587: ("_submission._tcp", 20),
    465: ("_submissions._tcp", 10),
    993: ("_imaps._tcp", 10),
}


def _load_public_key(key: bytes | str) -> rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    """Accepts a public key (PEM or DER SPKI) or a private key (PEM/DER PKCS#8), as Mailu stores it."""
    data = key.encode() if isinstance(key, str) else key
    pub: object = None
    for load_public in (serialization.load_pem_public_key, serialization.load_der_public_key):
        try:
            pub = load_public(data)
            break
        except (ValueError, TypeError):
            continue
    if pub is None:
        for load_private in (serialization.load_pem_private_key, serialization.load_der_private_key):
            try:
                pub = load_private(data, None).public_key()
                break
            except (ValueError, TypeError):
                continue
    if isinstance(pub, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return pub
    if pub is not None:
        raise ValueError(f"unsupported DKIM key type {type(pub).__name__} (RSA or Ed25519 only)")
    raise ValueError("not a PEM or DER public/private key")


def dkim_txt_value(public_key: bytes | str) -> str:
    """The TXT value for a DKIM key: `v=DKIM1; k=rsa; p=<base64 DER SubjectPublicKeyInfo>`.

    Ed25519 keys give `k=ed25519` with the raw 32-byte key (RFC 8463). A private key is accepted too
    (its public half is used), so the value can be derived straight from Mailu's key file.
    """
    pub = _load_public_key(public_key)
    if isinstance(pub, rsa.RSAPublicKey):
        der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def dkim_public_key_der(txt_value: str) -> bytes:
    """The `p=` of a DKIM TXT value, decoded (whitespace inside `p=` ignored); ValueError if absent."""
    for tag in txt_value.split(";"):
        name, sep, val = tag.partition("=")
        if sep and name.strip() == "p":
            compact = re.sub(r"\s+", "", val)
            if not compact:
                raise ValueError("the DKIM record has an empty p= (key revoked)")
            return base64.b64decode(compact, validate=True)
    raise ValueError("no p= tag in the DKIM record")


def desired_records(
    cfg: StackConfig,
    dkim_txt: Mapping[str, str] | None = None,
    *,
    autoconfig: bool = False,
    mta_sts_id: str | None = None,
) -> list[Record]:
    """Every record the stack should publish, for every mail domain (primary and alternatives).

    `dkim_txt` maps a DKIM selector to its TXT value (`dkim_txt_value(...)`); several selectors are
    published side by side during a rotation. `autoconfig` adds Mailu's RFC 6186 SRV records for the
    offered mail ports and the `autoconfig`/`autodiscover` CNAMEs; `mta_sts_id` adds the MTA-STS
    TXT `_mta-sts.<domain>` (`v=STSv1; id=<id>`) and the `mta-sts.<domain>` CNAME (Mailu's FAQ).
    Records come out sorted by name and type.
    """
    dns = cfg.dns
    host = cfg.hostname
    out: list[Record] = [Record(host, "A", dns.ttl, (cfg.mailu.public_ipv4,))]
    if cfg.mailu.public_ipv6:
        out.append(Record(host, "AAAA", dns.ttl, (cfg.mailu.public_ipv6,)))
    for domain in cfg.mail_domains:
        out.append(Record(domain, "MX", dns.ttl, (f"{dns.mx_priority} {host}",)))
        out.append(Record(domain, "TXT", dns.ttl, (cfg.spf_record(),)))
        out.append(Record(f"_dmarc.{domain}", "TXT", dns.ttl, (cfg.dmarc_record(),)))
        for selector, value in sorted((dkim_txt or {}).items()):
            out.append(Record(f"{selector}._domainkey.{domain}", "TXT", dns.dkim_ttl, (value,)))
        if autoconfig:
            for port in cfg.mail_ports:
                if port in _SRV_BY_PORT:
                    label, prio = _SRV_BY_PORT[port]
                    out.append(Record(f"{label}.{domain}", "SRV", dns.ttl, (f"{prio} 1 {port} {host}",)))
            out.append(Record(f"_autodiscover._tcp.{domain}", "SRV", dns.ttl, (f"10 1 443 {host}",)))
            for label in ("autoconfig", "autodiscover"):
                out.append(Record(f"{label}.{domain}", "CNAME", dns.ttl, (host,)))
        if mta_sts_id is not None:
            out.append(Record(f"_mta-sts.{domain}", "TXT", dns.ttl, (f"v=STSv1; id={mta_sts_id}",)))
            out.append(Record(f"mta-sts.{domain}", "CNAME", dns.ttl, (host,)))
    return sorted(out, key=lambda r: (r.name, r.type, r.key))
