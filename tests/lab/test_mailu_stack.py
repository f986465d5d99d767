"""Mailu 2024.06.9's own code on the lab, deployed by the product: each container runs files of Mailu's
tree, and mail really flows through what deploy renders (Traefik -> front -> Postfix -> rspamd ->
Dovecot, auth through admin), DKIM-signed by rspamd with the key dkim-publish wrote.

The stack is the lab's own config (stack root, Traefik, compose project, monitoring) on empty volumes of
its own; at the end the lab's config is deployed again, so later modules find the lab as they expect.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import imaplib
import secrets
import smtplib
import socket
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import dns.resolver
import pytest

from lab import endpoints as ep
from lab.mailu_source import archive_path
from mailu_core.config import StackConfig, load_stack_config, stack_config_from_mapping
from tests.lab.fixtures.deploying import deploy_state, empty_volumes, exception_text

pytestmark = pytest.mark.lab

# One file per service: its path in the container, and in Mailu's tree (files the build does not edit).
MAILU_FILES: dict[str, tuple[str, str]] = {
    "admin": ("/app/mailu/internal/views/auth.py", "core/admin/mailu/internal/views/auth.py"),
    "front": ("/letsencrypt.py", "core/nginx/letsencrypt.py"),
    "imap": ("/conf/dovecot.conf", "core/dovecot/conf/dovecot.conf"),
    "smtp": ("/conf/master.cf", "core/postfix/conf/master.cf"),
    "antispam": ("/conf/dkim_signing.conf", "core/rspamd/conf/dkim_signing.conf"),
    "resolver": ("/start.py", "optional/unbound/start.py"),
    "webmail": ("/var/www/roundcube/plugins/mailu/mailu.php", "webmails/roundcube/login/mailu.php"),
}
SOCRATE = (
    "/app/venv/lib/python3.11/site-packages/socrate/system.py",
    "core/base/libs/socrate/socrate/system.py",
)


def _archive_sha256(members: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    with tarfile.open(archive_path()) as tar:
        for member in tar.getmembers():
            rel = member.name.split("/", 1)[-1]
            if rel in members and member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                out[rel] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def lab_cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def images(lab: dict[str, Any]) -> dict[str, str]:
    from lab.images import ensure_images

    return ensure_images()


@pytest.fixture(scope="module")
def deployed(lab_cfg: StackConfig, images: dict[str, str]) -> Iterator[tuple[StackConfig, dict[str, Any]]]:
    """A first deploy of Mailu on empty volumes of its own (`mailu_real_*`), on the lab's stack root with
    `tls_flavor: mail` and the certificates from a directory (the empty-root first deploy is
    test_deploy's on a fresh lab, and test_mailu_acme's). Volumes left by an earlier lab (another
    Prefect server, so another secrets block) would hold an admin whose password this lab does not know."""
    data = lab_cfg.model_dump(mode="json")
    renamed = {name: f"mailu_real_{field}" for field, name in data["volumes"].items()}
    data["volumes"] = {field: renamed[name] for field, name in data["volumes"].items()}
    data["backup"]["volumes"] = [renamed[name] for name in data["backup"]["volumes"]]
    cfg = stack_config_from_mapping(data, source="test_mailu_stack")
    empty_volumes(cfg, "mailu_real_")
    state = deploy_state(cfg)
    assert state.is_completed(), exception_text(state)
    try:
        yield cfg, state.result()
    finally:
        back = deploy_state(lab_cfg)
        assert back.is_completed(), exception_text(back)


def _admin_password() -> str:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mailu_flows.blocks import MailuSecrets

    with temporary_settings({PREFECT_API_URL: ep.PREFECT_API_URL}):
        block = MailuSecrets.load("lab-mailu-secrets")
    assert isinstance(block, MailuSecrets)
    return str(block.admin_password.get_secret_value())


def _ctx() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ep.lab_dir() / "ca" / "ca.crt"))


def _port(name: int) -> int:
    return next(e.host_port for e in ep.MAIL_ENTRYPOINTS if e.port == name)


class _Imaps(imaplib.IMAP4_SSL):
    """IMAPS to Traefik's loopback entrypoint, verifying the certificate for the mail hostname."""

    def _create_socket(self, timeout: float | None) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        wrapped: ssl.SSLSocket = self.ssl_context.wrap_socket(sock, server_hostname=ep.MAIL_HOSTNAME)
        return wrapped


