"""DKIM rotation without the lab: which retired selectors stay published, and what the plan does with
them; the key format we generate; reading the host's answer about key files."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailu_core.config import ConfigError, StackConfig, stack_config_from_mapping
from mailu_core.dns import dkim_public_key_der, dkim_txt_value, plan
from mailu_flows import redact
from mailu_flows.dns.dkim import _parse, generate_private_key_pem, key_path, rotation_state
from mailu_flows.tasks.dns import desired_for

from .dns.conftest import EXAMPLE


def config(selector: str = "dkim2", retired: list[dict[str, Any]] | None = None, **dns: Any) -> StackConfig:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["dns"]["dkim"] = {"selector": selector, "retired_selectors": retired or []}
    data["dns"].update(dns)
    return stack_config_from_mapping(data, source="test")


def public_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("today", "keep", "expired"),
    [
        (date(2026, 11, 30), ("dkim",), ()),  # before the date: kept
        (date(2026, 12, 1), ("dkim",), ()),  # on the date itself: still kept
        (date(2026, 12, 2), (), ("dkim",)),  # the day after: removed
    ],
)
def test_grace_period_is_inclusive_of_its_date(
    today: date, keep: tuple[str, ...], expired: tuple[str, ...]
) -> None:
    cfg = config(retired=[{"selector": "dkim", "remove_after": "2026-12-01"}])
    state = rotation_state(cfg.dns.dkim, today)
    assert (state.keep, state.expired) == (keep, expired)


def test_several_retired_selectors_are_sorted_out_independently() -> None:
    cfg = config(
        "k3",
        retired=[
            {"selector": "k1", "remove_after": "2026-01-31"},
            {"selector": "k2", "remove_after": "2027-01-31"},
        ],
    )
    state = rotation_state(cfg.dns.dkim, date(2026, 6, 1))
    assert state.keep == ("k2",) and state.expired == ("k1",)
    assert rotation_state(config().dns.dkim).keep == ()  # nothing retired: nothing kept


def test_the_current_selector_cannot_also_be_retired() -> None:
    with pytest.raises(ConfigError, match="current selector"):
        config("dkim", retired=[{"selector": "dkim", "remove_after": "2030-01-01"}])


def test_rotation_publishes_both_then_removes_the_old_one() -> None:
    """During the grace period both selectors' TXT are desired; after it, the plan deletes ours only."""
    cfg = config(retired=[{"selector": "dkim", "remove_after": "2026-12-01"}])
    old, new = dkim_txt_value(public_pem()), dkim_txt_value(public_pem())
    during = desired_for(cfg, {"dkim2": new, "dkim": old})
    names = {r.name for r in during if r.type == "TXT" and "_domainkey" in r.name}
    assert names == {f"dkim._domainkey.{cfg.mailu.domain}", f"dkim2._domainkey.{cfg.mailu.domain}"}

    # after the date the old selector is simply no longer desired: owned -> deleted, nothing else moves
    state = rotation_state(cfg.dns.dkim, date(2027, 1, 1))
    assert state.expired == ("dkim",)
    after = desired_for(cfg, {"dkim2": new})
    p = plan(after, during, during, zone=cfg.dns.zone)
    assert [(c.kind, c.record.name) for c in p.changes] == [("delete", f"dkim._domainkey.{cfg.mailu.domain}")]
    # a foreign record at the old name (not ours) is never deleted
    foreign = plan(after, during, [r for r in during if not r.name.startswith("dkim._")], zone=cfg.dns.zone)
    assert foreign.empty


def test_config_options_reach_the_desired_records() -> None:
    cfg = config(autoconfig=True, mta_sts_id="20261129")
    types = {(r.name.split(".")[0], r.type) for r in desired_for(cfg, None)}
    assert ("autoconfig", "CNAME") in types and ("_mta-sts", "TXT") in types
    assert cfg.dns.max_change_fraction == 0.3
    with pytest.raises(ConfigError):
        config(mta_sts_id="has spaces")


def test_generated_key_is_rsa_pkcs8_of_the_asked_size_and_masked_in_logs() -> None:
    pem = generate_private_key_pem(2048)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    body_line = pem.decode().splitlines()[5]
    assert redact.redact(f"oops {body_line}") == "oops ********"
    # the TXT derived from the private key carries exactly its public half
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert dkim_public_key_der(dkim_txt_value(pem)) == der


def test_host_answer_is_parsed_per_selector() -> None:
    pub = public_pem().decode()
    out = (
        f"===mailu-flows-dkim dkim present 600 0:0===\n{pub}"
        "===mailu-flows-dkim old missing ===\n"
        f"===mailu-flows-dkim new created 600 0:0===\n{pub}"
    )
    found = _parse("inlock.test", out)
    assert found["old"] is None
    cur, new = found["dkim"], found["new"]
    assert cur is not None and new is not None
    assert (cur.mode, cur.owner, cur.created, cur.bits) == ("600", "0:0", False, 2048)
    assert new.created and new.path == key_path("inlock.test", "new") == "/dkim/inlock.test.new.key"
