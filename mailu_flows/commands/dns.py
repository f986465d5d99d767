"""`mailu-flows dkim-publish` and `mailu-flows dns-wait`: the DNS flows, run alone."""

from __future__ import annotations

import argparse
from typing import Any

from mailu_flows.commands._flowrun import add_config_args, load_config_or_exit, run_flow


def register(sub: Any) -> None:
    dkim = sub.add_parser(
        "dkim-publish",
        help="ensure the DKIM key (never overwritten), publish DNS, wait, verify every nameserver",
    )
    add_config_args(dkim)
    dkim.add_argument(
        "--rotate",
        action="store_true",
        help="replace the current selector's key (prefer a new dns.dkim.selector in the config)",
    )
    dkim.add_argument("--no-wait", action="store_true", help="publish without waiting for propagation")
    dkim.add_argument("--force", action="store_true", help="apply a DNS plan that changes many records")
    dkim.set_defaults(func=_dkim_publish)
    wait = sub.add_parser(
        "dns-wait", help="wait until every authoritative nameserver serves the stack's records"
    )
    add_config_args(wait)
    wait.add_argument(
        "--deadline", type=int, default=None, help="seconds (default dns.propagation_timeout_s)"
    )
    wait.add_argument("--bootstrap-resolver", default=None, help="resolver to find the zone's NS set")
    wait.set_defaults(func=_dns_wait)


def _dkim_publish(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)

    def summary(result: dict[str, Any]) -> str:
        lines = [f"dkim-publish: {result['summary']}", f"{result['selector']}: {result['path']}"]
        lines += [f"note: {n}" for n in result["notes"]]
        lines += [f"not verified: {p}" for p in result["problems"]]
        return "\n".join(lines)

    return run_flow(
        args,
        "dkim-publish",
        summary,
        config=config,
        rotate=args.rotate,
        wait=not args.no_wait,
        force=args.force,
    )


def _dns_wait(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)

    def summary(result: dict[str, Any]) -> str:
        lines = [f"propagated: {result['summary']}"]
        lines += [f"warning: {w}" for w in result["warnings"]]
        return "\n".join(lines)

    return run_flow(
        args,
        "dns-propagation-wait",
        summary,
        config=config,
        deadline_s=args.deadline,
        bootstrap_resolver=args.bootstrap_resolver,
    )
