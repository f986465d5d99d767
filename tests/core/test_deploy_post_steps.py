"""The deploy's steps after a good release (tasks/post_deploy.py), without a host: the accounts step as
the deploy runs it (never forced, no write when nothing changed) against the in-memory Mailu API of
test_accounts, and the canary step's decisions (skipped, passed, failed after a new release: back to
the previous one; failed when nothing changed: nothing to return to)."""

from __future__ import annotations

import copy
import inspect

import pytest

from lab.stack_config import lab_stack_config, with_canary
from mailu_core.accounts import TooManyDeletes
from mailu_core.canary import CanaryStep
from mailu_core.config import StackConfig
from mailu_flows.canary import CanaryReport
from mailu_flows.tasks.post_deploy import (
    CanaryOutcome,
    DeployCanaryFailed,
    accounts_failure,
    apply_accounts,
    canary_after_release,
    canary_skip_reason,
)
from tests.core.render.test_render import lab_images
from tests.core.test_accounts import Passwords, changed, config, lab_mailu

# --- accounts -----------------------------------------------------------------------------------------


def test_the_deploys_accounts_step_applies_then_makes_no_write_and_says_so() -> None:
    cfg, fake, store = config(), lab_mailu(), Passwords()
    lines: list[str] = []
    first = apply_accounts(cfg, fake, store, lines.append)
    assert first["writes"] > 0 and first["writes"] == len(fake.writes)
    assert "user bo@one.example" in first["creates"]
    writes = len(fake.writes)
    again = apply_accounts(cfg, fake, store, lines.append)
    assert len(fake.writes) == writes, "a second deploy wrote to Mailu's API"
    assert again["writes"] == 0 and again["creates"] == again["updates"] == again["deletes"] == []
    assert again["summary"].startswith("no changes") and "no API write" in again["summary"]
    assert lines[-1] == f"accounts: {again['summary']}"


def test_the_deploy_never_forces_deletes_beyond_the_limit() -> None:
    cfg, fake, store = config(), lab_mailu(), Passwords()
    apply_accounts(cfg, fake, store, lambda _m: None)
    emptied = config(changed(aliases=[], users=[], domains=[], relays=[]))
    before = copy.deepcopy(fake.read())
    with pytest.raises(TooManyDeletes) as caught:
        apply_accounts(emptied, fake, store, lambda _m: None)
    assert fake.read() == before
    error = accounts_failure("20260101T000000000000Z", caught.value)
    text = str(error)
    assert "release 20260101T000000000000Z is deployed and healthy and stays in place" in text
    assert "too many deletes" in text and "force" in text
    assert "(unchanged)" in str(accounts_failure(None, caught.value))


def test_the_deploy_hands_the_plan_to_its_artifact_before_writing() -> None:
    cfg, fake, store = config(), lab_mailu(), Passwords()
    seen: list[int] = []
    apply_accounts(cfg, fake, store, lambda _m: None, on_plan=lambda plan: seen.append(len(fake.writes)))
    assert seen == [0] and len(fake.writes) > 0


# --- canary -------------------------------------------------------------------------------------------


def _canary_cfg() -> StackConfig:
    return with_canary(lab_stack_config(lab_images(), "/srv/apps"))


def _report(ok: bool) -> CanaryReport:
    report = CanaryReport(
        [CanaryStep("submit", True, "canary@inlock.test on 587 (STARTTLS)", 0.2)], {"outbound": 1.5}
    )
    if not ok:
        report.steps.append(CanaryStep("fetch over IMAPS", False, "not in the INBOX after 120s"))
        report.latency_s.clear()
    return report


