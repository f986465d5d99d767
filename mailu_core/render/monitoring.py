"""Monitoring files for the host's existing Prometheus, blackbox exporter and Grafana (pure renderers).

Why these files and not `prometheus.yml`: the host's Prometheus (Debian 2.42, no
`scrape_config_files`) is the operator's; it already watches file_sd globs and a `rule_files` glob,
so the deploy adds Mailu by writing files there and asking Prometheus to reload. Every file carries
the stack's name, so several stacks (or other projects) share the directories without clashing, and
`monitoring_paths(cfg)` lists them as a set for removal.

What is scraped and how it is reached:
- rspamd's controller `/metrics` (antispam:11334). antispam sits only on the internal `mail`
  network, and its controller answers `/metrics` only to `secure_ip` (127.0.0.1 and Mailu's SUBNET;
  anything else gets 401). Docker gives the host an address on every bridge network, internal ones
  included (the `.1` gateway, inside SUBNET), so a Prometheus running on the host reaches antispam
  directly: the compose file pins antispam to `monitoring.rspamd_address` on the mail network and
  the target is that address. Traefik cannot do it (it is not on `mail`), and joining antispam to
  `mgmt` would not pass `secure_ip`. A Prometheus inside a container cannot reach the internal
  network; such a host needs a Prometheus (or an agent) on the host.
- a Postfix exporter, when `monitoring.postfix_exporter` names one (postfix_* metrics).
- the blackbox exporter probes each mail port through Traefik's entrypoints (STARTTLS on 25, 587
  and 143, implicit TLS on 465 and 993, certificate checked against the first hostname) and the
  admin and webmail URLs. The exporter's config file is the operator's and has no include, so the
  modules are rendered into a file of their own: merge its `modules:` into the exporter's config, or
  run an exporter with `--config.file` pointing at it. Module names carry the stack name.
- the host's node exporter: disk usage of the filesystem holding the volumes, and textfile-
  collector metrics the flows define (write them with `textfile_metric`):
  `mailu_backup_last_verified_timestamp_seconds{stack}` (Unix time of the newest archive that
  backup-verify decrypted and checked) and `mailu_container_healthy{stack,service}` (1 healthy or no
  health check, 0 otherwise); with the mail canary, `mailu_canary_last_success_timestamp_seconds{stack}`
  and `mailu_canary_delivery_latency_seconds{stack,direction}` (flows/canary.py).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from mailu_core.canary import CANARY_LAST_SUCCESS_METRIC, CANARY_LATENCY_METRIC
from mailu_core.config import StackConfig
from mailu_core.render.yamlout import dump_yaml

__all__ = [
    "BACKUP_VERIFIED_METRIC",
    "BLACKBOX_METRICS",
    "CONTAINER_HEALTHY_METRIC",
    "NODE_METRICS",
    "POSTFIX_METRICS",
    "RSPAMD_METRICS",
    "Probe",
    "alert_names",
    "module_name",
    "monitoring_file_paths",
    "monitoring_paths",
    "probes",
    "render_alert_rules",
    "render_blackbox_modules",
    "render_blackbox_targets",
    "render_dashboard",
    "render_monitoring",
    "render_scrape_targets",
    "rspamd_address",
    "rspamd_target",
    "textfile_metric",
]

RSPAMD_PORT = 11334

BACKUP_VERIFIED_METRIC = "mailu_backup_last_verified_timestamp_seconds"
CONTAINER_HEALTHY_METRIC = "mailu_container_healthy"

# Metric names each source produces that the rules and the dashboard use (the tests hold the
# dashboard to these; the lab tests check the rspamd and blackbox ones against real output).
RSPAMD_METRICS = frozenset({"rspamd_scanned_total", "rspamd_spam_total", "rspamd_ham_total"})
BLACKBOX_METRICS = frozenset(
    {"probe_success", "probe_duration_seconds", "probe_ssl_earliest_cert_expiry", "probe_http_status_code"}
)
NODE_METRICS = frozenset({"node_filesystem_avail_bytes", "node_filesystem_size_bytes"})
POSTFIX_METRICS = frozenset(
    {"postfix_showq_message_size_bytes_count", "postfix_smtp_messages_processed_total"}
)
TEXTFILE_METRICS = frozenset(
    {BACKUP_VERIFIED_METRIC, CONTAINER_HEALTHY_METRIC, CANARY_LAST_SUCCESS_METRIC, CANARY_LATENCY_METRIC}
)
SCRAPE_METRICS = frozenset({"up"})  # Prometheus' own per-target series


@dataclass(frozen=True)
class Probe:
    """One blackbox probe: what it checks, through which module, at which target."""

    name: str  # smtp, submissions, submission, imap, imaps, admin, webmail
    kind: str  # mail | web
    module: str  # generic module kind; `module_name(cfg, kind)` is the rendered name
    target: str


_MAIL_MODULES = {25: "smtp_starttls", 465: "smtps", 587: "smtp_starttls", 143: "imap_starttls", 993: "imaps"}


def module_name(cfg: StackConfig, kind: str) -> str:
    """Module names carry the stack name: one exporter config may hold several stacks' modules."""
    return f"mailu_{cfg.name}_{kind}".replace("-", "_")


