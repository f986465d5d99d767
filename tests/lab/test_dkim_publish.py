"""The dkim-publish flow on the lab: the key in the real dkim volume (through the managed host over
SSH), the records in the real Knot zone, the wait and the `p=` check against primary and secondary.

Each test works on its own mail domain `<label>.inlock.test` under its own stack name (so its own DNS
owner and its own key files), and removes both afterwards: the lab's own records and key are never
touched, so this shares the lab with the deploy tests.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from lab.dns import soa_serial
from lab.endpoints import DNS_PORT, DNS_PRIMARY, DNS_SECONDARY, ZONE
from mailu_core.config import StackConfig, load_stack_config, stack_config_from_mapping
from mailu_core.dns import dkim_public_key_der
from mailu_flows.dns.provider import plan_for
from mailu_flows.tasks.dns import dns_provider

pytestmark = pytest.mark.lab


# --- helpers (also used by test_dns_flows) ----------------------------------------------------------


def isolated_config(base: StackConfig, label: str, **dkim: Any) -> StackConfig:
    """The lab config moved to mail domain `<label>.inlock.test` (with one alternative domain) and
    stack name `<label>`, with `dns.dkim` overrides; same host, volume, blocks and nameservers."""
    data = base.model_dump(mode="json")
    domain = f"{label}.{ZONE}"
    host = f"mail.{domain}"
    data["name"] = label
    data["mailu"].update(domain=domain, hostnames=[host], alternative_domains=[f"alt.{domain}"])
    data["traefik"].update(admin_host=host, webmail_host=host)
    data["dns"]["dmarc"]["rua"] = f"mailto:admin@{domain}"
    data["dns"]["dkim"] = {"selector": "dkim", "retired_selectors": [], **dkim}
    return stack_config_from_mapping(data, source=f"test {label}")


def in_volume(cfg: StackConfig, script: str) -> str:
    """Run a shell script in a throw-away admin container with the dkim volume (the host is this machine)."""
    return subprocess.run(
        [
            *("docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh"),
            *("-v", f"{cfg.volumes.dkim}:/dkim", cfg.images.admin, "-c", script),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def mailu_owner(cfg: StackConfig) -> str:
    """`uid:gid` of the admin image's `mailu` user: admin reads DKIM keys as that user."""
    return in_volume(cfg, "echo $(id -u mailu):$(id -g mailu)").strip()


def key_fingerprint(cfg: StackConfig, selector: str) -> str | None:
    """sha256, mode and owner of the key file, or None if it does not exist."""
    path = f"/dkim/{cfg.mailu.domain}.{selector}.key"
    out = in_volume(cfg, f"[ -e {path} ] && sha256sum {path} && stat -c '%a %u:%g' {path} || true").split()
    return " ".join([out[0], *out[2:]]) if out else None


def served_txt(name: str, server: str) -> list[list[bytes]]:
    """The TXT RRset at `name` as `server` serves it authoritatively: each value as its strings."""
    q = dns.message.make_query(f"{name}.", dns.rdatatype.TXT)
    q.flags &= ~dns.flags.RD
    resp = dns.query.tcp(q, server, port=DNS_PORT, timeout=3)
    assert resp.flags & dns.flags.AA
    return [list(rd.strings) for rrset in resp.answer if rrset.rdtype == dns.rdatatype.TXT for rd in rrset]


def dkim_values(name: str, server: str = DNS_PRIMARY) -> list[str]:
    return [b"".join(s).decode() for s in served_txt(name, server) if b"".join(s).startswith(b"v=DKIM1")]


def cleanup(cfg: StackConfig) -> None:
    """Delete every record this stack owns (and its ownership entry) and its key files."""
    provider = dns_provider(cfg)
    provider.apply(plan_for(provider, [])[0])
    in_volume(cfg, f"rm -f /dkim/{cfg.mailu.domain}.*")


def publish(cfg: StackConfig, **kw: Any) -> dict[str, Any]:
    from mailu_flows.flows.dkim_publish import dkim_publish

    state = dkim_publish(config=cfg, return_state=True, lock_wait_s=900, **kw)
    assert state.is_completed(), state.message
    result: dict[str, Any] = state.result()
    return result


@pytest.fixture(scope="module")
def lab_cfg(lab: dict[str, Any], lab_dns: Any) -> StackConfig:
    """The lab config; the dkim volume and admin image exist once a deploy has run (else: run one)."""
    cfg = load_stack_config(Path(lab["stack_config"]))
    have = subprocess.run(["docker", "volume", "inspect", cfg.volumes.dkim], capture_output=True, check=False)
    image = subprocess.run(["docker", "image", "inspect", cfg.images.admin], capture_output=True, check=False)
    if have.returncode or image.returncode:
        from mailu_flows.flows.deploy import deploy

        state = deploy(config=cfg, publish_dns=False, lock_wait_s=900, return_state=True)
        assert state.is_completed(), state.message
    return cfg


@pytest.fixture
def iso(lab_cfg: StackConfig) -> Iterator[StackConfig]:
    cfg = isolated_config(lab_cfg, f"t-{secrets.token_hex(4)}")
    try:
        yield cfg
    finally:
        cleanup(cfg)


# --- tests ---------------------------------------------------------------------------------------------


