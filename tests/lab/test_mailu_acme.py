"""A first deploy with `TLS_FLAVOR=letsencrypt` on an empty stack root, with Mailu's own front: Mailu's
certbot gets its certificates from the lab's ACME server (pebble) over real HTTP-01 (pebble resolves the
name on the lab's Knot and dials port 80 of the A address the deploy's DNS step published, where Traefik
routes the challenge to front). The deploy does not roll back for the certificate that cannot exist yet:
its checks say what it waits for, and its certificates step waits, restarts front and checks TLS.

Mail TLS is then verified against pebble's root alone (not the lab CA) and the hostname: STARTTLS on 25,
587 and 143, TLS on 465 and 993. At the end the lab's config is deployed again.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep
from mailu_core.config import StackConfig, load_stack_config
from tests.lab.fixtures.deploying import (
    deploy_state,
    empty_volumes,
    exception_text,
    fresh_stack_root,
    own_stack_config,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab_cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def pebble_root(lab: dict[str, Any]) -> Path:
    """The running pebble's root (it makes a new one at each start), alone in a file."""
    from lab.ca import ensure_ca
    from lab.pebble import issuing_roots, pebble_dir

    path = pebble_dir() / "issuing-root.pem"
    path.write_text(issuing_roots(ensure_ca(ep.lab_dir() / "ca")))
    return path


@pytest.fixture(scope="module")
def deployed(
    lab: dict[str, Any], lab_cfg: StackConfig, pebble_root: Path
) -> Iterator[tuple[StackConfig, dict[str, Any]]]:
    """`letsencrypt`, the host's public address in the A record, an empty stack root and volumes of its
    own; the certificates come from the ACME server into the certs volume."""
    root = fresh_stack_root("apps-acme")
    # The deploy's checks trust pebble's root for mail (Mailu's certbot) and the lab CA for the web UIs
    # (Traefik terminates HTTPS with the lab's certificate); this module's own tests trust pebble alone.
    trust = root.parent / "acme-trust.pem"
    trust.write_bytes(pebble_root.read_bytes() + (ep.lab_dir() / "ca" / "ca.crt").read_bytes())
    cfg = own_stack_config(
        lab_cfg, root, "mailu_acme_", host={"certs_dir": None}, traefik={"check_ca_file": str(trust)},
        tls_flavor="letsencrypt", public_ipv4=ep.public_address(), certificate_wait_s=300,
    )  # fmt: skip
    empty_volumes(cfg, "mailu_acme_")
    from mailu_flows.flows.deploy import deploy

    planned = deploy(config=cfg, dry_run=True, publish_dns=False)
    assert "## Waits for" in planned["plan"] and ep.MAIL_HOSTNAME in planned["plan"], planned["plan"]
    state = deploy_state(cfg)
    try:
        assert state.is_completed(), exception_text(state)
        yield cfg, state.result()
    finally:
        back = deploy_state(lab_cfg)
        assert back.is_completed(), exception_text(back)


def _ctx(root: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(root))
    ctx.check_hostname = True
    return ctx


def _port(name: int) -> int:
    return next(e.host_port for e in ep.MAIL_ENTRYPOINTS if e.port == name)


def test_first_deploy_waits_for_the_certificate_and_ends_healthy(
    deployed: tuple[StackConfig, dict[str, Any]],
) -> None:
    _, result = deployed
    assert result["failed_checks"] == []
    assert result["certificate"].startswith("certificate issued after")
    assert "front restarted and healthy" in result["certificate"]
    # instead of failing on front's health, the deploy said what it waited for, and until when
    assert result["changed"] is True
    assert any("300 s" in w and ep.MAIL_HOSTNAME in w for w in result["waits_for"]), result


@pytest.mark.parametrize("port", [25, 587])
def test_smtp_starttls_verifies_against_the_acme_root(
    deployed: tuple[StackConfig, dict[str, Any]], pebble_root: Path, port: int
) -> None:
    smtp = smtplib.SMTP(timeout=60)
    smtp._host = ep.MAIL_HOSTNAME  # type: ignore[attr-defined]  # STARTTLS's server_hostname
    smtp.connect("127.0.0.1", _port(port))
    try:
        smtp.starttls(context=_ctx(pebble_root))
        assert smtp.ehlo()[0] == 250
    finally:
        smtp.close()


def test_imap_starttls_verifies_against_the_acme_root(
    deployed: tuple[StackConfig, dict[str, Any]], pebble_root: Path
) -> None:
    import imaplib

    class _Imap(imaplib.IMAP4):
        def _create_socket(self, timeout: float | None) -> socket.socket:
            return socket.create_connection(("127.0.0.1", self.port), timeout)

    imap = _Imap(ep.MAIL_HOSTNAME, _port(143), timeout=60)
    try:
        imap.starttls(ssl_context=_ctx(pebble_root))
        assert imap.capability()[0] == "OK"
    finally:
        imap.shutdown()


@pytest.mark.parametrize("port", [465, 993])
def test_implicit_tls_verifies_against_the_acme_root(
    deployed: tuple[StackConfig, dict[str, Any]], pebble_root: Path, port: int
) -> None:
    raw = socket.create_connection(("127.0.0.1", _port(port)), timeout=60)
    with _ctx(pebble_root).wrap_socket(raw, server_hostname=ep.MAIL_HOSTNAME) as tls:
        cert = tls.getpeercert()
        assert cert is not None
        issuer = str(cert["issuer"])
        assert "Pebble" in issuer, issuer
        assert tls.recv(200).startswith((b"220 ", b"* OK"))


def test_a_second_deploy_changes_nothing_and_waits_for_nothing(
    deployed: tuple[StackConfig, dict[str, Any]],
) -> None:
    cfg, _ = deployed
    state = deploy_state(cfg)
    assert state.is_completed(), exception_text(state)
    result = state.result()
    assert (result["changed"], result["certificate"], result["failed_checks"]) == (False, None, [])
