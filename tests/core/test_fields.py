"""The shared field types: one definition for the config, the blocks and the flow parameters, each
bounded in length and matched in linear time, so a hostile value is refused at once wherever it comes in.

The former slow patterns are the reason: the time zone pattern took 40 s on 44 characters (exponential)
and the IPv6 family was quadratic on a run of ':'; the blocks still used them. Every check here runs a
10k-character near-miss and allows it half a second.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
from pydantic import TypeAdapter, ValidationError

from mailu_core import config, fields
from tests.core.test_bad_input import cpu_limit
from tests.core.test_config import _all_patterns

N = 10_000
BOUND_S = 0.5
BLOCK_DATA = Path(__file__).resolve().parents[1] / "blocks" / "data"

# Near-misses of the shapes the patterns accept: a long run of what a repeated group consumes, then
# one character nothing accepts. The first two are the former exponential and quadratic cases.
HOSTILE: list[str] = [
    "a" + "_" * N + "!",  # old time zone pattern: exponential
    "a:" + ":" * N + "!",  # old IPv6 family: quadratic (0.26 s at 10k, so also 4x longer below)
    "a:" + ":" * (4 * N) + "!",
    ":" * N + "!",
    "0" * N + "!",
    "a" * N + "!",
    "1." * (N // 2) + "!",
    "a." * (N // 2) + "!",
    "a-" * (N // 2) + "!",
    "a/" * (N // 2) + "!",
    "/a" * (N // 2) + "/..",
    "a_+-/" * (N // 5) + "!",
    "Etc/" + "U" * N + "\n",
    "http://" + "a." * (N // 2) + "/$(id)",
    "mailto:a@" + "a." * (N // 2) + "!",
    "x@" + "a" * N + "@sha256:",
    "v=DKIM1; " + "p=" * (N // 2) + "\n",
    "aaaa-" * (N // 5) + "20250101T020000Z!",
    " " * N + "!",
]


def _string_types() -> dict[str, Any]:
    """Every constrained string type in mailu_core.fields, by name."""
    found = {}
    for name, value in vars(fields).items():
        if get_origin(value) is Annotated and get_args(value)[0] is str:
            found[name] = value
    return found


STRING_TYPES = _string_types()


def _timed(check: Any, *args: Any) -> float:
    started = time.perf_counter()
    with cpu_limit(5):
        check(*args)
    return time.perf_counter() - started


def _patterns(node: Any) -> set[str]:
    return _all_patterns(node)


def _every_schema_pattern() -> list[str]:
    """Every pattern the Prefect server checks: the config, every block type, every flow's parameters."""
    from prefect.utilities.callables import parameter_schema

    from mailu_flows.blocks.registry import BLOCK_TYPES
    from tests.core.test_bad_input import _flows

    schemas: list[Any] = [config.StackConfig.model_json_schema()]
    schemas += [block.model_json_schema() for block in BLOCK_TYPES]
    schemas += [parameter_schema(f.fn).model_dump_for_openapi() for f in _flows().values()]
    return sorted(set().union(*(_patterns(s) for s in schemas)))


# --- one definition ------------------------------------------------------------------------------


def test_the_types_cover_every_family() -> None:
    assert {"Timezone", "IPv6", "IPAny", "HostAddress", "CidrAny", "HttpUrl", "BackupId", "ReleaseId"} <= set(
        STRING_TYPES
    )


@pytest.mark.parametrize("name", sorted(STRING_TYPES))
def test_every_string_type_has_a_maximum_length(name: str) -> None:
    schema = TypeAdapter(STRING_TYPES[name]).json_schema()
    assert 0 < schema["maxLength"] <= 4096
    assert "pattern" in schema


def test_config_uses_the_shared_types_not_copies() -> None:
    shared = [name for name in STRING_TYPES if hasattr(config, name)]
    assert {"Timezone", "IPv6", "IPAny", "HostAddress", "HttpUrl", "DnsName"} <= set(shared)
    assert all(getattr(config, name) is STRING_TYPES[name] for name in shared)


def test_blocks_use_the_bounded_types() -> None:
    from mailu_flows.blocks.dns import CloudflareDns, Rfc2136Dns
    from mailu_flows.blocks.ssh import SshHost

    for block, field, type_name in (
        (SshHost, "address", "HostAddress"),
        (Rfc2136Dns, "server", "IPAny"),
        (CloudflareDns, "base_url", "HttpUrl"),
    ):
        expected = TypeAdapter(STRING_TYPES[type_name]).json_schema()
        got = block.model_json_schema()["properties"][field]
        assert (got["pattern"], got["maxLength"]) == (expected["pattern"], expected["maxLength"]), field


