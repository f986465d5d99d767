"""`mailu-flows plan` and `mailu-flows deploy`: the deploy flow, dry-run or for real."""

from __future__ import annotations

import argparse
from typing import Any

from mailu_flows.commands._flowrun import add_config_args, load_config_or_exit, run_flow


def register(sub: Any) -> None:
    plan = sub.add_parser(
        "plan", help="show what a deploy would change (diffs, secrets, preflight); change nothing"
    )
    add_config_args(plan)
    plan.set_defaults(func=_plan)
    deploy = sub.add_parser("deploy", help="converge the Mailu stack on the host (idempotent)")
    add_config_args(deploy)
    deploy.set_defaults(func=_deploy)


def _plan(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    return run_flow(args, "deploy", lambda r: str(r["plan"]), config=config, dry_run=True)


def _deploy(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)

    def summary(result: dict[str, Any]) -> str:
        lines = [f"deploy: {result['summary']}"]
        if result["created_accounts"]:
            lines.append("created: " + ", ".join(result["created_accounts"]))
        return "\n".join(lines)

    return run_flow(args, "deploy", summary, config=config)
