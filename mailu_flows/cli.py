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
    "upgrade",
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


def unreachable_prefect_api(exc: BaseException) -> bool:
    """Prefect's client says "Failed to reach API at <url>" (a RuntimeError) when no server answers,
    and httpx raises a ConnectError on a call made after that check."""
    import httpx

    if isinstance(exc, httpx.ConnectError):
        return True
    return isinstance(exc, RuntimeError) and str(exc).startswith("Failed to reach API at")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except Exception as exc:
        if not unreachable_prefect_api(exc):
            raise
        from mailu_flows.blocks.registry import prefect_server, where_hint

        print(
            f"mailu-flows {args.command}: {prefect_server()} does not answer ({exc}); start it "
            f"(docs/setup.md, the Prefect server), or {where_hint()}",
            file=sys.stderr,
        )
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
