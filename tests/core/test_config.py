"""The stack config: loading, one clear error per bad field, the JSON schema, and `config check`."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lab.stack_config import LAB_SERVICES, lab_stack_config
from mailu_core.config import (
    ConfigError,
    StackConfig,
    dump_stack_config,
    load_stack_config,
    parse_stack_config,
    stack_config_from_mapping,
)
from mailu_core.fields import IMAGE_PATTERN, schema_pattern
from mailu_flows.cli import main
from tests.core.test_bad_input import CpuLimitExceeded, cpu_limit

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "inlock.ai.yaml"
DIGEST = "sha256:" + "ab" * 32


def image(name: str) -> str:
    return f"ghcr.io/mailu/{name}:2024.06@{DIGEST}"


# Only what has no default: the smallest config that loads.
MINIMAL: dict[str, Any] = {
    "name": "mini",
    "mailu": {"domain": "example.com", "hostnames": ["mail.example.com"], "public_ipv4": "192.0.2.10"},
    "images": {
        "front": image("nginx"),
        "admin": image("admin"),
        "imap": image("dovecot"),
        "smtp": image("postfix"),
        "antispam": image("rspamd"),
        "resolver": image("unbound"),
        "webmail": image("webmail"),
        "redis": f"redis:7-alpine@{DIGEST}",
        "postgres": f"postgres:16-alpine@{DIGEST}",
    },
    "traefik": {"mgmt_address": "172.20.0.2"},
    "dns": {"zone": "example.com"},
    "backup": {"destination_dir": "/srv/backups/mailu"},
    "blocks": {
        "ssh_host": "mini-ssh",
        "dns_provider": "mini-dns",
        "gpg_public_key": "mini-gpg-public",
        "gpg_private_key": "mini-gpg-private",
        "backup_signing_key": "mini-backup-signing",
        "mailu_secrets": "mini-mailu-secrets",
    },
}


def example_data() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(data, dict)
    return data


def issues_for(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        stack_config_from_mapping(data)
    return [(issue.field, issue.message) for issue in caught.value.issues]


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set (or, with value DELETE, remove) a dotted path like `traefik.mail_entrypoints[1].port`."""
    parts: list[str | int] = [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"[^.\[\]]+|\[\d+\]", path)
    ]
    target: Any = data
    for part in parts[:-1]:
        target = target[part]
    if value is DELETE:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value


DELETE = object()


# --- loading good configs ------------------------------------------------------------------------


def test_example_loads_with_the_seed_values() -> None:
    config = load_stack_config(EXAMPLE)
    assert config.mailu.domain == "inlock.ai"
    assert config.hostname == "mail.inlock.ai"
    assert config.database.flavor == "postgresql" and config.database.managed
    assert config.host.stack_root == "/home/comzis/apps"
    assert str(config.host.resolve(config.host.compose_file)) == "/home/comzis/apps/compose/mailu.yml"
    assert config.host.secrets_dir == "secrets-real"
    assert config.mail_ports == [25, 143, 465, 587, 993]
    assert config.spf_record() == "v=spf1 mx a:mail.inlock.ai ~all"
    assert config.dmarc_record() == "v=DMARC1; p=quarantine; rua=mailto:admin@inlock.ai"
    assert config.traefik.admin_middlewares() == [
        "secure-headers",
        "admin-forward-auth",
        "allowed-admins",
        "mgmt-ratelimit",
    ]
    assert config.traefik.webmail_middlewares() == ["secure-headers", "mgmt-ratelimit"]
    assert {"mailu_mail_data", "mailu_dkim_data", "mailu_rspamd_data", "mailu_redis_data"} <= set(
        config.backup.volumes
    )
    assert "edge" not in {config.networks.mail, config.networks.mgmt, config.networks.internal}


def test_minimal_config_loads_with_defaults() -> None:
    config = stack_config_from_mapping(copy.deepcopy(MINIMAL))
    assert config.mailu.webmail == "roundcube"
    assert config.networks.mail_subnet == "192.168.203.0/24"
    assert config.volumes.dkim == "mailu_dkim_data"
    assert config.dns.dkim.selector == "dkim" and config.dns.dkim.key_bits == 2048
    assert config.spf_record() == "v=spf1 mx a:mail.example.com ~all"
    assert [ep.name for ep in config.traefik.mail_entrypoints] == [
        "smtp",
        "submissions",
        "submission",
        "imap",
        "imaps",
    ]


def test_sqlite_needs_no_postgres_image() -> None:
    data = copy.deepcopy(MINIMAL)
    data["database"] = {"flavor": "sqlite"}
    data["mailu"]["webmail"] = "none"
    del data["images"]["postgres"], data["images"]["webmail"]
    config = stack_config_from_mapping(data)
    assert config.images.postgres is None and config.images.webmail is None


def test_dump_and_parse_round_trip() -> None:
    config = load_stack_config(EXAMPLE)
    assert parse_stack_config(dump_stack_config(config)) == config


