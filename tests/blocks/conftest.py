"""A Prefect API for the block tests: one temporary server for the whole session.

`prefect_test_harness` starts a server on a temporary SQLite DB (7-9 s) and points
PREFECT_API_URL at it. To run against the lab's server instead, replace this fixture with one
that sets PREFECT_API_URL (e.g. lab.endpoints.PREFECT_API_URL) via prefect.settings.temporary_settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Throwaway keys generated for these tests only (an SSH key, a host key, a GPG key pair)."""
    return DATA
