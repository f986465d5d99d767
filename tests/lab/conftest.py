"""Fixtures for the lab's tests (real docker, real registry, the lab's running parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.ca import CaFiles, ensure_ca
from lab.endpoints import lab_dir
from lab.images import ensure_images

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def lab_images() -> dict[str, str]:
    """Every lab image, built if needed, as pinned `repo@sha256:…` references."""
    return ensure_images()


@pytest.fixture(scope="session")
def lab_ca() -> CaFiles:
    """The lab CA and mail certificate (shared with the lab's other parts under lab_dir()/ca)."""
    return ensure_ca(lab_dir() / "ca")


# --- DNS (Knot primary + secondary) and the Cloudflare API emulator ---------------------------------
# Session-scoped: `ensure_*` is idempotent and takes well under a second when the lab already runs.

import collections.abc as _cabc  # noqa: E402

import pytest as _pytest  # noqa: E402


@_pytest.fixture(scope="session")
def lab_dns():
    """The lab's Knot primary and secondary, up (lab.dns.DnsInfo)."""
    from lab.dns import ensure_dns

    return ensure_dns()


@_pytest.fixture
def dns_notify_restored(lab_dns) -> _cabc.Iterator[None]:
    """Lets a test switch NOTIFY off; switches it back on afterwards, whatever happened."""
    from lab.dns import refresh_secondary, set_notify

    try:
        yield
    finally:
        set_notify(True)
        refresh_secondary()


@_pytest.fixture(scope="session")
def cf_base_url(lab_dns) -> str:
    """Base URL of the running Cloudflare API emulator (started with the DNS it writes to)."""
    from lab.cf_emulator import ensure_cf_emulator

    return ensure_cf_emulator()


@_pytest.fixture(scope="session")
def cf_token(cf_base_url) -> str:
    """The lab's DNS-edit API token (read from its 0600 file)."""
    from lab.cf_emulator import read_token

    return read_token()


@_pytest.fixture(scope="session")
def cf_readonly_token(cf_base_url) -> str:
    """The lab's read-only API token: writes with it get 403."""
    from lab.cf_emulator import read_token

    return read_token(readonly=True)


@_pytest.fixture
def cf_faults(cf_base_url) -> _cabc.Iterator[_cabc.Callable[..., None]]:
    """`inject(status=429, count=1, retry_after="0.1")`: the next API calls fail; cleared afterwards."""
    from lab.cf_emulator import lab_call

    lab_call("DELETE", "/__lab/faults")

    def inject(**spec: object) -> None:
        lab_call("POST", "/__lab/faults", dict(spec))

    try:
        yield inject
    finally:
        lab_call("DELETE", "/__lab/faults")


@_pytest.fixture
def cf_requests(cf_base_url) -> _cabc.Callable[[], list[dict[str, object]]]:
    """Returns a function giving the API calls made since the fixture was set up (method, path, …)."""
    from lab.cf_emulator import lab_call

    start = int(lab_call("GET", "/__lab/requests?since=999999999")["last_seq"])

    def since() -> list[dict[str, object]]:
        return list(lab_call("GET", f"/__lab/requests?since={start}")["requests"])

    return since
