"""The wait for an ACME flavor's first certificate, on a scripted host and a fake clock: front is restarted
so that Mailu's certbot retries, restarted again once the certificate exists, and the deadline names the
setting and what to check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailu_core.config import StackConfig, load_stack_config, stack_config_from_mapping
from mailu_flows.deploy.certificates import (
    RETRY_EVERY_S,
    CertificateNotIssued,
    plan_note,
    uses_acme,
    wait_for_certificate,
)
from mailu_flows.remote import CommandResult

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "inlock.ai.yaml"


def acme_cfg(wait_s: int = 300, flavor: str = "letsencrypt") -> StackConfig:
    data = load_stack_config(EXAMPLE).model_dump(mode="json")
    data["mailu"]["tls_flavor"] = flavor
    data["mailu"]["certificate_wait_s"] = wait_s
    data["host"]["certs_dir"] = None
    return stack_config_from_mapping(data, source="test")


class ScriptedHost:
    """Answers the certificate probe (a `docker run … test -s …`) from a schedule on the fake clock."""

    def __init__(self, clock: list[float], issued_at: float | None) -> None:
        self.clock, self.issued_at = clock, issued_at
        self.commands: list[str] = []

    def run(self, command: str, **_: Any) -> CommandResult:
        self.commands.append(command)
        present = self.issued_at is not None and self.clock[0] >= self.issued_at
        return CommandResult(command, 0 if present else 1, b"", b"")


def _run(cfg: StackConfig, issued_at: float | None) -> tuple[list[tuple[str, ...]], str | Exception]:
    clock = [0.0]
    host = ScriptedHost(clock, issued_at)
    calls: list[tuple[str, ...]] = []

    def compose(*args: str, timeout: float = 0) -> str:
        calls.append(args)
        return "front  | certbot: Some challenges have failed.\n" if args[0] == "logs" else ""

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    try:
        out: str | Exception = wait_for_certificate(
            host,  # type: ignore[arg-type]  # the two calls it makes are scripted
            cfg,
            compose,
            clock=lambda: clock[0],
            sleep=sleep,
        )
    except CertificateNotIssued as exc:
        out = exc
    for command in host.commands:  # no network, the certificates mounted read-only
        assert "--network none" in command
        assert command.split(",target=/certs", 1)[1].startswith(",readonly")
    return calls, out


def test_a_certificate_already_there_needs_no_restart() -> None:
    calls, out = _run(acme_cfg(), issued_at=0.0)
    assert (calls, out) == ([], "certificate in place")


def test_front_is_restarted_for_certbot_then_again_for_dovecot() -> None:
    calls, out = _run(acme_cfg(), issued_at=30.0)
    assert calls[0] == ("restart", "front")
    assert calls[1] == ("restart", "front")
    assert calls[2][0] == "up" and calls[2][-1] == "front" and "--wait" in calls[2]
    assert isinstance(out, str) and out.startswith("certificate issued after 30 s")


def test_certbot_gets_another_chance_every_retry_period() -> None:
    calls, out = _run(acme_cfg(), issued_at=RETRY_EVERY_S * 2 + 10)
    restarts = [c for c in calls if c == ("restart", "front")]
    assert len(restarts) == 3 + 1  # at 0, 120 and 240 s, then once after issuance
    assert isinstance(out, str)


def test_the_deadline_names_the_setting_the_checks_and_fronts_log() -> None:
    calls, out = _run(acme_cfg(wait_s=300), issued_at=None)
    assert isinstance(out, CertificateNotIssued)
    text = str(out)
    assert "within 300 s (mailu.certificate_wait_s)" in text
    assert "A records" in text and "port 80" in text and "release stays" in text
    assert "Some challenges have failed" in text
    assert calls[-1][0] == "logs"


def test_only_acme_flavors_wait_and_the_plan_says_until_when() -> None:
    assert uses_acme(acme_cfg()) and uses_acme(acme_cfg(flavor="mail-letsencrypt"))
    assert not uses_acme(acme_cfg(flavor="mail")) and not uses_acme(acme_cfg(flavor="cert"))
    note = plan_note(acme_cfg(wait_s=600))
    assert "600 s" in note and "HTTP-01" in note and "/.well-known/acme-challenge/" in note


@pytest.mark.parametrize("wait_s", [59, 86401])
def test_the_wait_is_bounded(wait_s: int) -> None:
    with pytest.raises(ValueError, match="certificate_wait_s"):
        acme_cfg(wait_s)