def test_the_slow_patterns_are_gone_everywhere() -> None:
    patterns = _every_schema_pattern()
    assert len(patterns) > 40
    for pattern in patterns:
        assert "[0-9A-Fa-f:.]*:" not in pattern, pattern  # quadratic IPv6
        assert "[A-Za-z]+(?:[/_+-]" not in pattern, pattern  # exponential time zone


# --- linear time ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", _every_schema_pattern())
def test_every_schema_pattern_is_fast_on_10k_near_misses(pattern: str) -> None:
    """What the server runs (jsonschema: `re.search`, on the whole value, whatever maxLength says)."""
    compiled = re.compile(pattern)
    for value in HOSTILE:
        elapsed = _timed(compiled.search, value)
        assert elapsed < BOUND_S, f"{pattern!r} took {elapsed:.2f} s on {value[:20]!r}..."


@pytest.mark.parametrize("name", sorted(STRING_TYPES))
def test_every_type_refuses_10k_near_misses_quickly(name: str) -> None:
    """What a run, a block and a config load run: the length check, and the pattern at full length."""
    adapter = TypeAdapter(STRING_TYPES[name])
    longest = adapter.json_schema()["maxLength"]
    for hostile in HOSTILE:
        for value in (hostile, hostile[-longest:]):  # the near-miss as long as the type allows
            started = time.perf_counter()
            with cpu_limit(5), pytest.raises(ValidationError):
                adapter.validate_python(value)
            elapsed = time.perf_counter() - started
            assert elapsed < BOUND_S, f"{name} took {elapsed:.2f} s on {value[:20]!r}..."


@pytest.mark.parametrize("name", sorted(STRING_TYPES))
def test_the_server_check_refuses_a_trailing_newline(name: str) -> None:
    """Python's `$` matches before a final newline; the schema pattern must not let one through."""
    from prefect.utilities.schema_tools.validation import ValidationError as PrefectValidationError
    from prefect.utilities.schema_tools.validation import validate

    examples = {
        "DnsName": "mail.example.com",
        "HostAddress": "mail",
        "IPv4": "192.0.2.1",
        "IPv6": "2001:db8::1",
        "IPAny": "192.0.2.1",
        "IPv4Cidr": "192.0.2.0/24",
        "CidrAny": "2001:db8::/48",
        "PinnedImage": "redis:7@sha256:" + "ab" * 32,
        "BlockName": "inlock-ssh",
        "DockerName": "mailu_mail_data",
        "NetworkName": "mgmt",
        "ComposeProject": "mailu",
        "ComposeService": "imap",
        "TraefikName": "secure-headers",
        "EntryPointName": "smtp",
        "LocalPart": "admin",
        "MailAddress": "canary@example.com",
        "DkimSelector": "dkim",
        "StackName": "inlock-ai",
        "AbsolutePath": "/srv/mailu",
        "StackPath": "compose/mailu.yml",
        "FileName": "cert.pem",
        "Mountpoint": "/",
        "UrlPath": "/admin",
        "HttpUrl": "http://127.0.0.1:8080",
        "HostPort": "127.0.0.1:9115",
        "MailtoUri": "mailto:admin@example.com",
        "RateLimit": "5/hour",
        "MailuVersion": "2024.06",
        "Timezone": "Europe/Berlin",
        "BackupId": "inlock-ai-20250101T020000Z",
        "ReleaseId": "20250101T020000123456Z",
        "ConfirmText": "mail.example.com",
        "DkimTxtValue": "v=DKIM1; k=rsa; p=MIIB",
    }
    assert set(examples) == set(STRING_TYPES), "give every type a valid example"
    adapter = TypeAdapter(STRING_TYPES[name])
    schema = {"type": "object", "properties": {"value": adapter.json_schema()}}
    good = examples[name]
    assert adapter.validate_python(good) == good
    validate({"value": good}, schema, raise_on_error=True)
    with pytest.raises(PrefectValidationError):
        validate({"value": good + "\n"}, schema, raise_on_error=True)
    with pytest.raises(ValidationError):
        adapter.validate_python(good + "\n")


# --- blocks --------------------------------------------------------------------------------------


