"""The mail canary's round trip, from the flow runner through the stack's public entrypoints, as a mail
client and an outside server would:

1. submit a uniquely tagged message from the canary mailbox to itself on 587 (STARTTLS; 465 when
   only implicit TLS is routed), through Traefik, the certificate checked for the mail hostname;
2. read it back over IMAPS (delivery latency = submission to arrival);
3. check rspamd's DKIM signature against the published key with dkimpy (a kept DKIM library), DKIM
   and envelope alignment with From, and rspamd's verdict (`mailu_core.canary.judge_outbound`);
4. optionally deliver a second message to port 25 as an outside server (greylisting is retried as
   a real server would, within the delivery timeout) and judge rspamd's SPF/DMARC results on it;
5. delete every probe message (this run's and any a failed run left).

Nothing here raises for a failed step: each becomes a row, and the flow decides.
"""

from __future__ import annotations

import contextlib
import imaplib
import secrets
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mailu_core.canary import (
    CANARY_HEADER,
    CanaryStep,
    judge_inbound,
    judge_outbound,
    probe_message,
)
from mailu_core.config import StackConfig

__all__ = ["CanaryReport", "dkim_dns_lookup", "run_canary"]

NETWORK_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 1.0
GREYLIST_RETRY_S = 15.0


@dataclass
class CanaryReport:
    """Every step of one run, and the delivery latency of each direction that arrived."""

    steps: list[CanaryStep] = field(default_factory=list)
    latency_s: dict[str, float] = field(default_factory=dict)  # "outbound" / "inbound"

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def failures(self) -> list[str]:
        return [f"{s.step}: {s.detail}" for s in self.steps if not s.ok]


@dataclass(frozen=True)
class _Endpoint:
    """Where the flow runner reaches the stack (Traefik's published ports) and the TLS name it checks."""

    address: str
    hostname: str
    ports: dict[int, int]  # mail port -> published port
    context: ssl.SSLContext

    @classmethod
    def of(cls, cfg: StackConfig) -> _Endpoint:
        context = ssl.create_default_context(cafile=cfg.traefik.check_ca_file)
        ports: dict[int, int] = {int(ep.port): ep.host_port for ep in cfg.traefik.mail_entrypoints}
        address = str(cfg.traefik.check_address or cfg.mailu.public_ipv4)
        return cls(address, cfg.hostname, ports, context)

    def dial(self, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self.address, port), timeout=timeout)


class _Smtp(smtplib.SMTP):
    """SMTP to the endpoint's address; the name given to connect() is the one STARTTLS verifies."""

    def __init__(self, endpoint: _Endpoint) -> None:
        self._endpoint = endpoint
        super().__init__(timeout=NETWORK_TIMEOUT_S)
        self._host = endpoint.hostname  # what starttls() verifies the certificate for

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._endpoint.dial(port, timeout)


class _Smtps(smtplib.SMTP_SSL):
    def __init__(self, endpoint: _Endpoint) -> None:
        self._endpoint = endpoint
        super().__init__(timeout=NETWORK_TIMEOUT_S, context=endpoint.context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        raw = self._endpoint.dial(port, timeout)
        return self._endpoint.context.wrap_socket(raw, server_hostname=host)


class _Imaps(imaplib.IMAP4_SSL):
    def __init__(self, endpoint: _Endpoint) -> None:
        self._endpoint = endpoint
        super().__init__(endpoint.hostname, endpoint.ports[993], ssl_context=endpoint.context,
                         timeout=NETWORK_TIMEOUT_S)  # fmt: skip

    def _create_socket(self, timeout: float | None) -> ssl.SSLSocket:
        raw = self._endpoint.dial(self.port, timeout or NETWORK_TIMEOUT_S)
        return self._endpoint.context.wrap_socket(raw, server_hostname=self.host)


def _submission(endpoint: _Endpoint) -> tuple[smtplib.SMTP, str]:
    """587 with STARTTLS when routed, else 465 with implicit TLS."""
    if 587 in endpoint.ports:
        smtp: smtplib.SMTP = _Smtp(endpoint)
        smtp.connect(endpoint.hostname, endpoint.ports[587])
        smtp.starttls(context=endpoint.context)
        return smtp, "587 (STARTTLS)"
    if 465 in endpoint.ports:
        smtp = _Smtps(endpoint)
        smtp.connect(endpoint.hostname, endpoint.ports[465])
        return smtp, "465 (TLS)"
    raise ValueError("traefik.mail_entrypoints routes neither 587 nor 465: nothing to submit on")


@contextlib.contextmanager
def _mailbox(endpoint: _Endpoint, user: str, password: str) -> Iterator[_Imaps]:
    imap = _Imaps(endpoint)
    try:
        imap.login(user, password)
        imap.select("INBOX")
        yield imap
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.logout()


def _find(imap: _Imaps, tag: str) -> bytes | None:
    _, ids = imap.search(None, "HEADER", CANARY_HEADER, tag)
    numbers = ids[0].split() if ids and ids[0] else []
    if not numbers:
        return None
    _, data = imap.fetch(numbers[-1], "(BODY.PEEK[])")
    for part in data:
        if isinstance(part, tuple):
            return bytes(part[1])
    return None


def _wait_for(endpoint: _Endpoint, user: str, password: str, tag: str, deadline: float) -> bytes | None:
    """The probe tagged `tag` once it is in the INBOX; None at the deadline."""
    with _mailbox(endpoint, user, password) as imap:
        while True:
            found = _find(imap, tag)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_INTERVAL_S)
            imap.noop()


