"""The mail canary's judgement of received messages and its metrics, on headers as Mailu 2024.06
writes them (captured from the lab's run of Mailu's own images)."""

from __future__ import annotations

import email

import pytest

from lab.stack_config import lab_stack_config, with_canary
from mailu_core.canary import (
    CANARY_HEADER,
    aligned,
    authentication_results,
    judge_inbound,
    judge_outbound,
    probe_message,
    rspamd_verdict,
)
from mailu_core.config import ConfigError, stack_config_from_mapping
from mailu_flows.canary import CanaryReport
from mailu_flows.flows.canary import canary_metrics
from tests.core.render.test_render import lab_images

# The headers of a message submitted on 587 and delivered to the same mailbox (lab, Mailu's images).
OUTBOUND = b"""Return-Path: <admin@inlock.test>
Received: from mail.inlock.test ([172.30.5.5])
\tby mail.inlock.test with LMTP
\tfor <admin@inlock.test>; Mon, 30 Nov 2026 19:57:05 +0000
From: admin@inlock.test
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=inlock.test; s=dkim;
\tt=1796068625;
\th=from:from:subject:message-id:to;
\tbh=ytTefQx1BDxrXYbS4RlBv47DYioKOUpfpkzQV/NecQw=;
\tb=Rz5QJKDuOYbrumIOcviKH1TyMm489lPLQ9mx/mp7yziAPLcCSVhYCgrUVjrQJIUOhx1edb
Authentication-Results: mail.inlock.test;
\tauth=pass smtp.mailfrom=admin@inlock.test
To: admin@inlock.test
Subject: lab probe 0ec225e3395c
X-Spamd-Bar: /

probe
"""

INBOUND = b"""Return-Path: <canary-probe@example.org>
From: canary-probe@example.org
To: canary@inlock.test
Authentication-Results: evil.example.net; spf=pass; dmarc=pass
Authentication-Results: mail.inlock.test;
\tdkim=none;
\tspf=pass (mail.inlock.test: domain of canary-probe@example.org designates 172.30.1.64 as permitted
 sender) smtp.mailfrom=canary-probe@example.org;
\tdmarc=none
X-Spamd-Bar: +

probe
"""


def test_an_outbound_message_signed_and_aligned_passes() -> None:
    steps = judge_outbound(OUTBOUND, True, "verified")
    assert [(s.step, s.ok) for s in steps] == [
        ("DKIM signature verifies against the published key", True),
        ("DKIM aligned with From (DMARC)", True),
        ("envelope sender aligned with From (SPF)", True),
        ("rspamd verdict", True),
    ]


def test_a_dkim_key_lookup_that_times_out_is_a_failed_check_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dkim
    import dns.resolver
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    import mailu_flows.canary as canary

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    message = probe_message("canary@inlock.test", "canary@inlock.test", "0ec225e3", "outbound")
    signed = dkim.sign(message, b"dkim", b"inlock.test", key) + message
    asked: list[bytes] = []

    def timing_out(cfg: object) -> object:
        def lookup(name: bytes, timeout: int = 5) -> bytes:
            asked.append(name)
            raise dns.resolver.LifetimeTimeout(timeout=5.0, errors=[])  # type: ignore[no-untyped-call]

        return lookup

    monkeypatch.setattr(canary, "dkim_dns_lookup", timing_out)
    cfg = with_canary(lab_stack_config(lab_images(), "/srv/apps"))
    verified, why = canary._dkim_check(signed, cfg)
    assert asked == [b"dkim._domainkey.inlock.test."]
    assert not verified
    assert why.startswith("the DKIM key lookup failed: LifetimeTimeout"), why


def test_an_unsigned_or_misaligned_outbound_message_fails_with_the_reason() -> None:
    unsigned = OUTBOUND.replace(b"DKIM-Signature:", b"X-Old-Signature:")
    steps = {s.step: s for s in judge_outbound(unsigned, False, "no signature")}
    assert not steps["DKIM aligned with From (DMARC)"].ok
    assert steps["DKIM aligned with From (DMARC)"].detail == "no DKIM-Signature"
    foreign = OUTBOUND.replace(b"d=inlock.test", b"d=other.example").replace(
        b"Return-Path: <admin@inlock.test>", b"Return-Path: <bounce@other.example>"
    )
    steps = {s.step: s for s in judge_outbound(foreign, True, "verified")}
    assert (
        not steps["DKIM aligned with From (DMARC)"].ok
        and "d=other.example" in steps["DKIM aligned with From (DMARC)"].detail
    )
    assert not steps["envelope sender aligned with From (SPF)"].ok


