"""Build a block from files and environment variables, never from a secret typed on a command line.

Sources of a field value:
- `NAME=@/path/to/file`: the file's content (trailing newlines stripped);
- `NAME=env:VAR`: the environment variable VAR;
- `NAME=literal`: only for fields that are not secret (a port, a user name, a base URL);
- with `from_env=PREFIX`: for every field, `PREFIX_FIELD` (the value) or `PREFIX_FIELD_FILE` (a path).
  Explicit field sources win over PREFIX ones.
List fields (SSH host keys) take one entry per non-empty line that does not start with '#'.

Errors never show a secret value: a problem names the field and what is expected.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import SecretStr, ValidationError

from mailu_core.errors import MailuFlowsError
from mailu_flows.blocks.registry import block_type_for


class BlockInputError(MailuFlowsError, ValueError):
    """A block could not be built from the given sources; the message names fields, never secret values."""


@dataclass(frozen=True)
class FieldValue:
    """A field's raw value and where it came from (for a summary that does not reveal it)."""

    value: str | list[str]
    origin: str


def _annotation_args(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def secret_fields(block_type: type[Block]) -> list[str]:
    return [
        name
        for name, info in block_type.model_fields.items()
        if any(arg is SecretStr for arg in _annotation_args(info.annotation))
    ]


def list_fields(block_type: type[Block]) -> list[str]:
    return [
        name
        for name, info in block_type.model_fields.items()
        if any(typing.get_origin(arg) is list for arg in _annotation_args(info.annotation))
    ]


def env_names(prefix: str, field: str) -> tuple[str, str]:
    """The variables read for `field` with `--from-env PREFIX`: the value and the `_FILE` path."""
    base = f"{prefix.rstrip('_')}_{field}".upper()
    return base, f"{base}_FILE"


def _read_file(path: str, field: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise BlockInputError(f"{field}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BlockInputError(f"{field}: {path} is not UTF-8 text") from None


def _from_spec(spec: str, secret: bool, environ: Mapping[str, str]) -> tuple[str, str, str]:
    name, sep, source = spec.partition("=")
    name = name.strip()
    if not sep or not name:
        raise BlockInputError(
            f"--field {spec.split('=')[0]!r}: expected NAME=@FILE, NAME=env:VAR or NAME=VALUE"
        )
    if source.startswith("@"):
        return name, _read_file(source[1:], name), f"file {source[1:]}"
    if source.startswith("env:"):
        var = source[4:]
        if var not in environ:
            raise BlockInputError(f"{name}: environment variable {var} is not set")
        return name, environ[var], f"env {var}"
    if secret:
        raise BlockInputError(
            f"{name} is secret: give it as {name}=@FILE or {name}=env:VAR (a value on the command line "
            "ends up in shell history and the process list)"
        )
    return name, source, "command line"


def collect_fields(
    block_type: type[Block],
    field_specs: Sequence[str] = (),
    from_env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, FieldValue]:
    """Raw field values for `block_type` from PREFIX env vars and explicit field specs."""
    env = os.environ if environ is None else environ
    secrets, lists, known = (
        set(secret_fields(block_type)),
        set(list_fields(block_type)),
        block_type.model_fields,
    )
    values: dict[str, FieldValue] = {}

    if from_env:
        for field in known:
            value_var, file_var = env_names(from_env, field)
            if value_var in env and file_var in env:
                raise BlockInputError(f"{field}: both {value_var} and {file_var} are set; keep one")
            if value_var in env:
                values[field] = FieldValue(env[value_var], f"env {value_var}")
            elif file_var in env:
                values[field] = FieldValue(
                    _read_file(env[file_var], field), f"file {env[file_var]} ({file_var})"
                )

    explicit: dict[str, list[tuple[str, str]]] = {}
    for spec in field_specs:
        name, raw, origin = _from_spec(spec, spec.partition("=")[0].strip() in secrets, env)
        if name not in known:
            raise BlockInputError(
                f"{name}: not a field of {block_type.get_block_type_slug()}; fields: {', '.join(known)}"
            )
        explicit.setdefault(name, []).append((raw, origin))
    for name, parts in explicit.items():
        if name not in lists and len(parts) > 1:
            raise BlockInputError(f"{name}: given more than once")
        values[name] = (
            FieldValue(parts[0][0], parts[0][1])
            if name not in lists
            else FieldValue(
                [line for raw, _ in parts for line in raw.splitlines()],
                ", ".join(origin for _, origin in parts),
            )
        )

    for name in lists & values.keys():
        raw_value = values[name].value
        lines = raw_value.splitlines() if isinstance(raw_value, str) else raw_value
        kept = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        values[name] = FieldValue(kept, values[name].origin)
    return values


def describe_validation_error(exc: ValidationError) -> list[str]:
    """`field: problem` lines without the offending input (it may be a secret)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"]) or "block"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {'required, but no source given' if error['type'] == 'missing' else message}")
    return lines


def build_block(
    kind: str,
    field_specs: Sequence[str] = (),
    from_env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Block, dict[str, FieldValue]]:
    """A validated block of `kind` and the origin of each field; raises BlockInputError."""
    try:
        block_type = block_type_for(kind)
    except KeyError as exc:
        raise BlockInputError(str(exc.args[0])) from None
    values = collect_fields(block_type, field_specs, from_env, environ)
    try:
        block = block_type.model_validate({name: v.value for name, v in values.items()})
    except ValidationError as exc:
        raise BlockInputError("; ".join(describe_validation_error(exc))) from None
    return block, values


def summarize(block: Block, values: Mapping[str, FieldValue]) -> list[str]:
    """One line per field saying where it came from; secret and long values are never shown."""
    secrets = set(secret_fields(type(block)))
    lines = []
    for name in type(block).model_fields:
        origin = values[name].origin if name in values else "default"
        value = getattr(block, name)
        if name in secrets:
            state = "set" if value.get_secret_value() else "empty"
            lines.append(f"{name}: <secret, {state}> from {origin}")
        elif isinstance(value, list):
            lines.append(f"{name}: {len(value)} entr{'y' if len(value) == 1 else 'ies'} from {origin}")
        elif isinstance(value, str) and ("\n" in value or len(value) > 80):
            lines.append(f"{name}: <{len(value.splitlines())} lines> from {origin}")
        else:
            lines.append(f"{name}: {value} from {origin}")
    return lines
