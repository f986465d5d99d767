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
    started = time.perf_counter()
    with cpu_limit(5), pytest.raises(ValueError) as caught:
        stack_config_from_mapping(data, source="hostile.yaml")
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{path}: took {elapsed:.2f} s"
    error = caught.value
    assert isinstance(error, ConfigError)
    fields = [issue.field for issue in error.issues]
    assert field in fields, f"no issue at {field}: {error}"
    assert f"  {field}: " in str(error)  # the message names the field by its dotted path
    # The report stays readable: a 100k-character value is shortened, not repeated in full.
    assert len(str(error)) < 2_000, f"{len(str(error))} characters of error"