def _probe_host(cfg: StackConfig) -> str:
    address = cfg.monitoring.probe_address or cfg.hostname
    return f"[{address}]" if ":" in address else address


def probes(cfg: StackConfig) -> list[Probe]:
    """Every mail entrypoint (published port) and the admin and webmail URLs, in port order."""
    host = _probe_host(cfg)
    out = [
        Probe(ep.name, "mail", _MAIL_MODULES[ep.port], f"{host}:{ep.host_port}")
        for ep in sorted(cfg.traefik.mail_entrypoints, key=lambda e: (e.port != 25, e.port))
    ]
    port = cfg.traefik.websecure_published_port
    base = f"https://{host}" + ("" if port == 443 else f":{port}")
    out.append(Probe("admin", "web", "https_admin", f"{base}{cfg.mailu.admin_path}/"))
    if cfg.mailu.webmail != "none":
        out.append(Probe("webmail", "web", "https_webmail", f"{base}{cfg.mailu.webmail_path}/"))
    return out


def rspamd_address(cfg: StackConfig) -> str:
    """antispam's fixed address on the mail network: the configured one, else the third-last."""
    if cfg.monitoring.rspamd_address:
        return cfg.monitoring.rspamd_address
    net = ipaddress.ip_network(cfg.networks.mail_subnet)
    return str(net.broadcast_address - 2)  # Mailu's template keeps subnet[-2] for its resolver


def rspamd_target(cfg: StackConfig) -> str:
    return f"{rspamd_address(cfg)}:{RSPAMD_PORT}"


def monitoring_file_paths(cfg: StackConfig) -> dict[str, str]:
    """kind -> stack-relative path of each monitoring file (scrape, blackbox, rules, modules, dashboard)."""
    m, stem = cfg.monitoring, f"mailu-{cfg.name}"
    return {
        "scrape": str(PurePosixPath(m.file_sd_dir) / f"{stem}.yml"),
        "blackbox": str(PurePosixPath(m.blackbox_dir()) / f"{stem}.yml"),
        "rules": str(PurePosixPath(m.rules_dir) / f"{stem}.yml"),
        "modules": m.blackbox_modules_file,
        "dashboard": m.dashboard_file,
    }


def monitoring_paths(cfg: StackConfig) -> list[str]:
    """The monitoring files as one removable set (what a rollback or an uninstall deletes)."""
    return sorted(monitoring_file_paths(cfg).values()) if cfg.monitoring.enabled else []


# --- targets -------------------------------------------------------------------------------------


def _header(what: str) -> str:
    return f"# {what}, generated by mailu-flows from the stack config; a deploy overwrites it.\n"


def render_scrape_targets(cfg: StackConfig) -> str:
    """file_sd targets for what Mailu exposes (rspamd; a Postfix exporter when configured)."""
    groups: list[dict[str, Any]] = []
    if cfg.monitoring.scrape_rspamd:
        groups.append(
            {
                "targets": [rspamd_target(cfg)],
                "labels": {"__metrics_path__": "/metrics", "stack": cfg.name, "service": "antispam"},
            }
        )
    if cfg.monitoring.postfix_exporter:
        groups.append(
            {"targets": [cfg.monitoring.postfix_exporter], "labels": {"stack": cfg.name, "service": "smtp"}}
        )
    return _header("Prometheus file_sd targets of the Mailu stack") + dump_yaml(groups)


def render_blackbox_targets(cfg: StackConfig) -> str:
    """file_sd targets for the host's blackbox job: `module` and `exporter` labels per probe."""
    groups = [
        {
            "targets": [p.target],
            "labels": {
                "module": module_name(cfg, p.module),
                "exporter": cfg.monitoring.blackbox_exporter,
                "stack": cfg.name,
                "probe": p.name,
                "kind": p.kind,
            },
        }
        for p in probes(cfg)
    ]
    return _header("Blackbox probe targets of the Mailu stack") + dump_yaml(groups)


