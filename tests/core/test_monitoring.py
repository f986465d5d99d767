"""The monitoring renderers, checked with the real tools: `promtool check config` / `check rules` /
`test rules` (each alert fires when it should and not one evaluation before), the blackbox exporter's
`--config.check`, and a structural test of the Grafana dashboard (no Grafana binary here: every
panel's query may use only metrics that the scrape targets, probes, node exporter or textfile
metrics produce)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.stack_config import lab_stack_config, with_canary
from mailu_core.canary import CANARY_LAST_SUCCESS_METRIC, CANARY_LATENCY_METRIC
from mailu_core.config import ConfigError, StackConfig, stack_config_from_mapping
from mailu_core.render import render_stack
from mailu_core.render.monitoring import (
    BACKUP_VERIFIED_METRIC,
    BLACKBOX_METRICS,
    NODE_METRICS,
    POSTFIX_METRICS,
    RSPAMD_METRICS,
    SCRAPE_METRICS,
    TEXTFILE_METRICS,
    alert_names,
    module_name,
    monitoring_file_paths,
    monitoring_paths,
    probes,
    render_dashboard,
    rspamd_target,
    textfile_metric,
)
from mailu_flows.deploy.monitoring import _evaluate, expected_targets, monitoring_changed
from tests.core.render.test_render import lab_images

PROMTOOL = shutil.which("promtool")
BLACKBOX = shutil.which("prometheus-blackbox-exporter")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus) not installed")


@pytest.fixture
def cfg() -> StackConfig:
    return with_canary(lab_stack_config(lab_images(), "/srv/mailu-lab/apps"))


def _write(tmp: Path, cfg: StackConfig) -> dict[str, Path]:
    """The rendered monitoring files under `tmp` (as the deploy lays them under the stack root)."""
    files = render_stack(cfg).files
    out = {}
    for kind, rel in monitoring_file_paths(cfg).items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel].content)
        out[kind] = path
    return out


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)


# --- what is rendered ----------------------------------------------------------------------------


def test_nothing_is_rendered_unless_enabled(cfg: StackConfig) -> None:
    off = lab_stack_config(lab_images(), "/srv/mailu-lab/apps", monitoring=False)
    files = render_stack(off).files
    assert not any(p.startswith("monitoring/") for p in files)
    assert monitoring_paths(off) == []
    compose = yaml.safe_load(files[off.host.compose_file].content)
    assert compose["services"]["antispam"]["networks"]["mail"] is None  # unchanged compose


def test_monitoring_files_are_part_of_the_stack_and_a_removable_set(cfg: StackConfig) -> None:
    files = render_stack(cfg).files
    paths = monitoring_paths(cfg)
    assert paths == sorted(
        [
            "monitoring/file_sd/mailu-lab.yml",
            "monitoring/file_sd/blackbox/mailu-lab.yml",
            "monitoring/rules/mailu-lab.yml",
            "monitoring/blackbox/mailu-modules.yml",
            "monitoring/grafana/dashboards/mailu.json",
        ]
    )
    assert set(paths) <= set(files)
    assert all(files[p].mode == 0o644 for p in paths)
    assert render_stack(cfg).files == files  # deterministic: the deploy writes only what differs
    assert monitoring_changed(cfg, ["compose/mailu.yml", paths[0]])
    assert not monitoring_changed(cfg, ["compose/mailu.yml"])


def test_antispam_gets_the_scraped_fixed_address_on_the_mail_network(cfg: StackConfig) -> None:
    compose = yaml.safe_load(render_stack(cfg).files[cfg.host.compose_file].content)
    assert compose["services"]["antispam"]["networks"]["mail"] == {"ipv4_address": "172.30.5.253"}
    assert rspamd_target(cfg) == "172.30.5.253:11334"
    targets = yaml.safe_load(render_stack(cfg).files["monitoring/file_sd/mailu-lab.yml"].content)
    assert targets == [
        {
            "targets": ["172.30.5.253:11334"],
            "labels": {"__metrics_path__": "/metrics", "stack": "lab", "service": "antispam"},
        }
    ]


def test_rspamd_address_must_be_in_the_mail_subnet(cfg: StackConfig) -> None:
    data = cfg.model_dump(mode="json")
    data["monitoring"]["rspamd_address"] = "10.9.9.9"
    with pytest.raises(ConfigError, match=r"monitoring\.rspamd_address"):
        stack_config_from_mapping(data)


def test_probes_cover_every_mail_port_and_both_urls(cfg: StackConfig) -> None:
    got = {p.name: (p.module, p.target) for p in probes(cfg)}
    assert got == {
        "smtp": ("smtp_starttls", "127.0.0.1:10025"),
        "submissions": ("smtps", "127.0.0.1:10465"),
        "submission": ("smtp_starttls", "127.0.0.1:10587"),
        "imap": ("imap_starttls", "127.0.0.1:10143"),
        "imaps": ("imaps", "127.0.0.1:10993"),
        "admin": ("https_admin", "https://127.0.0.1:10443/admin/"),
        "webmail": ("https_webmail", "https://127.0.0.1:10443/webmail/"),
    }
    groups = yaml.safe_load(render_stack(cfg).files["monitoring/file_sd/blackbox/mailu-lab.yml"].content)
    assert {g["labels"]["exporter"] for g in groups} == {cfg.monitoring.blackbox_exporter}
    assert [g["labels"]["module"] for g in groups] == [module_name(cfg, p.module) for p in probes(cfg)]


def test_modules_use_the_verified_starttls_pattern_and_check_the_hostname(cfg: StackConfig) -> None:
    text = render_stack(cfg).files[cfg.monitoring.blackbox_modules_file].content.decode()
    doc = yaml.safe_load(text)
    smtp = doc["modules"][module_name(cfg, "smtp_starttls")]["tcp"]
    assert {"expect": "^250[ -]STARTTLS"} in smtp["query_response"]
    assert "^250-STARTTLS" not in text
    for module in doc["modules"].values():
        tls = module.get("tcp", module.get("http"))["tls_config"]
        assert tls["ca_file"] == cfg.monitoring.probe_ca_file
        assert tls["server_name"] in cfg.mailu.hostnames


def test_default_probe_address_is_the_hostname() -> None:
    base = lab_stack_config(lab_images(), "/srv/x")
    data = base.model_dump(mode="json")
    data["monitoring"]["probe_address"] = None
    data["traefik"]["mail_entrypoints"] = [{"port": 25, "name": "smtp"}]
    data["traefik"]["websecure_published_port"] = 443
    cfg = StackConfig.model_validate(data)
    assert [p.target for p in probes(cfg)] == [
        "mail.inlock.test:25",
        "https://mail.inlock.test/admin/",
        "https://mail.inlock.test/webmail/",
    ]


# --- promtool and the blackbox exporter ----------------------------------------------------------


def _host_prometheus_yml(files: dict[str, Path]) -> dict[str, Any]:
    """A prometheus.yml like the host's (Debian 2.42): file_sd globs and a rule_files glob."""
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [str(files["rules"].parent / "*.yml")],
        "scrape_configs": [
            {"job_name": "file_sd", "file_sd_configs": [{"files": [str(files["scrape"].parent / "*.yml")]}]},
            {
                "job_name": "blackbox",
                "metrics_path": "/probe",
                "file_sd_configs": [{"files": [str(files["blackbox"].parent / "*.yml")]}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["module"], "target_label": "__param_module"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"source_labels": ["exporter"], "target_label": "__address__"},
                ],
            },
        ],
    }


