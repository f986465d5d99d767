"""Contract tests of the Mailu stand-ins: they must break where real Mailu 2024.06 breaks."""

from __future__ import annotations

import ipaddress
import json
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from lab.ca import CaFiles
from lab.endpoints import (
    MAIL_ENTRYPOINTS,
    MAIL_HOSTNAME,
    NETWORKS,
    TRAEFIK_API_URL,
    TRAEFIK_EDGE_IP,
    ZONE,
    lab_dir,
)
from tests.lab.conftest import Standins
from tests.lab.fixtures.mailclient import Conn, smtp_from_container, smtp_starttls_check, tls_context

pytestmark = pytest.mark.lab

MAILU_IMAGES = ("front", "admin", "imap", "smtp", "antispam", "webmail")


@pytest.fixture(scope="module")
def ctx(lab_ca: CaFiles) -> ssl.SSLContext:
    return tls_context(lab_ca.ca_cert)


# --- positive protocol checks on the plain front (published ports, no PROXY protocol) --------------


def test_smtp_25_banner_and_starttls(standins: Standins, ctx: ssl.SSLContext) -> None:
    banner = smtp_starttls_check("127.0.0.1", standins.port("front", 25), ctx)
    assert banner[0].startswith(f"220 {MAIL_HOSTNAME} ")


def test_submission_587_starttls(standins: Standins, ctx: ssl.SSLContext) -> None:
    banner = smtp_starttls_check("127.0.0.1", standins.port("front", 587), ctx)
    assert MAIL_HOSTNAME in banner[0]


def test_submissions_465_implicit_tls(standins: Standins, ctx: ssl.SSLContext) -> None:
    c = Conn("127.0.0.1", standins.port("front", 465), tls=ctx)
    try:
        banner = c.smtp_reply()
        assert banner[0].startswith("220 ") and MAIL_HOSTNAME in banner[0], banner
        c.send("EHLO client.example.test")
        ehlo = c.smtp_reply()
        assert any("AUTH" in line for line in ehlo), ehlo
    finally:
        c.close()


def test_imaps_993_implicit_tls(standins: Standins, ctx: ssl.SSLContext) -> None:
    c = Conn("127.0.0.1", standins.port("front", 993), tls=ctx)
    try:
        assert c.readline().startswith("* OK")
        cert = c.sock.getpeercert()  # type: ignore[attr-defined]
        assert ("DNS", MAIL_HOSTNAME) in cert["subjectAltName"]
    finally:
        c.close()


def test_imap_143_starttls(standins: Standins, ctx: ssl.SSLContext) -> None:
    c = Conn("127.0.0.1", standins.port("front", 143))
    try:
        greeting = c.readline()
        assert greeting.startswith("* OK") and "STARTTLS" in greeting and "LOGINDISABLED" in greeting
        c.send("a STARTTLS")
        assert c.imap_until("a")[-1].startswith("a OK")
        c.starttls(ctx)
        c.send("b CAPABILITY")
        caps = c.imap_until("b")
        assert caps[-1].startswith("b OK") and "AUTH=PLAIN" in " ".join(caps)
    finally:
        c.close()