def _tls(cfg: StackConfig, server_name: str) -> dict[str, Any]:
    tls: dict[str, Any] = {"server_name": server_name}
    if cfg.monitoring.probe_ca_file:
        tls["ca_file"] = cfg.monitoring.probe_ca_file
    return tls


def render_blackbox_modules(cfg: StackConfig) -> str:
    """Blackbox modules that pass against Mailu for real (notes §8: `^250[ -]STARTTLS`, since STARTTLS
    can be the last EHLO line; IMAP asks for CAPABILITY, as a proxy's greeting may not list it)."""
    helo = f"EHLO {cfg.hostname}\r"  # the exporter appends "\n"
    tls = _tls(cfg, cfg.hostname)
    smtp_starttls: list[dict[str, Any]] = [
        {"expect": "^220[ -]"},
        {"send": helo},
        {"expect": "^250[ -]STARTTLS"},
        {"send": "STARTTLS\r"},
        {"expect": "^220"},
        {"starttls": True},
        {"send": helo},
        {"expect": "^250 "},
        {"send": "QUIT\r"},
    ]
    imap_starttls: list[dict[str, Any]] = [
        {"expect": r"^\* OK"},
        {"send": ". CAPABILITY\r"},
        {"expect": r"^\* CAPABILITY .*STARTTLS"},
        {"expect": r"^\. OK"},
        {"send": ". STARTTLS\r"},
        {"expect": r"^\. OK"},
        {"starttls": True},
        {"send": ". CAPABILITY\r"},
        {"expect": r"^\* CAPABILITY IMAP4rev1"},
        {"send": ". LOGOUT\r"},
    ]

    def tcp(steps: list[dict[str, Any]], implicit: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"query_response": steps, "tls_config": tls}
        if implicit:
            body = {"tls": True, **body}
        return {"prober": "tcp", "timeout": "5s", "tcp": body}

    def https(host: str, codes: list[int]) -> dict[str, Any]:
        return {
            "prober": "http",
            "timeout": "5s",
            "http": {
                "method": "GET",
                "headers": {"Host": host},
                "valid_status_codes": codes,
                "follow_redirects": False,
                "fail_if_not_ssl": True,
                "tls_config": _tls(cfg, host),
            },
        }

    modules = {
        module_name(cfg, "smtp_starttls"): tcp(smtp_starttls, False),
        module_name(cfg, "smtps"): tcp([{"expect": "^220[ -]"}, {"send": "QUIT\r"}], True),
        module_name(cfg, "imap_starttls"): tcp(imap_starttls, False),
        module_name(cfg, "imaps"): tcp([{"expect": r"^\* OK"}, {"send": ". LOGOUT\r"}], True),
        # The admin UI sits behind forward-auth: a 401/302 to the login proves route and certificate.
        module_name(cfg, "https_admin"): https(cfg.admin_host, [200, 302, 303, 307, 401]),
    }
    if cfg.mailu.webmail != "none":
        # Mailu's webmail sends a signed-out browser to its own sign-in page: a 302 whose Location is
        # Mailu's `/sso/login` is the healthy answer (anything else that redirects is not).
        webmail = https(cfg.webmail_host, [200, 302])
        webmail["http"]["fail_if_header_not_matches"] = [
            {"header": "Location", "regexp": "/sso/login", "allow_missing": True}
        ]
        modules[module_name(cfg, "https_webmail")] = webmail
    head = _header("Blackbox exporter modules for the Mailu probes") + (
        "# Merge `modules:` into the exporter's config file, or run an exporter with --config.file here.\n"
    )
    return head + dump_yaml({"modules": modules})


# --- alert rules ---------------------------------------------------------------------------------

ALERTS = (
    "MailuMailPortDown",
    "MailuWebEndpointDown",
    "MailuCertificateExpiring",
    "MailuMailQueueGrowing",
    "MailuMailVolumeDiskFull",
    "MailuBackupVerifyStale",
    "MailuBackupNeverVerified",
    "MailuContainerUnhealthy",
    "MailuMetricsDown",
    "MailuCanaryNoSuccess",
    "MailuCanaryNeverSucceeded",
    "MailuCanarySlow",
)
_CANARY_ALERTS = ("MailuCanaryNoSuccess", "MailuCanaryNeverSucceeded", "MailuCanarySlow")


def alert_names(cfg: StackConfig) -> list[str]:
    """The alerts the rule file holds for `cfg` (rspamd's only when scraped, the canary's only when the
    canary runs)."""
    canary = cfg.blocks.canary_password is not None
    return [
        a
        for a in ALERTS
        if (a != "MailuMetricsDown" or cfg.monitoring.scrape_rspamd) and (a not in _CANARY_ALERTS or canary)
    ]


