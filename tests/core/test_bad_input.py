"""Hostile values in every field family of the stack config are refused, quickly, naming the field.

Each case starts from examples/inlock.ai.yaml, sets one field to a hostile value (shell
metacharacters, newlines, NUL, Unicode lookalikes, path traversal, 100k-character strings, ReDoS
near-misses) and expects `stack_config_from_mapping` to raise `ConfigError` (a `ValueError`) with an
issue at that field's dotted path, within a second.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailu_core.config import ConfigError, stack_config_from_mapping

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inlock.ai.yaml"
DIGEST = "sha256:" + "ab" * 32
HUGE = 100_000
CYRILLIC_A = "\u0430"  # looks like a Latin 'a'

# (path to set, hostile value, field the error must name)
CASES: list[tuple[str, Any, str]] = [
    # --- mailu settings (rendered into Mailu's env file) ---
    ("mailu.timezone", "Etc/UTC; rm -rf /", "mailu.timezone"),
    ("mailu.timezone", "Europe/Berlin\nLOG_LEVEL=DEBUG", "mailu.timezone"),
    ("mailu.timezone", "a" + "_" * HUGE + "!", "mailu.timezone"),  # the ReDoS near-miss
    ("mailu.timezone", "Etc/" + "U" * HUGE, "mailu.timezone"),
    ("mailu.timezone", "../../etc/localtime", "mailu.timezone"),
    ("mailu.postmaster", "admin$(id)", "mailu.postmaster"),
    ("mailu.message_ratelimit", "200/day`id`", "mailu.message_ratelimit"),
    ("mailu.auth_ratelimit_ip", "5/hour\nDEBUG=true", "mailu.auth_ratelimit_ip"),
    ("mailu.version", "2024.06\x00", "mailu.version"),
    ("mailu.full_text_search", "en; rm -rf /", "mailu.full_text_search"),
    ("mailu.compose_project", "compose; rm -rf /", "mailu.compose_project"),
    # --- URL paths ---
    ("mailu.admin_path", "/admin/../api", "mailu.admin_path"),
    ("mailu.admin_path", "/..", "mailu.admin_path"),
    ("mailu.webmail_path", "//evil.example/webmail", "mailu.webmail_path"),
    ("mailu.api_path", "/api\x00", "mailu.api_path"),
    ("mailu.api_path", "/api /admin", "mailu.api_path"),
    ("mailu.webmail_path", "/webmail\n", "mailu.webmail_path"),
    ("mailu.admin_path", "/" + "a" * HUGE, "mailu.admin_path"),
    # --- file names ---
    ("mailu.tls_cert_file", "../../etc/shadow", "mailu.tls_cert_file"),
    ("mailu.tls_key_file", "key.pem\n", "mailu.tls_key_file"),
    ("mailu.tls_key_file", "k" * HUGE, "mailu.tls_key_file"),
    # --- hostnames and domains ---
    ("mailu.domain", "inlock.ai; rm -rf /", "mailu.domain"),
    ("mailu.hostnames", [f"m{CYRILLIC_A}il.inlock.ai"], "mailu.hostnames[0]"),
    ("mailu.alternative_domains", ["$(id).inlock.ai"], "mailu.alternative_domains[0]"),
    ("mailu.domain", "a" * HUGE, "mailu.domain"),
    ("dns.zone", "inlock.ai\n", "dns.zone"),
    ("traefik.admin_host", "mail.inlock.ai`id`", "traefik.admin_host"),
    ("traefik.webmail_host", f"m{CYRILLIC_A}il.inlock.ai", "traefik.webmail_host"),
    ("database.host", "mailu-postgres;id", "database.host"),
    ("database.name", "mailu; DROP TABLE users", "database.name"),
    ("monitoring.probe_address", "mail.inlock.ai;id", "monitoring.probe_address"),
    ("monitoring.probe_address", "a:" + ":" * HUGE + "!", "monitoring.probe_address"),
    # --- images: digest-pinned only ---
    ("images.front", "ghcr.io/mailu/nginx:2024.06", "images.front"),
    ("images.admin", "ghcr.io/mailu/admin:latest; rm -rf /", "images.admin"),
    ("images.smtp", f"ghcr.io/mailu/postfix@{DIGEST}\n", "images.smtp"),
    ("images.redis", f"$(id)/redis@{DIGEST}", "images.redis"),
    ("images.imap", f"ghcr.io/mailu/dovecot:{'9' * HUGE}@{DIGEST}", "images.imap"),
    ("images.resolver", f"ghcr.io/mailu/unb{CYRILLIC_A}und@{DIGEST}", "images.resolver"),
    # --- networks ---
    ("networks.mgmt", "mgmt; rm -rf /", "networks.mgmt"),
    ("networks.mail", "mail\n", "networks.mail"),
    ("networks.internal", "mail-egress", "networks.internal"),  # the stack's own egress network
    ("networks.mgmt", "mail-webmail", "networks.mgmt"),  # the stack's own webmail network
    ("networks.mgmt", "compose_mail", "networks.mgmt"),  # Docker's name of the stack's mail network
    ("networks.mail_subnet", "192.168.203.0/24; id", "networks.mail_subnet"),
    # --- volumes ---
    ("volumes.mail", "../../etc", "volumes.mail"),
    ("volumes.dkim", "dkim`id`", "volumes.dkim"),
    ("volumes.certs", "v" * HUGE, "volumes.certs"),
    # --- host paths ---
    ("host.stack_root", "/home/comzis/../../etc", "host.stack_root"),
    ("host.stack_root", "/" + "a" * HUGE, "host.stack_root"),
    ("host.compose_file", "compose/$(id).yml", "host.compose_file"),
    ("host.max_command_s", 1, "host.max_command_s"),  # a deadline no command can meet
    ("host.max_command_s", 10**12, "host.max_command_s"),
    ("host.secrets_dir", "secrets\x00", "host.secrets_dir"),
    ("host.traefik_dynamic_file", "mailu.yml; rm -rf /", "host.traefik_dynamic_file"),
    ("host.certs_dir", "../../etc/ssl", "host.certs_dir"),
    ("host.traefik_dynamic_dir", "traefik/" + "d/" * (HUGE // 2) + "x", "host.traefik_dynamic_dir"),
    # secrets and keys never inside the directory Traefik's file provider reads file by file
    ("host.secrets_dir", "traefik/dynamic/secrets", "host.secrets_dir"),
    ("host.secrets_dir", "traefik/dynamic", "host.secrets_dir"),
    ("host.secrets_dir", "/home/comzis/apps/traefik/dynamic/mailu", "host.secrets_dir"),
    ("host.certs_dir", "traefik/dynamic/certs", "host.certs_dir"),
    ("host.traefik_dynamic_dir", "secrets-real", "host.secrets_dir"),  # Traefik pointed at the secrets
    # --- traefik ---
    ("traefik.api_url", "http://127.0.0.1:8080/$(id)", "traefik.api_url"),
    ("traefik.api_url", "http://127.0.0.1:8080/\x00", "traefik.api_url"),
    ("traefik.api_url", "http://127.0.0.1:8080/" + "a" * HUGE, "traefik.api_url"),
    ("traefik.middlewares.rate_limit", "mgmt-ratelimit;id", "traefik.middlewares.rate_limit"),
    ("traefik.web_entrypoint", "web`id`", "traefik.web_entrypoint"),
    ("traefik.cert_resolver", "letsencrypt\n", "traefik.cert_resolver"),
    ("traefik.mgmt_address", "172.20.0.2; id", "traefik.mgmt_address"),
    ("traefik.mgmt_address", ":" * HUGE + "!", "traefik.mgmt_address"),
    ("traefik.tcp_allowlist", ["198.51.100.0/24 || true"], "traefik.tcp_allowlist[0]"),
    ("traefik.check_ca_file", "/etc/ssl/ca.pem; rm -rf /", "traefik.check_ca_file"),
    ("traefik.check_ca_file", "../../etc/passwd", "traefik.check_ca_file"),
    ("traefik.mail_entrypoints[0].name", "smtp\n", "traefik.mail_entrypoints[0].name"),
    # --- dns ---
    ("dns.spf", "v=spf1 mx +all", "dns.spf"),
    ("dns.spf", "v=spf1 mx all", "dns.spf"),
    ("dns.spf", "v=spf1 +all mx ~all", "dns.spf"),
    ("dns.spf", "v=spf1 mx\ninclude:evil.example ~all", "dns.spf"),
    ("dns.spf", "v=spf1 " + "a " * HUGE + "~all", "dns.spf"),
    ("dns.dmarc.rua", "mailto:admin@inlock.ai;rm", "dns.dmarc.rua"),
    ("dns.dkim.selector", "dkim;id", "dns.dkim.selector"),
    ("dns.mta_sts_id", "$(id)", "dns.mta_sts_id"),
    ("dns.nameservers", ["1.1.1.1\n"], "dns.nameservers[0]"),
    (
        "dns.dkim.retired_selectors",
        [{"selector": "../dkim", "remove_after": "2026-01-01"}],
        "dns.dkim.retired_selectors[0].selector",
    ),
    # --- backup ---
    ("backup.destination_dir", "/home/comzis/backups/../../../etc", "backup.destination_dir"),
    ("backup.destination_dir", "/backups/`id`", "backup.destination_dir"),
    ("backup.volumes", ["mailu_mail_data", "mailu_dkim_data; rm -rf /"], "backup.volumes[1]"),
    # --- monitoring ---
    ("monitoring.file_sd_dir", "../../etc", "monitoring.file_sd_dir"),
    ("monitoring.reload_url", "http://127.0.0.1:9090/-/reload;id", "monitoring.reload_url"),
    ("monitoring.prometheus_url", "http://$(id)/", "monitoring.prometheus_url"),
    ("monitoring.blackbox_exporter", "127.0.0.1:9115\n", "monitoring.blackbox_exporter"),
    ("monitoring.blackbox_exporter", "a" * HUGE + ":9115", "monitoring.blackbox_exporter"),
    ("monitoring.postfix_exporter", "$(id):9154", "monitoring.postfix_exporter"),
    ("monitoring.node_exporter_job", 'node"} or vector(1) #', "monitoring.node_exporter_job"),
    ("monitoring.node_exporter_job", "n" * HUGE, "monitoring.node_exporter_job"),
    ("monitoring.mail_volume_mountpoint", "/../etc", "monitoring.mail_volume_mountpoint"),
    ("monitoring.textfile_dir", "/var/lib/node/../../../etc", "monitoring.textfile_dir"),
    # --- blocks (names of Prefect block documents) ---
    ("blocks.ssh_host", "inlock-ssh; rm -rf /", "blocks.ssh_host"),
    ("blocks.mailu_secrets", "../../secrets", "blocks.mailu_secrets"),
    ("blocks.dns_provider", "inlock-cloudflare\x00", "blocks.dns_provider"),
    # --- the stack's own name ---
    ("name", "inlock-ai$(id)", "name"),
]


class CpuLimitExceeded(Exception):
    """Raised inside a check that ran past its CPU budget (catastrophic regex backtracking)."""


@contextmanager
def cpu_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` of CPU time, so a backtracking regex fails the test fast.

    Python's regex engine checks for signals while it matches, so SIGVTALRM (a CPU-time timer, which
    leaves pytest-timeout's SIGALRM alone) stops even an exponential match.
    """

    def expired(signum: int, frame: object) -> None:
        raise CpuLimitExceeded(f"still running after {seconds} s of CPU time")

    previous = signal.signal(signal.SIGVTALRM, expired)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def _example() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(data, dict)
    return data


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    parts: list[str | int] = [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"[^.\[\]]+|\[\d+\]", path)
    ]
    target: Any = data
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = value


