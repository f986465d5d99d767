"""The mail canary's pure part: its settings, the probe message, and the judgement of a received
message (DKIM/SPF/DMARC identifier alignment, rspamd's verdict, the Authentication-Results of an
inbound delivery), and the metrics it leaves for Prometheus.

The round trip itself (SMTP submission through Traefik, IMAPS fetch, port 25 as an outside sender)
is `mailu_flows/canary.py`; the DKIM signature is checked there with dkimpy against the published key.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mailu_core.fields import DnsName, HostPort, MailAddress

__all__ = [
    "CANARY_HEADER",
    "CANARY_LAST_SUCCESS_METRIC",
    "CANARY_LATENCY_METRIC",
    "CanarySettings",
    "CanaryStep",
    "aligned",
    "authentication_results",
    "judge_inbound",
    "judge_outbound",
    "probe_message",
    "rspamd_verdict",
]

CANARY_HEADER = "X-Mailu-Canary"  # on every probe: the cleanup deletes exactly these
CANARY_LAST_SUCCESS_METRIC = "mailu_canary_last_success_timestamp_seconds"
CANARY_LATENCY_METRIC = "mailu_canary_delivery_latency_seconds"


class CanarySettings(BaseModel):
    """The mail canary (flows/canary.py): a message submitted on 587 through Traefik from the canary
    mailbox to itself, read back over IMAPS and judged; optionally a second one delivered to port 25
    as an outside sender would. The mailbox's password is in the block `blocks.canary_password`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mailbox: MailAddress | None = Field(
        None,
        description="The canary mailbox (declare it in accounts, with its password from the same block); "
        "default: canary@<mailu.domain>.",
    )
    inbound_sender: MailAddress | None = Field(
        None,
        description="Envelope and header sender of the inbound probe (port 25, as an outside server): an "
        "address on a domain whose SPF allows the flow runner's public address (Mailu refuses "
        "unauthenticated mail claiming its own domains); none = no inbound probe.",
    )
    inbound_helo: DnsName | None = Field(
        None,
        description="EHLO name of the inbound probe (the runner's name with forward and reverse DNS); "
        "default: the runner's FQDN.",
    )
    resolvers: list[HostPort] = Field(
        default_factory=list,
        max_length=8,
        description="DNS servers (host:port) the DKIM key is read from; default: dns.nameservers with "
        "dns.nameserver_port when set, else the runner's own resolver.",
    )
    delivery_timeout_s: float = Field(
        180.0,
        gt=0,
        le=3600,
        description="How long a probe may take to reach the mailbox (greylisting of the inbound probe "
        "included) before the run fails.",
    )
    max_latency_s: float = Field(
        60.0, gt=0, le=3600, description="Delivery latency above which the MailuCanarySlow alert fires."
    )
    interval_minutes: int = Field(
        15,
        ge=1,
        le=1440,
        description="The canary deployment's schedule: minutes between runs, a divisor of 60 (every N "
        "minutes past the hour) or whole hours dividing 24.",
    )
    scheduled: bool = Field(
        True,
        description="false: the mail-canary deployment has no schedule (runs only when started, e.g. "
        "during maintenance or in a test lab).",
    )
    no_success_alert_minutes: int = Field(
        60,
        ge=5,
        le=10080,
        description="MailuCanaryNoSuccess fires when no run has succeeded for this long.",
    )

    @field_validator("interval_minutes")
    @classmethod
    def _cron_friendly(cls, minutes: int) -> int:
        if 60 % minutes and (minutes % 60 or 24 % (minutes // 60)):
            raise ValueError(
                f"{minutes} is neither a divisor of 60 nor whole hours dividing 24 (e.g. 15, 60, 360)"
            )
        return minutes

    def cron(self) -> str:
        """The schedule as cron: every N minutes past the hour, or every N hours on the hour."""
        m = self.interval_minutes
        if 60 % m == 0:
            return "* * * * *" if m == 1 else f"*/{m} * * * *"
        return f"0 */{m // 60} * * *"

    def mailbox_for(self, domain: str) -> str:
        return self.mailbox or f"canary@{domain}"


@dataclass(frozen=True)
class CanaryStep:
    """One row of the canary's table: what was checked, whether it passed, how long it took."""

    step: str
    ok: bool
    detail: str
    latency_s: float | None = None

    def row(self) -> dict[str, object]:
        latency = "" if self.latency_s is None else f"{self.latency_s:.2f}"
        return {"step": self.step, "result": "ok" if self.ok else "FAILED", "latency_s": latency,
                "detail": self.detail}  # fmt: skip


def probe_message(sender: str, rcpt: str, tag: str, direction: str) -> bytes:
    """A small text message whose Subject and canary header carry `tag` (a unique token per probe)."""
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, rcpt
    msg["Subject"] = f"mailu canary {direction} {tag}"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(idstring=tag, domain=sender.rpartition("@")[2])
    msg[CANARY_HEADER] = f"{direction} {tag}"
    msg.set_content(f"A probe of the mail canary ({direction}); it deletes itself.\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def _domain(address: str) -> str:
    return email.utils.parseaddr(address)[1].rpartition("@")[2].lower().rstrip(".")


def aligned(identifier: str, from_domain: str) -> bool:
    """Relaxed DMARC alignment, approximated without the public suffix list: the same domain, or one a
    subdomain of the other (mail.example.com aligns with example.com)."""
    a, b = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _dkim_domain(msg: Message) -> str | None:
    signature = msg.get("DKIM-Signature")
    if signature is None:
        return None
    found = re.search(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", str(signature).replace("\r\n", ""))
    return found.group(1) if found else None


def authentication_results(msg: Message, authserv_id: str) -> dict[str, str]:
    """method -> result from the Authentication-Results header the receiving server (`authserv_id`,
    Mailu's hostname) added; headers claiming another server are ignored, as RFC 8601 asks."""
    results: dict[str, str] = {}
    for header in msg.get_all("Authentication-Results") or []:
        text = " ".join(str(header).split())
        server, _, rest = text.partition(";")
        if server.strip().lower() != authserv_id.lower():
            continue
        for clause in rest.split(";"):
            found = re.match(r"\s*([a-z-]+)\s*=\s*([a-z]+)", clause)
            if found:
                results.setdefault(found.group(1), found.group(2))
    return results


def rspamd_verdict(msg: Message) -> CanaryStep:
    """rspamd's X-Spamd-Bar: '/' is a neutral score, '+' per point above it, '-' per point below; a
    message rspamd would reject never arrives. Passes unless the bar shows a spam score (5 or more)."""
    bar = msg.get("X-Spamd-Bar")
    if bar is None:
        return CanaryStep("rspamd verdict", False, "no X-Spamd-Bar header: rspamd did not scan the message")
    bar = str(bar).strip()
    score = bar.count("+") - bar.count("-")
    return CanaryStep("rspamd verdict", score < 5, f"X-Spamd-Bar: {bar} (score about {score})")


def judge_outbound(raw: bytes, dkim_ok: bool, dkim_detail: str) -> list[CanaryStep]:
    """The submitted probe as it reached the mailbox: signed by rspamd with a key that verifies against
    the published record (`dkim_ok`, checked by the caller with dkimpy), aligned with From, envelope
    sender aligned with From (SPF alignment), and rspamd's verdict."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    from_domain = _domain(str(msg.get("From", "")))
    steps = [CanaryStep("DKIM signature verifies against the published key", dkim_ok, dkim_detail)]
    d = _dkim_domain(msg)
    steps.append(
        CanaryStep(
            "DKIM aligned with From (DMARC)",
            d is not None and aligned(d, from_domain),
            f"d={d} From domain {from_domain}" if d else "no DKIM-Signature",
        )
    )
    envelope = _domain(str(msg.get("Return-Path", "")))
    steps.append(
        CanaryStep(
            "envelope sender aligned with From (SPF)",
            bool(envelope) and aligned(envelope, from_domain),
            f"Return-Path domain {envelope or '(none)'} From domain {from_domain}",
        )
    )
    steps.append(rspamd_verdict(msg))
    return steps


def judge_inbound(raw: bytes, authserv_id: str) -> list[CanaryStep]:
    """The inbound probe as Mailu judged it: rspamd's Authentication-Results show SPF pass and a DMARC
    result that is not a failure, and its verdict is not spam."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    results = authentication_results(msg, authserv_id)
    spf, dmarc = results.get("spf", "none"), results.get("dmarc", "none")
    return [
        CanaryStep("inbound SPF (rspamd)", spf == "pass", f"spf={spf}"),
        CanaryStep("inbound DMARC (rspamd)", dmarc not in ("fail", "permerror"), f"dmarc={dmarc}"),
        rspamd_verdict(msg),
    ]