def test_publish_twice_keeps_the_key_and_writes_nothing_the_second_time(iso: StackConfig) -> None:
    assert key_fingerprint(iso, "dkim") is None
    first = publish(iso)
    assert first["created"] and first["verified"] and first["problems"] == []
    owner = mailu_owner(iso)
    assert owner.endswith(":1000") and not owner.startswith("0:")
    assert (first["bits"], first["mode"], first["owner"]) == (2048, "600", owner)
    created = first["dns"]["creates"]
    assert first["dns"]["writes"] == len(created) == 9  # A, and MX/SPF/DMARC/DKIM at both domains
    fingerprint = key_fingerprint(iso, "dkim")
    assert fingerprint is not None and fingerprint.endswith(f"600 {owner}")
    serial = soa_serial(DNS_PRIMARY)

    second = publish(iso)
    assert not second["created"] and second["verified"]
    assert key_fingerprint(iso, "dkim") == fingerprint  # same file, byte for byte
    assert second["txt"] == first["txt"]
    assert second["dns"]["writes"] == 0 and second["dns"]["creates"] == []
    assert soa_serial(DNS_PRIMARY) == serial  # no UPDATE reached the zone
    # the alternative domain publishes the primary's key under the same selector
    for domain in iso.mail_domains:
        for server in (DNS_PRIMARY, DNS_SECONDARY):
            assert dkim_values(f"dkim._domainkey.{domain}", server) == [first["txt"]]


def test_2048_bit_dkim_txt_round_trips_without_drift(iso: StackConfig) -> None:
    result = publish(iso)
    name = f"dkim._domainkey.{iso.mailu.domain}"
    [strings] = [s for s in served_txt(name, DNS_PRIMARY) if s[0].startswith(b"v=DKIM1")]
    assert len(strings) >= 2 and all(len(s) <= 255 for s in strings)  # split into character-strings
    assert b"".join(strings).decode() == result["txt"]
    # the p= served is the public half of the file on disk, as the host's openssl derives it
    pub_der = in_volume(
        iso, f"openssl pkey -in /dkim/{iso.mailu.domain}.dkim.key -pubout -outform DER | base64 -w0"
    )
    assert dkim_public_key_der(result["txt"]) == base64.b64decode(pub_der)
    # and the zone, read back through the provider, shows no change
    from mailu_flows.tasks.dns import desired_for

    plan, _ = plan_for(dns_provider(iso), desired_for(iso, {"dkim": result["txt"]}))
    assert plan.empty, plan.render_text()


def test_rotation_keeps_both_selectors_in_grace_and_removes_the_old_after(iso: StackConfig) -> None:
    old = publish(iso)  # selector "dkim"
    old_fp = key_fingerprint(iso, "dkim")
    today = datetime.now(UTC).date()
    label = iso.name

    rotated = isolated_config(
        iso,
        label,
        selector="dkim2",
        retired_selectors=[{"selector": "dkim", "remove_after": str(today + timedelta(days=30))}],
    )
    new = publish(rotated)
    assert new["created"] and new["selector"] == "dkim2" and new["txt"] != old["txt"]
    assert new["published_selectors"] == ["dkim", "dkim2"] and new["removed_selectors"] == []
    assert key_fingerprint(iso, "dkim") == old_fp  # the old key is left alone
    for domain in iso.mail_domains:
        assert dkim_values(f"dkim._domainkey.{domain}") == [old["txt"]]
        assert dkim_values(f"dkim2._domainkey.{domain}") == [new["txt"]]
        assert dkim_values(f"dkim._domainkey.{domain}", DNS_SECONDARY) == [old["txt"]]

    expired = isolated_config(
        iso,
        label,
        selector="dkim2",
        retired_selectors=[{"selector": "dkim", "remove_after": str(today - timedelta(days=1))}],
    )
    after = publish(expired)
    assert not after["created"] and after["removed_selectors"] == ["dkim"]
    assert after["published_selectors"] == ["dkim2"]
    assert len(after["dns"]["deletes"]) == 2 and after["dns"]["creates"] == []
    for domain in iso.mail_domains:
        assert dkim_values(f"dkim._domainkey.{domain}") == []
        assert dkim_values(f"dkim2._domainkey.{domain}") == [new["txt"]]


def test_rotate_flag_replaces_the_key_and_keeps_the_old_file(iso: StackConfig) -> None:
    first = publish(iso)
    before = key_fingerprint(iso, "dkim")
    rotated = publish(iso, rotate=True)
    assert rotated["created"] and rotated["rotated_from"] and rotated["txt"] != first["txt"]
    assert key_fingerprint(iso, "dkim") != before
    kept = in_volume(iso, f"sha256sum {rotated['rotated_from']}").split()[0]
    assert before is not None and before.startswith(kept)
    assert dkim_values(f"dkim._domainkey.{iso.mailu.domain}", DNS_SECONDARY) == [rotated["txt"]]


def test_publish_through_the_cloudflare_emulator_converges_too(iso: StackConfig, cf_base_url: str) -> None:
    """Same flow, provider `cloudflare` (block `lab-cloudflare`, the emulator writing into the Knot zone)."""
    data = iso.model_dump(mode="json")
    data["dns"]["provider"] = "cloudflare"
    data["blocks"]["dns_provider"] = "lab-cloudflare"
    cf = stack_config_from_mapping(data, source="test cloudflare")
    try:
        first = publish(cf)
        second = publish(cf)
    finally:
        cleanup(cf)  # the Cloudflare-owned records; `iso` then removes the key files
    assert first["created"] and first["dns"]["writes"] == 9 and first["verified"]
    assert not second["created"] and second["dns"]["writes"] == 0 and second["verified"]
    assert second["txt"] == first["txt"]
