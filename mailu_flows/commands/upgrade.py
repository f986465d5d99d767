"""`mailu-flows upgrade-plan` (the digests of a Mailu release tag, old and new side by side; changes
nothing) and `mailu-flows upgrade` (the guarded upgrade flow: backup, verify, deploy, checks, canary, and
the return with admin's data on failure; type-to-confirm with --confirm)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailu_flows.commands._flowrun import add_config_args, load_config_or_exit, run_flow


def register(sub: Any) -> None:
    u = sub.add_parser(
        "upgrade-plan",
        help="resolve a Mailu release tag's images in the registry the stack pulls from; show old and new "
        "digests and the images block to put into the config (changes nothing)",
    )
    add_config_args(u)
    u.add_argument("--to", required=True, metavar="TAG", help="the Mailu release tag, e.g. 2024.06.10")
    u.set_defaults(func=_upgrade_plan)
    g = sub.add_parser(
        "upgrade",
        help="upgrade Mailu's images to a release tag: backup, verify, deploy, checks, canary; back to the "
        "previous release (admin's data restored) on failure; asks for --confirm <mail hostname>",
    )
    add_config_args(g)
    g.add_argument("--to", required=True, metavar="TAG", help="the Mailu release tag, e.g. 2024.06.10")
    g.add_argument("--confirm", required=True, help="the mail hostname (mailu.hostnames[0]), to confirm")
    g.add_argument("--no-drill", action="store_true", help="verify the backup without a restore drill")
    g.add_argument("--no-canary", action="store_true", help="skip the mail canary after the deploy")
    g.add_argument("--lock-wait", type=int, default=60, metavar="S", help="wait for the host lock (s)")
    g.set_defaults(func=_upgrade)


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


def _upgrade(args: argparse.Namespace) -> int:
    import yaml

    config = load_config_or_exit(args.config)

    def summary(result: dict[str, Any]) -> str:
        lines = [f"upgrade: {result['summary']}"]
        lines += [f"  {r['result']:8} {r['step']}: {r['detail']}" for r in result["rows"]]
        if result["images"]:
            in_block = any(r["step"] == "stack block" and r["result"] == "saved" for r in result["rows"])
            lines += [
                "",
                f"The stack block holds the new pins; put them into {args.config} too (or replace it with "
                f"`mailu-flows config pull --stack {config.name}`):"
                if in_block
                else f"Now put the new pins into {args.config} (a deploy of the old pins goes back):",
            ]
            lines += [yaml.safe_dump({"images": result["images"]}, sort_keys=False).rstrip()]
        return "\n".join(lines)

    return run_flow(
        args,
        "upgrade",
        summary,
        config=config,
        to=args.to,
        confirm=args.confirm,
        verify_drill=not args.no_drill,
        canary=not args.no_canary,
        lock_wait_s=args.lock_wait,
    )