def _delete_probes(endpoint: _Endpoint, user: str, password: str) -> int:
    """Delete every message carrying the canary header; returns how many."""
    with _mailbox(endpoint, user, password) as imap:
        _, ids = imap.search(None, "HEADER", CANARY_HEADER, '""')
        numbers = ids[0].split() if ids and ids[0] else []
        if numbers:
            imap.store(b",".join(numbers).decode(), "+FLAGS.SILENT", "(\\Deleted)")
            imap.expunge()
        return len(numbers)


def dkim_dns_lookup(cfg: StackConfig) -> Callable[..., bytes]:
    """dkimpy's `dnsfunc`: TXT of a name from canary.resolvers, else the zone's own nameservers
    (dns.nameservers at dns.nameserver_port), else the runner's resolver."""
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=not (cfg.canary.resolvers or cfg.dns.nameservers))
    if cfg.canary.resolvers:
        first = cfg.canary.resolvers[0].rpartition(":")
        resolver.nameservers = [server.rpartition(":")[0] for server in cfg.canary.resolvers]
        resolver.port = int(first[2])
    elif cfg.dns.nameservers:
        resolver.nameservers = [str(server) for server in cfg.dns.nameservers]
        resolver.port = cfg.dns.nameserver_port

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return b""
        return b"".join(b"".join(record.strings) for record in answer)

    return lookup


def _dkim_check(raw: bytes, cfg: StackConfig) -> tuple[bool, str]:
    """(verified, why). A key lookup that times out or finds no nameserver is a failed check, not a
    crashed run: the canary's table must say which step failed."""
    import dkim
    import dns.exception

    try:
        verified = bool(dkim.verify(raw, dnsfunc=dkim_dns_lookup(cfg)))
    except dkim.DKIMException as exc:
        return False, f"dkimpy: {exc}"
    except dns.exception.DNSException as exc:
        return False, f"the DKIM key lookup failed: {type(exc).__name__}: {exc}"
    return verified, ("verified" if verified else "the signature does not verify against the published key")


def _arrival(
    cfg: StackConfig, endpoint: _Endpoint, creds: tuple[str, str], tag: str, start: float, step: str,
    report: CanaryReport,
) -> bytes | None:  # fmt: skip
    """Wait for the probe `tag` sent at `start`; one row either way; None when it did not arrive."""
    limit = cfg.canary.delivery_timeout_s
    try:
        raw = _wait_for(endpoint, *creds, tag, start + limit)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
        report.steps.append(CanaryStep(step, False, f"{type(exc).__name__}: {exc}"))
        return None
    if raw is None:
        report.steps.append(CanaryStep(step, False, f"not in the INBOX after {limit:.0f}s"))
        return None
    latency = time.monotonic() - start
    report.steps.append(CanaryStep(step, True, f"arrived after {latency:.1f}s", latency))
    return raw