def render_alert_rules(cfg: StackConfig) -> str:
    """One rule group per stack; every alert is labelled `stack` and `severity`."""
    m, s = cfg.monitoring, f'stack="{cfg.name}"'
    node = f'job="{m.node_exporter_job}",mountpoint="{m.mail_volume_mountpoint}"'
    max_age_s = cfg.backup.verify_max_age_hours * 3600

    def alert(name: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity, "stack": cfg.name},
            "annotations": {"summary": summary},
        }

    rules = [
        alert(
            "MailuMailPortDown",
            f'probe_success{{{s},kind="mail"}} == 0',
            f"{m.port_down_minutes}m",
            "critical",
            "Mail probe {{ $labels.probe }} ({{ $labels.instance }}) has failed for "
            f"{m.port_down_minutes} minutes.",
        ),
        alert(
            "MailuWebEndpointDown",
            f'probe_success{{{s},kind="web"}} == 0',
            f"{m.port_down_minutes}m",
            "warning",
            "HTTPS probe {{ $labels.probe }} ({{ $labels.instance }}) is failing.",
        ),
        alert(
            "MailuCertificateExpiring",
            f"probe_ssl_earliest_cert_expiry{{{s}}} - time() < {m.cert_expiry_days} * 86400",
            "10m",
            "warning",
            "Certificate on {{ $labels.probe }} expires in {{ $value | humanizeDuration }} "
            f"(less than {m.cert_expiry_days} days).",
        ),
        alert(
            "MailuMailQueueGrowing",
            f"sum by (stack) (postfix_showq_message_size_bytes_count{{{s}}}) > {m.queue_max_messages}\n"
            f"and sum by (stack) (delta(postfix_showq_message_size_bytes_count{{{s}}}[15m])) > 0",
            f"{m.queue_growth_minutes}m",
            "warning",
            "The Postfix queue holds {{ $value }} messages and has kept growing for "
            f"{m.queue_growth_minutes} minutes.",
        ),
        alert(
            "MailuMailVolumeDiskFull",
            f"100 * (1 - node_filesystem_avail_bytes{{{node}}} / node_filesystem_size_bytes{{{node}}})"
            f" > {m.disk_usage_percent}",
            "15m",
            "warning",
            f"The filesystem holding the mail volumes ({m.mail_volume_mountpoint}) is "
            '{{ $value | printf "%.0f" }}% full.',
        ),
        alert(
            "MailuBackupVerifyStale",
            f"time() - max by (stack) ({BACKUP_VERIFIED_METRIC}{{{s}}}) > {max_age_s}",
            "10m",
            "critical",
            f"The newest verified backup is older than {cfg.backup.verify_max_age_hours} hours.",
        ),
        alert(
            "MailuBackupNeverVerified",
            f"absent({BACKUP_VERIFIED_METRIC}{{{s}}})",
            f"{cfg.backup.verify_max_age_hours}h",
            "critical",
            "No verified backup has been reported (backup-verify writes "
            f"{BACKUP_VERIFIED_METRIC} for the node exporter's textfile collector).",
        ),
        alert(
            "MailuContainerUnhealthy",
            f"{CONTAINER_HEALTHY_METRIC}{{{s}}} == 0",
            "5m",
            "critical",
            "Container {{ $labels.service }} is not healthy.",
        ),
    ]
    if m.scrape_rspamd:
        rules.append(
            alert(
                "MailuMetricsDown",
                f'up{{{s},service="antispam"}} == 0',
                "10m",
                "warning",
                "Prometheus cannot scrape rspamd's /metrics at {{ $labels.instance }}.",
            )
        )
    if cfg.blocks.canary_password is not None:
        c = cfg.canary
        quiet_s = c.no_success_alert_minutes * 60
        rules += [
            alert(
                "MailuCanaryNoSuccess",
                f"time() - max by (stack) ({CANARY_LAST_SUCCESS_METRIC}{{{s}}}) > {quiet_s}",
                "5m",
                "critical",
                f"No mail canary run has succeeded for {c.no_success_alert_minutes} minutes: mail may not "
                "flow.",
            ),
            alert(
                "MailuCanaryNeverSucceeded",
                f"absent({CANARY_LAST_SUCCESS_METRIC}{{{s}}})",
                f"{c.no_success_alert_minutes}m",
                "critical",
                "No mail canary run has ever succeeded (mail-canary writes "
                f"{CANARY_LAST_SUCCESS_METRIC} for the node exporter's textfile collector).",
            ),
            alert(
                "MailuCanarySlow",
                f"max by (stack, direction) ({CANARY_LATENCY_METRIC}{{{s}}}) > {c.max_latency_s:g}",
                "30m",
                "warning",
                "Mail canary ({{ $labels.direction }}) took {{ $value }}s to arrive "
                f"(more than {c.max_latency_s:g}s).",
            ),
        ]
    doc = {"groups": [{"name": f"mailu-{cfg.name}", "rules": rules}]}
    return _header("Prometheus alert rules of the Mailu stack") + dump_yaml(doc)


