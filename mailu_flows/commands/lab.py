"""`mailu-flows lab up|down|status`: the local lab of real infrastructure the product is tried on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "lab",
        help="bring the local lab up, report it, tear it down",
        description="The local lab: sshd, Docker + registry, Traefik, Knot DNS, a Cloudflare API emulator, "
        "GnuPG keys, Prometheus and a Prefect server, all on loopback.",
    )
    lab_sub = parser.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    up = lab_sub.add_parser("up", help="bring every part up (idempotent; seconds when already up)")
    up.add_argument("--json", action="store_true", help="print the endpoints as JSON when done")
    up.set_defaults(func=_up)
    down = lab_sub.add_parser("down", help="stop what the lab started, remove its containers and networks")
    down.add_argument("--remove-images", action="store_true", help="also remove built images locally")
    down.set_defaults(func=_down)
    status = lab_sub.add_parser("status", help="say what runs and print the endpoints")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)


def _checkout_lab() -> None:
    """The lab is not in the wheel: it runs from a checkout, found beside this package (an editable
    install's `mailu_flows/`); an installed wheel says where to get it instead."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "lab" / "up.py").is_file():
        raise SystemExit(
            "mailu-flows lab: the lab runs from a checkout of mailu-flows (its lab/ folder), and this is an "
            "installed package; clone the repository and run `make demo` or `make test` there"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _up(args: argparse.Namespace) -> int:
    _checkout_lab()
    from lab.procs import LabError
    from lab.up import lab_status, lab_up

    try:
        report = lab_up(progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    except LabError as exc:
        print(f"lab up failed: {exc}", file=sys.stderr)
        return 1
    for step in report.steps:
        print(f"  {step.name:<24} {step.seconds:6.1f}s", file=sys.stderr)
    status = lab_status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0 if status["up"] else 1


def _down(args: argparse.Namespace) -> int:
    _checkout_lab()
    from lab.up import lab_down

    stopped = lab_down(remove_images=args.remove_images)
    print("lab down: stopped " + (", ".join(stopped) if stopped else "nothing that was running"))
    return 0


def _status(args: argparse.Namespace) -> int:
    _checkout_lab()
    from lab.up import lab_status

    status = lab_status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0 if status["up"] else 3


def _print_status(status: dict[str, Any]) -> None:
    for name, ok in status["parts"].items():
        print(f"{'up  ' if ok else 'DOWN'}  {name}")
    ssh = status["ssh"]
    print(f"ssh          {ssh['user']}@{ssh['host']}:{ssh['port']} (key {ssh['private_key_file']})")
    print(f"stack root   {status['stack_root']}")
    print(f"stack config {status['stack_config']}")
    print(
        f"dns          {status['dns']['primary']} (primary), {status['dns']['secondary']} (secondary), "
        f"zone {status['dns']['zone']}"
    )
    print(f"cloudflare   {status['cloudflare_emulator']}")
    print(
        f"traefik      api {status['traefik']['api']}, "
        + ", ".join(f"{k} {v}" for k, v in status["traefik"]["entrypoints"].items())
    )
    print(f"prefect      {status['prefect']['ui']} (UI), {status['prefect']['api']}")
    print(f"prometheus   {status['prometheus']}")