def _outbound(cfg: StackConfig, endpoint: _Endpoint, user: str, password: str, report: CanaryReport) -> None:
    tag = secrets.token_hex(8)
    message = probe_message(user, user, tag, "outbound")
    start = time.monotonic()
    try:
        smtp, how = _submission(endpoint)
        with smtp:
            smtp.login(user, password)
            smtp.sendmail(user, [user], message)
    except (OSError, smtplib.SMTPException, ssl.SSLError, ValueError) as exc:
        report.steps.append(CanaryStep("submit", False, f"{type(exc).__name__}: {exc}"))
        return
    report.steps.append(CanaryStep("submit", True, f"{user} on {how}", time.monotonic() - start))
    raw = _arrival(cfg, endpoint, (user, password), tag, start, "fetch over IMAPS", report)
    if raw is not None:
        report.latency_s["outbound"] = time.monotonic() - start
        report.steps += judge_outbound(raw, *_dkim_check(raw, cfg))


def _deliver_as_outside_server(cfg: StackConfig, endpoint: _Endpoint, sender: str, rcpt: str,
                               message: bytes, deadline: float, retry: bool) -> tuple[bool, str]:  # fmt: skip
    """Port 25 as an outside server: EHLO, STARTTLS when offered, MAIL/RCPT/DATA; with `retry`, a 4xx
    answer (greylisting) is retried every GREYLIST_RETRY_S until the deadline, as a real server would.
    (No retry when the stack already refused the submission: it is refusing all mail for now.)"""
    helo = cfg.canary.inbound_helo or socket.getfqdn()
    attempts = 0
    while True:
        attempts += 1
        try:
            with _Smtp(endpoint) as smtp:
                smtp.connect(endpoint.hostname, endpoint.ports[25])
                smtp.ehlo(helo)
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=endpoint.context)
                    smtp.ehlo(helo)
                smtp.sendmail(sender, [rcpt], message)
            return True, f"accepted on 25 after {attempts} attempt(s)"
        except (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
            code = getattr(exc, "smtp_code", None)
            if code is None and isinstance(exc, smtplib.SMTPRecipientsRefused):
                code = next(iter(exc.recipients.values()))[0]
            temporary = isinstance(code, int) and 400 <= code < 500
            if not (retry and temporary) or time.monotonic() + GREYLIST_RETRY_S > deadline:
                return False, f"refused on attempt {attempts}: {exc}"
        except (OSError, smtplib.SMTPException, ssl.SSLError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        time.sleep(GREYLIST_RETRY_S)


def _inbound(cfg: StackConfig, endpoint: _Endpoint, user: str, password: str, report: CanaryReport) -> None:
    sender = cfg.canary.inbound_sender
    if sender is None:
        return
    if 25 not in endpoint.ports:
        report.steps.append(CanaryStep("deliver on 25", False, "traefik.mail_entrypoints does not route 25"))
        return
    tag = secrets.token_hex(8)
    start = time.monotonic()
    deadline = start + cfg.canary.delivery_timeout_s
    ok, detail = _deliver_as_outside_server(
        cfg, endpoint, sender, user, probe_message(sender, user, tag, "inbound"), deadline,
        retry="outbound" in report.latency_s,
    )  # fmt: skip
    took = time.monotonic() - start
    report.steps.append(CanaryStep("deliver on 25 as an outside server", ok, detail, took))
    if not ok:
        return
    raw = _arrival(cfg, endpoint, (user, password), tag, start, "inbound fetch over IMAPS", report)
    if raw is not None:
        report.latency_s["inbound"] = time.monotonic() - start
        verdicts = judge_inbound(raw, cfg.hostname)
        report.steps += [CanaryStep(f"inbound: {v.step}", v.ok, v.detail) for v in verdicts]


def run_canary(cfg: StackConfig, password: str) -> CanaryReport:
    """One canary run; every step is a row of the report (nothing raises for a failed step)."""
    endpoint = _Endpoint.of(cfg)
    user = cfg.canary.mailbox_for(cfg.mailu.domain)
    report = CanaryReport()
    try:
        _outbound(cfg, endpoint, user, password, report)
        _inbound(cfg, endpoint, user, password, report)
    finally:
        start = time.monotonic()
        try:
            deleted = _delete_probes(endpoint, user, password)
            report.steps.append(
                CanaryStep("delete probe messages", True, f"{deleted} deleted", time.monotonic() - start)
            )
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            report.steps.append(CanaryStep("delete probe messages", False, f"{type(exc).__name__}: {exc}"))
    return report
