"""A flow command handing its run to the stack's deployment: which fields of the file differ from the
stack's block (named, so the refusal says what to push or pull), and the watcher that prints the run's
logs (every line once, past the server's page size) and says when nobody picks the run up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest

from mailu_core.config import differing_fields
from mailu_flows.commands import _through_deployment as through


def test_equal_configs_differ_nowhere() -> None:
    config = {"name": "lab", "mailu": {"domain": "inlock.test", "hostnames": ["mail.inlock.test"]}}
    assert differing_fields(config, config) == []


def test_each_differing_field_is_named_down_to_two_levels() -> None:
    mine = {"name": "lab", "mailu": {"domain": "a.test", "tls": {"flavor": "mail"}}, "images": {"front": "x"}}
    theirs = {"name": "lab", "mailu": {"domain": "b.test", "tls": {"flavor": "cert"}}, "extra": 1}
    assert differing_fields(mine, theirs) == ["extra", "images", "mailu.domain", "mailu.tls"]


class _FakeLog:
    def __init__(self, n: int, at: datetime) -> None:
        self.id = uuid4()
        self.level = 20
        self.timestamp = at
        self.message = f"line {n}"


class _FakeClient:
    """What the watcher reads from Prefect's client: a run's states in turn, and its logs (filtered
    by 'at or after' a timestamp, sorted, at most `limit` per call), which grow as the run goes on."""

    def __init__(self, states: list[Any], logs_per_poll: int) -> None:
        self.states = states
        self.logs: list[_FakeLog] = []
        self.logs_per_poll = logs_per_poll
        self.start = datetime(2026, 12, 1, tzinfo=UTC)

    def read_flow_run(self, run_id: UUID) -> Any:
        for _ in range(self.logs_per_poll):
            self.logs.append(_FakeLog(len(self.logs), self.start + timedelta(milliseconds=len(self.logs))))
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return SimpleNamespace(state=state)

    def read_logs(self, log_filter: Any, limit: int, sort: Any) -> list[_FakeLog]:
        after = log_filter.timestamp.after_
        return [log for log in self.logs if after is None or log.timestamp >= after][:limit]


def _state(name: str, final: bool = False) -> Any:
    return SimpleNamespace(
        name=name,
        is_final=lambda: final,
        is_scheduled=lambda: name in ("Scheduled", "Late"),
        is_pending=lambda: name == "Pending",
    )


def test_the_watcher_prints_every_log_line_once_in_order_past_a_page(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(through, "POLL_S", 0)
    client = _FakeClient([_state("Running"), _state("Running"), _state("Completed", final=True)], 230)
    assert through._watch(client, uuid4()).state.name == "Completed"
    printed = [line.split(" | ")[-1] for line in capsys.readouterr().err.splitlines()]
    assert printed == [f"line {n}" for n in range(len(client.logs))]
    assert len(printed) > 3 * through.LogCursor.PAGE


def test_a_run_nobody_picks_up_is_said_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(through, "POLL_S", 0)
    states = [_state("Late")] * 5 + [_state("Cancelled", final=True)]
    assert through._watch(_FakeClient(states, 0), uuid4(), not_started_hint_s=0).state.name == "Cancelled"
    err = capsys.readouterr().err
    assert err.count("is `mailu-flows serve`") == 1 and "still Late" in err
