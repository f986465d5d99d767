"""`mailu-flows serve`, `mailu-flows deployments prefect-yaml`, `mailu-flows notifications setup`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mailu_flows.commands._flowrun import load_config_or_exit


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve every deployment from one long-running process")
    serve.add_argument(
        "--config",
        required=True,
        type=Path,
        help="stack config YAML; saved to the stack's block (which every run reads) when it has none",
    )
    serve.add_argument("--limit", type=int, default=4, help="at most this many runs at once")
    serve.set_defaults(func=_serve)

    deployments = sub.add_parser("deployments", help="deployment definitions")
    dsub = deployments.add_subparsers(dest="deployments_command", metavar="ACTION", required=True)
    yaml_cmd = dsub.add_parser(
        "prefect-yaml",
        help="print a prefect.yaml for `prefect deploy --all` (each stack's block saved when it has none)",
    )
    yaml_cmd.add_argument(
        "--config",
        required=True,
        type=Path,
        action="append",
        help="stack config YAML; repeat for several stacks on one server (with --per-stack-names)",
    )
    yaml_cmd.add_argument("--work-pool", default="mailu-process", help="a process work pool")
    yaml_cmd.add_argument(
        "--per-stack-names",
        action="store_true",
        help="name deployments <name>-<stack> (needed when stacks share a server; use it from the first)",
    )
    yaml_cmd.set_defaults(func=_prefect_yaml)

    notify = sub.add_parser("notifications", help="failure notifications")
    nsub = notify.add_subparsers(dest="notifications_command", metavar="ACTION", required=True)
    setup = nsub.add_parser(
        "setup",
        help="create/update the server automations: failed, crashed, timed-out or late runs, and no "
        "completed backup-verify within --verify-within-hours",
    )
    setup.add_argument(
        "--block", required=True, help="notification block as <type slug>/<name>, e.g. slack-webhook/ops"
    )
    setup.add_argument(
        "--verify-within-hours",
        type=float,
        default=26.0,
        help="notify when no backup-verify run completed within this many hours (default 26: daily + slack)",
    )
    setup.add_argument(
        "--stack",
        action="append",
        metavar="NAME",
        help="a stack whose overdue rules (backup-verify, canary) are made (repeat for each); default: "
        "every stack with a block on the server (and the rules of stacks without one are removed)",
    )
    setup.set_defaults(func=_notifications_setup)


def _serve(args: argparse.Namespace) -> int:
    from prefect import serve

    from mailu_flows.blocks.stack import push_stack_config
    from mailu_flows.deployments.definitions import build_deployments, remove_legacy_deployments

    config = load_config_or_exit(args.config)
    pushed = push_stack_config(config, replace=False)  # an edit made in the UI survives a restart
    print(f"serve: {pushed.describe(config.name, str(args.config))}", file=sys.stderr)
    deployments = build_deployments(config, pushed.block_id)
    for legacy in remove_legacy_deployments():
        print(f"removed {legacy}: the flows are named mailu-<name> now", file=sys.stderr)
    print(
        f"serving {len(deployments)} deployments: " + ", ".join(d.name for d in deployments), file=sys.stderr
    )
    serve(*deployments, limit=args.limit, pause_on_shutdown=False)
    return 0


def _prefect_yaml(args: argparse.Namespace) -> int:
    import yaml

    from mailu_flows.blocks.stack import push_stack_config
    from mailu_flows.deployments.definitions import check_distinct_stacks, fleet_prefect_yaml, prefect_yaml

    configs = [load_config_or_exit(path) for path in args.config]
    if len(configs) > 1 and not args.per_stack_names:
        print(
            "--config given more than once: the stacks' deployments would have the same names and replace "
            "each other; add --per-stack-names (deployments named <name>-<stack>)",
            file=sys.stderr,
        )
        return 2
    try:
        check_distinct_stacks(configs)
    except ValueError as exc:
        print(f"--config: {exc}", file=sys.stderr)
        return 2
    for config, path in zip(configs, args.config, strict=True):  # each run reads its stack's block
        pushed = push_stack_config(config, replace=False)
        print(f"prefect-yaml: {pushed.describe(config.name, str(path))}", file=sys.stderr)
    if args.per_stack_names:
        doc = fleet_prefect_yaml(configs, work_pool=args.work_pool)
    else:
        doc = prefect_yaml(configs[0], work_pool=args.work_pool)
    print(yaml.safe_dump(doc, sort_keys=False), end="")
    return 0


def _notifications_setup(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from mailu_flows.notifications import ensure_notification_automations

    if not 1 <= args.verify_within_hours <= 24 * 14:
        print("--verify-within-hours: between 1 and 336 (two weeks); the default is 26", file=sys.stderr)
        return 2
    within = timedelta(hours=args.verify_within_hours)
    for name, automation_id in ensure_notification_automations(args.block, within, args.stack).items():
        print(f"automation {automation_id} ({name}): notifies through {args.block}")
    return 0