@needs_promtool
def test_promtool_check_config_and_rules(tmp_path: Path, cfg: StackConfig) -> None:
    files = _write(tmp_path, cfg)
    conf = tmp_path / "prometheus.yml"
    conf.write_text(yaml.safe_dump(_host_prometheus_yml(files), sort_keys=False))
    checked = _run(str(PROMTOOL), "check", "config", str(conf))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout + checked.stderr
    rules = _run(str(PROMTOOL), "check", "rules", str(files["rules"]))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_names(cfg))} rules found" in rules.stdout
    # promtool check config validates the file_sd files it finds; a broken one must fail it.
    bad = files["scrape"].parent / "mailu-broken.yml"
    bad.write_text("- targets: 'not-a-list'\n")
    assert _run(str(PROMTOOL), "check", "config", str(conf)).returncode != 0


def _alert(name: str, at: str, labels: dict[str, str] | None, summary: str = "") -> dict[str, Any]:
    """An alert_rule_test: `name` firing at `at` with `labels` and its rendered summary, or not at all."""
    if labels is None:
        return {"eval_time": at, "alertname": name, "exp_alerts": []}
    alert = {"exp_labels": labels, "exp_annotations": {"summary": summary}}
    return {"eval_time": at, "alertname": name, "exp_alerts": [alert]}


