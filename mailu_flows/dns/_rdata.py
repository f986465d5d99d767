"""dnspython rdata <-> normalised record values (for the RFC 2136 provider and the propagation checker)."""

from __future__ import annotations

from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mailu_core.dns import normalize_name, normalize_value, txt_presentation

__all__ = ["rdata_from_value", "value_from_rdata"]


def value_from_rdata(rd: dns.rdata.Rdata) -> str:
    """The normalised value of one rdata (TXT: its character-strings joined)."""
    a: Any = rd
    t = dns.rdatatype.to_text(rd.rdtype)
    if t in ("A", "AAAA"):
        return normalize_value(t, str(a.address))
    if t in ("CNAME", "NS", "PTR"):
        return normalize_name(a.target.to_text())
    if t == "MX":
        return f"{int(a.preference)} {normalize_name(a.exchange.to_text())}"
    if t == "SRV":
        return f"{int(a.priority)} {int(a.weight)} {int(a.port)} {normalize_name(a.target.to_text())}"
    if t == "TXT":
        return b"".join(a.strings).decode("utf-8", errors="surrogateescape")
    return normalize_value(t, rd.to_text())


def rdata_from_value(rtype: str, value: str) -> dns.rdata.Rdata:
    """The rdata for a normalised value (names made absolute; TXT split into 255-byte strings)."""
    t = rtype.upper()
    if t in ("CNAME", "NS", "PTR"):
        text = value if value == "." else value + "."
    elif t == "MX":
        prio, target = value.split()
        text = f"{prio} {target}."
    elif t == "SRV":
        prio, weight, port, target = value.split()
        text = f"{prio} {weight} {port} {target if target == '.' else target + '.'}"
    elif t == "TXT":
        text = txt_presentation(value)
    else:
        text = value
    rd: dns.rdata.Rdata = dns.rdata.from_text(dns.rdataclass.IN, t, text)
    return rd
