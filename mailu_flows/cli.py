"""The `mailu-flows` command line: one subcommand per flow, plus lab, config and blocks helpers.

Each command module in `mailu_flows.commands` exposes `register(subparsers)`, which adds its
subcommands and sets `func` (taking the parsed namespace, returning an exit code) as the default.
Modules are imported lazily by name so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Command modules, in the order `--help` lists them.
COMMAND_MODULES = (
    "lab", "config", "blocks", "deploy", "backup", "dns", "serve", "rollback", "accounts", "canary",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailu-flows",
        description="Deploy and operate a hardened Mailu stack on a Docker host over SSH with Prefect flows.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"mailu_flows.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
