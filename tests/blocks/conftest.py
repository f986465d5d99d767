"""The block tests run against a real, throwaway Prefect server (no lab needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def prefect_api(prefect_server: str) -> Iterator[str]:
    """Blocks are saved to and loaded from a throwaway Prefect server (tests/conftest.py), not the lab's."""
    yield prefect_server


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Throwaway keys generated for these tests only (an SSH key, a host key, a GPG key pair)."""
    return DATA