# --- Grafana -------------------------------------------------------------------------------------


def _panel(
    pid: int, title: str, kind: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int
) -> dict[str, Any]:
    ds = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": ds,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": ds, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def render_dashboard(cfg: StackConfig) -> str:
    """The seed's panels (queue, spam rate, delivery rate, storage) plus probes, certificates, backups."""
    s = f'stack="{cfg.name}"'
    m = cfg.monitoring
    node = f'job="{m.node_exporter_job}",mountpoint="{m.mail_volume_mountpoint}"'
    specs: list[tuple[str, str, list[tuple[str, str]], str]] = [
        (
            "Mail queue size",
            "timeseries",
            [(f"sum by (queue) (postfix_showq_message_size_bytes_count{{{s}}})", "{{queue}}")],
            "short",
        ),
        (
            "Spam detection rate",
            "timeseries",
            [
                (
                    f"sum(rate(rspamd_spam_total{{{s}}}[15m])) / sum(rate(rspamd_scanned_total{{{s}}}[15m]))",
                    "spam",
                )
            ],
            "percentunit",
        ),
        (
            "Delivery success rate",
            "timeseries",
            [
                (
                    f'sum(rate(postfix_smtp_messages_processed_total{{{s},status="sent"}}[15m]))'
                    f" / sum(rate(postfix_smtp_messages_processed_total{{{s}}}[15m]))",
                    "sent",
                )
            ],
            "percentunit",
        ),
        (
            "Storage usage (mail volumes' filesystem)",
            "gauge",
            [(f"1 - node_filesystem_avail_bytes{{{node}}} / node_filesystem_size_bytes{{{node}}}", "used")],
            "percentunit",
        ),
        ("Probe success", "stat", [(f"probe_success{{{s}}}", "{{probe}}")], "bool_yes_no"),
        (
            "Certificate expiry",
            "stat",
            [(f"probe_ssl_earliest_cert_expiry{{{s}}} - time()", "{{probe}}")],
            "s",
        ),
        (
            "Newest verified backup age",
            "stat",
            [(f"time() - {BACKUP_VERIFIED_METRIC}{{{s}}}", "age")],
            "s",
        ),
        (
            "Container health",
            "stat",
            [(f"{CONTAINER_HEALTHY_METRIC}{{{s}}}", "{{service}}")],
            "bool_yes_no",
        ),
    ]
    panels = [
        _panel(i + 1, title, kind, exprs, unit, (i % 2) * 12, (i // 2) * 8)
        for i, (title, kind, exprs, unit) in enumerate(specs)
    ]
    dashboard = {
        "uid": f"mailu-{cfg.name}"[:40],
        "title": f"Mailu ({cfg.name})",
        "tags": ["mailu", "mail"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }
    return json.dumps(dashboard, indent=2, sort_keys=False) + "\n"


# --- everything ----------------------------------------------------------------------------------


def render_monitoring(cfg: StackConfig) -> dict[str, str]:
    """stack-relative path -> content of every monitoring file; empty unless monitoring is enabled."""
    if not cfg.monitoring.enabled:
        return {}
    paths = monitoring_file_paths(cfg)
    return {
        paths["scrape"]: render_scrape_targets(cfg),
        paths["blackbox"]: render_blackbox_targets(cfg),
        paths["rules"]: render_alert_rules(cfg),
        paths["modules"]: render_blackbox_modules(cfg),
        paths["dashboard"]: render_dashboard(cfg),
    }


def textfile_metric(name: str, help_text: str, samples: dict[tuple[tuple[str, str], ...], float]) -> str:
    """Text for the node exporter's textfile collector (write it to `<dir>/<name>.prom` atomically).

    e.g. `textfile_metric(BACKUP_VERIFIED_METRIC, "...", {(("stack", "lab"),): 1.7e9})`."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in sorted(samples.items()):
        label_text = ",".join(f'{k}="{v}"' for k, v in labels)
        lines.append(f"{name}{{{label_text}}} {value:.17g}" if labels else f"{name} {value:.17g}")
    return "\n".join(lines) + "\n"
