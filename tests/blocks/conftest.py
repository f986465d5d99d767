"""The block tests run against the lab's real Prefect server (started if it is not up)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lab.endpoints import PREFECT_API_URL as LAB_API_URL
    from lab.services import ensure_prefect

    ensure_prefect()
    with temporary_settings({PREFECT_API_URL: LAB_API_URL}):
        yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Throwaway keys generated for these tests only (an SSH key, a host key, a GPG key pair)."""
    return DATA
