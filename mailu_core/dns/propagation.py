"""The propagation table: for each desired record and each authoritative nameserver, what it serves.

Pure: the I/O half (`mailu_flows.dns.propagation`) asks the servers and feeds `Answer`s in here.
A cell is
- `ok`: the server serves exactly the desired values in the record's slot;
- `stale`: it does not, and its SOA serial is older than the newest any server serves (a secondary
  that has not transferred the change yet);
- `missing`: it serves nothing in that slot although it is up to date;
- `wrong value`: it serves something else although it is up to date (another writer, a typo);
- `unreachable`: no usable answer (timeout, REFUSED/SERVFAIL, not authoritative).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mailu_core.dns.records import Record, normalize_value, txt_slot
from mailu_core.errors import MailuFlowsError

__all__ = [
    "Answer",
    "Cell",
    "Nameserver",
    "PropagationTable",
    "PropagationTimeout",
    "Status",
    "build_table",
    "classify",
    "mx_a_warnings",
]


class Status(StrEnum):
    OK = "ok"
    STALE = "stale"
    MISSING = "missing"
    WRONG = "wrong value"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Nameserver:
    """One authoritative server, queried directly at `address`:`port`; `name` is its NS name if known."""

    name: str
    address: str
    port: int = 53

    @property
    def label(self) -> str:
        where = self.address if self.port == 53 else f"{self.address}:{self.port}"
        return f"{self.name} ({where})" if self.name and self.name != self.address else where


@dataclass(frozen=True)
class Answer:
    """What one server answered for one name and type: values (normalised), or an error."""

    values: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def of(cls, rtype: str, values: Iterable[str]) -> Answer:
        return cls(values=tuple(sorted({normalize_value(rtype, v) for v in values})))


@dataclass(frozen=True)
class Cell:
    record: Record
    nameserver: Nameserver
    status: Status
    served: tuple[str, ...] = ()
    serial: int | None = None
    detail: str = ""


def classify(
    record: Record,
    answer: Answer,
    serial: int | None,
    newest_serial: int | None,
    nameserver: Nameserver | None = None,
) -> Cell:
    """The status of `record` on a server that answered `answer` and serves SOA `serial`."""
    ns = nameserver or Nameserver("", "")
    if answer.error is not None:
        return Cell(record, ns, Status.UNREACHABLE, serial=serial, detail=answer.error)
    served = answer.values
    if record.type == "TXT":
        served = tuple(v for v in served if txt_slot(record.name, v) == record.key[2])
    if served == record.values:
        return Cell(record, ns, Status.OK, served, serial)
    behind = serial is not None and newest_serial is not None and serial < newest_serial
    if behind:
        detail = f"serial {serial} < {newest_serial}"
        return Cell(record, ns, Status.STALE, served, serial, detail)
    if not served:
        return Cell(record, ns, Status.MISSING, served, serial, "no such record")
    return Cell(record, ns, Status.WRONG, served, serial, "serves " + " | ".join(served))


@dataclass(frozen=True)
class PropagationTable:
    """Records x nameservers; `ok` when every cell is ok."""

    records: tuple[Record, ...]
    nameservers: tuple[Nameserver, ...]
    cells: tuple[Cell, ...] = field(repr=False)
    serials: tuple[tuple[Nameserver, int | None], ...] = ()

    def cell(self, record: Record, nameserver: Nameserver) -> Cell:
        for c in self.cells:
            if c.record == record and c.nameserver == nameserver:
                return c
        raise KeyError((record, nameserver))

    def status(self, record: Record, nameserver: Nameserver) -> Status:
        return self.cell(record, nameserver).status

    @property
    def ok(self) -> bool:
        return all(c.status is Status.OK for c in self.cells)

    def pending(self) -> list[Cell]:
        """The cells that are not ok yet."""
        return [c for c in self.cells if c.status is not Status.OK]

    def counts(self) -> dict[Status, int]:
        out = dict.fromkeys(Status, 0)
        for c in self.cells:
            out[c.status] += 1
        return out

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s.value}" for s, n in self.counts().items() if n)
        return f"{len(self.records)} records x {len(self.nameservers)} nameservers: {counts or 'nothing'}"

    def render_markdown(self, width: int = 40) -> str:
        """A markdown table: one row per record, one column per nameserver (with its serial)."""
        serials = dict(self.serials)
        heads = [f"{ns.label} (serial {serials.get(ns)})" for ns in self.nameservers]
        lines = [
            "| record | " + " | ".join(heads) + " |",
            "|---|" + "---|" * len(self.nameservers),
        ]
        for r in self.records:
            row = [f"`{r.name}` {r.type} `{r.short(width)}`"]
            for ns in self.nameservers:
                c = self.cell(r, ns)
                note = f" ({c.detail})" if c.status is not Status.OK and c.detail else ""
                row.append(c.status.value + note)
            lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines) + "\n"

    def render_text(self) -> str:
        lines = [self.summary()]
        for c in self.pending():
            extra = f": {c.detail}" if c.detail else ""
            lines.append(f"  {c.record.name} {c.record.type} @ {c.nameserver.label}: {c.status.value}{extra}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render_text()


def build_table(
    records: Sequence[Record],
    nameservers: Sequence[Nameserver],
    answers: dict[tuple[Record, Nameserver], Answer],
    serials: dict[Nameserver, int | None],
) -> PropagationTable:
    """Classify every record on every server; the newest serial any server serves is the reference."""
    known = [s for s in serials.values() if s is not None]
    newest = max(known) if known else None
    cells = []
    for r in records:
        for ns in nameservers:
            answer = answers.get((r, ns), Answer(error="not queried"))
            cells.append(classify(r, answer, serials.get(ns), newest, ns))
    return PropagationTable(
        tuple(records), tuple(nameservers), tuple(cells), tuple((ns, serials.get(ns)) for ns in nameservers)
    )


class PropagationTimeout(MailuFlowsError, TimeoutError):
    """The deadline passed before every nameserver served every record; `table` is the last check."""

    def __init__(self, table: PropagationTable, waited_s: float) -> None:
        self.table = table
        self.waited_s = waited_s
        super().__init__(f"DNS not propagated after {waited_s:.1f}s: {table.render_text()}")


def mx_a_warnings(records: Sequence[Record], table: PropagationTable | None = None) -> list[str]:
    """Warnings when an MX target has no A/AAAA among the records, or its A/AAAA is not served yet."""
    warnings: list[str] = []
    addresses = {(r.name, r.type): r for r in records if r.type in ("A", "AAAA")}
    for mx in (r for r in records if r.type == "MX"):
        for _, target in mx.mx():
            found = [addresses[(target, t)] for t in ("A", "AAAA") if (target, t) in addresses]
            if not found:
                warnings.append(f"MX of {mx.name} points at {target}, which has no A/AAAA record in the set")
                continue
            if table is None:
                continue
            for a in found:
                bad = [c for c in table.cells if c.record == a and c.status is not Status.OK]
                for c in bad:
                    warnings.append(
                        f"MX of {mx.name} points at {target}, but {c.nameserver.label} serves its {a.type} "
                        f"as {c.status.value} ({' | '.join(c.served) or 'nothing'})"
                    )
    return warnings