class Calls:
    """The step's collaborators, recording what they were asked."""

    def __init__(
        self, ok: bool, back: str | Exception = "returned to release A, which is healthy again"
    ) -> None:
        self.ok, self.back = ok, back
        self.round_trips = 0
        self.went_back = 0
        self.lines: list[str] = []

    def round_trip(self) -> CanaryReport:
        self.round_trips += 1
        return _report(self.ok)

    def go_back(self) -> str:
        self.went_back += 1
        if isinstance(self.back, Exception):
            raise self.back
        return self.back

    def run(
        self, cfg: StackConfig, *, enabled: bool = True, release: str | None = "B", changed: bool = True
    ) -> CanaryOutcome:
        return canary_after_release(
            cfg,
            enabled=enabled,
            release=release,
            changed=changed,
            round_trip=self.round_trip,
            go_back=self.go_back,
            log=self.lines.append,
        )


def test_the_canary_is_skipped_when_off_or_not_configured() -> None:
    base = lab_stack_config(lab_images(), "/srv/apps")
    assert base.blocks.canary_password is None
    assert canary_skip_reason(base, True) == "not configured (blocks.canary_password is not set)"
    assert canary_skip_reason(_canary_cfg(), False) == "off (deploy parameter canary: false)"
    assert canary_skip_reason(_canary_cfg(), True) is None
    for cfg, enabled in ((base, True), (_canary_cfg(), False)):
        calls = Calls(ok=True)
        outcome = calls.run(cfg, enabled=enabled)
        assert outcome.status == "skipped" and calls.round_trips == 0 and calls.went_back == 0


def test_a_passing_canary_runs_once_and_is_in_the_result() -> None:
    calls = Calls(ok=True)
    outcome = calls.run(_canary_cfg())
    assert calls.round_trips == 1 and calls.went_back == 0
    assert outcome.as_dict() == {
        "status": "ok",
        "detail": "mail delivered: outbound 1.5s",
        "steps": [_report(True).steps[0].row()],
        "latency_s": {"outbound": 1.5},
    }


def test_a_failed_canary_after_a_new_release_returns_to_the_previous_one_and_fails() -> None:
    calls = Calls(ok=False)
    with pytest.raises(DeployCanaryFailed) as caught:
        calls.run(_canary_cfg(), release="B", changed=True)
    assert calls.round_trips == 1 and calls.went_back == 1
    assert str(caught.value) == (
        "deploy failed: the mail canary after release B failed: fetch over IMAPS: not in the INBOX after "
        "120s; returned to release A, which is healthy again"
    )


def test_a_failed_return_is_added_to_the_canarys_reason() -> None:
    calls = Calls(ok=False, back=RuntimeError("compose up: container front is unhealthy"))
    with pytest.raises(DeployCanaryFailed) as caught:
        calls.run(_canary_cfg())
    text = str(caught.value)
    assert "fetch over IMAPS: not in the INBOX" in text
    assert "returning to the previous good release ALSO failed: compose up: container front" in text


def test_a_failed_canary_when_nothing_changed_fails_without_returning() -> None:
    calls = Calls(ok=False)
    with pytest.raises(DeployCanaryFailed) as caught:
        calls.run(_canary_cfg(), release="A", changed=False)
    assert calls.went_back == 0
    assert "this deploy changed nothing (release A)" in str(caught.value)


def test_a_canary_that_cannot_run_fails_the_deploy_and_keeps_the_release() -> None:
    calls = Calls(ok=True)

    def broken() -> CanaryReport:
        raise LookupError("no Secret block named 'lab-canary-password'")

    with pytest.raises(DeployCanaryFailed) as caught:
        canary_after_release(
            _canary_cfg(), enabled=True, release="B", changed=True, round_trip=broken,
            go_back=calls.go_back, log=calls.lines.append,
        )  # fmt: skip
    assert calls.went_back == 0
    assert str(caught.value) == (
        "the mail canary could not run: LookupError: no Secret block named 'lab-canary-password'; "
        "release B stays (only a round trip that ran and failed undoes a release)"
    )


def test_the_deploy_flow_has_the_canary_parameter_on_by_default_with_help() -> None:
    from mailu_flows.flows.deploy import deploy

    parameter = inspect.signature(deploy.fn).parameters["canary"]
    assert parameter.default is True
    schema = deploy.parameters.model_dump()["properties"]["canary"]
    assert "mail-canary" in schema["description"] and schema["type"] == "boolean"
