"""Shared plumbing for the commands that run a flow: load the config, run the flow, print what it did,
map failure to exit 1.

By default the run goes through the stack's deployment: it runs on the flow runner (where backups are
written) with the deployed config, the stack's block, which must say what the file says. The command
streams the run's logs and ends with its state and address in the UI. `--local` runs the flow in
this process with the file's config (before anything is served, or to try a file not pushed yet) and
prints a summary of its result. Either way the run is on the configured Prefect server."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        help="stack config YAML file: names the stack whose deployment runs (its block must match the "
        "file), or with --local the config this process runs with",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="run the flow in this process with the file's config instead of through the deployment",
    )
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
    deployment: str,
    summarize: Callable[[Any], str],
    **params: Any,
) -> int:
    """Run the flow of `deployment` (its name in the deployments table) with `params` (`config`
    included): through the stack's deployment, or in-process with `--local`."""
    if not args.local:
        from mailu_flows.commands._through_deployment import run_through_deployment

        return run_through_deployment(args, deployment, **params)
    from mailu_flows.deployments.definitions import SPECS_BY_NAME

    flow_fn = SPECS_BY_NAME[deployment].load_flow()
    state: Any = flow_fn(return_state=True, **params)
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
