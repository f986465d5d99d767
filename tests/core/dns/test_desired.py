"""The records a stack needs, from the example config."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailu_core.dns import Record, desired_records, dkim_public_key_der, dkim_txt_value

from .conftest import example_config


def test_example_config_gives_the_mail_records() -> None:
    cfg = example_config()
    recs = desired_records(cfg)
    assert recs == sorted(recs, key=lambda r: (r.name, r.type, r.key))
    assert set(recs) == {
        Record("mail.inlock.ai", "A", 600, ("203.0.113.10",)),
        Record("inlock.ai", "MX", 600, ("10 mail.inlock.ai",)),
        Record("inlock.ai", "TXT", 600, ("v=spf1 mx a:mail.inlock.ai ~all",)),
        Record("_dmarc.inlock.ai", "TXT", 600, ("v=DMARC1; p=quarantine; rua=mailto:admin@inlock.ai",)),
    }


def test_dkim_ipv6_and_alternative_domains() -> None:
    cfg = example_config(alternative_domains=["alt.inlock.ai"], public_ipv6="2001:db8::10")
    recs = desired_records(cfg, {"dkim": "v=DKIM1; k=rsa; p=AAA", "dkim2024": "v=DKIM1; k=rsa; p=BBB"})
    names = {(r.name, r.type) for r in recs}
    assert ("mail.inlock.ai", "AAAA") in names
    for domain in ("inlock.ai", "alt.inlock.ai"):
        assert (domain, "MX") in names
        assert (f"_dmarc.{domain}", "TXT") in names
        assert (f"dkim._domainkey.{domain}", "TXT") in names
        assert (f"dkim2024._domainkey.{domain}", "TXT") in names
    assert len(recs) == 2 + 2 * 5


def test_autoconfig_and_mta_sts_only_when_asked() -> None:
    cfg = example_config()
    plain = {(r.name, r.type) for r in desired_records(cfg)}
    assert not any(t in ("SRV", "CNAME") for _, t in plain)
    recs = desired_records(cfg, autoconfig=True, mta_sts_id="20250101")
    by = {(r.name, r.type): r for r in recs}
    assert by[("_imaps._tcp.inlock.ai", "SRV")].value == "10 1 993 mail.inlock.ai"
    assert by[("_submission._tcp.inlock.ai", "SRV")].value == "20 1 587 mail.inlock.ai"
    assert by[("autoconfig.inlock.ai", "CNAME")].value == "mail.inlock.ai"
    assert by[("_mta-sts.inlock.ai", "TXT")].value == "v=STSv1; id=20250101"
    # the core sets no provider's options: Cloudflare's proxied=False is its own default (its SUPPORT)
    assert all(r.provider_options == () for r in recs)


def test_dkim_txt_from_public_or_private_key_pem_or_der() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"
    pem_pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem_priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert dkim_txt_value(spki) == dkim_txt_value(pem_pub) == dkim_txt_value(pem_priv.decode()) == expected
    assert dkim_public_key_der(expected) == spki
    assert dkim_public_key_der("v=DKIM1; k=rsa; p=" + " ".join(base64.b64encode(spki).decode())) == spki
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    assert dkim_txt_value(
        ed.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).startswith("v=DKIM1; k=ed25519; p=")