def test_inbound_results_are_read_only_from_mailus_own_header() -> None:
    msg = email.message_from_bytes(INBOUND)
    assert authentication_results(msg, "mail.inlock.test") == {"dkim": "none", "spf": "pass", "dmarc": "none"}
    assert [(s.step, s.ok) for s in judge_inbound(INBOUND, "mail.inlock.test")] == [
        ("inbound SPF (rspamd)", True),
        ("inbound DMARC (rspamd)", True),
        ("rspamd verdict", True),
    ]
    # a sender's own forged "spf=pass" does not count when Mailu's header says otherwise
    failing = INBOUND.replace(b"\tspf=pass (mail", b"\tspf=fail (mail").replace(b"dmarc=none", b"dmarc=fail")
    verdicts = {s.step: s.ok for s in judge_inbound(failing, "mail.inlock.test")}
    assert verdicts == {
        "inbound SPF (rspamd)": False,
        "inbound DMARC (rspamd)": False,
        "rspamd verdict": True,
    }


@pytest.mark.parametrize(
    ("bar", "ok"), [("/", True), ("++++", True), ("+++++", False), ("---", True), (None, False)]
)
def test_rspamds_bar_is_the_verdict(bar: str | None, ok: bool) -> None:
    msg = email.message.Message()
    if bar is not None:
        msg["X-Spamd-Bar"] = bar
    assert rspamd_verdict(msg).ok is ok


@pytest.mark.parametrize(
    ("identifier", "domain", "ok"),
    [
        ("inlock.test", "inlock.test", True),
        ("mail.inlock.test", "inlock.test", True),
        ("inlock.test.", "INLOCK.test", True),
        ("notinlock.test", "inlock.test", False),
        ("inlock.test.evil", "inlock.test", False),
    ],
)
def test_alignment(identifier: str, domain: str, ok: bool) -> None:
    assert aligned(identifier, domain) is ok


def test_a_probe_carries_its_tag_in_the_subject_and_the_canary_header() -> None:
    raw = probe_message("canary@inlock.test", "canary@inlock.test", "feedc0de", "outbound")
    msg = email.message_from_bytes(raw)
    assert msg[CANARY_HEADER] == "outbound feedc0de" and "feedc0de" in str(msg["Subject"])
    assert str(msg["Message-ID"]).endswith("@inlock.test>") and b"\r\n" in raw


def test_the_metrics_name_the_stack_and_each_direction() -> None:
    cfg = with_canary(lab_stack_config(lab_images(), "/srv/apps"))
    report = CanaryReport(latency_s={"outbound": 1.5, "inbound": 3.25})
    text = canary_metrics(cfg, report, 1.7e9)
    assert 'mailu_canary_last_success_timestamp_seconds{stack="lab"} 1700000000' in text
    assert 'mailu_canary_delivery_latency_seconds{stack="lab",direction="inbound"} 3.25' in text


def test_a_canary_mailbox_outside_the_mail_domains_is_refused() -> None:
    data = with_canary(lab_stack_config(lab_images(), "/srv/apps")).model_dump(mode="json")
    data["canary"]["mailbox"] = "canary@elsewhere.example"
    with pytest.raises(ConfigError, match=r"canary\.mailbox.*not in a mail domain"):
        stack_config_from_mapping(data)


def test_the_canary_mailbox_must_be_an_accounts_user_with_the_canary_block() -> None:
    """The canary logs in with the password accounts-as-code set from blocks.canary_password."""
    data = with_canary(lab_stack_config(lab_images(), "/srv/apps")).model_dump(mode="json")
    data["accounts"]["users"] = []
    with pytest.raises(ConfigError, match=r"canary\.mailbox: 'canary@inlock\.test' is not a user"):
        stack_config_from_mapping(data)
    data["accounts"]["users"] = [{"address": "canary@inlock.test", "password_block": "someone-else"}]
    with pytest.raises(ConfigError, match=r"blocks\.canary_password: accounts\.users declares"):
        stack_config_from_mapping(data)
