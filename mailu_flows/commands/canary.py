"""`mailu-flows canary` (one mail round trip, a real flow run) and `mailu-flows upgrade-plan` (the
digests of a Mailu release tag, old and new side by side; changes nothing)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailu_flows.commands._flowrun import add_config_args, load_config_or_exit, run_flow


def register(sub: Any) -> None:
    p = sub.add_parser("canary", help="send, receive and judge one probe each way through the stack")
    add_config_args(p)
    p.set_defaults(func=_canary)
    u = sub.add_parser(
        "upgrade-plan",
        help="resolve a Mailu release tag's images in the registry the stack pulls from; show old and new "
        "digests and the images block to put into the config (changes nothing)",
    )
    add_config_args(u)
    u.add_argument("--to", required=True, metavar="TAG", help="the Mailu release tag, e.g. 2024.06.10")
    u.set_defaults(func=_upgrade_plan)


def _canary(args: argparse.Namespace) -> int:
    from flows.canary import mail_canary
    from mailu_flows.canary import CanaryReport

    config = load_config_or_exit(args.config)

    def summary(report: CanaryReport) -> str:
        rows = [f"  {s.step}: {'ok' if s.ok else 'FAILED'} ({s.detail})" for s in report.steps]
        return "\n".join(["mail canary: every step passed", *rows])

    return run_flow(args, mail_canary, summary, config=config)


def _upgrade_plan(args: argparse.Namespace) -> int:
    import yaml

    from mailu_core.upgrade import mailu_images, plan_upgrade, release_reference
    from mailu_flows.registry import RegistryError, resolve_digests

    config = load_config_or_exit(args.config)
    try:
        wanted = {s: release_reference(ref, args.to) for s, ref in mailu_images(config).items()}
        plan = plan_upgrade(config, args.to, resolve_digests(wanted))
    except (ValueError, RegistryError) as exc:
        print(f"upgrade-plan: {exc}", file=sys.stderr)
        return 2
    print(plan.table())
    if not any(change.changed for change in plan.changes):
        print(f"\nno change: the config already pins {args.to}'s images")
        return 0
    images = {c.service: c.new for c in plan.changes}
    print("\nPut into the config's images (take and verify a backup before deploying it):")
    print(yaml.safe_dump({"images": images}, sort_keys=False), end="")
    return 0
