"""`make demo` on the lab, last of all (its rollback tears the stack down, volumes kept): the whole
lifecycle, started through the deployments as the UI would, on Mailu's own images."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep

pytestmark = pytest.mark.lab

FLOWS = (
    "deploy",
    "accounts",
    "dkim-publish",
    "dns-propagation-wait",
    "mail-canary",
    "backup",
    "backup-verify",
    "upgrade",
    "rollback",
)


def test_make_demo_runs_every_flow_to_completion(lab: dict[str, Any]) -> None:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PREFECT_API_URL": ep.PREFECT_API_URL}
    proc = subprocess.run(["make", "demo"], cwd=repo, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()[:1] != []}
    for flow in FLOWS:
        assert flow in rows and rows[flow][2] == "Completed", proc.stdout[-3000:]
    # the stack it deployed ran Mailu's own images (the lab's config names nothing else)
    stack = (ep.lab_dir() / "stack.yaml").read_text()
    assert "/mailu/nginx@sha256:" in stack and "/mailu/admin@sha256:" in stack
    assert "plan written to .lab/plan.md" in proc.stdout
    # the upgrade, run through its deployment on the stack's block, saved its pins into that block
    from lab.upgrade_images import UPGRADE_TAG, ensure_upgrade_images
    from mailu_core.config import load_stack_config
    from mailu_core.upgrade import mailu_images
    from mailu_flows.blocks import MailuStack, load_block

    cfg = load_stack_config(ep.lab_dir() / "stack.yaml")
    new = ensure_upgrade_images(mailu_images(cfg))[UPGRADE_TAG]
    assert mailu_images(load_block(MailuStack, cfg.name).config) == new
    assert f"the stack block mailu-stack/{cfg.name} pins its images" in proc.stdout