def _case_id(case: tuple[str, Any, str]) -> str:
    shown = repr(case[1])
    return f"{case[0]}={shown[:40]}{'...' if len(shown) > 40 else ''}"


def test_the_table_covers_every_field_family() -> None:
    families = {path.split(".")[0] for path, _, _ in CASES}
    assert families >= {
        "mailu", "images", "networks", "volumes", "host", "traefik", "dns", "backup", "monitoring",
        "blocks", "database", "name",
    }  # fmt: skip
    assert len(CASES) >= 40


@pytest.mark.parametrize(("path", "value", "field"), CASES, ids=[_case_id(c) for c in CASES])
def test_hostile_value_is_refused_quickly_naming_the_field(path: str, value: Any, field: str) -> None:
    data = _example()
    _set(data, path, value)
    # Timed in this thread's CPU time: other load on the machine must not fail the check.
    started = time.thread_time()
    with cpu_limit(5), pytest.raises(ValueError) as caught:
        stack_config_from_mapping(data, source="hostile.yaml")
    elapsed = time.thread_time() - started
    assert elapsed < 1.0, f"{path}: took {elapsed:.2f} s"
    error = caught.value
    assert isinstance(error, ConfigError)
    fields = [issue.field for issue in error.issues]
    assert field in fields, f"no issue at {field}: {error}"
    assert f"  {field}: " in str(error)  # the message names the field by its dotted path
    # The report stays readable: a 100k-character value is shortened, not repeated in full.
    assert len(str(error)) < 2_000, f"{len(str(error))} characters of error"


