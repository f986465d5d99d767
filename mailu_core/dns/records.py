"""DNS records in one normal form, so that "what we want" and "what a provider serves" compare exactly.

Why a normal form: every provider spells the same record differently (trailing dots, upper case,
TXT split into 255-byte strings or quoted or both, `ttl` as a float, IPv6 long or short). Comparing
raw strings makes plans show changes that are not there (octoDNS #25/#110, the Cloudflare DKIM drift
users report), so a `Record` normalises on construction:

- names: lower case, no trailing dot (`mail.inlock.ai`);
- A/AAAA: the canonical address text; CNAME/NS/PTR: a normalised name;
- MX: `"<priority> <target>"` (`Record.mx()` gives `(priority, target)` pairs); SRV:
  `"<priority> <weight> <port> <target>"`;
- TXT: the logical value, i.e. quoted character-strings are unescaped and joined, so
  `'"v=DKIM1; k=rsa; p=AB" "CD"'` equals `"v=DKIM1; k=rsa; p=ABCD"`.

Provider-specific options (Cloudflare's proxy flag, say) are not fields of the core record: they sit in
`Record.provider_options`, namespaced by provider (`{"cloudflare": {"proxied": False}}`), so a new
provider's options need no change here and one provider's never reach another's API.

A TXT `Record` holds exactly one value: several TXT values at one name are separate records (an SPF
and a site-verification token belong to different owners). Every other type is an RRset (all values
of one name and type). `Record.key` identifies the "slot" a record fills: `(name, type, "")`, or for
TXT `(name, "TXT", <kind>)` where the kind is the `v=` tag (`spf1`, `dmarc1`, `dkim1`, ...) or a hash.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "OptionValue",
    "ProviderOptions",
    "Record",
    "RecordKey",
    "in_zone",
    "normalize_name",
    "normalize_txt",
    "normalize_value",
    "relative_name",
    "split_rrset",
    "txt_chunks",
    "txt_presentation",
    "txt_slot",
]

RecordKey = tuple[str, str, str]
"""(name, type, slot): what a record occupies in a zone; slot is "" except for TXT."""

OptionValue: TypeAlias = str | int | bool
ProviderOptions: TypeAlias = tuple[tuple[str, tuple[tuple[str, OptionValue], ...]], ...]
"""Namespaced provider options in a hashable, sorted form: ((provider, ((key, value), ...)), ...)."""


def _freeze_options(options: Mapping[str, Mapping[str, OptionValue]] | ProviderOptions) -> ProviderOptions:
    items = options.items() if isinstance(options, Mapping) else options
    frozen: dict[str, tuple[tuple[str, OptionValue], ...]] = {}
    for provider, values in items:
        pairs = values.items() if isinstance(values, Mapping) else values
        kept = tuple(sorted((str(k), v) for k, v in pairs))
        if kept:
            frozen[str(provider)] = kept
    return tuple(sorted(frozen.items()))


_QUOTED = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*', re.S)
_VERSION_TAG = re.compile(r"(?i)^\s*v\s*=\s*([A-Za-z0-9]+)\s*(?:;|\s|$)")


def normalize_name(name: str) -> str:
    """Lower case, no trailing dot; `.` (the root, e.g. an SRV "not offered" target) stays `.`."""
    text = name.strip()
    if text == ".":
        return "."
    text = text.rstrip(".").lower()
    if not text:
        raise ValueError(f"empty DNS name: {name!r}")
    return text


def in_zone(name: str, zone: str) -> bool:
    """True if `name` is the zone apex or below it."""
    n, z = normalize_name(name), normalize_name(zone)
    return n == z or n.endswith("." + z)


def relative_name(name: str, zone: str) -> str:
    """`name` relative to `zone` (`@` for the apex); ValueError if it lies outside."""
    n, z = normalize_name(name), normalize_name(zone)
    if n == z:
        return "@"
    if not n.endswith("." + z):
        raise ValueError(f"{name!r} is outside zone {zone!r}")
    return n[: -len(z) - 1]


def _unescape(text: str) -> bytes:
    """RFC 1035 character-string escapes (`\\"`, `\\\\`, `\\;`, `\\DDD`) to bytes."""
    raw = text.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):
            digits = raw[i + 1 : i + 4]
            if len(digits) == 3 and digits.isdigit():
                out.append(int(digits) & 0xFF)
                i += 4
                continue
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def normalize_txt(text: str) -> str:
    """The logical TXT value: quoted strings (`"a" "b"`) unescaped and joined; anything else as is."""
    pieces: list[bytes] = []
    pos = 0
    if not text.strip():
        return text
    while pos < len(text):
        m = _QUOTED.match(text, pos)
        if not m:
            return text
        pieces.append(_unescape(m.group(1)))
        pos = m.end()
    return b"".join(pieces).decode("utf-8", errors="surrogateescape")


def txt_chunks(value: str) -> list[bytes]:
    """The value as DNS character-strings of at most 255 bytes (split on bytes, not characters)."""
    raw = value.encode("utf-8", errors="surrogateescape")
    return [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]


def txt_presentation(value: str) -> str:
    """Zone-file text of a TXT value: quoted 255-byte strings with `"` and `\\` escaped."""

    def quote(chunk: bytes) -> str:
        out = []
        for c in chunk:
            if c in (0x22, 0x5C):
                out.append("\\" + chr(c))
            elif 0x20 <= c < 0x7F:
                out.append(chr(c))
            else:
                out.append(f"\\{c:03d}")
        return '"' + "".join(out) + '"'

    return " ".join(quote(c) for c in txt_chunks(value))


def txt_slot(name: str, value: str) -> str:
    """Which TXT "slot" a value fills at `name`: the `v=` tag in lower case, else a short hash.

    DKIM keys (`*._domainkey.*`) and DMARC policies (`_dmarc.*`) fill one slot whatever they say,
    since `v=` is optional in DKIM and two records there would break verification.
    """
    n = normalize_name(name)
    if "._domainkey." in f".{n}":
        return "dkim1"
    if n.startswith("_dmarc."):
        return "dmarc1"
    m = _VERSION_TAG.match(value)
    if m:
        return m.group(1).lower()
    return "h:" + hashlib.sha256(value.encode("utf-8", errors="surrogateescape")).hexdigest()[:16]


def normalize_value(rtype: str, value: str) -> str:
    """One value of a record of type `rtype` in the normal form described in the module docstring."""
    t = rtype.upper()
    v = value.strip() if t != "TXT" else value
    if t == "A":
        return str(ipaddress.IPv4Address(v))
    if t == "AAAA":
        return str(ipaddress.IPv6Address(v))
    if t in ("CNAME", "NS", "PTR"):
        return normalize_name(v)
    if t == "MX":
        parts = v.split()
        if len(parts) != 2:
            raise ValueError(f"MX value must be '<priority> <target>', got {value!r}")
        return f"{int(parts[0])} {normalize_name(parts[1])}"
    if t == "SRV":
        parts = v.split()
        if len(parts) != 4:
            raise ValueError(f"SRV value must be '<priority> <weight> <port> <target>', got {value!r}")
        prio, weight, port = (int(p) for p in parts[:3])
        return f"{prio} {weight} {port} {normalize_name(parts[3])}"
    if t == "TXT":
        return normalize_txt(v)
    return " ".join(v.split())


@dataclass(frozen=True)
class Record:
    """One record (TXT) or RRset (other types) in normal form; compare with `==`.

    `provider_options` holds provider-specific settings, namespaced by provider name (a mapping is
    accepted and frozen): `{"cloudflare": {"proxied": False}}`. An option takes part in `differs()`
    only when both sides carry it (a provider lists its own options; other providers' never show).
    """

    name: str
    type: str
    ttl: int
    values: tuple[str, ...] = field(default=())
    provider_options: ProviderOptions = field(default=())

    def __post_init__(self) -> None:
        rtype = self.type.upper()
        values = tuple(sorted({normalize_value(rtype, v) for v in self.values}))
        if not values:
            raise ValueError(f"{self.name} {rtype}: a record needs at least one value")
        if rtype == "TXT" and len(values) != 1:
            raise ValueError(f"{self.name} TXT: one value per TXT record (use split_rrset), got {values}")
        object.__setattr__(self, "name", normalize_name(self.name))
        object.__setattr__(self, "type", rtype)
        object.__setattr__(self, "ttl", int(self.ttl))
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "provider_options", _freeze_options(self.provider_options))

    @property
    def key(self) -> RecordKey:
        """The slot this record fills (see the module docstring)."""
        slot = txt_slot(self.name, self.values[0]) if self.type == "TXT" else ""
        return (self.name, self.type, slot)

    @property
    def value(self) -> str:
        """The single value (TXT records, or RRsets of one value)."""
        return self.values[0]

    def options(self, provider: str) -> dict[str, OptionValue]:
        """This record's options for `provider` (empty when it has none)."""
        return dict(dict(self.provider_options).get(provider, ()))

    def option(self, provider: str, key: str) -> OptionValue | None:
        return self.options(provider).get(key)

    def with_options(self, provider: str, **values: OptionValue) -> Record:
        """A copy with `values` set in `provider`'s namespace."""
        merged = {p: dict(v) for p, v in self.provider_options}
        merged.setdefault(provider, {}).update(values)
        return Record(self.name, self.type, self.ttl, self.values, _freeze_options(merged))

    def option_changes(self, other: Record) -> list[tuple[str, str, OptionValue, OptionValue]]:
        """(provider, key, ours, theirs) for every option both records carry with different values."""
        out = []
        theirs = dict(other.provider_options)
        for provider, pairs in self.provider_options:
            other_pairs = dict(theirs.get(provider, ()))
            for key, value in pairs:
                if key in other_pairs and other_pairs[key] != value:
                    out.append((provider, key, value, other_pairs[key]))
        return out

    def mx(self) -> list[tuple[int, str]]:
        """MX values as `(priority, target)` pairs."""
        if self.type != "MX":
            raise ValueError(f"{self.name} is a {self.type} record, not MX")
        return [(int(p), t) for p, t in (v.split() for v in self.values)]

    def differs(self, other: Record) -> bool:
        """True if applying `other` over `self` would change anything a resolver or the provider sees."""
        if (self.values, self.ttl) != (other.values, other.ttl):
            return True
        return bool(self.option_changes(other))

    def short(self, width: int = 60) -> str:
        """Values for tables: joined, long ones shortened in the middle."""
        text = " | ".join(self.values)
        if len(text) <= width:
            return text
        keep = (width - 1) // 2
        return f"{text[:keep]}…{text[-keep:]}"

    def options_text(self) -> str:
        """`provider.key=value` for every option, space separated ("" when none)."""
        return " ".join(
            f"{p}.{k}={str(v).lower() if isinstance(v, bool) else v}"
            for p, pairs in self.provider_options
            for k, v in pairs
        )

    def __str__(self) -> str:
        extra = self.options_text()
        return f"{self.name} {self.ttl} {self.type} {' | '.join(self.values)}" + (
            f" {extra}" if extra else ""
        )


def split_rrset(
    name: str,
    rtype: str,
    ttl: int,
    values: Sequence[str] | Iterable[str],
    provider_options: Mapping[str, Mapping[str, OptionValue]] | ProviderOptions = (),
) -> list[Record]:
    """Records for an RRset as a provider or a server returns it: one per TXT value, else one."""
    vals = list(values)
    if not vals:
        return []
    opts = _freeze_options(provider_options)
    if rtype.upper() == "TXT":
        return [Record(name, "TXT", ttl, (v,), opts) for v in dict.fromkeys(vals)]
    return [Record(name, rtype, ttl, tuple(vals), opts)]