def test_lab_config_uses_lab_endpoints_and_round_trips() -> None:
    images = {s: f"127.0.0.1:5000/mailu/{s}@{DIGEST}" for s in LAB_SERVICES}
    config = lab_stack_config(images, "/srv/mailu-lab/apps", dns_provider="cloudflare", database="postgresql")
    assert config.mailu.domain == "inlock.test" and config.hostname == "mail.inlock.test"
    assert [(ep.port, ep.name) for ep in config.traefik.mail_entrypoints] == [
        (25, "smtp"),
        (465, "submissions"),
        (587, "submission"),
        (143, "imap"),
        (993, "imaps"),
    ]
    assert (config.traefik.web_entrypoint, config.traefik.websecure_entrypoint) == ("web", "websecure")
    assert config.traefik.mgmt_address == "172.30.2.2"
    assert parse_stack_config(dump_stack_config(config)) == config


def test_lab_config_rejects_an_unpinned_image() -> None:
    images = {s: f"127.0.0.1:5000/mailu/{s}@{DIGEST}" for s in LAB_SERVICES}
    images["front"] = "127.0.0.1:5000/mailu/nginx:2024.06"
    with pytest.raises(ConfigError, match=r"images\.front: .* is not pinned by digest"):
        lab_stack_config(images, "/srv/lab")


# --- one clear error per bad field ---------------------------------------------------------------