# --- flow parameters -----------------------------------------------------------------------------
#
# A run validates its parameters with `Flow.validate_parameters` before the flow function starts (so
# before anything reaches a host); the Prefect server checks the same JSON schema when it creates a
# run from a deployment. Every parameter of every flow is attacked here, through both.

LONG = 10_000

# The parameters a flow needs besides `config` (the rest have defaults).
FLOW_REQUIRED: dict[str, dict[str, Any]] = {"rollback": {"mode": "teardown", "confirm": "mail.inlock.ai"}}

# (flow name, parameter, hostile value, where the error must point: the parameter or a place in it)
FLOW_CASES: list[tuple[str, str, Any, str]] = [
    # --- deploy ---
    ("deploy", "config", {"mailu": {"timezone": "a" + "_" * LONG + "!"}}, "config.mailu.timezone"),
    ("deploy", "dry_run", "false; rm -rf /", "dry_run"),
    ("deploy", "lock_wait_s", -1, "lock_wait_s"),
    ("deploy", "lock_wait_s", 10**30, "lock_wait_s"),
    ("deploy", "lock_wait_s", "60`id`", "lock_wait_s"),
    ("deploy", "publish_dns", "yes\nno", "publish_dns"),
    ("deploy", "canary", "on; id", "canary"),
    # --- dns-propagation-wait ---
    (
        "dns-propagation-wait", "config", {"traefik": {"mgmt_address": ":" * LONG + "!"}},
        "config.traefik.mgmt_address",
    ),
    ("dns-propagation-wait", "deadline_s", -5, "deadline_s"),
    ("dns-propagation-wait", "deadline_s", 10**12, "deadline_s"),
    ("dns-propagation-wait", "interval_s", float("nan"), "interval_s"),
    ("dns-propagation-wait", "interval_s", -0.5, "interval_s"),
    ("dns-propagation-wait", "bootstrap_resolver", "1.1.1.1; curl evil.example", "bootstrap_resolver"),
    ("dns-propagation-wait", "bootstrap_resolver", "a:" + ":" * LONG + "!", "bootstrap_resolver"),
    ("dns-propagation-wait", "bootstrap_resolver", f"dns.go{CYRILLIC_A}gle", "bootstrap_resolver"),
    ("dns-propagation-wait", "dkim_txt", {"dkim": "v=DKIM1; p=MIIB\nevil IN TXT x"}, "dkim_txt.dkim"),
    ("dns-propagation-wait", "dkim_txt", {"dkim": "v=DKIM1; p=" + "A" * LONG}, "dkim_txt.dkim"),
    ("dns-propagation-wait", "dkim_txt", {"dkim": "v=DKIM1; k=rsa; p=$(id)"}, "dkim_txt.dkim"),
    ("dns-propagation-wait", "dkim_txt", {"../dkim": "v=DKIM1; p=MIIB"}, "dkim_txt"),
    ("dns-propagation-wait", "dkim_txt", {f"s{i}": "v=DKIM1; p=MIIB" for i in range(100)}, "dkim_txt"),
    ("dns-propagation-wait", "check_reverse_dns", "true && id", "check_reverse_dns"),
    ("dns-propagation-wait", "mail_routing", "on;off", "mail_routing"),
    # --- dkim-publish ---
    ("dkim-publish", "config", {"dns": {"dkim": {"selector": "dkim;id"}}}, "config.dns.dkim.selector"),
    ("dkim-publish", "rotate", "1 || true", "rotate"),
    ("dkim-publish", "wait", ["true"], "wait"),
    ("dkim-publish", "force", "yes please", "force"),
    ("dkim-publish", "deadline_s", 7201, "deadline_s"),
    ("dkim-publish", "bootstrap_resolver", "127.0.0.1\n", "bootstrap_resolver"),
    ("dkim-publish", "bootstrap_resolver", "../../etc/resolv.conf", "bootstrap_resolver"),
    ("dkim-publish", "lock_wait_s", -60, "lock_wait_s"),
    # --- backup ---
    ("backup", "config", {"backup": {"destination_dir": "/srv/../../etc"}}, "config.backup.destination_dir"),
    ("backup", "pause_services", ["imap; docker rm -f $(docker ps -q)"], "pause_services.0"),
    ("backup", "pause_services", ["imap", "../../smtp"], "pause_services.1"),
    ("backup", "pause_services", ["x" * LONG], "pause_services.0"),
    ("backup", "pause_services", [f"im{CYRILLIC_A}p"], "pause_services.0"),
    ("backup", "pause_services", [f"svc{i}" for i in range(1000)], "pause_services"),
    ("backup", "lock_wait_s", -1.0, "lock_wait_s"),
    ("backup", "lock_wait_s", float("inf"), "lock_wait_s"),
    ("backup", "lock_wait_s", 1e300, "lock_wait_s"),
    ("backup", "lock_wait_s", "600; id", "lock_wait_s"),
    # --- backup-verify ---
    ("backup-verify", "config", {"name": "inlock-ai$(id)"}, "config.name"),
    ("backup-verify", "time_budget_s", -1800.0, "time_budget_s"),
    ("backup-verify", "time_budget_s", float("nan"), "time_budget_s"),
    ("backup-verify", "time_budget_s", 10**9, "time_budget_s"),
    ("backup-verify", "drill", "no\nyes", "drill"),
    # --- rollback ---
    ("rollback", "config", {"host": {"stack_root": "/" + "a" * LONG}}, "config.host.stack_root"),
    ("rollback", "mode", "teardown; rm -rf /", "mode"),
    ("rollback", "confirm", "mail.inlock.ai; rm -rf /", "confirm"),
    ("rollback", "confirm", "mail.inlock.ai\n", "confirm"),
    ("rollback", "confirm", f"m{CYRILLIC_A}il.inlock.ai", "confirm"),
    ("rollback", "confirm", "m" * LONG, "confirm"),
    ("rollback", "confirm", "", "confirm"),  # required: the run form cannot be left empty
    ("rollback", "restore_backup", "../../etc/passwd", "restore_backup"),
    ("rollback", "restore_backup", "inlock-ai-20250101T020000Z; rm -rf /", "restore_backup"),
    ("rollback", "restore_backup", "inlock-ai-20251399T999999Z", "restore_backup"),  # no such time
    ("rollback", "restore_backup", "a-" * (LONG // 2), "restore_backup"),
    ("rollback", "release", "../../releases/x", "release"),
    ("rollback", "release", "20250101T020000123456Z\n", "release"),
    ("rollback", "release", "1" * LONG, "release"),
    ("rollback", "lock_wait_s", 3601, "lock_wait_s"),
]  # fmt: skip


def _dkim_txt() -> str:
    """The TXT value of a fresh 4096-bit key, made the way dkim-publish makes it for the subflow."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from mailu_core.dns import dkim_txt_value

    key = rsa.generate_private_key(public_exponent=65537, key_size=4096).public_key()
    return dkim_txt_value(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# Values that must keep working: what the flows themselves produce, and what an operator types.
FLOW_VALID: list[tuple[str, str, Any]] = [
    ("rollback", "confirm", "mail.inlock.ai"),
    ("rollback", "confirm", "MAIL.inlock.ai."),  # DNS case and a trailing dot: the flow accepts them
    ("rollback", "confirm", "yes"),
    ("rollback", "restore_backup", "inlock-ai-20250101T020000Z"),
    ("rollback", "restore_backup", "inlock-ai-20250101T020000Z-safety"),
    ("rollback", "release", "20250101T020000123456Z"),
    ("rollback", "lock_wait_s", 0),
    ("dns-propagation-wait", "bootstrap_resolver", "192.0.2.53"),
    ("dkim-publish", "bootstrap_resolver", "2001:db8::53"),
    ("dns-propagation-wait", "dkim_txt", {"dkim": _dkim_txt()}),  # as dkim-publish passes it
    ("dns-propagation-wait", "dkim_txt", {"dkim2024": "k=rsa; t=y:s; h=sha256; p=MIIB"}),  # v= is optional
    ("dns-propagation-wait", "interval_s", 0.3),
    ("backup", "pause_services", ["imap", "smtp", "admin"]),
    ("backup", "lock_wait_s", 600),
    ("backup-verify", "time_budget_s", None),
    ("backup-verify", "time_budget_s", 60),
]  # fmt: skip


def _flows() -> dict[str, Any]:
    from mailu_flows.flows.backup import backup
    from mailu_flows.flows.backup_verify import backup_verify
    from mailu_flows.flows.deploy import deploy
    from mailu_flows.flows.dkim_publish import dkim_publish
    from mailu_flows.flows.dns_wait import dns_propagation_wait
    from mailu_flows.flows.rollback import rollback

    flows = (deploy, dns_propagation_wait, dkim_publish, backup, backup_verify, rollback)
    return {f.name.removeprefix("mailu-"): f for f in flows}


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and key in base else value
    return out


def _parameters(flow_name: str, parameter: str, value: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"config": _example(), **FLOW_REQUIRED.get(flow_name, {})}
    params[parameter] = _merge(params["config"], value) if parameter == "config" else value
    return params


def _flow_case_id(case: tuple[str, str, Any, str]) -> str:
    shown = repr(case[2])
    return f"{case[0]}:{case[1]}={shown[:30]}{'...' if len(shown) > 30 else ''}"


def test_the_flow_table_covers_every_parameter_of_every_flow() -> None:
    import inspect

    flows = _flows()
    assert set(flows) == {
        "deploy", "dns-propagation-wait", "dkim-publish", "backup", "backup-verify", "rollback"
    }  # fmt: skip
    every = {(name, p) for name, f in flows.items() for p in inspect.signature(f.fn).parameters}
    covered = {(flow, parameter) for flow, parameter, _, _ in FLOW_CASES}
    assert every - covered == set(), "parameters without a hostile case"
    assert covered <= every


@pytest.mark.parametrize(("flow_name", "parameter", "value"), FLOW_VALID)
def test_valid_flow_parameters_still_pass(flow_name: str, parameter: str, value: Any) -> None:
    validated = _flows()[flow_name].validate_parameters(_parameters(flow_name, parameter, value))
    assert validated[parameter] == value


@pytest.mark.parametrize(
    ("flow_name", "parameter", "value", "where"), FLOW_CASES, ids=[_flow_case_id(c) for c in FLOW_CASES]
)
def test_hostile_flow_parameter_is_refused_quickly_naming_it(
    flow_name: str, parameter: str, value: Any, where: str
) -> None:
    from prefect.exceptions import ParameterTypeError

    flow = _flows()[flow_name]
    params = _parameters(flow_name, parameter, value)
    started = time.thread_time()
    with cpu_limit(5), pytest.raises(ParameterTypeError) as caught:
        flow.validate_parameters(params)
    elapsed = time.thread_time() - started
    assert elapsed < 1.0, f"{flow_name} {parameter}: took {elapsed:.2f} s"
    problems = str(caught.value).splitlines()[1:]  # " - <loc>: <message>", one per bad parameter
    named = [line.removeprefix(" - ").split(":", 1)[0] for line in problems]
    assert named and all(loc.startswith(parameter) for loc in named), f"{flow_name}: {caught.value}"
    assert any(loc == where or loc.startswith(where + ".") for loc in named), f"no error at {where}: {named}"


# What only the run's own validation catches (the server's JSON-schema check cannot express it).
SERVER_MISSES = {
    ("dns-propagation-wait", "interval_s", "nan"),  # JSON has no NaN; a NaN compares false with every bound
    ("backup-verify", "time_budget_s", "nan"),
    ("rollback", "restore_backup", "'inlock-ai-20251399T999999Z'"),  # the shape of a time, but no time
    ("dns-propagation-wait", "dkim_txt", "{'../dkim': 'v=DKIM1; p=MIIB'}"),  # keys: patternProperties only
}


@pytest.mark.parametrize(
    ("flow_name", "parameter", "value", "where"),
    [c for c in FLOW_CASES if (c[0], c[1], repr(c[2])) not in SERVER_MISSES],
    ids=[_flow_case_id(c) for c in FLOW_CASES if (c[0], c[1], repr(c[2])) not in SERVER_MISSES],
)
def test_prefect_server_refuses_hostile_flow_parameter_quickly(
    flow_name: str, parameter: str, value: Any, where: str
) -> None:
    """The check the server runs on every run it creates from a deployment (enforce_parameter_schema)."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError as PrefectValidationError
    from prefect.utilities.schema_tools.validation import validate

    schema = parameter_schema(_flows()[flow_name].fn).model_dump_for_openapi()
    params = _parameters(flow_name, parameter, value)
    started = time.thread_time()
    with cpu_limit(5), pytest.raises(PrefectValidationError) as caught:
        validate(params, schema, raise_on_error=True)
    elapsed = time.thread_time() - started
    assert elapsed < 1.0, f"{flow_name} {parameter}: took {elapsed:.2f} s"
    assert f"'{parameter}" in str(caught.value) or f"'{where}" in str(caught.value), str(caught.value)[:300]
