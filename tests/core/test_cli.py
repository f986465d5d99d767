"""The `mailu-flows` command's own behaviour (the commands' work is tested with their engines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailu_flows.cli import main, unreachable_prefect_api

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inlock.ai.yaml"


@pytest.mark.parametrize("local", [True, False], ids=["local", "through-deployment"])
def test_an_unreachable_prefect_server_is_one_clear_line_not_a_traceback(local: bool) -> None:
    """A flow command run while no Prefect server answers names the server asked and how to fix it,
    in-process or handed to the deployment (whose first step, reading the stack's block, fails)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailu_flows.cli",
            "backup",
            "--config",
            str(EXAMPLE),
            *(["--local"] if local else []),
        ],
        env={"PREFECT_API_URL": "http://127.0.0.1:9/api", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    if local:
        assert line.startswith("mailu-flows backup: the Prefect server at http://127.0.0.1:9/api"), line
    else:
        assert line.startswith("mailu-flows backup: cannot load the mailu-stack block 'inlock-ai'"), line
        assert "the Prefect server at http://127.0.0.1:9/api" in line and "does not answer" in line
        assert line.endswith("or run the file here with --local"), line
    assert "export PREFECT_API_URL=" in line


def test_only_an_unreachable_server_is_turned_into_that_message() -> None:
    import httpx

    assert unreachable_prefect_api(RuntimeError("Failed to reach API at http://x/api/"))
    assert unreachable_prefect_api(httpx.ConnectError("refused"))
    assert not unreachable_prefect_api(RuntimeError("something else"))
    assert not unreachable_prefect_api(ValueError("Failed to reach API at"))


def test_other_errors_still_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailu_flows.commands.config as config_command

    def boom(args: object) -> int:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(config_command, "run_check", boom)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        main(["config", "check", "--config", "/nonexistent/x.yaml"])