def test_front_health_endpoint(standins: Standins) -> None:
    out = subprocess.run(
        [
            "docker",
            "exec",
            standins.container("front"),
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:10204/health",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "204"


def test_rspamd_metrics(standins: Standins) -> None:
    out = subprocess.run(
        ["docker", "exec", standins.container("antispam"), "curl", "-sf", "http://localhost:11334/metrics"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "# TYPE rspamd_" in out.stdout


# --- HTTP through front: admin, API, webmail ------------------------------------------------------


def _https(
    standins: Standins,
    ctx: ssl.SSLContext,
    path: str,
    *,
    method: str = "GET",
    token: str | None = None,
    body: object = None,
) -> tuple[int, bytes]:
    url = f"https://127.0.0.1:{standins.port('front', 443)}{path}"
    headers = {"Host": MAIL_HOSTNAME}
    if token is not None:
        headers["Authorization"] = token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:  # the cert carries IP:127.0.0.1, so verifying the URL's host works
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_http_80_redirects_to_https(standins: Standins) -> None:
    port = standins.port("front", 80)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/admin", headers={"Host": MAIL_HOSTNAME})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(req, timeout=10)
    assert err.value.code == 301
    assert err.value.headers["Location"] == f"https://{MAIL_HOSTNAME}/admin"


def test_admin_and_webmail_behind_front(standins: Standins, ctx: ssl.SSLContext) -> None:
    assert _https(standins, ctx, "/admin")[0] == 200
    assert _https(standins, ctx, "/webmail/ping")[0] == 200


def test_api_contract(standins: Standins, ctx: ssl.SSLContext) -> None:
    assert _https(standins, ctx, "/api/v1/domain")[0] == 401
    assert _https(standins, ctx, "/api/v1/domain", token="wrong-token")[0] == 403
    tok = standins.api_token
    domain = f"t{secrets.token_hex(3)}.{ZONE}"
    status, _ = _https(standins, ctx, "/api/v1/domain", method="POST", token=tok, body={"name": domain})
    assert status == 200
    assert _https(standins, ctx, "/api/v1/domain", method="POST", token=tok, body={"name": domain})[0] == 409
    status, raw = _https(standins, ctx, f"/api/v1/domain/{domain}", token=f"Bearer {tok}")
    info = json.loads(raw)
    assert status == 200 and info["dns_mx"] == f"{domain}. 600 IN MX 10 {MAIL_HOSTNAME}."
    assert info["dns_spf"] == f'{domain}. 600 IN TXT "v=spf1 mx a:{MAIL_HOSTNAME} ~all"'
    assert info["dns_dkim"] is None and info["dns_dmarc"] is None
    assert _https(standins, ctx, f"/api/v1/domain/{domain}/dkim", method="POST", token=tok)[0] == 200
    info = json.loads(_https(standins, ctx, f"/api/v1/domain/{domain}", token=tok)[1])
    assert info["dns_dkim"].startswith(f'dkim._domainkey.{domain}. 600 IN TXT "v=DKIM1; k=rsa; p=MII')
    assert info["dns_dmarc"] == (
        f'_dmarc.{domain}. 600 IN TXT "v=DMARC1; p=reject; rua=mailto:admin@{ZONE};'
        f' ruf=mailto:admin@{ZONE}; adkim=s; aspf=s"'
    )
    key = subprocess.run(
        [
            "docker",
            "exec",
            standins.container("admin"),
            "sh",
            "-c",
            f"stat -c %a /dkim/{domain}.dkim.key && head -1 /dkim/{domain}.dkim.key",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert key[0] == "600" and key[1:] == ["-----BEGIN", "PRIVATE", "KEY-----"]
    email = f"alice@{domain}"
    pw = secrets.token_urlsafe(12)
    body = {"email": email, "raw_password": pw}
    assert _https(standins, ctx, "/api/v1/user", method="POST", token=tok, body=body)[0] == 200
    status, raw = _https(standins, ctx, f"/api/v1/user/{email}", token=tok)
    assert status == 200 and pw not in raw.decode() and json.loads(raw)["email"] == email
    missing = {"email": f"bob@nope.{ZONE}", "raw_password": pw}
    assert _https(standins, ctx, "/api/v1/user", method="POST", token=tok, body=missing)[0] == 404
    dump = subprocess.run(
        [
            "docker",
            "exec",
            standins.container("admin"),
            "python3",
            "-c",
            "import sqlite3;print(sqlite3.connect('/data/main.db').execute("
            "'select password from mailu_user').fetchall())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert pw not in dump and "{SHA512-CRYPT}$6$" in dump


def test_imap_login_through_front_proxy(standins: Standins, ctx: ssl.SSLContext) -> None:
    """front's Dovecot proxy authenticates against admin and proxies to the imap back end."""
    email, pw = f"carol@{ZONE}", secrets.token_urlsafe(12)
    subprocess.run(
        ["docker", "exec", standins.container("admin"), "flask", "mailu", "domain", ZONE], check=True
    )
    tok = standins.api_token
    _https(standins, ctx, "/api/v1/user", method="POST", token=tok, body={"email": email, "raw_password": pw})
    c = Conn("127.0.0.1", standins.port("front", 993), tls=ctx)
    try:
        c.readline()
        c.send(f'a LOGIN "{email}" "wrong"')
        assert c.imap_until("a")[-1].startswith("a NO")
        c.send(f'b LOGIN "{email}" "{pw}"')
        assert c.imap_until("b")[-1].startswith("b OK")
        c.send("c SELECT INBOX")
        assert c.imap_until("c")[-1].startswith("c OK")
    finally:
        c.close()


# --- negative contract tests ----------------------------------------------------------------------


def _run_once(image: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run an image once (env passed by name, never values in argv) and return (exit code, logs)."""
    name = f"mlt-neg-{secrets.token_hex(4)}"
    argv = ["docker", "run", "--name", name, "--network", "none"]
    for key in env:
        argv += ["-e", key]
    try:
        proc = subprocess.run(
            [*argv, image],
            env={**_base_env(), **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.mark.parametrize("name", MAILU_IMAGES)
def test_unreadable_secret_key_file_fails(lab_images: dict[str, str], name: str) -> None:
    rc, logs = _run_once(
        lab_images[name], {"SECRET_KEY_FILE": "/run/secrets/missing", "HOSTNAMES": MAIL_HOSTNAME}
    )
    assert rc != 0
    assert "SECRET_KEY_FILE" in logs


@pytest.mark.parametrize("var", ["DB_PW_FILE", "API_TOKEN_FILE"])
def test_admin_unreadable_file_secret_fails(lab_images: dict[str, str], var: str) -> None:
    rc, logs = _run_once(lab_images["admin"], {var: "/run/secrets/missing"})
    assert rc != 0 and var in logs


@pytest.mark.parametrize(
    "env",
    [
        {"PROXY_PROTOCOL": "25"},
        {"PROXY_PROTOCOL": "mail", "REAL_IP_FROM": "10.0.0.1", "REAL_IP_HEADER": "X-Real-IP"},
    ],
    ids=["without-REAL_IP_FROM", "with-REAL_IP_HEADER"],
)
def test_proxy_protocol_misconfig_fails(lab_images: dict[str, str], env: dict[str, str]) -> None:
    rc, logs = _run_once(lab_images["front"], env)
    assert rc != 0 and "PROXY_PROTOCOL" in logs


def _connect_inside(container: str, port: int) -> str:
    code = (
        f"import socket\ntry:\n socket.create_connection(('127.0.0.1', {port}), 3).close(); print('open')\n"
        "except OSError as e:\n print(type(e).__name__)"
    )
    return subprocess.run(
        ["docker", "exec", container, "python3", "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_port_587_closed_when_not_in_ports(standins: Standins) -> None:
    """front-no993 uses Mailu's default PORTS (no 587/143/110): those are not listened on."""
    box = standins.container("front-no993")
    assert _connect_inside(box, 587) == "ConnectionRefusedError"
    assert _connect_inside(box, 143) == "ConnectionRefusedError"
    for port in (25, 465, 993):
        assert _connect_inside(box, port) == "open"


def test_postgres_wrong_password_fails_admin(lab_images: dict[str, str], standins: Standins) -> None:
    """admin with DB_FLAVOR=postgresql must reach the DB with DB_PW; a wrong one stops the container."""
    net = f"{standins.project}_default"
    pg = f"mlt-pg-{secrets.token_hex(3)}"
    pwfile = standins.workdir / "secrets" / "pg_pw"
    pwfile.write_text(secrets.token_hex(12) + "\n")
    pwfile.chmod(0o600)
    try:
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                pg,
                "--network",
                net,
                "--network-alias",
                "database",
                "-e",
                "POSTGRES_USER=mailu",
                "-e",
                "POSTGRES_DB=mailu",
                "-e",
                "POSTGRES_PASSWORD_FILE=/run/secrets/pg_pw",
                "-v",
                f"{pwfile}:/run/secrets/pg_pw:ro",
                lab_images["postgres"],
            ],
            capture_output=True,
            check=True,
        )
        _wait_healthy(pg, 60)
        results = {}
        for label, pw_path in (("good", pwfile), ("bad", standins.workdir / "secrets" / "secret_key")):
            name = f"mlt-admin-{label}-{secrets.token_hex(3)}"
            subprocess.run(
                [
                    "docker",
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    net,
                    "-e",
                    "DB_FLAVOR=postgresql",
                    "-e",
                    "DB_HOST=database",
                    "-e",
                    "DB_USER=mailu",
                    "-e",
                    "DB_NAME=mailu",
                    "-e",
                    "DB_PW_FILE=/run/secrets/db_pw",
                    "-v",
                    f"{pw_path}:/run/secrets/db_pw:ro",
                    lab_images["admin"],
                ],
                capture_output=True,
                check=True,
            )
            try:
                results[label] = _wait_healthy(name, 60)
                if label == "bad":
                    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
                    assert "authentication failed" in logs
            finally:
                subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        assert results == {"good": "healthy", "bad": "exited"}
    finally:
        subprocess.run(["docker", "rm", "-f", pg], capture_output=True, check=False)


def _wait_healthy(container: str, timeout: float) -> str:
    """'healthy' once the HEALTHCHECK passes, 'exited' if the container stops first."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", container],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if state.startswith("exited"):
            return "exited"
        if state.endswith(" healthy"):
            return "healthy"
        time.sleep(0.5)
    raise AssertionError(f"{container} neither healthy nor exited: {state}")


# --- through the lab's Traefik (PROXY v2 on every mail port) ---------------------------------------

TRAEFIK_DYNAMIC = "mlt-standins.yml"


def _traefik_up() -> bool:
    try:
        with urllib.request.urlopen(f"{TRAEFIK_API_URL}/api/rawdata", timeout=3) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _route_mail_to(standins: Standins, service: str) -> None:
    """Write the dynamic file routing every mail entrypoint to `service` and wait until Traefik uses it."""
    backend = standins.container(service)
    tcp: dict[str, dict[str, object]] = {
        "routers": {},
        "services": {},
        "serversTransports": {"mlt-pp2": {"proxyProtocol": {"version": 2}}},
    }
    for ep in MAIL_ENTRYPOINTS:
        tcp["routers"][f"mlt-{ep.name}"] = {
            "entryPoints": [ep.name],
            "rule": "HostSNI(`*`)",
            "service": f"mlt-{ep.name}",
        }
        tcp["services"][f"mlt-{ep.name}"] = {
            "loadBalancer": {"serversTransport": "mlt-pp2", "servers": [{"address": f"{backend}:{ep.port}"}]}
        }
    path = lab_dir() / "host" / "apps" / "traefik" / "dynamic" / TRAEFIK_DYNAMIC
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"tcp": tcp}))
    tmp.rename(path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{TRAEFIK_API_URL}/api/rawdata", timeout=3) as resp:
            raw = json.load(resp)
        routers = raw.get("tcpRouters", {})
        services = raw.get("tcpServices", {})
        ok = all(routers.get(f"mlt-{ep.name}@file", {}).get("status") == "enabled" for ep in MAIL_ENTRYPOINTS)
        ok = ok and all(name.startswith("mlt-") for name in routers if name.endswith("@file"))
        addr = (
            services.get("mlt-smtp@file", {}).get("loadBalancer", {}).get("servers", [{}])[0].get("address")
        )
        if ok and addr == f"{backend}:25":
            return
        time.sleep(0.5)
    raise AssertionError(f"Traefik did not load {path}: {json.dumps(raw.get('tcpRouters', {}))[:2000]}")


@pytest.fixture()
def traefik_routes(standins: Standins) -> object:
    """Route the mail entrypoints to the stand-ins. A deployed Mailu stack's routes file holds the same
    entrypoints, so it is parked outside the watched directory meanwhile and put back afterwards."""
    assert _traefik_up(), "the lab's Traefik (mailu-lab-traefik) is not up: run `mailu-flows lab up`"
    dynamic = lab_dir() / "host" / "apps" / "traefik" / "dynamic"
    parked_dir = dynamic.parent / "parked-by-tests"
    parked_dir.mkdir(exist_ok=True)
    parked = []
    for other in sorted(dynamic.glob("*.yml")):
        if other.name != TRAEFIK_DYNAMIC and "tcp:" in other.read_text():
            other.rename(parked_dir / other.name)
            parked.append(parked_dir / other.name)
    path = dynamic / TRAEFIK_DYNAMIC
    try:
        yield lambda service: _route_mail_to(standins, service)
    finally:
        path.unlink(missing_ok=True)
        for item in parked:
            item.rename(dynamic / item.name)


def _host_port(name: str) -> int:
    return next(ep.host_port for ep in MAIL_ENTRYPOINTS if ep.name == name)


def test_through_traefik_with_matching_proxy_protocol(
    traefik_routes, standins: Standins, ctx: ssl.SSLContext
) -> None:
    traefik_routes("front-pp")
    banner = smtp_starttls_check("127.0.0.1", _host_port("smtp"), ctx)
    assert banner[0].startswith(f"220 {MAIL_HOSTNAME} ")
    smtp_starttls_check("127.0.0.1", _host_port("submission"), ctx)
    for name, first in (("submissions", "220 "), ("imaps", "* OK")):
        c = Conn("127.0.0.1", _host_port(name), tls=ctx)
        try:
            assert c.readline().startswith(first)
        finally:
            c.close()
    c = Conn("127.0.0.1", _host_port("imap"))
    try:
        assert "STARTTLS" in c.readline()
    finally:
        c.close()


def test_client_ip_reaches_postfix_through_traefik(
    traefik_routes, standins: Standins, lab_images: dict[str, str]
) -> None:
    """A client with a known address on `edge` -> Traefik -> front (PROXY v2) -> postfix (XCLIENT)."""
    traefik_routes("front-pp")
    client_ip = str(ipaddress.ip_network(NETWORKS["edge"])[200 + secrets.randbelow(50)])
    replies = smtp_from_container(lab_images["front"], "edge", client_ip, TRAEFIK_EDGE_IP)
    assert "554" in replies or "Relay access denied" in replies, replies
    deadline = time.monotonic() + 10
    while client_ip not in standins.logs("smtp") and time.monotonic() < deadline:
        time.sleep(0.5)
    logs = standins.logs("smtp")
    assert f"[{client_ip}]" in logs, logs[-2000:]


def test_proxy_protocol_without_993_breaks_imaps_through_traefik(
    traefik_routes, standins: Standins, ctx: ssl.SSLContext
) -> None:
    traefik_routes("front-no993")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        c = Conn("127.0.0.1", _host_port("imaps"), tls=ctx, timeout=5)
        try:
            c.readline()
        finally:
            c.close()
    # 465 is in this front's PROXY_PROTOCOL list, so it still works; 587 is not in its PORTS.
    c = Conn("127.0.0.1", _host_port("submissions"), tls=ctx)
    try:
        assert c.readline().startswith("220 ")
    finally:
        c.close()
    with pytest.raises((ConnectionError, OSError)):
        c = Conn("127.0.0.1", _host_port("submission"), timeout=5)
        try:
            c.readline()
        finally:
            c.close()


def test_fixture_compose_uses_mailu_mounts() -> None:
    """The test project mirrors Mailu's compose template (service names and mount points)."""
    spec = yaml.safe_load((Path(__file__).parent / "fixtures" / "standins-compose.yml").read_text())
    mounts = {
        name: [v.split(":")[1] for v in svc.get("volumes", [])] for name, svc in spec["services"].items()
    }
    assert "/certs" in mounts["front"] and {"/data", "/dkim"} <= set(mounts["admin"])
    assert (
        "/mail" in mounts["imap"] and "/queue" in mounts["smtp"] and "/var/lib/rspamd" in mounts["antispam"]
    )
