"""`mailu-flows config ...`: check a stack config file, or print its JSON schema.

mailu-flows config check --config stack.yaml [--json]
    OK: prints `OK: <file>: <summary>`, exit 0.
    Invalid: prints one line per bad field (`<field> (line N): <what is wrong>`), exit 1.
    File missing or unreadable: exit 2.
    --json prints {"ok", "file", "summary", "errors": [{"field", "message", "line"}]} instead.

mailu-flows config schema
    The JSON schema of StackConfig (what the Prefect server checks a flow parameter against).

mailu-flows config push --config stack.yaml
    Check the file, then save it as the stack's block (`mailu-stack/<name>`), which every run of the
    stack's deployments reads when it starts. Says whether the block changed. Invalid: exit 1, nothing saved.

mailu-flows config pull --stack NAME
    Print the stack's block as YAML (to bring an edit made in the UI back into the file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_NO_FILE = 2


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "config", help="check a stack config file", description="Check a stack config file."
    )
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    check = actions.add_parser("check", help="validate a stack config file and summarise it")
    check.add_argument("--config", required=True, metavar="FILE", help="stack config YAML file")
    check.add_argument("--json", action="store_true", help="print a machine-readable result")
    check.set_defaults(func=run_check)

    schema = actions.add_parser("schema", help="print the JSON schema of the stack config")
    schema.set_defaults(func=run_schema)

    push = actions.add_parser(
        "push", help="check a stack config file and save it as the stack's block, which every run reads"
    )
    push.add_argument("--config", required=True, metavar="FILE", help="stack config YAML file")
    push.set_defaults(json=False)
    push.set_defaults(func=run_push)

    pull = actions.add_parser("pull", help="print the stack's block as YAML")
    pull.add_argument("--stack", required=True, help="the stack's name (its config's `name`)")
    pull.set_defaults(func=run_pull)


def _emit_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2))


def _read_problem(path: str) -> str | None:
    """Why the file cannot be read at all (exit 2), or None."""
    file = Path(path)
    if not file.exists():
        return "no such file"
    if file.is_dir():
        return "is a directory, not a config file"
    try:
        file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read it: {exc}"
    return None


def run_check(args: argparse.Namespace) -> int:
    from mailu_core.config import ConfigError, load_stack_config

    path: str = args.config
    problem = _read_problem(path)
    if problem is not None:
        if args.json:
            error = {"field": None, "message": f"{path}: {problem}", "line": None}
            _emit_json({"ok": False, "file": path, "summary": None, "errors": [error]})
        else:
            print(f"ERROR: {path}: {problem}", file=sys.stderr)
        return EXIT_NO_FILE
    try:
        config = load_stack_config(path)
    except ConfigError as exc:
        if args.json:
            errors = [{"field": i.field, "message": i.message, "line": i.line} for i in exc.issues]
            _emit_json({"ok": False, "file": path, "summary": None, "errors": errors})
        else:
            print(f"INVALID: {path}: {len(exc.issues)} problem(s)")
            for line in exc.lines():
                print(f"  {line}")
        return EXIT_INVALID
    if args.json:
        _emit_json({"ok": True, "file": path, "summary": config.summary(), "errors": []})
    else:
        print(f"OK: {path}: {config.summary()}")
    return EXIT_OK


def run_schema(args: argparse.Namespace) -> int:
    from mailu_core.config import StackConfig

    _emit_json(StackConfig.model_json_schema())
    return EXIT_OK


def run_push(args: argparse.Namespace) -> int:
    from mailu_flows.blocks.stack import push_stack_config

    code = run_check(args)  # the same check and messages; nothing is saved unless it passes
    if code != EXIT_OK:
        return code
    from mailu_core.config import load_stack_config

    config = load_stack_config(args.config)
    print(push_stack_config(config).describe(config.name, str(args.config)))
    return EXIT_OK


def run_pull(args: argparse.Namespace) -> int:
    import yaml

    from mailu_flows.blocks.registry import BlockNotFound, load_block
    from mailu_flows.blocks.stack import MailuStack

    try:
        block = load_block(MailuStack, args.stack)
    except BlockNotFound as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_NO_FILE
    print(yaml.safe_dump(block.config.model_dump(mode="json"), sort_keys=False), end="")
    return EXIT_OK
