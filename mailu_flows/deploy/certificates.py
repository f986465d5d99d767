"""Mailu's own ACME certificates (`TLS_FLAVOR` letsencrypt / mail-letsencrypt) on a first deploy.

Mailu's front fetches them itself: `letsencrypt.py` runs certbot with HTTP-01 on :80. The first issuance
can only succeed once the hostnames' A records resolve and Traefik routes the challenge to front, and the
deploy's DNS step publishes those records after the release. Until a certificate exists, front's Dovecot
cannot start (its proxy.conf names the certificate) and front's health check fails. So a deploy does not
count that as a failure: it brings front up without waiting for its health, says in its checks that it
waits for the certificate, and after the DNS step `wait_for_certificate` waits with a deadline, restarting
front twice:
- once so that letsencrypt.py tries again: its self-check dies for good when the name does not resolve
  yet, and after a failed certbot run it sleeps 24 hours;
- once after issuance, so that Dovecot starts: certbot's post-hook only signals daemons that run.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_flows import dockercmd
from mailu_flows.deploy.preflight import Check
from mailu_flows.host import Host

ACME_FLAVORS = ("letsencrypt", "mail-letsencrypt")
# What front's config.py requires before it enables TLS (core/nginx/config.py, "letsencrypt" flavors).
CERTIFICATE_FILES = (
    "/certs/letsencrypt/live/mailu/fullchain.pem",
    "/certs/letsencrypt/live/mailu/privkey.pem",
    "/certs/letsencrypt/live/mailu-ecdsa/fullchain.pem",
    "/certs/letsencrypt/live/mailu-ecdsa/privkey.pem",
)
RETRY_EVERY_S = 120.0
"""While no certificate exists, front is restarted this often so that letsencrypt.py tries again."""

Log = Callable[[str], None]


class CertificateNotIssued(MailuFlowsError, RuntimeError):
    """The deadline passed without a certificate; the release stays (nothing is rolled back)."""


def uses_acme(cfg: StackConfig) -> bool:
    return cfg.mailu.tls_flavor in ACME_FLAVORS


def certificate_present(host: Host, cfg: StackConfig) -> bool:
    """Whether Mailu's certificates exist in the certs volume, read by a throwaway container of the front
    image (no network, the volume read-only), so the answer does not depend on front running."""
    mount = (
        dockercmd.bind_mount(str(cfg.host.resolve(str(cfg.host.certs_dir))), "/certs")
        if cfg.host.certs_dir
        else dockercmd.volume_mount(cfg.volumes.certs, "/certs", read_only=True)
    )
    test = " && ".join(f"test -s {shlex.quote(p)}" for p in CERTIFICATE_FILES)
    argv = dockercmd.run(cfg.images.front, ["-c", test], user="0:0", entrypoint="/bin/sh", mounts=[mount])
    return host.run(shlex.join(argv), check=False, timeout=120).returncode == 0


def waiting_check(cfg: StackConfig) -> Check:
    """The checks table's row for a first deploy that waits for its certificate."""
    hosts = ", ".join(cfg.mailu.hostnames)
    return Check(
        "certificate",
        True,
        f"waiting for the first ACME certificate for {hosts}: issued over HTTP-01 once the DNS step has "
        f"published the A records; the certificates step waits up to {cfg.mailu.certificate_wait_s} s",
    )


def plan_note(cfg: StackConfig) -> str:
    """What the plan says about a first deploy with an ACME flavor."""
    return (
        f"front's first certificate ({cfg.mailu.tls_flavor}): Mailu's certbot gets it over HTTP-01 for "
        f"{', '.join(cfg.mailu.hostnames)} once their A records point here and Traefik's web entrypoint "
        f"routes `/.well-known/acme-challenge/` to front. Until then front is up without mail TLS; the "
        f"deploy waits for the certificate after the DNS step, up to {cfg.mailu.certificate_wait_s} s."
    )


def wait_for_certificate(
    host: Host,
    cfg: StackConfig,
    compose: Callable[..., str],
    log: Log = lambda _m: None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 5.0,
) -> str:
    """Wait for Mailu's first certificate, then restart front so that its Dovecot starts. `compose` runs
    one `docker compose` subcommand of the stack. Returns what happened; raises CertificateNotIssued at
    the deadline, naming what to check."""
    if certificate_present(host, cfg):
        return "certificate in place"
    start = clock()
    deadline = start + cfg.mailu.certificate_wait_s
    until = (datetime.now(UTC) + timedelta(seconds=cfg.mailu.certificate_wait_s)).strftime("%H:%M:%S UTC")
    last_restart = None
    while clock() < deadline:
        if last_restart is None or clock() - last_restart >= RETRY_EVERY_S:
            log(f"restarting front so that Mailu's certbot tries again (waiting until {until})")
            compose("restart", "front", timeout=300)
            last_restart = clock()
        sleep(poll_s)
        if certificate_present(host, cfg):
            waited = round(clock() - start)
            log(f"certificate issued after {waited} s; restarting front so that its Dovecot starts")
            compose("restart", "front", timeout=300)
            compose("up", "--detach", "--wait", "--wait-timeout", "240", "--no-deps", "front", timeout=600)
            return f"certificate issued after {waited} s; front restarted and healthy"
    tail = compose("logs", "--no-color", "--tail", "15", "front", timeout=120).strip().splitlines()
    raise CertificateNotIssued(
        f"no certificate for {', '.join(cfg.mailu.hostnames)} within {cfg.mailu.certificate_wait_s} s "
        f"(mailu.certificate_wait_s). Check that the names' A records point at this host, that port 80 "
        f"reaches Traefik's web entrypoint and that the ACME server is reachable; the release stays. "
        f"front's last lines: " + " | ".join(tail[-8:])
    )
