"""The DNS flows' teardown decision (mailu_flows.dns.teardown) on a FakeHost: is a rollback teardown in
effect, and which records does a torn-down stack keep."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict

import pytest

from mailu_core.dns import desired_records
from mailu_flows.deploy.releases import Release, UnreadableRelease
from mailu_flows.dns.teardown import torn_down_since, without_mail_routing
from mailu_flows.fake_host import FakeHost
from mailu_flows.rollback import Journal
from tests.core.dns.conftest import example_config

CFG = example_config()
PATHS = CFG.paths


def release(rid: str, status: str = "good") -> Release:
    return Release(rid, "2026-11-29T00:00:00Z", "0" * 64, {}, {}, status)  # type: ignore[arg-type]


def host_with(releases: list[Release], journal: Journal | None) -> FakeHost:
    """A host whose stack has its own releases directory with `releases`, and `journal` if any."""
    host = FakeHost()
    host.on(["test", "-d", PATHS.releases_dir])
    encoded = {r.id: base64.b64encode(json.dumps(asdict(r)).encode()).decode() for r in releases}
    listing = "".join(f"{PATHS.releases_dir}/{rid}/release.json {b64}\n" for rid, b64 in encoded.items())
    host.on(re.compile(r"^for f in "), stdout=listing)
    if journal is not None:
        host.files[PATHS.journal_file] = json.dumps(asdict(journal)).encode()
    return host


def teardown(finished: str | None) -> Journal:
    return Journal("teardown", "20261129T000000000000Z", None, None, "run-1", "2026-11-29T01:00:00Z",
                   finished=finished)  # fmt: skip


def test_a_finished_teardown_with_no_good_release_since_is_in_effect() -> None:
    host = host_with([release("20261128T120000000000Z")], teardown("2026-11-29T01:01:01Z"))
    assert torn_down_since(host, CFG) == "2026-11-29T01:01:01Z"
    # read only: the decision never writes to the host
    assert not [c for c in host.calls if c.kind in ("write", "mkdir")]


@pytest.mark.parametrize(
    ("releases", "journal"),
    [
        ([release("20261129T020000000000Z")], teardown("2026-11-29T01:01:01Z")),  # deployed since
        ([], teardown(None)),  # the teardown did not finish
        ([], None),  # no rollback ever
        ([], Journal("previous-release", "a", "b", None, "run", "2026-11-29T01:00:00Z",
                     finished="2026-11-29T01:01:01Z")),
    ],
    ids=["good-release-after", "unfinished", "no-journal", "not-a-teardown"],
)  # fmt: skip
def test_no_teardown_in_effect(releases: list[Release], journal: Journal | None) -> None:
    assert torn_down_since(host_with(releases, journal), CFG) is None


def test_a_pending_release_after_the_teardown_does_not_end_it() -> None:
    host = host_with([release("20261129T020000000000Z", "failed")], teardown("2026-11-29T01:01:01Z"))
    assert torn_down_since(host, CFG) == "2026-11-29T01:01:01Z"


def test_an_unreadable_release_record_is_named_not_guessed_around() -> None:
    host = host_with([], teardown("2026-11-29T01:01:01Z"))
    host.on(re.compile(r"^for f in "), stdout=f"{PATHS.releases_dir}/x/release.json bm90IGpzb24=\n")
    with pytest.raises(UnreadableRelease, match=r"x/release\.json"):
        torn_down_since(host, CFG)


def test_a_torn_down_stack_keeps_everything_but_mail_routing() -> None:
    cfg = example_config(public_ipv6="2001:db8::10", alternative_domains=["alt.inlock.ai"])
    records = desired_records(cfg, {"dkim": "v=DKIM1; k=rsa; p=AAAA"}, autoconfig=True)
    kept = without_mail_routing(cfg, records)
    dropped = {(r.name, r.type) for r in records} - {(r.name, r.type) for r in kept}
    assert dropped == {
        (cfg.hostname, "A"),
        (cfg.hostname, "AAAA"),
        *((d, "MX") for d in cfg.mail_domains),
    }
    assert any(r.type == "TXT" and r.name.startswith("dkim._domainkey.") for r in kept)
