"""Whether a rollback teardown is in effect, and what DNS a torn-down stack keeps: decided once here for
the dkim-publish and dns-propagation-wait flows (the deploy is what brings mail routing back)."""

from __future__ import annotations

from mailu_core.config import StackConfig
from mailu_core.dns import Record
from mailu_flows.host import Host

__all__ = ["torn_down_since", "without_mail_routing"]


def torn_down_since(host: Host, config: StackConfig) -> str | None:
    """When a finished rollback teardown is in effect (no good release since), its time; else None.

    After a teardown only the deploy brings MX and the mail host's A/AAAA back: dkim-publish and the
    propagation wait then leave them out instead of republishing or waiting for them."""
    from mailu_flows.deploy.releases import last_good, read_stack_records
    from mailu_flows.rollback import read_journal

    records = read_stack_records(host, config)  # this stack's, legacy ones included until adopted
    journal = read_journal(host, records.journal_file)
    if journal is None or journal.mode != "teardown" or not journal.finished:
        return None
    good = last_good(records.releases)
    finished = journal.finished.replace("-", "").replace(":", "")  # 20261129T010101Z, like release ids
    if good is not None and good.id[:15] > finished[:15]:
        return None
    return journal.finished


def without_mail_routing(config: StackConfig, records: list[Record]) -> list[Record]:
    """The records a teardown keeps: all but the MX of the mail domains and the mail host's A/AAAA."""
    domains = {d.rstrip(".").lower() for d in config.mail_domains}
    host = config.hostname.rstrip(".").lower()
    return [
        r
        for r in records
        if not (
            (r.type == "MX" and r.name.rstrip(".") in domains)
            or (r.type in ("A", "AAAA") and r.name.rstrip(".") == host)
        )
    ]
