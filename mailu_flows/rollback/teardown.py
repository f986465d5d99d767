"""What a teardown removes and how its result is judged (pure): the files the deploy's releases wrote
under Traefik's and monitoring's directories, this stack's MX and mail-host A/AAAA records, the TXT
records it keeps, and which objects in Traefik's `rawdata` are Mailu's."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import PurePosixPath
from typing import Any

from mailu_core.config import StackConfig
from mailu_core.dns import Change, Plan, Record, apply_order, txt_slot
from mailu_core.render import render_stack
from mailu_core.render.monitoring import monitoring_file_paths, monitoring_paths
from mailu_flows.deploy.releases import Release
from mailu_flows.dns.provider import ProviderRecord

__all__ = [
    "KEPT_TXT_SLOTS",
    "ROUTER_SECTIONS",
    "dns_names",
    "dns_teardown_plan",
    "is_monitoring_file",
    "kept_records",
    "mailu_objects",
    "managed_dirs",
    "norm_host",
    "other_routers",
    "teardown_files",
]

KEPT_TXT_SLOTS = ("spf1", "dmarc1", "dkim1")
ROUTER_SECTIONS = ("routers", "tcpRouters", "udpRouters")


def norm_host(name: str) -> str:
    """A DNS name as compared: no surrounding blanks, no trailing dot, lower case."""
    return name.strip().rstrip(".").lower()


# --- files ---------------------------------------------------------------------------------------


def managed_dirs(cfg: StackConfig) -> list[str]:
    """Stack-relative directories whose files the deploy's releases wrote and a teardown removes:
    Traefik's dynamic directory and every monitoring file's directory."""
    dirs = {cfg.host.traefik_dynamic_dir}
    dirs |= {str(PurePosixPath(p).parent) for p in monitoring_file_paths(cfg).values()}
    return sorted(dirs)


def teardown_files(cfg: StackConfig, releases: Iterable[Release]) -> list[str]:
    """Every file a release recorded (or this config renders) under Traefik's or monitoring's
    directories: Mailu's routes file and the Prometheus/Grafana files, never the host's own."""
    root = PurePosixPath(cfg.host.stack_root)
    dirs = [cfg.host.resolve(d) for d in managed_dirs(cfg)]
    rendered = render_stack(cfg)
    candidates = {rendered.traefik_file, *monitoring_paths(cfg)}
    for r in releases:
        candidates |= set(r.files)
    out = []
    for rel in candidates:
        path = root / rel
        if any(path.parent == d or path.is_relative_to(d) for d in dirs):
            out.append(rel)
    return sorted(out)


def is_monitoring_file(cfg: StackConfig, path: str) -> bool:
    """A teardown file (stack-relative or absolute) outside Traefik's directory: a monitoring one."""
    return not cfg.host.resolve(path).is_relative_to(cfg.host.resolve(cfg.host.traefik_dynamic_dir))


# --- DNS -----------------------------------------------------------------------------------------


def dns_teardown_plan(
    cfg: StackConfig, zone: str, listed: Iterable[ProviderRecord]
) -> tuple[Plan, list[str]]:
    """Deletes of this stack's MX (at every mail domain) and the mail host's A/AAAA; nothing else.
    Returns the plan and notes about foreign records left in those slots."""
    domains = {norm_host(d) for d in cfg.mail_domains}
    host = norm_host(cfg.hostname)
    changes: list[Change] = []
    notes: list[str] = []
    for p in listed:
        r = p.record
        target = (r.type == "MX" and r.name in domains) or (r.type in ("A", "AAAA") and r.name == host)
        if not target:
            continue
        if p.owned:
            changes.append(Change("delete", old=r))
        else:
            notes.append(f"{r.name} {r.type} {r.short(60)} is not managed by this stack: left in place")
    return Plan(zone=zone, changes=tuple(apply_order(changes))), notes


def kept_records(cfg: StackConfig, listed: Iterable[ProviderRecord]) -> list[Record]:
    """The SPF, DMARC and DKIM TXT records at the stack's domains (what a teardown must keep)."""
    domains = {norm_host(d) for d in cfg.mail_domains}
    out = []
    for p in listed:
        r = p.record
        if r.type != "TXT":
            continue
        slot = txt_slot(r.name, r.value)
        base = r.name.split("._domainkey.", 1)[-1].removeprefix("_dmarc.")
        if slot in KEPT_TXT_SLOTS and base in domains:
            out.append(r)
    return sorted(out, key=lambda r: (r.name, r.key))


def dns_names(cfg: StackConfig) -> set[str]:
    """The names a teardown lists: the mail host, the mail domains, their DMARC and DKIM names."""
    names = {cfg.hostname, *cfg.mail_domains}
    names |= {f"_dmarc.{d}" for d in cfg.mail_domains}
    selectors = [cfg.dns.dkim.selector, *(s.selector for s in cfg.dns.dkim.retired_selectors)]
    names |= {f"{s}._domainkey.{d}" for s in selectors for d in cfg.mail_domains}
    return names


# --- Traefik -------------------------------------------------------------------------------------


def mailu_objects(raw: dict[str, Any], names: Collection[tuple[str, str]], front: str) -> list[str]:
    """Objects in Traefik's rawdata that belong to Mailu: our file's names, any service whose servers
    point at Mailu's front, and any router using such a service."""
    found = []
    for section, name in names:
        if f"{name}@file" in (raw.get(section) or {}):
            found.append(f"{section} {name}@file")
    mailu_services: set[str] = set()
    for section in ("services", "tcpServices"):
        for key, svc in (raw.get(section) or {}).items():
            servers = ((svc or {}).get("loadBalancer") or {}).get("servers") or []
            if any(front in str(s.get("url", "")) + str(s.get("address", "")) for s in servers):
                mailu_services.add(key.split("@", 1)[0])
                found.append(f"{section} {key}")
    for section in ROUTER_SECTIONS:
        for key, router in (raw.get(section) or {}).items():
            if str((router or {}).get("service", "")).split("@", 1)[0] in mailu_services:
                found.append(f"{section} {key}")
    return sorted(set(found))


def other_routers(raw: dict[str, Any] | None, mailu: Collection[str]) -> dict[str, str]:
    """'section name' -> status of every router that is not Mailu's."""
    out: dict[str, str] = {}
    for section in ROUTER_SECTIONS:
        for key, router in ((raw or {}).get(section) or {}).items():
            label = f"{section} {key}"
            if label not in mailu:
                out[label] = str((router or {}).get("status"))
    return out
