"""`mailu-flows canary`: one mail round trip, a real flow run (`upgrade-plan` and `upgrade` are in
commands/upgrade.py)."""

from __future__ import annotations

import argparse
from typing import Any

from mailu_flows.commands._flowrun import add_config_args, load_config_or_exit, run_flow


def register(sub: Any) -> None:
    p = sub.add_parser("canary", help="send, receive and judge one probe each way through the stack")
    add_config_args(p)
    p.set_defaults(func=_canary)


def _canary(args: argparse.Namespace) -> int:
    from mailu_flows.canary import CanaryReport

    config = load_config_or_exit(args.config)

    def summary(report: CanaryReport) -> str:
        rows = [f"  {s.step}: {'ok' if s.ok else 'FAILED'} ({s.detail})" for s in report.steps]
        return "\n".join(["mail canary: every step passed", *rows])

    return run_flow(args, "mail-canary", summary, config=config)
