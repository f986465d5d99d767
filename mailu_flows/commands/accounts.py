"""`mailu-flows accounts`: plan (--dry-run) or apply the stack config's accounts section through the
accounts flow (a real Prefect run, so it shows in the UI)."""

from __future__ import annotations

import argparse
from typing import Any

from mailu_flows.commands._flowrun import add_config_args, load_config_or_exit, run_flow


def register(sub: Any) -> None:
    p = sub.add_parser(
        "accounts",
        help="keep Mailu's domains, users, aliases and relays as the config's accounts section says",
    )
    add_config_args(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan only; write nothing")
    p.add_argument("--force", action="store_true", help="apply even beyond the delete limit")
    p.add_argument(
        "--adopt", action="store_true", help="take over declared objects Mailu holds without our mark"
    )
    p.add_argument("--lock-wait", type=int, default=60, metavar="S", help="wait for the host lock (s)")
    p.set_defaults(func=_accounts)


def _accounts(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)

    def summary(result: dict[str, Any]) -> str:
        state = "planned (dry run)" if args.dry_run else f"applied, {result['writes']} API write(s)"
        lines = [f"{result['plan']}", f"accounts {state}"]
        lines += [f"  password generated into Secret block {b}" for b in result["passwords_generated"]]
        return "\n".join(lines)

    return run_flow(
        args,
        "accounts",
        summary,
        config=config,
        dry_run=args.dry_run,
        force=args.force,
        adopt=args.adopt,
        lock_wait_s=args.lock_wait,
    )
