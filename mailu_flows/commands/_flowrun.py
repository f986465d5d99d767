"""Shared plumbing for the commands that run a flow: load the config, run the flow against the
configured Prefect server (so the run shows in the UI), print a short summary, map failure to exit 1."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="stack config YAML file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def load_config_or_exit(path: Path) -> Any:
    from mailu_core.config import ConfigError, load_stack_config

    try:
        return load_stack_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run_flow(
    args: argparse.Namespace,
    flow_fn: Callable[..., Any],
    summarize: Callable[[Any], str],
    **params: Any,
) -> int:
    """Call the flow (a real Prefect run), print `summarize(result)` or the failure, return the exit code."""
    state = flow_fn(return_state=True, **params)
    if state.is_completed():
        result = state.result()
        if args.json:
            print(json.dumps({"state": state.name, "result": _jsonable(result)}, indent=2, default=str))
        else:
            print(summarize(result))
        return 0
    message = state.message or state.name
    try:
        state.result()
    except Exception as exc:  # the flow's own error says what failed and how to fix it
        message = str(exc)
    if args.json:
        print(json.dumps({"state": state.name, "error": message}, indent=2))
    else:
        print(f"{state.name}: {message}", file=sys.stderr)
    return 1


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return value