class _Smtps(smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        return self.context.wrap_socket(sock, server_hostname=ep.MAIL_HOSTNAME)


def _submission(port: int) -> smtplib.SMTP:
    """587 with STARTTLS or 465 with TLS, through Traefik, the certificate checked for the mail hostname."""
    if port == 465:
        smtp: smtplib.SMTP = _Smtps(context=_ctx(), timeout=60)
        smtp.connect("127.0.0.1", _port(465))
        return smtp
    smtp = smtplib.SMTP(timeout=60)
    smtp._host = ep.MAIL_HOSTNAME  # type: ignore[attr-defined]  # STARTTLS's server_hostname
    smtp.connect("127.0.0.1", _port(587))
    smtp.starttls(context=_ctx())
    return smtp


def _fetch(user: str, password: str, tag: str, timeout: float = 60) -> bytes:
    """The message whose Subject holds `tag`, read over IMAPS through Traefik (waits for delivery)."""
    deadline = time.monotonic() + timeout
    while True:
        with _Imaps(ep.MAIL_HOSTNAME, _port(993), ssl_context=_ctx()) as imap:
            imap.login(user, password)
            imap.select("INBOX")
            _, ids = imap.search(None, "SUBJECT", f'"{tag}"')
            if ids and ids[0].split():
                _, data = imap.fetch(ids[0].split()[-1], "(RFC822)")
                first = data[0]
                assert isinstance(first, tuple)
                return bytes(first[1])
        if time.monotonic() > deadline:
            raise AssertionError(f"no message {tag!r} in {user}'s INBOX after {timeout}s")
        time.sleep(1)


def _message(sender: str, rcpt: str, tag: str) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, f"lab probe {tag}"
    msg["Message-ID"] = f"<{tag}@example.org>"
    msg.set_content(f"probe {tag}\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def test_each_service_runs_mailus_own_code(deployed: tuple[StackConfig, dict[str, Any]]) -> None:
    cfg, _ = deployed
    want = _archive_sha256([rel for _, rel in MAILU_FILES.values()] + [SOCRATE[1]])
    for service, (path, rel) in MAILU_FILES.items():
        container = f"{cfg.mailu.compose_project}-{service}-1"
        for inside, member in ((path, rel), SOCRATE):
            out = subprocess.run(["docker", "exec", container, "sha256sum", inside],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            assert out.split()[0] == want[member], f"{service}: {inside} is not Mailu's {member}"


def test_first_deploy_is_healthy_on_mailus_code(deployed: tuple[StackConfig, dict[str, Any]]) -> None:
    _, result = deployed
    assert result["failed_checks"] == []


def test_mail_from_outside_lands_in_the_mailbox_and_postfix_sees_the_client(
    deployed: tuple[StackConfig, dict[str, Any]], images: dict[str, str]
) -> None:
    """An outside mail server (a container on `edge` with its A, PTR and SPF in the lab's DNS, so that
    rspamd does not greylist it) -> Traefik :25 (PROXY v2) -> front -> Postfix -> rspamd -> Dovecot LMTP;
    read back over IMAPS; Postfix logs the sender's address."""
    cfg, _ = deployed
    tag = secrets.token_hex(6)
    rcpt = f"{cfg.mailu.postmaster}@{cfg.mailu.domain}"
    client_ip = ep.OUTSIDE_MTA_IP
    sender = f"probe-{tag}@example.org"  # a new sender each run: greylisting keys on the sender too
    body = _message(sender, rcpt, tag).decode()
    script = (
        "import smtplib, sys\n"
        f"s = smtplib.SMTP({ep.TRAEFIK_EDGE_IP!r}, 25, timeout=60)\n"
        f"s.ehlo({ep.OUTSIDE_MTA_NAME!r})\n"
        f"s.sendmail({sender!r}, [{rcpt!r}], sys.stdin.read())\n"
        "s.quit()\n"
    )
    proc = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "edge", "--ip", client_ip, "--entrypoint", "python3",
         images["mailu-admin"], "-c", script],
        input=body, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    received = _fetch(rcpt, _admin_password(), tag)
    assert f"probe {tag}".encode() in received
    logs = subprocess.run(["docker", "logs", f"{cfg.mailu.compose_project}-smtp-1"],
                          capture_output=True, text=True)  # fmt: skip
    assert f"[{client_ip}]" in logs.stdout + logs.stderr


@pytest.mark.parametrize("port", [587, 465])
def test_authenticated_submission_is_delivered_with_a_dkim_signature_that_verifies(
    deployed: tuple[StackConfig, dict[str, Any]], port: int
) -> None:
    cfg, _ = deployed
    tag = secrets.token_hex(6)
    user = f"{cfg.mailu.postmaster}@{cfg.mailu.domain}"
    password = _admin_password()
    with _submission(port) as smtp:
        smtp.login(user, password)
        smtp.sendmail(user, [user], _message(user, user, tag))
    received = _fetch(user, password, tag)
    assert b"DKIM-Signature:" in received

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers, res.port = [ep.DNS_PRIMARY], ep.DNS_PORT
        answer = res.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    assert dkim.verify(received, dnsfunc=dnsfunc), "rspamd's DKIM signature does not verify in the lab DNS"


def test_relay_to_a_foreign_domain_without_authentication_is_refused(
    deployed: tuple[StackConfig, dict[str, Any]],
) -> None:
    with smtplib.SMTP("127.0.0.1", _port(25), timeout=60) as smtp:
        smtp.ehlo("client.example.org")
        code, _ = smtp.mail("someone@example.org")
        assert code == 250
        code, reply = smtp.rcpt("victim@example.org")
        assert code >= 500, reply


def test_the_api_the_flows_call_is_mailus_own(deployed: tuple[StackConfig, dict[str, Any]]) -> None:
    """The flows ensure domains and the admin through the API inside admin: Mailu's flask-restx API
    answers (its swagger document names Mailu's API) and lists the lab's domain."""
    cfg, _ = deployed
    script = (
        "import json, urllib.request\n"
        "r = urllib.request.urlopen('http://127.0.0.1:8080/api/v1/swagger.json', timeout=10)\n"
        "print(json.load(r)['info']['title'])\n"
    )
    out = subprocess.run(["docker", "exec", f"{cfg.mailu.compose_project}-admin-1", "python3", "-c", script],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "Mailu" in out


# --- the mail canary on Mailu's code ------------------------------------------------------------------


def _secret(name: str) -> str:
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mailu_flows.blocks import load_block

    with temporary_settings({PREFECT_API_URL: ep.PREFECT_API_URL}):
        return str(load_block(Secret, name).get())


@pytest.fixture(scope="module")
def canary(deployed: tuple[StackConfig, dict[str, Any]]) -> tuple[StackConfig, str]:
    """The canary mailbox, made by the accounts flow from the lab config's accounts section, with the
    password of the lab's canary block (blocks.canary_password)."""
    from lab.stack_config import with_canary
    from mailu_flows.flows.accounts import accounts

    cfg = with_canary(deployed[0])
    assert cfg.blocks.canary_password is not None
    state = accounts(config=cfg, return_state=True)
    assert state.is_completed(), exception_text(state)
    return cfg, _secret(cfg.blocks.canary_password)


def test_the_mail_canary_delivers_both_ways_judges_and_cleans_up(canary: tuple[StackConfig, str]) -> None:
    """One run: submission on 587 and port 25 as an outside server both arrive; rspamd's DKIM signature
    verifies against the key in the lab's DNS; the latency is a metric on the host; no probe is left."""
    from mailu_flows.flows.canary import mail_canary

    cfg, password = canary
    state = mail_canary(config=cfg, return_state=True)
    assert state.is_completed(), exception_text(state)
    report = state.result()
    steps = {step.step: step for step in report.steps}
    assert steps["DKIM signature verifies against the published key"].ok
    assert steps["inbound: inbound SPF (rspamd)"].detail == "spf=pass"
    assert set(report.latency_s) == {"outbound", "inbound"} and all(v > 0 for v in report.latency_s.values())
    metric = Path(str(cfg.monitoring.textfile_dir)) / f"mailu_canary_{cfg.name}.prom"
    text = metric.read_text()
    assert f'mailu_canary_delivery_latency_seconds{{stack="{cfg.name}",direction="inbound"}}' in text
    assert oct(metric.stat().st_mode & 0o777) == "0o644"
    user = cfg.canary.mailbox_for(cfg.mailu.domain)
    with _Imaps(ep.MAIL_HOSTNAME, _port(993), ssl_context=_ctx()) as imap:
        imap.login(user, password)
        imap.select("INBOX")
        _, ids = imap.search(None, "HEADER", "X-Mailu-Canary", '""')
        assert ids == [b""], "the canary left probe messages behind"


def test_with_antispam_stopped_the_canary_fails_naming_the_step(canary: tuple[StackConfig, str]) -> None:
    """Postfix tempfails mail while rspamd (its milter) is down: the canary run fails, its error names
    the submission, and no success is recorded; antispam is started again afterwards."""
    from mailu_flows.flows.canary import mail_canary

    cfg, _ = canary
    metric = Path(str(cfg.monitoring.textfile_dir)) / f"mailu_canary_{cfg.name}.prom"
    before = metric.read_text() if metric.exists() else ""
    antispam = f"{cfg.mailu.compose_project}-antispam-1"
    subprocess.run(["docker", "stop", antispam], check=True, capture_output=True)
    try:
        state = mail_canary(config=cfg, return_state=True)
        assert state.is_failed()
        assert "submit: SMTP" in exception_text(state), exception_text(state)
        assert (metric.read_text() if metric.exists() else "") == before
    finally:
        subprocess.run(["docker", "start", antispam], check=True, capture_output=True)
        deadline = time.monotonic() + 300
        while subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Health.Status}}", antispam],
            capture_output=True, text=True, check=False,
        ).stdout.strip() != "healthy":  # fmt: skip
            assert time.monotonic() < deadline, "antispam did not become healthy again"
            time.sleep(2)
