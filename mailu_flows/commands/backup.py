"""`mailu-flows backup` and `mailu-flows backup-verify`: run the flows against a stack config.

mailu-flows backup --config stack.yaml [--json]
    One encrypted backup of every configured volume, then retention. Exit 0, or 1 with the error.
mailu-flows backup-verify --config stack.yaml [--json] [--time-budget SECONDS] [--no-drill]
    Every check on the newest backup; exit 1 naming each failed check and its file.
"""

from __future__ import annotations

import argparse
from typing import Any

from mailu_flows.commands._flowrun import add_config_args, load_config_or_exit, run_flow


def register(sub: Any) -> None:
    backup = sub.add_parser("backup", help="back up the stack's volumes, encrypted", description=__doc__)
    add_config_args(backup)
    backup.set_defaults(func=run_backup)

    verify = sub.add_parser("backup-verify", help="prove the newest backup restores", description=__doc__)
    add_config_args(verify)
    verify.add_argument(
        "--time-budget",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="decrypt and drill a rotating sample when everything would take longer (default 1800)",
    )
    verify.add_argument("--no-drill", action="store_true", help="skip the restore drill into scratch volumes")
    verify.set_defaults(func=run_verify)


def _backup_summary(report: Any) -> str:
    lines = [f"backup {report.backup_id} in {report.destination} ({report.seconds:.1f}s)"]
    lines += [f"  {a.name}: {a.plain_bytes} bytes, {a.file_count} files" for a in report.archives]
    if report.deleted:
        lines.append(f"retention deleted: {', '.join(report.deleted)}")
    return "\n".join(lines)


def _verify_summary(record: Any) -> str:
    return f"backup {record.backup_id}: all {len(record.checks)} checks passed"


def run_backup(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    return run_flow(args, "backup", _backup_summary, config=config)


def run_verify(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    return run_flow(
        args,
        "backup-verify",
        _verify_summary,
        config=config,
        time_budget_s=args.time_budget,
        drill=not args.no_drill,
    )
