"""`mailu-flows rollback`: the rollback flow from the terminal (type-to-confirm with --confirm)."""

from __future__ import annotations

import argparse
from typing import Any

from mailu_flows.commands._flowrun import add_config_args, load_config_or_exit, run_flow


def register(sub: Any) -> None:
    p = sub.add_parser(
        "rollback",
        help="put the previous good release back, or tear the stack down (volumes kept); asks for "
        "--confirm <mail hostname>",
    )
    add_config_args(p)
    p.add_argument("--mode", required=True, choices=["previous-release", "teardown"])
    p.add_argument("--confirm", required=True, help="the mail hostname (mailu.hostnames[0]), to confirm")
    p.add_argument("--restore-backup", metavar="ID", help="restore the volumes from this backup")
    p.add_argument("--release", metavar="ID", help="previous-release: go back to this release")
    p.add_argument("--lock-wait", type=int, default=60, metavar="S", help="wait for the host lock (s)")
    p.set_defaults(func=_rollback)


def _rollback(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)

    def summary(result: dict[str, Any]) -> str:
        lines = [f"rollback: {result['summary']}"]
        lines += [f"  {r['result']:8} {r['step']}: {r['detail']}" for r in result["rows"]]
        return "\n".join(lines)

    return run_flow(
        args,
        "rollback",
        summary,
        config=config,
        mode=args.mode,
        confirm=args.confirm,
        restore_backup=args.restore_backup,
        release=args.release,
        lock_wait_s=args.lock_wait,
    )
