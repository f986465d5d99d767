"""The deploy's side of monitoring: reload the host's Prometheus when a monitoring file changed, and
check that it lists the stack's targets and alert rules.

These checks are not blocking: a Prometheus that refuses the reload or does not read the files is the
host's monitoring problem, not the mail stack's, so it never returns a healthy mail release to the
previous one. The deploy reports it in its summary and checks table instead.

Both go through `curl` on the host, over the deploy's SSH connection: Prometheus' lifecycle and API
endpoints normally listen on the host's loopback only, where the flows' runner cannot reach them.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mailu_core.config import StackConfig
from mailu_core.render.monitoring import (
    alert_names,
    monitoring_paths,
    probes,
    rspamd_target,
)
from mailu_flows.deploy.hoststate import Fact
from mailu_flows.deploy.preflight import Check
from mailu_flows.host import Host
from mailu_flows.remote import CommandFailed

__all__ = [
    "PrometheusApi",
    "expected_targets",
    "listed_addresses",
    "monitoring_changed",
    "prometheus_checks",
    "prometheus_facts",
    "reload_prometheus",
]


def monitoring_changed(cfg: StackConfig, changed: Iterable[str]) -> bool:
    """True if any of the stack-relative `changed` paths is a monitoring file."""
    return bool(set(monitoring_paths(cfg)) & set(changed))


def reload_prometheus(host: Host, cfg: StackConfig, log: Callable[[str], None]) -> Check | None:
    """POST the lifecycle reload URL from the host; None when no reload URL is configured."""
    url = cfg.monitoring.reload_url
    if not cfg.monitoring.enabled or not url:
        return None
    result = host.run(
        ["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url], check=False
    )
    code = result.text().strip()
    ok = result.ok and code == "200"
    detail = f"HTTP {code}" if result.ok else result.stderr.decode(errors="replace").strip()[-200:]
    log(f"prometheus reload: {detail}")
    return Check("prometheus reload", ok, detail, blocking=False)


def expected_targets(cfg: StackConfig) -> list[tuple[str, str]]:
    """(check name, __address__ before relabelling) of every target the monitoring files define."""
    out: list[tuple[str, str]] = []
    if cfg.monitoring.scrape_rspamd:
        out.append(("rspamd", rspamd_target(cfg)))
    if cfg.monitoring.postfix_exporter:
        out.append(("postfix exporter", cfg.monitoring.postfix_exporter))
    out += [(f"probe {p.name}", p.target) for p in probes(cfg)]
    return out


def _api_get(host: Host, url: str) -> dict[str, Any] | None:
    result = host.run(["curl", "-fsS", "-m", "10", url], check=False)
    return _api_doc(result.stdout) if result.ok else None


def _api_doc(output: str | bytes) -> dict[str, Any] | None:
    """An API answer's document when Prometheus says `success` (None otherwise)."""
    try:
        doc: dict[str, Any] = json.loads(output)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("status") == "success" else None


def _targets_url(api: str) -> str:
    return f"{api}/api/v1/targets?state=active"


def _rules_url(api: str) -> str:
    return f"{api}/api/v1/rules?type=alert"


@dataclass(frozen=True)
class PrometheusApi(Fact["dict[str, Any] | None"]):
    """One document of Prometheus' API, read from the host with the deploy's other facts."""

    url: str
    name: str

    def command(self) -> str:
        # the closing echo ends the document's line: Prometheus prints none, and the next fact's
        # section line must start a line of its own
        return f"curl -fsS -m 10 {shlex.quote(self.url)} || echo null; echo"

    def parse(self, output: str) -> dict[str, Any] | None:
        return _api_doc(output.strip() or "null")


def prometheus_facts(cfg: StackConfig) -> list[PrometheusApi]:
    """The targets and rules documents `prometheus_checks` evaluates first, as facts (none when
    monitoring is off or no Prometheus URL is configured)."""
    api = cfg.monitoring.prometheus_api() if cfg.monitoring.enabled else None
    if api is None:
        return []
    return [
        PrometheusApi(_targets_url(api), "prometheus-targets"),
        PrometheusApi(_rules_url(api), "prometheus-rules"),
    ]


def listed_addresses(active: list[dict[str, Any]], stack: str) -> set[str]:
    """Addresses of the stack's active targets, before relabelling. Prometheus 2.42's API shows
    `discoveredLabels` after the blackbox relabelling (`__address__` is then the exporter), so the
    probe's address is read from `__param_target` or `instance` as well."""
    out: set[str] = set()
    for target in active:
        found, labels = target.get("discoveredLabels", {}), target.get("labels", {})
        if stack in (found.get("stack"), labels.get("stack")):
            out |= {found.get("__address__"), found.get("__param_target"), labels.get("instance")} - {None}
    return out


def _evaluate(cfg: StackConfig, targets: dict[str, Any] | None, rules: dict[str, Any] | None) -> list[Check]:
    rows: list[Check] = []
    if targets is None:
        rows.append(Check("prometheus targets", False, "the targets API did not answer", blocking=False))
    else:
        seen = listed_addresses(targets["data"].get("activeTargets", []), cfg.name)
        for name, address in expected_targets(cfg):
            ok = address in seen
            detail = address if ok else f"{address} not listed"
            rows.append(Check(f"prometheus target {name}", ok, detail, blocking=False))
    group = f"mailu-{cfg.name}"
    if rules is None:
        rows.append(Check(f"prometheus rules {group}", False, "the rules API did not answer", blocking=False))
    else:
        found = [g for g in rules["data"].get("groups", []) if g.get("name") == group]
        names = {r.get("name") for g in found for r in g.get("rules", [])}
        missing = [a for a in alert_names(cfg) if a not in names]
        detail = f"{len(names)} rule(s) loaded" if not missing else "missing: " + ", ".join(missing)
        rows.append(Check(f"prometheus rules {group}", not missing, detail, blocking=False))
    return rows


def prometheus_checks(
    host: Host, cfg: StackConfig, wait_s: float = 30.0, first: Mapping[str, Any] | None = None
) -> list[Check]:
    """Prometheus lists every Mailu target and alert rule (polled: file_sd applies changes within
    seconds, not at once). Empty when monitoring is off or no Prometheus URL is configured. `first`
    holds the values of `prometheus_facts` when they were read already: evaluated before any poll."""
    api = cfg.monitoring.prometheus_api() if cfg.monitoring.enabled else None
    if api is None:
        return []
    deadline = time.monotonic() + wait_s
    if first is not None:
        rows = _evaluate(cfg, first.get("prometheus-targets"), first.get("prometheus-rules"))
        if all(r.ok for r in rows):
            return rows
    while True:
        rows = _evaluate(cfg, _api_get(host, _targets_url(api)), _api_get(host, _rules_url(api)))
        if all(r.ok for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def reload_quietly(host: Host, cfg: StackConfig, log: Callable[[str], None]) -> None:
    """Reload after a return to the previous release; a failure here must not hide the deploy's."""
    try:
        reload_prometheus(host, cfg, log)
    except (CommandFailed, OSError) as exc:
        log(f"prometheus reload after the return failed: {exc}")
