"""`mailu-flows blocks ...`: create credential blocks safely and check the ones a config names.

Commands (they talk to the Prefect API in PREFECT_API_URL; the lab's is http://127.0.0.1:4200/api):

    mailu-flows blocks register
        Register every block type (mailu-ssh-host, mailu-cloudflare, mailu-rfc2136,
        mailu-gpg-public-key, mailu-gpg-private-key, mailu-backup-signing-key, mailu-secrets).
        Safe to repeat. The same as Prefect's own `prefect block register -m blocks`; a Prefect
        server with mailu-flows installed registers them by itself when it starts.

    mailu-flows blocks check --config FILE
        Load every block the stack config names, as the flows will: says which are missing
        (and which Prefect server was asked) or invalid (which field, never its value).
        A key pasted in the UI's form gets its line breaks back here. Exit 0 if all load.

    mailu-flows blocks kinds
        List the kinds, their fields (secret ones marked) and the env variable names.

    mailu-flows blocks create KIND NAME [--from-env PREFIX] [--field FIELD=SOURCE ...]
                                        [--overwrite] [--check]
        KIND is the block slug without "mailu-": ssh-host, cloudflare, rfc2136,
        gpg-public-key, gpg-private-key, secrets. NAME is the block name the stack config
        refers to (lowercase letters, digits, dashes).
        Field sources (a secret is never accepted as a literal on the command line):
          --field FIELD=@/path/to/file   the file's content (trailing newlines stripped)
          --field FIELD=env:VAR          the environment variable VAR
          --field FIELD=VALUE            a literal, only for fields that are not secret
          --from-env PREFIX              for each field, PREFIX_FIELD (value) or
                                         PREFIX_FIELD_FILE (path to a file); explicit
                                         --field sources win
        List fields (host_keys) take one entry per line; repeat --field to add more.
        --overwrite replaces an existing block of that name; --check validates only.
        The output lists each field's origin; secret values are never printed.
        Exit codes: 0 saved (or valid with --check), 1 invalid input or save refused.

Examples:

    mailu-flows blocks create ssh-host inlock-ssh --field address=mail.inlock.ai \\
        --field user=deploy --field private_key=@~/.ssh/mailu_deploy \\
        --field host_keys=@known-host-key.pub

    MAILU_CF_API_TOKEN=... mailu-flows blocks create cloudflare inlock-cloudflare --from-env MAILU_CF

    mailu-flows blocks create gpg-public-key inlock-backup-gpg-public \\
        --field armored_public_key=@backup.pub.asc --field fingerprint=28E5FB64...

    # empty Mailu secrets: the first deploy generates and saves them
    mailu-flows blocks create secrets inlock-mailu-secrets
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "blocks",
        help="register block types and create credential blocks",
        description="Register block types and create credential blocks from files or env variables.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    actions = parser.add_subparsers(dest="blocks_command", metavar="ACTION", required=True)

    reg = actions.add_parser(
        "register", help="register all block types (idempotent; = prefect block register -m blocks)"
    )
    reg.set_defaults(func=run_register)

    check = actions.add_parser("check", help="load every block a stack config names, as the flows will")
    check.add_argument("--config", required=True, metavar="FILE", help="stack config YAML file")
    check.set_defaults(func=run_check)

    kinds = actions.add_parser("kinds", help="list block kinds and their fields")
    kinds.add_argument("--from-env", metavar="PREFIX", help="show the env variable names for this prefix")
    kinds.set_defaults(func=run_kinds)

    create = actions.add_parser(
        "create",
        help="create a block from files and env variables",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    create.add_argument("kind", metavar="KIND", help="ssh-host, cloudflare, rfc2136, gpg-public-key, ...")
    create.add_argument("name", metavar="NAME", help="block name (lowercase letters, digits, dashes)")
    create.add_argument(
        "--from-env", metavar="PREFIX", help="read PREFIX_FIELD / PREFIX_FIELD_FILE variables"
    )
    create.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="FIELD=SOURCE",
        help="FIELD=@FILE, FIELD=env:VAR, or FIELD=VALUE (not for secrets); repeatable",
    )
    create.add_argument("--overwrite", action="store_true", help="replace an existing block of that name")
    create.add_argument("--check", action="store_true", help="validate only; do not save")
    create.set_defaults(func=run_create)


def run_register(args: argparse.Namespace) -> int:
    from mailu_flows.blocks.registry import register_block_types

    for slug in register_block_types():
        print(f"registered {slug}")
    return EXIT_OK


def config_blocks(config: Any) -> list[tuple[type[Any], str]]:
    """(block class, name) of every mailu block a stack config names, in the order the flows use them."""
    from mailu_flows.blocks import (
        BackupSigningKey,
        GpgBackupPrivateKey,
        GpgBackupPublicKey,
        MailuSecrets,
        SshHost,
    )
    from mailu_flows.dns.registry import provider_plugin

    names = config.blocks
    dns_block = provider_plugin(config.dns.provider).block_type  # the DNS provider's own block class
    return [
        (SshHost, names.ssh_host),
        *([(dns_block(), names.dns_provider)] if dns_block is not None else []),
        (GpgBackupPublicKey, names.gpg_public_key),
        (GpgBackupPrivateKey, names.gpg_private_key),
        (BackupSigningKey, names.backup_signing_key),
        (MailuSecrets, names.mailu_secrets),
    ]


def run_check(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from mailu_flows.blocks.create import describe_validation_error
    from mailu_flows.blocks.registry import BlockNotFound, load_block, prefect_server
    from mailu_flows.commands._flowrun import load_config_or_exit

    config = load_config_or_exit(args.config)
    print(f"blocks of {config.name} on {prefect_server()}:")
    failed = False
    for block_type, name in config_blocks(config):
        where = f"{block_type.get_block_type_slug()}/{name}"
        try:
            load_block(block_type, name)
        except BlockNotFound as exc:
            print(f"  MISSING {where}: {exc}", file=sys.stderr)
            failed = True
            if "does not answer" in str(exc):
                break  # the next ones would say the same
        except ValidationError as exc:
            print(f"  INVALID {where}: {'; '.join(describe_validation_error(exc))}", file=sys.stderr)
            failed = True
        else:
            print(f"  ok {where}")
    return EXIT_FAILED if failed else EXIT_OK


def run_kinds(args: argparse.Namespace) -> int:
    from mailu_flows.blocks.create import env_names, list_fields, secret_fields
    from mailu_flows.blocks.registry import KINDS

    for kind, block_type in KINDS.items():
        secrets, lists = set(secret_fields(block_type)), set(list_fields(block_type))
        print(f"{kind}  ({block_type.get_block_type_slug()}: {block_type.__doc__})")
        for name, info in block_type.model_fields.items():
            marks = [m for m, on in (("secret", name in secrets), ("list", name in lists)) if on]
            marks.append("required" if info.is_required() else "optional")
            env = f"  [{' | '.join(env_names(args.from_env, name))}]" if args.from_env else ""
            print(f"    {name} ({', '.join(marks)}){env}: {info.description or ''}")
    return EXIT_OK


def run_create(args: argparse.Namespace) -> int:
    from mailu_core.fields import BlockName
    from mailu_flows.blocks.create import BlockInputError, build_block, summarize

    try:
        _check_name(args.name, BlockName)
        block, values = build_block(args.kind, args.field, args.from_env)
    except BlockInputError as exc:
        print(f"ERROR: {args.kind}/{args.name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    slug = type(block).get_block_type_slug()
    if args.check:
        print(f"valid {slug}/{args.name} (not saved)")
    else:
        import httpx

        from mailu_flows.blocks.registry import prefect_server, where_hint

        try:
            block.save(args.name, overwrite=args.overwrite)
        except httpx.HTTPError as exc:
            print(
                f"ERROR: {slug}/{args.name}: not saved: {prefect_server()} does not answer ({exc}); "
                f"start it, or {where_hint()}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        except ValueError as exc:
            hint = " (use --overwrite to replace it)" if "already in use" in str(exc) else ""
            print(f"ERROR: {slug}/{args.name}: not saved: {exc}{hint}", file=sys.stderr)
            return EXIT_FAILED
        print(f"saved {slug}/{args.name}")
    for line in summarize(block, values):
        print(f"  {line}")
    return EXIT_OK


def _check_name(name: str, annotated: Any) -> None:
    from pydantic import TypeAdapter, ValidationError

    from mailu_flows.blocks.create import BlockInputError

    try:
        TypeAdapter(annotated).validate_python(name)
    except ValidationError as exc:
        raise BlockInputError(exc.errors()[0]["msg"]) from None
