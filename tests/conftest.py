"""Test-session set-up: every Prefect client talks to the lab's Prefect server."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from typing import Any

import pytest


@pytest.fixture(scope="session")
def lab() -> dict[str, Any]:
    """The lab, brought up if needed (seconds when `make test` already ran `lab up`); its endpoints."""
    from lab.up import lab_status, lab_up

    lab_up()
    status = lab_status()
    assert status["up"], f"lab parts down: {[k for k, v in status['parts'].items() if not v]}"
    return status
