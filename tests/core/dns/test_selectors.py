"""Which DKIM selectors a publish carries (mailu_flows.dns.selectors), decided on a FakeHost (the keys in
the dkim volume) and the in-memory provider (what the zone serves)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailu_core.config import StackConfig, stack_config_from_mapping
from mailu_core.dns import Record, dkim_txt_value
from mailu_flows.dns.memory import MemoryProvider
from mailu_flows.dns.provider import Provider
from mailu_flows.dns.selectors import dkim_selectors
from mailu_flows.fake_host import FakeHost
from tests.core.dns.conftest import EXAMPLE


def config(retired: dict[str, int]) -> StackConfig:
    """The example config with retired selectors whose grace ends `days` from today (negative: past)."""
    data = yaml.safe_load(EXAMPLE.read_text())
    today = datetime.now(UTC).date()
    data["dns"]["dkim"]["retired_selectors"] = [
        {"selector": s, "remove_after": str(today + timedelta(days=d))} for s, d in retired.items()
    ]
    return stack_config_from_mapping(data, source="test")


@pytest.fixture(scope="module")
def pems() -> dict[str, bytes]:
    out = {}
    for sel in ("dkim", "dkim2025"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        out[sel] = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return out


def keys_on_host(present: dict[str, bytes], asked: list[str]) -> str:
    """What the key-reading script prints: one block per selector asked, the public PEM if present."""
    blocks = []
    for sel in asked:
        if sel in present:
            blocks.append(f"===mailu-flows-dkim {sel} present 600 1000:1000===\n{present[sel].decode()}")
        else:
            blocks.append(f"===mailu-flows-dkim {sel} missing ===\n")
    return "".join(blocks)


def host_with(present: dict[str, bytes], asked: list[str]) -> FakeHost:
    host = FakeHost()
    host.on(re.compile(r"docker inspect .*-admin-1"), stdout=keys_on_host(present, asked))
    return host


def no_provider() -> Provider:
    raise AssertionError("the zone was asked although every key is on the host")


def test_current_and_retired_keys_on_the_host_need_no_zone(pems: dict[str, bytes]) -> None:
    cfg = config({"dkim2025": 10})
    got = dkim_selectors(cfg, host_with(pems, ["dkim", "dkim2025"]), None, no_provider)
    assert got.txt == {s: dkim_txt_value(p) for s, p in pems.items()}
    assert got.current is not None and got.current.selector == "dkim" and got.from_zone == ()


def test_a_retired_key_gone_from_the_host_keeps_what_the_zone_serves(pems: dict[str, bytes]) -> None:
    cfg = config({"dkim2025": 10})
    zone = MemoryProvider(cfg.dns.zone, "mailu-flows-test")
    served = Record(
        f"dkim2025._domainkey.{cfg.mailu.domain}", "TXT", 600, (dkim_txt_value(pems["dkim2025"]),)
    )
    zone.state.add_foreign(served)
    got = dkim_selectors(cfg, host_with({"dkim": pems["dkim"]}, ["dkim", "dkim2025"]), None, lambda: zone)
    assert got.txt["dkim2025"] == served.value and got.from_zone == ("dkim2025",)
    assert any("keeping the TXT the zone serves" in n for n in got.notes)


def test_a_retired_key_gone_everywhere_is_dropped_with_a_note(pems: dict[str, bytes]) -> None:
    cfg = config({"dkim2025": 10})
    empty = MemoryProvider(cfg.dns.zone, "mailu-flows-test")
    got = dkim_selectors(cfg, host_with({"dkim": pems["dkim"]}, ["dkim", "dkim2025"]), None, lambda: empty)
    assert set(got.txt) == {"dkim"} and got.lost == ("dkim2025",)


def test_a_selector_past_its_grace_is_not_read_and_its_removal_is_noted(pems: dict[str, bytes]) -> None:
    cfg = config({"dkim2025": -1})
    host = host_with(pems, ["dkim"])
    got = dkim_selectors(cfg, host, None, no_provider)
    assert set(got.txt) == {"dkim"} and got.expired == ("dkim2025",)
    assert "dkim2025" not in host.commands()[0]  # the past selector's key is not even read
    assert any("past its grace date" in n for n in got.notes)


def test_no_current_key_yet_is_a_note_not_an_error() -> None:
    got = dkim_selectors(config({}), host_with({}, ["dkim"]), None, no_provider)
    assert got.txt == {} and got.current is None and "dkim-publish generates it" in got.notes[0]
