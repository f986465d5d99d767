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
import time
from collections.abc import Callable, Iterable
from typing import Any

from mailu_core.config import StackConfig
from mailu_core.render.monitoring import (
    alert_names,
    monitoring_paths,
    probes,
    rspamd_target,
)
from mailu_flows.deploy.preflight import Check
from mailu_flows.host import Host
from mailu_flows.remote import CommandFailed

__all__ = [
    "expected_targets",
    "listed_addresses",
    "monitoring_changed",
    "prometheus_checks",
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
    if not result.ok:
        return None
    try:
        doc: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        return None
    return doc if doc.get("status") == "success" else None


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


def prometheus_checks(host: Host, cfg: StackConfig, wait_s: float = 30.0) -> list[Check]:
    """Prometheus lists every Mailu target and alert rule (polled: file_sd applies changes within
    seconds, not at once). Empty when monitoring is off or no Prometheus URL is configured."""
    api = cfg.monitoring.prometheus_api() if cfg.monitoring.enabled else None
    if api is None:
        return []
    deadline = time.monotonic() + wait_s
    while True:
        rows = _evaluate(
            cfg,
            _api_get(host, f"{api}/api/v1/targets?state=active"),
            _api_get(host, f"{api}/api/v1/rules?type=alert"),
        )
        if all(r.ok for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def reload_quietly(host: Host, cfg: StackConfig, log: Callable[[str], None]) -> None:
    """Reload after a return to the previous release; a failure here must not hide the deploy's."""
    try:
        reload_prometheus(host, cfg, log)
    except (CommandFailed, OSError) as exc:
        log(f"prometheus reload after the return failed: {exc}")
