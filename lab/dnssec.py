"""The two inputs a validating resolver needs to use the lab's DNS root instead of the internet's.

Mailu's resolver image downloads the root hints from internic and fetches the root trust anchor with
`unbound-anchor`. The lab image gets both from the lab's own signed root (served by the Knot primary,
see `lab.dns`) instead, written into its build context by `resolver_build_inputs()`:

    root.hints        the lab root's NS and the address containers reach it on (docker0's)
    trusted-key.key   the DS (SHA-256) of the lab root's key-signing key, in the zone-file form that
                      unbound's `auto-trust-anchor-file` (and `trust-anchor-file`) reads

Both are deterministic: the same docker0 address and the same key in Knot's KASP db (kept in the
lab dir) give the same bytes, so the image's input hash only changes when one of those does.
"""

from __future__ import annotations

from pathlib import Path

from lab import dns as lab_dns
from lab.procs import LabError

ROOT_HINTS = "root.hints"
TRUST_ANCHOR = "trusted-key.key"


def root_hints_text() -> str:
    """Root hints (named.cache format) naming the lab root server and its container-facing address."""
    ns = lab_dns.ROOT_NS
    address = lab_dns.container_address()
    if address is None:
        raise LabError(
            f"no {lab_dns.CONTAINER_BRIDGE} address: is dockerd up? (containers reach the lab root there)"
        )
    return (
        "; The lab's DNS root (lab/dns.py), in place of https://www.internic.net/domain/named.cache\n"
        f".{' ' * 24}3600000      NS    {ns}\n"
        f"{ns:<25}3600000      A     {address}\n"
    )


def trust_anchor_text() -> str:
    """The lab root's trust anchor: one DS line per key-signing key the root serves."""
    keys = lab_dns.served_sep_keys(".")
    if not keys:
        raise LabError("the lab's Knot primary serves no root DNSKEY (is `lab.dns.ensure_dns()` done?)")
    lines = [f". IN DS {ds}\n" for ds in lab_dns.ds_texts(".", keys)]
    return (
        "; The lab's DNS root (lab/dns.py): DS of its key-signing key, in place of unbound-anchor's\n"
        + "".join(lines)
    )


def resolver_build_inputs(dest_dir: Path) -> list[Path]:
    """Write root.hints and trusted-key.key into `dest_dir` (the resolver image's build context).

    Brings the lab's DNS up first (idempotent, fast when up): images are built before `lab up`'s dns step.
    """
    lab_dns.ensure_dns()
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in ((ROOT_HINTS, root_hints_text()), (TRUST_ANCHOR, trust_anchor_text())):
        path = dest_dir / name
        path.write_text(text)
        path.chmod(0o644)
        out.append(path)
    return out