BAD_CASES: list[tuple[str, Any, str, str]] = [
    # (path to change, bad value, field named in the error, text the message must contain)
    ("mailu.domain", "inlock_ai", "mailu.domain", "'inlock_ai' is not a lowercase DNS name"),
    ("mailu.hostnames", ["Mail.inlock.ai"], "mailu.hostnames[0]", "must be lowercase ('mail.inlock.ai')"),
    ("mailu.hostnames", [], "mailu.hostnames", "at least 1 item"),
    ("mailu.hostnames", ["mail.inlock.ai", "mail.inlock.ai"], "mailu.hostnames", "more than once"),
    ("mailu.public_ipv4", "300.1.2.3", "mailu.public_ipv4", "'300.1.2.3' is not a valid IPv4 address"),
    ("mailu.public_ipv4", "mail.inlock.ai", "mailu.public_ipv4", "'mail.inlock.ai' is not a valid IPv4"),
    ("mailu.public_ipv6", "192.0.2.1", "mailu.public_ipv6", "is an IPv4 address; IPv6 is required"),
    ("mailu.webmail", "horde", "mailu.webmail", "got 'horde'; expected 'roundcube', 'snappymail' or 'none'"),
    ("mailu.tls_flavor", "notls", "mailu.tls_flavor", "got 'notls'; expected 'cert'"),
    ("mailu.message_size_limit", 10, "mailu.message_size_limit", "got 10; expected greater than or equal"),
    ("mailu.admin_path", "admin", "mailu.admin_path", "'admin' is not a URL path with a leading '/'"),
    ("mailu.webmail_path", "/admin", "mailu.webmail_path", "each web path must differ"),
    ("mailu.api_enabled", False, "mailu.api_enabled", "false is not supported: the deploy creates"),
    ("mailu.postmaster", "Admin@inlock.ai", "mailu.postmaster", "is not the local part"),
    (
        "images.front",
        "ghcr.io/mailu/nginx:2024.06",
        "images.front",
        "'ghcr.io/mailu/nginx:2024.06' is not pinned by digest; use <repo>@sha256:<64 hex> "
        "(docker inspect --format '{{index .RepoDigests 0}}'",
    ),
    ("images.admin", "ghcr.io/mailu/admin@sha256:abc", "images.admin", "is not 'sha256:' + 64 lowercase hex"),
    ("images.smtp", f"ghcr.io/mailu/postfix@md5:{'a' * 32}", "images.smtp", "is not 'sha256:' + 64"),
    ("images.webmail", DELETE, "images.webmail", "required because mailu.webmail is 'roundcube'"),
    ("images.postgres", DELETE, "images.postgres", "required because database is a managed postgresql"),
    ("images.redis", DELETE, "images.redis", "required but missing"),
    ("database.flavor", "mysql", "database.flavor", "got 'mysql'; expected 'sqlite' or 'postgresql'"),
    ("networks.mgmt", "edge", "networks.mgmt", "'edge' is refused: the plan says NO edge network"),
    ("networks.mail", "edge", "networks.mail", "NO edge network"),
    ("networks.internal", "mgmt", "networks.internal", "is also the mgmt network"),
    ("networks.mail_subnet", "192.168.203.1/24", "networks.mail_subnet", "host bits set; the network is"),
    ("networks.mail_subnet", "8.8.8.0/24", "networks.mail_subnet", "is not a private range"),
    ("networks.mail_subnet", "192.168.203.0", "networks.mail_subnet", "has no /prefix length"),
    ("volumes.redis", "mailu_mail_data", "volumes.redis", "is also the mail volume"),
    ("host.stack_root", "home/comzis/apps", "host.stack_root", "'home/comzis/apps' is not an absolute path"),
    (
        "host.stack_root",
        "/home/comzis/../apps",
        "host.stack_root",
        "is not an absolute path without '.' or '..'",
    ),
    ("host.compose_file", "../compose/mailu.yml", "host.compose_file", "without '.' or '..' segments"),
    (
        "host.traefik_dynamic_file",
        "dyn/mailu.yml",
        "host.traefik_dynamic_file",
        "plain file name without '/'",
    ),
    (
        "traefik.mail_entrypoints[1].port",
        25,
        "traefik.mail_entrypoints",
        "port 25 appears more than once; each mail port has exactly one entrypoint",
    ),
    (
        "traefik.mail_entrypoints[1].name",
        "smtp",
        "traefik.mail_entrypoints",
        "entrypoint name 'smtp' is used for more than one port",
    ),
    (
        "traefik.mail_entrypoints[0].port",
        2525,
        "traefik.mail_entrypoints[0].port",
        "got 2525; expected 25, 465",
    ),
    (
        "traefik.mail_entrypoints",
        [{"port": 993, "name": "imaps"}],
        "traefik.mail_entrypoints",
        "port 25 is missing",
    ),
    ("traefik.web_entrypoint", "smtp", "traefik.web_entrypoint", "is also a mail entrypoint"),
    ("traefik.mgmt_address", "192.168.203.7", "traefik.mgmt_address", "open relay"),
    ("traefik.mgmt_address", "traefik", "traefik.mgmt_address", "'traefik' is not a valid IPv4 or IPv6"),
    ("traefik.tcp_allowlist", ["198.51.100.0/33"], "traefik.tcp_allowlist[0]", "CIDR"),
    ("traefik.admin_host", "admin.inlock.ai", "traefik.admin_host", "is not in mailu.hostnames"),
    (
        "traefik.webmail_exposure",
        "private",
        "traefik.webmail_exposure",
        "expected 'public' or 'forward-auth'",
    ),
    ("traefik.api_url", "127.0.0.1:8080", "traefik.api_url", "is not an http(s) URL"),
    ("traefik.middlewares.secure_headers", "secure headers", "traefik.middlewares.secure_headers", "Traefik"),
    ("dns.provider", "route53", "dns.provider", "got 'route53'; expected 'cloudflare' or 'rfc2136'"),
    ("dns.zone", "inlock.ai.", "dns.zone", "must not end with a dot ('inlock.ai')"),
    ("dns.zone", "example.org", "dns.zone", "'example.org' does not contain mailu.domain 'inlock.ai'"),
    (
        "mailu.hostnames",
        ["mail.inlock.dev", "mail.inlock.ai"],
        "mailu.hostnames[0]",
        "is outside dns.zone 'inlock.ai'",
    ),
    ("mailu.alternative_domains", ["inlock.dev"], "mailu.alternative_domains[0]", "is outside dns.zone"),
    ("dns.ttl", 5, "dns.ttl", "got 5; expected greater than or equal to 60"),
    ("dns.spf", "spf1 mx", "dns.spf", "got 'spf1 mx'; expected a string matching"),
    ("dns.dmarc.policy", "block", "dns.dmarc.policy", "expected 'none', 'quarantine' or 'reject'"),
    ("dns.dmarc.rua", "admin@inlock.ai", "dns.dmarc.rua", "is not a mailto: URI"),
    ("dns.dkim.key_bits", 1024, "dns.dkim.key_bits", "got 1024; expected 2048, 3072 or 4096"),
    ("dns.dkim.selector", "DKIM", "dns.dkim.selector", "is not a DKIM selector"),
    (
        "dns.dkim.retired_selectors",
        [{"selector": "dkim", "remove_after": "2026-01-01"}],
        "dns.dkim.retired_selectors",
        "'dkim' is the current selector",
    ),
    (
        "dns.dkim.retired_selectors",
        [{"selector": "dkim2024", "remove_after": "soon"}],
        "dns.dkim.retired_selectors[0].remove_after",
        "got 'soon'",
    ),
    ("dns.nameservers", ["ns1.inlock.ai"], "dns.nameservers[0]", "is not a valid IPv4 or IPv6 address"),
    ("backup.volumes", ["mailu_mail_data"], "backup.volumes", "must include 'mailu_dkim_data'"),
    ("backup.volumes[2]", "mailu_rspamd", "backup.volumes[2]", "'mailu_rspamd' is not one of the volumes"),
    ("backup.destination_dir", "backups", "backup.destination_dir", "is not an absolute path"),
    ("backup.retention_daily", 0, "backup.retention_daily", "got 0; expected greater than or equal to 1"),
    ("monitoring.reload_url", "ftp://x/-/reload", "monitoring.reload_url", "is not an http(s) URL"),
    ("blocks.ssh_host", "Inlock_SSH", "blocks.ssh_host", "is not a Prefect block document name"),
    (
        "blocks.gpg_private_key",
        "inlock-backup-gpg-public",
        "blocks.gpg_private_key",
        "never holds the private key",
    ),
    ("blocks.mailu_secrets", DELETE, "blocks.mailu_secrets", "required but missing"),
    ("mailuu", {}, "mailuu", "unknown key (typo?); did you mean 'mailu'?"),
    ("dns.dmarc.polcy", "reject", "dns.dmarc.polcy", "did you mean 'policy'?"),
    ("traefik.mail_entrypoints[0].tls", True, "traefik.mail_entrypoints[0].tls", "unknown key"),
    # hostile values (tests/core/test_bad_input.py has many more)
    ("mailu.timezone", "Etc/UTC\nX=1", "mailu.timezone", "is not an IANA time zone name"),
    ("mailu.timezone", "a" + "_" * 60 + "!", "mailu.timezone", "is not an IANA time zone name"),
    ("mailu.timezone", "E" * 65, "mailu.timezone", "expected at most 64 characters"),
    ("mailu.admin_path", "/admin/../api", "mailu.admin_path", "'/admin/../api' has a '.' or '..' segment"),
    ("mailu.webmail_path", "/webmail//x", "mailu.webmail_path", "has an empty segment ('//'"),
    ("mailu.api_path", "/api v2", "mailu.api_path", "'/api v2' contains whitespace or a control character"),
    ("mailu.api_path", "/api\x00", "mailu.api_path", "contains whitespace or a control character"),
    (
        "networks.internal",
        "mail-egress",
        "networks.internal",
        "'mail-egress' is also the stack's own egress network (networks.mail + '-egress')",
    ),
    ("networks.mgmt", "mail-webmail", "networks.mgmt", "is also the stack's own webmail network"),
    ("networks.mgmt", "mail-acme", "networks.mgmt", "is also the stack's own acme network"),
    (
        "networks.mgmt",
        "compose_mail",
        "networks.mgmt",
        "'compose_mail' is the Docker name of the stack's own mail network",
    ),
    ("networks.internal", "compose_mail-egress", "networks.internal", "own egress network"),
    (
        "dns.spf",
        "v=spf1 mx +all",
        "dns.spf",
        "'+all' authorises every host on the Internet to send mail as the domain; end the record with ~all",
    ),
    ("dns.spf", "v=spf1 mx all", "dns.spf", "'all' authorises every host on the Internet"),
    ("dns.spf", "v=spf1 +ALL mx -all", "dns.spf", "'+ALL' authorises every host"),
    ("dns.spf", "v=spf1 mx\n~all", "dns.spf", "contains a newline or control character"),
    ("dns.spf", "v=spf1 mx ~all\n", "dns.spf", "contains a newline or control character"),
    ("traefik.api_url", "http://127.0.0.1:8080/$(id)", "traefik.api_url", "is not an http(s) URL"),
    ("traefik.api_url", "http://admin:secret@127.0.0.1:8080", "traefik.api_url", "no credentials"),
    ("traefik.api_url", "http://127.0.0.1:99999", "traefik.api_url", "has port 99999; a port is 1..65535"),
    ("traefik.check_ca_file", "ca.pem; rm -rf /", "traefik.check_ca_file", "is not an absolute path"),
    ("monitoring.mail_volume_mountpoint", "/../etc", "monitoring.mail_volume_mountpoint", "mountpoint"),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "expected"),
    BAD_CASES,
    ids=[f"{c[0]}={c[1] if c[1] is not DELETE else '<deleted>'}"[:60] for c in BAD_CASES],
)
def test_bad_field_gives_one_clear_error(path: str, value: Any, field: str, expected: str) -> None:
    data = example_data()
    set_path(data, path, value)
    with cpu_limit(5):  # a backtracking pattern fails here instead of hanging
        issues = issues_for(data)
    assert len(issues) == 1, issues
    got_field, message = issues[0]
    assert got_field == field
    assert expected in message, message