def _valid_blocks() -> dict[str, tuple[type[Any], dict[str, Any]]]:
    """Each block type with values it accepts (the test keys of tests/blocks/data)."""
    from mailu_flows.blocks.backup import BackupSigningKey
    from mailu_flows.blocks.dns import CloudflareDns, Rfc2136Dns
    from mailu_flows.blocks.gpg import GpgBackupPrivateKey, GpgBackupPublicKey
    from mailu_flows.blocks.mailu import MailuSecrets
    from mailu_flows.blocks.ssh import SshHost
    from mailu_flows.blocks.stack import MailuStack

    def text(name: str) -> str:
        return (BLOCK_DATA / name).read_text()

    fingerprint = text("gpg-test-fingerprint.txt").strip()
    return {
        "SshHost": (
            SshHost,
            {
                "address": "127.0.0.1",
                "user": "deploy",
                "private_key": text("ssh-test-key"),
                "private_key_passphrase": "",
                "host_keys": [text("ssh-test-host-key.pub").strip()],
            },
        ),
        "CloudflareDns": (
            CloudflareDns,
            {"api_token": "cf-test-token", "base_url": "https://api.example.com/v4"},
        ),
        "Rfc2136Dns": (
            Rfc2136Dns,
            {"server": "192.0.2.53", "tsig_key_name": "mailu-ddns", "tsig_secret": "c2VjcmV0LXRzaWc="},
        ),
        "GpgBackupPublicKey": (
            GpgBackupPublicKey,
            {"armored_public_key": text("gpg-test-public.asc"), "fingerprint": fingerprint},
        ),
        "GpgBackupPrivateKey": (
            GpgBackupPrivateKey,
            {
                "armored_private_key": text("gpg-test-private.asc"),
                "passphrase": "p",
                "fingerprint": fingerprint,
            },
        ),
        "BackupSigningKey": (BackupSigningKey, {"key": "k" * 40}),
        "MailuSecrets": (
            MailuSecrets,
            {
                "secret_key": "S" * 16,
                "admin_password": "a-pass",
                "db_password": "d-pass",
                "api_token": "TOKEN1234",
            },
        ),
        "MailuStack": (
            MailuStack,
            {"config": config.load_stack_config(BLOCK_DATA.parents[2] / "examples" / "inlock.ai.yaml")},
        ),
    }


def _block_cases() -> list[tuple[str, str, str]]:
    """(block, field, hostile value) for every text field of every block type."""
    cases = []
    for block_name, (_block_type, values) in _valid_blocks().items():
        for field in values:
            for value in ("a:" + ":" * N + "!", "a" + "_" * N + "\n$(id)", "x" * N):
                cases.append((block_name, field, value))
    return cases


def test_every_block_type_is_attacked() -> None:
    from mailu_flows.blocks.registry import BLOCK_TYPES

    valid = _valid_blocks()
    assert {b.__name__ for b in BLOCK_TYPES} == set(valid)
    for block_type, values in valid.values():
        block_type(**values)  # the baseline is valid
        text_fields = {
            name for name, info in block_type.model_fields.items() if "str" in str(info.annotation).lower()
        }
        assert text_fields <= set(values), f"{block_type.__name__}: fields without a case"


@pytest.mark.parametrize(("block_name", "field", "value"), _block_cases(), ids=lambda v: str(v)[:24])
def test_block_refuses_a_10k_hostile_value_quickly_naming_the_field(
    block_name: str, field: str, value: str
) -> None:
    block_type, values = _valid_blocks()[block_name]
    changed = {**values, field: [value] if isinstance(values[field], list) else value}
    started = time.perf_counter()
    with cpu_limit(5), pytest.raises(ValidationError) as caught:
        block_type(**changed)
    elapsed = time.perf_counter() - started
    assert elapsed < BOUND_S, f"{block_name}.{field} took {elapsed:.2f} s"
    assert {str(e["loc"][0]) for e in caught.value.errors()} == {field}
    assert value not in str(caught.value)  # a block may hold secrets: the value is never echoed


def test_every_config_and_flow_pattern_refuses_newlines_on_the_server() -> None:
    """`Field(pattern=...)` in the config models gets the same guard as the shared types."""
    from prefect.utilities.callables import parameter_schema

    from tests.core.test_bad_input import _flows

    guard = fields.schema_pattern("")[: -len("(?:)")]
    schemas: list[Any] = [config.StackConfig.model_json_schema()]
    schemas += [parameter_schema(f.fn).model_dump_for_openapi() for f in _flows().values()]
    patterns = set().union(*(_patterns(s) for s in schemas))
    assert len(patterns) > 30
    assert [p for p in patterns if not p.startswith(guard)] == []


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("database", "name", "mailu\n"),
        ("database", "host", "mailu-postgres\n"),
        ("mailu", "full_text_search", "en\n"),
        ("dns", "spf", "v=spf1 mx ~all\n"),
        ("dns", "mta_sts_id", "2025\n"),
        ("mailu", "timezone", "Etc/UTC\n"),
    ],
)
def test_prefect_server_refuses_a_config_value_ending_in_a_newline(
    section: str, key: str, value: str
) -> None:
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError as PrefectValidationError
    from prefect.utilities.schema_tools.validation import validate

    from tests.core.test_bad_input import _example, _flows

    schema = parameter_schema(_flows()["deploy"].fn).model_dump_for_openapi()
    good = config.stack_config_from_mapping(_example()).model_dump(mode="json")
    validate({"config": good}, schema, raise_on_error=True)
    good[section][key] = value
    with pytest.raises(PrefectValidationError, match=rf"config\.{section}\.{key}"):
        validate({"config": good}, schema, raise_on_error=True)
