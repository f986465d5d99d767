"""Which DKIM TXT values a stack publishes: the current selector's key and every retired selector still
in its grace period, from the keys on the host or, where a key file is gone, from what the zone serves.
The one place deploy, dkim-publish and the propagation wait get them from, so every publish carries
the same selectors (a publish applies the whole record set: a selector left out would be deleted)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailu_core.config import StackConfig
from mailu_core.dns import dkim_txt_value, txt_slot
from mailu_flows.dns.dkim import DkimKey, read_keys, rotation_state
from mailu_flows.dns.provider import Provider
from mailu_flows.host import Host

__all__ = ["DkimSelectors", "dkim_selectors", "zone_dkim_values"]


@dataclass(frozen=True)
class DkimSelectors:
    """The DKIM TXT values to publish, by selector, and where each came from."""

    txt: dict[str, str]
    current: DkimKey | None
    from_zone: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


def zone_dkim_values(provider: Provider, cfg: StackConfig, selectors: Sequence[str]) -> dict[str, str]:
    """The DKIM TXT the zone serves now for each selector at the primary domain (what we keep
    published when a retired selector's key file is gone from the host)."""
    names = {f"{s}._domainkey.{cfg.mailu.domain}": s for s in selectors}
    out: dict[str, str] = {}
    for p in provider.list_records(names=set(names)):
        r = p.record
        if r.type == "TXT" and r.name in names and txt_slot(r.name, r.value) == "dkim1":
            out[names[r.name]] = r.value
    return out


def dkim_selectors(
    cfg: StackConfig,
    host: Host,
    current: DkimKey | None,
    provider: Callable[[], Provider],
) -> DkimSelectors:
    """The current selector's TXT (from its key on the host, if any) plus every retired selector still in
    its grace period (from its key on the host, else from what the zone serves, else dropped with a note).

    `current` skips re-reading a key the caller just ensured; `provider` is called only when the zone
    must be asked (a retired selector's key file is gone).
    """
    sel = cfg.dns.dkim.selector
    state = rotation_state(cfg.dns.dkim)
    wanted = ([] if current is not None else [sel]) + list(state.keep)
    keys = read_keys(host, cfg, wanted) if wanted else {}
    if current is None:
        current = keys.get(sel)
    txt: dict[str, str] = {}
    notes: list[str] = []
    if current is not None:
        txt[sel] = dkim_txt_value(current.public_pem)
    else:
        notes.append(f"no DKIM key for selector {sel!r} yet: dkim-publish generates it and publishes its TXT")
    no_file = [s for s in state.keep if keys.get(s) is None]
    for s in state.keep:
        key = keys.get(s)
        if key is not None:
            txt[s] = dkim_txt_value(key.public_pem)
    from_zone: dict[str, str] = {}
    if no_file:
        from_zone = zone_dkim_values(provider(), cfg, no_file)
        txt.update(from_zone)
    lost = tuple(s for s in no_file if s not in from_zone)
    for s in from_zone:
        notes.append(f"retired selector {s!r}: no key file on the host; keeping the TXT the zone serves")
    for s in lost:
        notes.append(f"retired selector {s!r}: no key on the host and no TXT in the zone; nothing to keep")
    for s in state.expired:
        notes.append(f"retired selector {s!r} is past its grace date: its TXT is removed")
    return DkimSelectors(txt, current, tuple(from_zone), lost, state.expired, notes)
