"""The lab's `mailu-flows serve` process (every deployment, served from one process), as a lab daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from lab import endpoints as ep
from lab.procs import LabError, running_pid, start_daemon, stop_daemon

SERVE_NAME = "serve"


def _deployment_names(since: datetime | None = None) -> set[str]:
    """Names of the deployments on the server (only those registered or updated at or after `since`)."""
    req = urllib.request.Request(
        f"{ep.PREFECT_API_URL}/deployments/filter",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=3) as resp:
        found = json.loads(resp.read())
    return {d["name"] for d in found if since is None or datetime.fromisoformat(d["updated"]) >= since}


def ensure_serving(config: Path, restart: bool = False, timeout: float = 120) -> None:
    """Run `mailu-flows serve --config <config>` against the lab's Prefect server, polling every second
    (so a run created in the UI starts at once), until every deployment is registered."""
    from mailu_core.config import load_stack_config
    from mailu_flows.deployments.definitions import deployments_for

    if restart:
        stop_daemon(SERVE_NAME)
    cli = shutil.which("mailu-flows") or str(Path(sys.executable).parent / "mailu-flows")
    env = {
        "PREFECT_API_URL": ep.PREFECT_API_URL,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    # The lab's tests serve several configs of one stack in turn (the canary's, the base one): each
    # is made the deployed config first, as an operator switching configs would (`serve` itself keeps
    # a block that differs from its file, so that a restart does not undo an edit made in the UI).
    pushed = subprocess.run(
        [cli, "config", "push", "--config", str(config)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if pushed.returncode != 0:
        raise LabError(f"config push --config {config}: {(pushed.stdout + pushed.stderr)[-2000:]}")
    # The deployments this config has (the mail canary only where its password block is named), not
    # every one defined: a fresh server never gets the others, and waiting for them would never end.
    wanted = {d.name for d in deployments_for(load_stack_config(config))}
    # Registered by the process this starts (after it pushed the stack's block), not left by an
    # earlier one; a serve already running was waited for when it started.
    started = None if running_pid(SERVE_NAME) else datetime.now(UTC)
    start_daemon(
        SERVE_NAME,
        [cli, "serve", "--config", str(config)],
        env=env,
        ready=lambda: wanted <= _deployment_names(since=started),
        timeout=timeout,
    )
    time.sleep(0.5)


def stop_serving() -> bool:
    return stop_daemon(SERVE_NAME)
