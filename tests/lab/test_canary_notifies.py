"""A failed mail-canary run notifies like every other failure: a run created through its deployment (as
the schedule creates it) fails while antispam is stopped (Postfix tempfails every message), and the
lab's webhook receives exactly one message naming the run.

The lab's own config has the canary off (serve registers `mail-canary` only for a config naming
`blocks.canary_password`), so this test serves the lab's config with the canary on from a file of its
own, and serves the lab's config again afterwards; antispam is started again whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailu_core.config import dump_stack_config, load_stack_config
from tests.lab.fixtures.deploying import exception_text
from tests.lab.test_deployments import _about, _dep

pytestmark = pytest.mark.lab


@pytest.fixture
def notifications() -> Callable[[], list[dict[str, Any]]]:
    """The lab's webhook receiver (and its automations); a reader of the messages sent since, as in
    test_deployments."""
    from lab.webhook import ensure_webhook, webhook_log

    ensure_webhook()
    log = webhook_log()
    start = log.read_text().count("\n") if log.exists() else 0

    def read() -> list[dict[str, Any]]:
        lines = log.read_text().splitlines()[start:] if log.exists() else []
        return [json.loads(line) for line in lines]

    return read


def _start_and_wait_healthy(container: str, limit_s: float = 300) -> None:
    subprocess.run(["docker", "start", container], check=True, capture_output=True)
    deadline = time.monotonic() + limit_s
    while subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Health.Status}}", container],
        capture_output=True, text=True, check=False,
    ).stdout.strip() != "healthy":  # fmt: skip
        assert time.monotonic() < deadline, f"{container} did not become healthy again"
        time.sleep(2)


def test_a_failed_mail_canary_run_notifies_once(
    lab: dict[str, Any], tmp_path: Path, notifications: Any
) -> None:
    from prefect.deployments import run_deployment

    from lab.serving import ensure_serving
    from lab.stack_config import with_canary
    from mailu_flows.flows.accounts import accounts

    cfg = with_canary(load_stack_config(Path(lab["stack_config"])))
    made = accounts(config=cfg, return_state=True, lock_wait_s=300)  # the canary's mailbox
    assert made.is_completed(), exception_text(made)
    served = tmp_path / "stack-with-canary.yaml"
    served.write_text(dump_stack_config(cfg))
    antispam = f"{cfg.mailu.compose_project}-antispam-1"
    try:
        ensure_serving(served, restart=True)
        subprocess.run(["docker", "stop", antispam], check=True, capture_output=True)
        try:
            run: Any = run_deployment(_dep("mail-canary"), timeout=600, poll_interval=1)
        finally:
            _start_and_wait_healthy(antispam)
        assert run.state is not None and run.state.is_failed(), run.state
        hits = _about(run.id, notifications)
        assert len(hits) == 1, f"{len(hits)} notification(s) for {run.name}: {hits}"
        assert f"mail-canary-{cfg.name}" in hits[0]["subject"] and "Failed" in hits[0]["subject"]
        assert "submit" in hits[0]["body"], hits[0]["body"]
    finally:
        ensure_serving(Path(lab["stack_config"]), restart=True)