def _rule_tests(cfg: StackConfig) -> list[dict[str, Any]]:
    """One test group per alert: the series that should trigger it, the last evaluation before it
    fires (no alert) and the first one where it fires; plus look-alikes that must never fire."""
    smtp = {"stack": "lab", "kind": "mail", "probe": "smtp", "instance": "127.0.0.1:10025"}
    web = {"stack": "lab", "kind": "web", "probe": "admin", "instance": "https://127.0.0.1:10443/admin/"}
    crit, warn = {"severity": "critical", "stack": "lab"}, {"severity": "warning", "stack": "lab"}

    def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return {"series": f"{name}{{{inner}}}", "values": values}

    def lbl(d: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
        return {**d, **extra}

    root = {"stack": "lab", "job": "node", "mountpoint": "/"}
    boot = {"stack": "lab", "job": "node", "mountpoint": "/boot"}
    queue = {"stack": "lab", "queue": "deferred"}
    return [
        {  # down from 2m: pending until 7m (5 minutes), then firing; other stacks and web never count
            "interval": "1m",
            "input_series": [
                series("probe_success", smtp, "1 1 0x20"),
                series("probe_success", {**smtp, "stack": "other"}, "0x20"),
                series("probe_success", web, "1x20"),
            ],
            "alert_rule_test": [
                _alert("MailuMailPortDown", "6m", None),
                _alert(
                    "MailuMailPortDown",
                    "7m",
                    lbl(smtp, crit),
                    "Mail probe smtp (127.0.0.1:10025) has failed for 5 minutes.",
                ),
                _alert("MailuWebEndpointDown", "20m", None),
            ],
        },
        {
            "interval": "1m",
            "input_series": [series("probe_success", web, "1 1 0x20")],
            "alert_rule_test": [
                _alert("MailuWebEndpointDown", "6m", None),
                _alert(
                    "MailuWebEndpointDown",
                    "7m",
                    lbl(web, warn),
                    "HTTPS probe admin (https://127.0.0.1:10443/admin/) is failing.",
                ),
                _alert("MailuMailPortDown", "20m", None),
            ],
        },
        {  # expires at 14 days + 1 hour: under 14 days from 61m, firing 10 minutes later
            "interval": "1m",
            "input_series": [series("probe_ssl_earliest_cert_expiry", smtp, f"{14 * 86400 + 3600}x90")],
            "alert_rule_test": [
                _alert("MailuCertificateExpiring", "70m", None),
                _alert(
                    "MailuCertificateExpiring",
                    "71m",
                    lbl(smtp, warn),
                    "Certificate on smtp expires in 13d 23h 49m 0s (less than 14 days).",
                ),
            ],
        },
        {  # +2 messages a minute: over 50 at 26m, growing for 30 minutes -> firing at 56m
            "interval": "1m",
            "input_series": [series("postfix_showq_message_size_bytes_count", queue, "0+2x100")],
            "alert_rule_test": [
                _alert("MailuMailQueueGrowing", "55m", None),
                _alert(
                    "MailuMailQueueGrowing",
                    "56m",
                    {"stack": "lab", "severity": "warning"},
                    "The Postfix queue holds 112 messages and has kept growing for 30 minutes.",
                ),
            ],
        },
        {  # a big but steady queue is not "growing"
            "interval": "1m",
            "input_series": [series("postfix_showq_message_size_bytes_count", queue, "500x100")],
            "alert_rule_test": [_alert("MailuMailQueueGrowing", "90m", None)],
        },
        {  # 80% used, then 90% from 10m: firing 15 minutes later; /boot is not the mail volume
            "interval": "1m",
            "input_series": [
                series("node_filesystem_size_bytes", root, "100x60"),
                series("node_filesystem_avail_bytes", root, "20x9 10x50"),
                series("node_filesystem_size_bytes", boot, "100x60"),
                series("node_filesystem_avail_bytes", boot, "1x60"),
            ],
            "alert_rule_test": [
                _alert("MailuMailVolumeDiskFull", "9m", None),
                _alert("MailuMailVolumeDiskFull", "24m", None),
                _alert(
                    "MailuMailVolumeDiskFull",
                    "25m",
                    lbl(root, warn),
                    "The filesystem holding the mail volumes (/) is 90% full.",
                ),
            ],
        },
        {  # verified at t=0: older than 26 hours from 26h1m, firing 10 minutes later
            "interval": "1m",
            "input_series": [series(BACKUP_VERIFIED_METRIC, {"stack": "lab"}, "0x1600")],
            "alert_rule_test": [
                _alert("MailuBackupVerifyStale", "26h10m", None),
                _alert(
                    "MailuBackupVerifyStale",
                    "26h11m",
                    {"stack": "lab", "severity": "critical"},
                    "The newest verified backup is older than 26 hours.",
                ),
                _alert("MailuBackupNeverVerified", "26h30m", None),
            ],
        },
        {  # never reported: absent for the whole allowed age
            "interval": "1m",
            "input_series": [series("up", {"job": "unrelated"}, "1x1600")],
            "alert_rule_test": [
                _alert("MailuBackupNeverVerified", "25h59m", None),
                _alert(
                    "MailuBackupNeverVerified",
                    "26h",
                    crit,
                    f"No verified backup has been reported (backup-verify writes {BACKUP_VERIFIED_METRIC} "
                    "for the node exporter's textfile collector).",
                ),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                series("mailu_container_healthy", {"stack": "lab", "service": "smtp"}, "1 1 0x20"),
                series("mailu_container_healthy", {"stack": "lab", "service": "imap"}, "1x20"),
            ],
            "alert_rule_test": [
                _alert("MailuContainerUnhealthy", "6m", None),
                _alert(
                    "MailuContainerUnhealthy",
                    "7m",
                    {"stack": "lab", "service": "smtp", "severity": "critical"},
                    "Container smtp is not healthy.",
                ),
            ],
        },
        {  # the last good canary run at t=0: over 60 minutes from 61m, firing 5 minutes later
            "interval": "1m",
            "input_series": [series(CANARY_LAST_SUCCESS_METRIC, {"stack": "lab"}, "0x120")],
            "alert_rule_test": [
                _alert("MailuCanaryNoSuccess", "65m", None),
                _alert(
                    "MailuCanaryNoSuccess",
                    "66m",
                    crit,
                    "No mail canary run has succeeded for 60 minutes: mail may not flow.",
                ),
                _alert("MailuCanaryNeverSucceeded", "119m", None),
            ],
        },
        {  # no canary run has ever succeeded: absent for the whole quiet period
            "interval": "1m",
            "input_series": [series("up", {"job": "unrelated"}, "1x120")],
            "alert_rule_test": [
                _alert("MailuCanaryNeverSucceeded", "59m", None),
                _alert(
                    "MailuCanaryNeverSucceeded",
                    "60m",
                    crit,
                    f"No mail canary run has ever succeeded (mail-canary writes {CANARY_LAST_SUCCESS_METRIC} "
                    "for the node exporter's textfile collector).",
                ),
            ],
        },
        {  # 90 s deliveries from 2m (limit 60 s): firing 30 minutes later; the fast direction never
            "interval": "1m",
            "input_series": [
                series(CANARY_LATENCY_METRIC, {"stack": "lab", "direction": "outbound"}, "10 10 90x60"),
                series(CANARY_LATENCY_METRIC, {"stack": "lab", "direction": "inbound"}, "5x60"),
            ],
            "alert_rule_test": [
                _alert("MailuCanarySlow", "31m", None),
                _alert(
                    "MailuCanarySlow",
                    "32m",
                    {"stack": "lab", "direction": "outbound", "severity": "warning"},
                    "Mail canary (outbound) took 90s to arrive (more than 60s).",
                ),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                series("up", {"stack": "lab", "service": "antispam", "instance": rspamd_target(cfg)}, "0x30")
            ],
            "alert_rule_test": [
                _alert("MailuMetricsDown", "9m", None),
                _alert(
                    "MailuMetricsDown",
                    "10m",
                    {
                        "stack": "lab",
                        "service": "antispam",
                        "instance": rspamd_target(cfg),
                        "severity": "warning",
                    },
                    f"Prometheus cannot scrape rspamd's /metrics at {rspamd_target(cfg)}.",
                ),
            ],
        },
    ]


@needs_promtool
def test_promtool_test_rules_each_alert_fires_when_it_should_and_not_before(
    tmp_path: Path, cfg: StackConfig
) -> None:
    files = _write(tmp_path, cfg)
    tests = _rule_tests(cfg)
    covered = {t["alertname"] for group in tests for t in group["alert_rule_test"] if t["exp_alerts"]}
    assert covered == set(alert_names(cfg))
    spec = tmp_path / "mailu-alerts.test.yml"
    spec.write_text(
        yaml.safe_dump(
            {"rule_files": [str(files["rules"])], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    result = _run(str(PROMTOOL), "test", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
    # and the test itself can fail: shift one expectation a minute early
    tests[0]["alert_rule_test"][1]["eval_time"] = "6m"
    spec.write_text(
        yaml.safe_dump({"rule_files": [str(files["rules"])], "evaluation_interval": "1m", "tests": tests})
    )
    assert _run(str(PROMTOOL), "test", "rules", str(spec)).returncode != 0


@pytest.mark.skipif(BLACKBOX is None, reason="prometheus-blackbox-exporter not installed")
def test_blackbox_exporter_accepts_the_modules(tmp_path: Path, cfg: StackConfig) -> None:
    files = _write(tmp_path, cfg)
    result = _run(str(BLACKBOX), f"--config.file={files['modules']}", "--config.check")
    assert result.returncode == 0, result.stderr
    assert "level=warn" not in result.stderr  # no deprecated option either
    broken = tmp_path / "broken.yml"
    broken.write_text(files["modules"].read_text().replace("timeout: 5s", "timeout: 5ss", 1))
    assert _run(str(BLACKBOX), f"--config.file={broken}", "--config.check").returncode != 0


@needs_promtool
def test_textfile_metrics_are_valid_exposition(cfg: StackConfig) -> None:
    text = textfile_metric(BACKUP_VERIFIED_METRIC, "Newest verified backup.", {(("stack", "lab"),): 1.7e9})
    assert f'{BACKUP_VERIFIED_METRIC}{{stack="lab"}} 1700000000' in text
    lint = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


# --- the dashboard -------------------------------------------------------------------------------

_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (label matchers, groupings, ranges and calls dropped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", text):
        if m.group(2) is None and m.group(1) not in _PROMQL_WORDS:
            names.add(m.group(1))
    return names


def test_metric_name_extraction() -> None:
    expr = 'sum by (queue) (rate(a_total{x="y",z=~"b|c"}[5m])) / on (i) group_left b_bytes - time() > 3'
    assert metric_names(expr) == {"a_total", "b_bytes"}


PRODUCED = (
    RSPAMD_METRICS | BLACKBOX_METRICS | NODE_METRICS | POSTFIX_METRICS | TEXTFILE_METRICS | SCRAPE_METRICS
)


def test_dashboard_structure_and_queries(cfg: StackConfig) -> None:
    dash = json.loads(render_dashboard(cfg))
    assert dash["uid"] == "mailu-lab" and dash["schemaVersion"] >= 36
    titles = [p["title"] for p in dash["panels"]]
    for seed in ("Mail queue size", "Spam detection rate", "Delivery success rate", "Storage usage"):
        assert any(t.startswith(seed) for t in titles), seed
    assert {"Probe success", "Certificate expiry"} <= set(titles)
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    variables = {v["name"] for v in dash["templating"]["list"]}
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and "datasource" in variables
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, target["expr"]
            assert names <= PRODUCED, (panel["title"], names - PRODUCED)
            assert 'stack="lab"' in target["expr"] or "node_filesystem" in target["expr"]


def test_alert_rules_use_only_produced_metrics(cfg: StackConfig) -> None:
    doc = yaml.safe_load(render_stack(cfg).files["monitoring/rules/mailu-lab.yml"].content)
    (group,) = doc["groups"]
    assert group["name"] == "mailu-lab"
    assert [r["alert"] for r in group["rules"]] == alert_names(cfg)
    for rule in group["rules"]:
        assert metric_names(rule["expr"]) <= PRODUCED, rule["alert"]
        assert rule["labels"]["stack"] == "lab"


# --- the deploy's Prometheus check (API answers evaluated) ---------------------------------------


def _api(cfg: StackConfig, drop: str | None = None, rules: list[str] | None = None) -> tuple[Any, Any]:
    # as Prometheus 2.42 lists them: blackbox targets with the exporter as __address__ after relabelling
    active = [
        {"discoveredLabels": {"__address__": address}, "labels": {"stack": cfg.name, "instance": address}}
        if not name.startswith("probe")
        else {
            "discoveredLabels": {"__address__": cfg.monitoring.blackbox_exporter, "__param_target": address},
            "labels": {"stack": cfg.name, "instance": address},
        }
        for name, address in expected_targets(cfg)
        if name != drop
    ]
    active.append({"discoveredLabels": {"__address__": "127.0.0.1:10025", "stack": "other"}})
    names = alert_names(cfg) if rules is None else rules
    groups = [{"name": f"mailu-{cfg.name}", "rules": [{"name": n} for n in names]}]
    return (
        {"status": "success", "data": {"activeTargets": active}},
        {"status": "success", "data": {"groups": groups}},
    )


def test_prometheus_check_rows(cfg: StackConfig) -> None:
    rows = _evaluate(cfg, *_api(cfg))
    assert all(r.ok for r in rows) and len(rows) == len(expected_targets(cfg)) + 1
    rows = _evaluate(cfg, *_api(cfg, drop="probe imaps", rules=alert_names(cfg)[1:]))
    bad = {r.name: r.detail for r in rows if not r.ok}
    assert bad == {
        "prometheus target probe imaps": "127.0.0.1:10993 not listed",
        "prometheus rules mailu-lab": f"missing: {alert_names(cfg)[0]}",
    }
    assert [r.ok for r in _evaluate(cfg, None, None)] == [False, False]