def test_all_independent_field_errors_are_reported_together() -> None:
    data = example_data()
    data["images"]["front"] = "ghcr.io/mailu/nginx:2024.06"
    data["networks"]["mgmt"] = "edge"
    data["host"]["stack_root"] = "apps"
    data["dns"]["provider"] = "route53"
    fields = [field for field, _ in issues_for(data)]
    assert fields == ["images.front", "networks.mgmt", "host.stack_root", "dns.provider"]


def test_error_lines_carry_the_yaml_line(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    bad = re.sub(r"(?m)^  front: .*$", "  front: ghcr.io/mailu/nginx:2024.06", text)
    bad = bad.replace("  webmail_exposure: public", "  webmail_exposur: public")
    path = tmp_path / "stack.yaml"
    path.write_text(bad)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(path)
    lines = bad.splitlines()
    by_field = {issue.field: issue for issue in caught.value.issues}
    assert lines[by_field["images.front"].line - 1].strip().startswith("front:")  # type: ignore[operator]
    assert lines[by_field["traefik.webmail_exposur"].line - 1].strip().startswith("webmail_exposur:")  # type: ignore[operator]
    assert str(path) in str(caught.value)
    assert str(by_field["images.front"]).startswith(f"images.front (line {by_field['images.front'].line}): ")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmailu:\n  domain: [inlock.ai\n  hostnames: []\n")
    with pytest.raises(ConfigError) as caught:
        load_stack_config(path)
    (issue,) = caught.value.issues
    assert issue.field == "<yaml>" and issue.line is not None and issue.message.startswith("invalid YAML")
    assert str(path) in str(caught.value) and f"line {issue.line}" in str(caught.value)


def test_duplicate_yaml_keys_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("name: a\nname: b\n")
    (issue,) = caught.value.issues
    assert "duplicate key 'name' (first at line 1)" in issue.message and issue.line == 2


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_a_non_mapping_document_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="expected a mapping of settings"):
        parse_stack_config(text)


def test_config_is_frozen() -> None:
    config = load_stack_config(EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        config.mailu.domain = "evil.example"  # type: ignore[misc]


# --- the JSON schema (what the Prefect server enforces) ------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return StackConfig.model_json_schema()


def test_schema_carries_patterns_enums_and_ranges(schema: dict[str, Any]) -> None:
    defs = schema["$defs"]
    assert defs["Images"]["properties"]["front"]["pattern"] == schema_pattern(IMAGE_PATTERN)
    assert defs["MailuSettings"]["properties"]["webmail"]["enum"] == ["roundcube", "snappymail", "none"]
    assert defs["MailEntryPoint"]["properties"]["port"]["enum"] == [25, 465, 587, 143, 993]
    assert defs["Dns"]["properties"]["ttl"]["minimum"] == 60
    assert "edge" in defs["Networks"]["properties"]["mgmt"]["pattern"]
    assert defs["HostLayout"]["properties"]["stack_root"]["pattern"].startswith("^")
    assert all(d.get("additionalProperties") is False for d in defs.values() if d.get("type") == "object")
    assert schema["additionalProperties"] is False
    assert defs["MailuSettings"]["properties"]["domain"]["description"]


def test_schema_accepts_the_example(schema: dict[str, Any]) -> None:
    document = load_stack_config(EXAMPLE).model_dump(mode="json")
    jsonschema.Draft202012Validator(schema).validate(document)


SCHEMA_REJECTS: list[tuple[str, Any]] = [
    ("images.front", "ghcr.io/mailu/nginx:2024.06"),
    ("images.admin", "ghcr.io/mailu/admin@sha256:abc"),
    ("networks.mgmt", "edge"),
    ("traefik.mail_entrypoints[0].port", 2525),
    ("mailu.webmail", "horde"),
    ("mailu.domain", "Inlock.AI"),
    ("mailu.public_ipv4", "300.1.2.3"),
    ("mailu.message_size_limit", 0),
    ("host.stack_root", "apps"),
    ("host.compose_file", "../x.yml"),
    ("networks.mail_subnet", "192.168.203.0/40"),
    ("dns.provider", "route53"),
    ("dns.dmarc.rua", "admin@inlock.ai"),
    ("blocks.ssh_host", "Inlock_SSH"),
    ("mailu.hostnames", ["mail.inlock.ai", "mail.inlock.ai"]),
    ("unknown_key", 1),
    ("blocks.mailu_secrets", DELETE),
]


@pytest.mark.parametrize(("path", "value"), SCHEMA_REJECTS, ids=[c[0] for c in SCHEMA_REJECTS])
def test_schema_rejects_a_bad_document(schema: dict[str, Any], path: str, value: Any) -> None:
    document = load_stack_config(EXAMPLE).model_dump(mode="json")
    set_path(document, path, value)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(document))
    assert errors, f"{path}={value!r} passed the JSON schema"


def test_prefect_server_validation_rejects_bad_parameters() -> None:
    """The validator the Prefect server runs when a run is created (enforce_parameter_schema)."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError as PrefectValidationError
    from prefect.utilities.schema_tools.validation import validate

    def deploy(config: StackConfig) -> None: ...

    openapi = parameter_schema(deploy).model_dump_for_openapi()
    good = load_stack_config(EXAMPLE).model_dump(mode="json")
    validate({"config": good}, openapi, raise_on_error=True)

    bad = copy.deepcopy(good)
    bad["images"]["front"] = "ghcr.io/mailu/nginx:2024.06"
    with pytest.raises(PrefectValidationError, match=r"config\.images\.front"):
        validate({"config": bad}, openapi, raise_on_error=True)
    bad = copy.deepcopy(good)
    bad["networks"]["internal"] = "edge"
    with pytest.raises(PrefectValidationError, match=r"config\.networks\.internal"):
        validate({"config": bad}, openapi, raise_on_error=True)


def _all_patterns(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                found.add(value)
            else:
                found |= _all_patterns(value)
    elif isinstance(node, list):
        for item in node:
            found |= _all_patterns(item)
    return found


def test_schema_patterns_compile_in_javascript(schema: dict[str, Any]) -> None:
    """The UI validates in the browser: every pattern must be valid ECMA-262 (with and without 'u')."""
    patterns = sorted(_all_patterns(schema))
    script = (
        "const ps = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "for (const p of ps) { new RegExp(p); new RegExp(p, 'u'); }"
    )
    result = subprocess.run(
        ["node", "-e", script], input=json.dumps(patterns), text=True, capture_output=True
    )
    assert result.returncode == 0, result.stderr


# --- `mailu-flows config check` ------------------------------------------------------------------


def test_config_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {EXAMPLE}: stack inlock-ai: inlock.ai on mail.inlock.ai")


def test_config_check_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = example_data()
    data["images"]["front"] = "ghcr.io/mailu/nginx:2024.06"
    data["networks"]["mgmt"] = "edge"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["config", "check", "--config", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"INVALID: {path}: 2 problem(s)"
    assert re.match(
        r"  images\.front \(line \d+\): 'ghcr.io/mailu/nginx:2024.06' is not pinned by digest", out[1]
    )
    assert re.match(r"  networks\.mgmt \(line \d+\): 'edge' is refused", out[2])


def test_config_check_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--config", str(EXAMPLE), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["errors"] == [] and "inlock.ai" in result["summary"]

    path = tmp_path / "bad.yaml"
    path.write_text(EXAMPLE.read_text().replace("provider: cloudflare", "provider: route53"))
    assert main(["config", "check", "--config", str(path), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False
    (error,) = result["errors"]
    assert (
        error["field"] == "dns.provider" and "route53" in error["message"] and isinstance(error["line"], int)
    )


def test_config_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["config", "check", "--config", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"ERROR: {missing}: no such file"
    assert main(["config", "check", "--config", str(missing), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["ok"] is False
    assert main(["config", "check", "--config", str(tmp_path)]) == 2


def test_config_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "StackConfig"


# --- hostile input: linear-time patterns, bounded strings ----------------------------------------


NEAR_MISS_LENGTH = 5_000
# Characters the patterns give a meaning to; a run of one of them, then a character nothing allows,
# is the classic near-miss that makes a backtracking engine try every way of splitting the run.
ATTACK_CHARS = "aAz0.-_+/:@~%=, \t"


def get_path(data: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        data = data[int(part[1:-1])] if part.startswith("[") else data[part]
    return data


def full_example() -> dict[str, Any]:
    """The example, defaults included, with every optional string set: every pattern has a value."""
    data: dict[str, Any] = load_stack_config(EXAMPLE).model_dump(mode="json")
    for path, value in {
        "mailu.alternative_domains": ["alt.inlock.ai"],
        "mailu.public_ipv6": "2001:db8::10",
        "host.certs_dir": "certs",
        "traefik.tcp_allowlist": ["198.51.100.0/24", "2001:db8:1::/48"],
        "traefik.check_address": "203.0.113.10",
        "traefik.check_ca_file": "/etc/ssl/certs/inlock-ca.pem",
        "dns.nameservers": ["192.0.2.53", "2001:db8::53"],
        "dns.mta_sts_id": "20251211",
        "dns.dkim.retired_selectors": [{"selector": "dkim2024", "remove_after": "2026-03-01"}],
        "monitoring.blackbox_sd_dir": "monitoring/prometheus/file_sd/blackbox",
        "monitoring.reload_url": "http://127.0.0.1:9090/-/reload",
        "monitoring.prometheus_url": "https://prometheus.inlock.ai/prom",
        "monitoring.postfix_exporter": "127.0.0.1:9154",
        "monitoring.probe_address": "mail.inlock.ai",
        "monitoring.probe_ca_file": "/etc/ssl/certs/inlock-ca.pem",
        "monitoring.rspamd_address": "192.168.203.252",
        "monitoring.textfile_dir": "/var/lib/node_exporter/textfile",
        "monitoring.mail_volume_mountpoint": "/var/lib/docker",
        "canary.mailbox": "canary@inlock.ai",
        "canary.inbound_sender": "probe@runner.example.net",
        "canary.inbound_helo": "runner.example.net",
        "canary.resolvers": ["192.0.2.53:53"],
        "blocks.canary_password": "inlock-canary-password",
        "accounts": {
            "domains": [
                {
                    "name": "team.inlock.ai",
                    "alternatives": ["team2.inlock.ai"],
                    "managers": ["bo@team.inlock.ai"],
                    "max_quota": "2G",
                    "comment": "team",
                }
            ],
            "users": [
                {
                    "address": "bo@team.inlock.ai",
                    "display_name": "Bo",
                    "comment": "ops",
                    "quota": "1G",
                    "forward": {"to": ["bo@example.org"]},
                    "reply": {"subject": "away", "body": ["back soon"]},
                    "password_block": "bo-password",
                },
                {"address": "canary@inlock.ai", "password_block": "inlock-canary-password"},
            ],
            "aliases": [{"address": "ops@team.inlock.ai", "to": ["bo@team.inlock.ai"], "comment": "ops"}],
            "relays": [{"name": "relay.inlock.ai", "smtp": "smtp.inlock.ai:25", "comment": "old"}],
        },
    }.items():
        set_path(data, path, value)
    return data


def _schema_patterns(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted config path, pattern) of every string in the schema that has a pattern."""
    defs = schema["$defs"]
    found: list[tuple[str, str]] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        if "pattern" in node:
            found.append((path, node["pattern"]))
        for option in node.get("anyOf", []):
            walk(option, path)
        if "items" in node:
            walk(node["items"], f"{path}[0]")
        for name, prop in node.get("properties", {}).items():
            walk(prop, f"{path}.{name}" if path else name)

    walk(schema, "")
    return found


PATTERN_FIELDS = _schema_patterns(StackConfig.model_json_schema())


def near_misses(valid: str, length: int = NEAR_MISS_LENGTH) -> list[str]:
    """Long values that almost match: a valid start, then a long run, then a character nothing allows."""
    values = []
    for char in sorted(set(ATTACK_CHARS) | set(valid)):
        run = char * length
        values += [run + "!", valid[:1] + run + "!", valid + run + "\n"]
    for sep in ".-/: ":
        values.append((valid + sep) * (length // (len(valid) + 1)) + "!")
    return values


def test_every_field_with_a_pattern_is_attacked() -> None:
    data = full_example()
    stack_config_from_mapping(copy.deepcopy(data))
    paths = [path for path, _ in PATTERN_FIELDS]
    assert len(paths) >= 60 and "mailu.timezone" in paths and "dns.spf" in paths
    for path in paths:
        assert isinstance(get_path(data, path), str), path


@pytest.mark.parametrize(("path", "pattern"), PATTERN_FIELDS, ids=[p for p, _ in PATTERN_FIELDS])
def test_pattern_runs_in_linear_time(path: str, pattern: str) -> None:
    """A 5,000-character near-miss is decided fast by the schema's pattern and by pydantic.

    `re.search` is what the Prefect server's JSON-schema check runs on every run it creates (it
    checks the pattern even when maxLength already failed), so the schema's pattern must also stay
    fast at 20,000 characters, which a quadratic pattern does not.
    """
    data = full_example()
    compiled = re.compile(pattern)
    valid = get_path(data, path)
    assert compiled.search(valid), f"{path}: the example value does not match"
    # Timed in this thread's CPU time: other load on the machine must not fail a linear-time check.
    slowest = (0.0, "", "")
    checks: list[tuple[str, tuple[str, ...]]] = [
        (value, ("schema", "pydantic")) for value in near_misses(valid)
    ]
    checks += [(value, ("schema",)) for value in near_misses(valid, 4 * NEAR_MISS_LENGTH)]
    for value, kinds in checks:
        set_path(data, path, value)
        for check in kinds:
            started = time.thread_time()
            try:
                with cpu_limit(2):
                    if check == "schema":
                        compiled.search(value)
                    else:
                        with contextlib.suppress(ConfigError):
                            stack_config_from_mapping(data)
            except CpuLimitExceeded:
                pytest.fail(f"{path}: {check} check backtracks on {value[:20]!r}...{value[-3:]!r}")
            elapsed = time.thread_time() - started
            slowest = max(slowest, (elapsed, check, value))
    elapsed, check, value = slowest
    assert elapsed < 0.1, f"{path}: {check} check took {elapsed:.3f} s on {value[:20]!r}...{value[-3:]!r}"


def test_patterns_run_in_linear_time_in_javascript(schema: dict[str, Any]) -> None:
    """The browser's engine backtracks too: the same near-misses are decided fast there."""
    data = full_example()
    cases = [[pattern, [v for v in near_misses(get_path(data, path))]] for path, pattern in PATTERN_FIELDS]
    script = (
        "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8')); let worst = [0, ''];"
        "for (const [p, values] of cases) { const r = new RegExp(p, 'u');"
        "  for (const v of values) { const t = process.hrtime.bigint(); r.test(v);"
        "    const ms = Number(process.hrtime.bigint() - t) / 1e6; if (ms > worst[0]) worst = [ms, p]; } }"
        "console.log(JSON.stringify(worst));"
    )
    result = subprocess.run(
        ["node", "-e", script], input=json.dumps(cases), text=True, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    worst_ms, worst_pattern = json.loads(result.stdout)
    assert worst_ms < 100, f"{worst_pattern!r} took {worst_ms:.0f} ms in JavaScript"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("mailu.timezone", "a" + "_" * NEAR_MISS_LENGTH + "!"),
        ("traefik.mgmt_address", ":" * 100_000 + "!"),
        ("mailu.public_ipv6", "2" + ":" * 100_000 + "!"),
        ("traefik.tcp_allowlist", ["1" + ":" * 100_000 + "!"]),
    ],
    ids=["timezone", "mgmt_address", "public_ipv6", "tcp_allowlist"],
)
def test_prefect_server_check_is_fast_on_a_near_miss(path: str, value: Any) -> None:
    """The check the Prefect server runs on every run it creates refuses a ReDoS near-miss at once."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError as PrefectValidationError
    from prefect.utilities.schema_tools.validation import validate

    def deploy(config: StackConfig) -> None: ...

    openapi = parameter_schema(deploy).model_dump_for_openapi()
    bad = load_stack_config(EXAMPLE).model_dump(mode="json")
    set_path(bad, path, value)
    started = time.thread_time()
    with cpu_limit(5), pytest.raises(PrefectValidationError):
        validate({"config": bad}, openapi, raise_on_error=True)
    assert time.thread_time() - started < 0.5


def _strings(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "string":
            found.append((path, node))
        for key, value in node.items():
            found += _strings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _strings(item, f"{path}[{i}]")
    return found


def test_every_string_in_the_schema_is_bounded_and_constrained(schema: dict[str, Any]) -> None:
    """No free text: every string has a maxLength and a pattern or an enum (dates have their format)."""
    strings = [(path, node) for path, node in _strings(schema) if node.get("format") != "date"]
    assert len(strings) >= 60
    unbounded = [path for path, node in strings if "maxLength" not in node and "enum" not in node]
    assert unbounded == []
    free = [path for path, node in strings if not {"pattern", "enum", "const"} & set(node)]
    assert free == []


def test_derived_network_names_match_the_compose_renderer() -> None:
    from mailu_core.render.compose import network_keys

    config = load_stack_config(EXAMPLE)
    assert network_keys(config) == config.networks.own()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("mailu.timezone", "Europe/Berlin"),
        ("mailu.timezone", "America/Argentina/Buenos_Aires"),
        ("mailu.timezone", "America/Port-au-Prince"),
        ("mailu.timezone", "Etc/GMT+5"),
        ("mailu.timezone", "Etc/GMT-14"),
        ("mailu.timezone", "EST5EDT"),
        ("mailu.timezone", "UTC"),
        ("mailu.admin_path", "/mail/admin"),
        ("mailu.webmail_path", "/web.mail_v2~x"),
        ("traefik.api_url", "https://traefik.inlock.ai:8443/base/"),
        ("traefik.api_url", "http://[::1]:8080"),
        ("traefik.api_url", "http://localhost"),
        ("monitoring.reload_url", "http://127.0.0.1:9090/prometheus/-/reload"),
        ("dns.spf", "v=spf1 -all"),
        ("dns.spf", "v=spf1 mx a:mail.inlock.ai ip4:203.0.113.0/24 include:_spf.example.net ?all"),
        ("dns.spf", "v=spf1  mx   -all"),
        ("dns.spf", "v=spf1 a:allmail.inlock.ai ~all"),
        ("networks.mgmt", "mail-egress-proxy"),
        ("networks.internal", "compose_db"),
        ("traefik.tcp_allowlist", ["2001:db8::/32", "198.51.100.0/24"]),
        ("monitoring.mail_volume_mountpoint", "/var/lib/docker"),
        ("traefik.check_ca_file", "/etc/ssl/certs/ca-certificates.crt"),
    ],
)
def test_legitimate_values_still_load(path: str, value: Any, schema: dict[str, Any]) -> None:
    data = example_data()
    set_path(data, path, value)
    config = stack_config_from_mapping(data)
    document = config.model_dump(mode="json")
    assert get_path(document, path) == value
    jsonschema.Draft202012Validator(schema).validate(document)


@pytest.mark.parametrize(
    ("spf", "ok"),
    [
        ("v=spf1 mx a:mail.inlock.ai ~all", True),
        ("v=spf1 -all", True),
        ("v=spf1 include:all.example.net ?all", True),
        ("v=spf1 mx +all", False),
        ("v=spf1 mx all", False),
        ("v=spf1 +all mx ~all", False),
        ("v=spf1 all -all", False),
        ("v=spf1 mx\n~all", False),
        ("v=spf1 mx\tip4:192.0.2.1 ~all", False),
        ("v=spf1 a:m\u0430il.inlock.ai ~all", False),
        ("v=spf1 mx", False),
    ],
)
def test_spf_schema_pattern_agrees_with_validation(spf: str, ok: bool, schema: dict[str, Any]) -> None:
    """The schema's SPF pattern (with a lookahead) decides as pydantic's pattern + validator do."""
    pattern = schema["$defs"]["Dns"]["properties"]["spf"]["anyOf"][0]["pattern"]
    data = example_data()
    data["dns"]["spf"] = spf
    try:
        stack_config_from_mapping(data)
        loaded = True
    except ConfigError:
        loaded = False
    assert (loaded, bool(re.fullmatch(pattern, spf))) == (ok, ok)


def test_a_huge_value_is_shown_cut_in_the_error() -> None:
    data = example_data()
    data["mailu"]["tls_cert_file"] = "c" * 100_000
    data["traefik"]["api_url"] = "http://x/" + "$" * 1_000
    issues = dict(issues_for(data))
    assert issues["mailu.tls_cert_file"].startswith("got 'ccc")
    assert "...; expected at most 255 characters" in issues["mailu.tls_cert_file"]
    assert len(issues["traefik.api_url"]) < 400 and "... is not an http(s) URL" in issues["traefik.api_url"]


@pytest.mark.parametrize("dns_provider", ["cloudflare", "rfc2136"])
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_lab_configs_still_load(dns_provider: Any, database: Any) -> None:
    images = {s: f"127.0.0.1:5000/mailu/{s}@{DIGEST}" for s in LAB_SERVICES}
    config = lab_stack_config(images, "/srv/mailu-lab/apps", dns_provider=dns_provider, database=database)
    assert parse_stack_config(dump_stack_config(config)) == config
