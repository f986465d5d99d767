"""Test-session set-up: every Prefect client talks to the lab's Prefect server, except the tests that
ask for `prefect_server` (a throwaway one, so `make test-unit` needs no lab)."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from collections.abc import Iterator
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


class ThrowawayPrefect:
    """A Prefect API server (no UI, no services) on a free loopback port with its own temporary SQLite
    database, for the tests that need Prefect's API but not the lab. Starting it takes about 10 s, so
    it is launched as soon as collection shows a test needs it and those tests run last (the rest of
    the session hides the start-up)."""

    def __init__(self) -> None:
        import socket
        import subprocess
        import sys
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="mailu-flows-prefect-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        env = {
            **os.environ,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.dir}/prefect.db",
            "PREFECT_UI_ENABLED": "0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT__SERVER_EPHEMERAL": "1",  # no scheduler, no background services
        }
        env.pop("PREFECT_API_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/server.log", "wb"),  # noqa: SIM115
        )  # fmt: skip
        # it starts while the other tests run: it must not slow their timing checks (a 2-CPU runner)
        os.setpriority(os.PRIO_PROCESS, self.process.pid, 10)

    def wait(self, timeout_s: float = 90) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with open(f"{self.dir}/server.log", "rb") as log:
                    err = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"the throwaway Prefect server exited {self.process.returncode}: {err}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the throwaway Prefect server did not answer within {timeout_s} s")

    def stop(self) -> None:
        import shutil
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


_THROWAWAY: list[ThrowawayPrefect] = []


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: a deselected test starts no server
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use `prefect_server` run last, and their server starts now, while the others run."""
    needs = [i for i in items if "prefect_server" in getattr(i, "fixturenames", ())]
    if not needs:
        return
    items[:] = [i for i in items if i not in needs] + needs
    if not _THROWAWAY:
        _THROWAWAY.append(ThrowawayPrefect())


def pytest_unconfigure(config: pytest.Config) -> None:
    while _THROWAWAY:
        _THROWAWAY.pop().stop()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """The throwaway Prefect server's API URL; every Prefect client of the session talks to it while the
    tests that ask for it run."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not _THROWAWAY:  # asked for in a way collection did not see
        _THROWAWAY.append(ThrowawayPrefect())
    server = _THROWAWAY[0]
    server.wait()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield server.api_url
