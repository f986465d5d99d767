"""Contracts of Mailu 2024.06.9's own images (lab/images/mailu), checked on single `docker run` containers.

These are the promises the retired stand-ins' contract tests asserted, now asserted against Mailu's
real code: if an upstream bump changes how secrets, PROXY protocol or PORTS behave, the product's
assumptions break here first. Nothing here goes through the product's deploy, the lab's Traefik or the
compose project "mailu-lab": every container, network and directory is this module's own (`mct-…`),
removed at the end of the module.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.ca import CaFiles
from lab.endpoints import MAIL_HOSTNAME, ZONE

pytestmark = pytest.mark.lab

# Images whose start.py calls socrate's set_env(), which reads SECRET_KEY_FILE before anything else.
SET_ENV_SERVICES = ("front", "admin", "imap", "smtp", "antispam", "webmail")
MAILU_GID = 1000  # Mailu's `mailu` group (uid not pinned): admin's start.py drops to it, then reads secrets
LISTENING = "Listening at: http://0.0.0.0:8080"
FRONT_HEALTH = "curl -skfLo /dev/null http://127.0.0.1:10204/health && kill -0 `cat /run/dovecot/master.pid`"
PROXIED_SRC = "203.0.113.7"  # the "real" client address a proxy would announce (TEST-NET-3)

# A DNS server that sets AD (as a validating resolver does) for example.org A, the query admin's start.py
# loops on before it starts gunicorn; everything else gets NXDOMAIN, so nothing leaves the test network.
FAKE_DNSSEC_RESOLVER = r"""
import socket
import dns.flags, dns.message, dns.rcode, dns.rdatatype, dns.rrset
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 53))
while True:
    data, peer = sock.recvfrom(4096)
    try:
        query = dns.message.from_wire(data)
    except Exception:
        continue
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AD | dns.flags.RA
    q = query.question[0] if query.question else None
    if q is not None and q.name.to_text() == "example.org." and q.rdtype == dns.rdatatype.A:
        reply.answer.append(dns.rrset.from_text("example.org.", 300, "IN", "A", "192.0.2.1"))
    else:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    sock.sendto(reply.to_wire(), peer)
"""

# Runs inside a client container: connect, optionally send a hand-built PROXY v2 header (TCP over IPv4),
# optionally do TLS verified against the lab CA, read the first line; prints one JSON object.
PROBE = r"""
import json, socket, ssl, struct, sys
host, port, mode, src, timeout, sni = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \
    float(sys.argv[5]), sys.argv[6]
out = {"ok": False, "line": "", "error": "", "tls": ""}
try:
    sock = socket.create_connection((host, port), timeout)
    if src != "-":
        addrs = socket.inet_aton(src) + socket.inet_aton(host) + struct.pack("!HH", 40000, port)
        sock.sendall(b"\r\n\r\n\x00\r\nQUIT\n" + struct.pack("!BBH", 0x21, 0x11, len(addrs)) + addrs)
    if mode == "tls":
        ctx = ssl.create_default_context(cafile="/mct/ca.crt")
        sock = ctx.wrap_socket(sock, server_hostname=sni)
        out["tls"] = sock.version()
        if out["tls"] is None:
            # wrap_socket skips the handshake when getpeername() fails: the server reset us first.
            raise ConnectionResetError("closed by the server before the TLS handshake")
    line = sock.makefile("rb").readline().decode(errors="replace").strip()
    out.update(ok=bool(line), line=line)
    sock.close()
except Exception as exc:
    out["error"] = type(exc).__name__ + ": " + str(exc)
print(json.dumps(out))
"""

PORT_CHECK = r"""
import json, socket, sys
res = {}
for port in map(int, sys.argv[1:]):
    try:
        socket.create_connection(("127.0.0.1", port), 3).close()
        res[port] = "open"
    except OSError as exc:
        res[port] = type(exc).__name__
print(json.dumps(res))
"""


# --- docker helpers -------------------------------------------------------------------------------------


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def _logs(container: str) -> str:
    proc = _docker("logs", container, check=False)
    return proc.stdout + proc.stderr


def _state(container: str) -> tuple[str, int]:
    out = _docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container).stdout.split()
    return out[0], int(out[1])


def _wait(what: str, cond: Callable[[], bool], timeout: float, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _wait_exit(container: str, timeout: float = 90) -> int:
    """The container's exit code once it has stopped (fails if it is still running after `timeout`)."""
    _wait(f"{container} to exit", lambda: _state(container)[0] in ("exited", "dead"), timeout)
    return _state(container)[1]


def _exec(container: str, *argv: str, timeout: float = 60, check: bool = False) -> str:
    """stdout of `docker exec`; with check, a failing command fails the test with its stderr."""
    proc = _docker("exec", container, *argv, timeout=timeout, check=check)
    return proc.stdout.strip()


@dataclass(frozen=True)
class Net:
    """A test network: statics below .128, Docker's dynamic addresses from .128 up (`--ip-range`)."""

    name: str
    subnet: ipaddress.IPv4Network

    def ip(self, host: int) -> str:
        assert 1 < host < 128
        return str(self.subnet[host])


@dataclass
class Box:
    """Every docker object and temp dir this module made; `close()` removes them (anonymous volumes too)."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)

    @staticmethod
    def name(kind: str) -> str:
        return f"mct-{kind}-{secrets.token_hex(4)}"

    def run(self, kind: str, image: str, *opts: str, cmd: tuple[str, ...] = ()) -> str:
        """`docker run -d`; the name is recorded first, so a half-created container is still removed."""
        name = self.name(kind)
        self.containers.append(name)
        _docker("run", "-d", "--name", name, *opts, image, *cmd)
        return name

    def remove(self, container: str) -> None:
        _docker("rm", "-f", "-v", container, check=False)
        if container in self.containers:
            self.containers.remove(container)

    def tmpdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="mct-"))
        self.dirs.append(path)
        path.chmod(0o755)
        return path

    def network(self) -> Net:
        """An internal network on a /24 that overlaps none of the engine's networks."""
        for _ in range(20):
            used = _used_subnets()
            subnet = ipaddress.IPv4Network(f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24")
            if any(subnet.overlaps(u) for u in used if u.version == 4):
                continue
            name = self.name("net")
            dynamic = list(subnet.subnets(new_prefix=25))[1]
            proc = _docker(
                "network", "create", "--internal", "--subnet", str(subnet), "--ip-range", str(dynamic), name,
                check=False,
            )  # fmt: skip
            if proc.returncode == 0:
                self.networks.append(name)
                return Net(name, subnet)
        raise AssertionError("no free /24 for a test network")

    def close(self) -> None:
        for container in reversed(self.containers):
            _docker("rm", "-f", "-v", container, check=False)
        self.containers.clear()
        for network in reversed(self.networks):
            _docker("network", "rm", network, check=False)
        self.networks.clear()
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.dirs.clear()


def _used_subnets() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    ids = _docker("network", "ls", "-q").stdout.split()
    # check=False: a network removed meanwhile by someone else only drops out of the answer
    fmt = "{{range .IPAM.Config}}{{.Subnet}} {{end}}"
    out = _docker("network", "inspect", "--format", fmt, *ids, check=False)
    return [ipaddress.ip_network(s) for s in out.stdout.split()]


def _write(path: Path, value: str, *, gid: int, mode: int) -> None:
    path.write_text(value + "\n")
    os.chown(path, 0, gid)
    path.chmod(mode)


def _run_to_exit(image: str, *opts: str, timeout: float = 60) -> tuple[int, str]:
    """Run an image in the foreground with no network; (exit code, logs). Always removed afterwards."""
    name = Box.name("once")
    try:
        proc = _docker("run", "--name", name, "--network", "none", *opts, image, timeout=timeout, check=False)
        return proc.returncode, proc.stdout + proc.stderr
    finally:
        _docker("rm", "-f", "-v", name, check=False)


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    b = Box()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def net(box: Box) -> Net:
    return box.network()


# --- 1. secret files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SET_ENV_SERVICES)
def test_missing_secret_key_file_stops_service(lab_images: dict[str, str], service: str) -> None:
    """socrate's set_env() reads SECRET_KEY_FILE first: a missing file must stop the container (exit 1)
    and say which file, so a broken secret mount cannot go unnoticed."""
    path = f"/run/secrets/mct-missing-{secrets.token_hex(3)}"
    image = lab_images[f"mailu-{service}"]
    rc, logs = _run_to_exit(image, "-e", f"SECRET_KEY_FILE={path}", "-e", "LD_PRELOAD=")
    assert rc == 1, logs[-3000:]
    assert f"Can't read SECRET_KEY from file: [Errno 2] No such file or directory: '{path}'" in logs, logs


@dataclass(frozen=True)
class AdminRuns:
    """Admin containers started together, differing only in their secret files (see admin_runs)."""

    containers: dict[str, str]
    bad_path: dict[str, str]
    postgres: str
    api_token: str


ADMIN_FILES = {"SECRET_KEY_FILE": "secret_key", "API_TOKEN_FILE": "api_token", "DB_PW_FILE": "db_pw"}


@pytest.fixture(scope="module")
def admin_runs(lab_images: dict[str, str], box: Box, net: Net) -> AdminRuns:
    """Mailu's admin with everything its start.py needs to get to gunicorn: redis, PostgreSQL and a resolver
    that sets AD. One control container gets root:1000 0640 secret files; each other variant swaps exactly
    one file for a root:root 0600 copy, a missing path, or a wrong DB password."""
    sec = box.tmpdir()
    os.chown(sec, 0, MAILU_GID)
    sec.chmod(0o750)
    values = {
        "secret_key": secrets.token_hex(16),
        "api_token": secrets.token_hex(16),
        "db_pw": secrets.token_hex(12),
    }
    for fname, value in values.items():
        _write(sec / fname, value, gid=MAILU_GID, mode=0o640)
        _write(sec / f"{fname}.root0600", value, gid=0, mode=0o600)
    _write(sec / "db_pw.wrong", secrets.token_hex(12), gid=MAILU_GID, mode=0o640)
    (sec / "resolver.py").write_text(FAKE_DNSSEC_RESOLVER)
    mount = f"{sec}:/run/secrets:ro"
    box.run("redis", lab_images["redis"], "--network", net.name, "--network-alias", "redis")
    box.run(
        "dns", lab_images["mailu-admin"], "--network", net.name, "--ip", net.ip(53), "-v", mount,
        "--entrypoint", "python3", cmd=("-u", "/run/secrets/resolver.py"),
    )  # fmt: skip
    pg = box.run(
        "pg", lab_images["postgres"], "--network", net.name, "--network-alias", "database",
        "-e", "POSTGRES_USER=mailu", "-e", "POSTGRES_DB=mailu",
        "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/db_pw", "-v", mount,
    )  # fmt: skip
    pg_ready = ("exec", pg, "pg_isready", "-h", "127.0.0.1", "-U", "mailu")
    _wait("postgres to accept connections", lambda: _docker(*pg_ready, check=False).returncode == 0, 60)
    good = {var: f"/run/secrets/{fname}" for var, fname in ADMIN_FILES.items()}
    variants: dict[str, dict[str, str]] = {"good": {}}
    for var, fname in ADMIN_FILES.items():
        variants[f"{var}-root0600"] = {var: f"/run/secrets/{fname}.root0600"}
    for var in ("API_TOKEN_FILE", "DB_PW_FILE"):
        variants[f"{var}-missing"] = {var: f"/run/secrets/mct-missing-{var.lower()}"}
    variants["wrong-db-password"] = {"DB_PW_FILE": "/run/secrets/db_pw.wrong"}
    common = {
        "DOMAIN": ZONE,
        "HOSTNAMES": MAIL_HOSTNAME,
        "POSTMASTER": "admin",
        "SUBNET": str(net.subnet),
        "TLS_FLAVOR": "cert",
        "DISABLE_STATISTICS": "true",
        "DB_FLAVOR": "postgresql",
        "DB_HOST": "database",
        "DB_USER": "mailu",
        "DB_NAME": "mailu",
        "LD_PRELOAD": "",
    }
    containers: dict[str, str] = {}
    bad_path: dict[str, str] = {}
    for label, override in variants.items():
        env = {**common, **good, **override}
        opts = ["--network", net.name, "--dns", net.ip(53), "-v", mount]
        for key, value in env.items():
            opts += ["-e", f"{key}={value}"]
        containers[label] = box.run("admin", lab_images["mailu-admin"], *opts)
        if override:
            bad_path[label] = next(iter(override.values()))
    return AdminRuns(containers, bad_path, pg, values["api_token"])


def _admin_listening(runs: AdminRuns) -> str:
    """Wait for the control admin to serve (so the other variants had the same time to get there)."""
    name = runs.containers["good"]

    def up() -> bool:
        if _state(name)[0] != "running":
            raise AssertionError(f"control admin stopped:\n{_logs(name)[-4000:]}")
        return LISTENING in _logs(name)

    _wait("the control admin's gunicorn", up, 120, interval=0.5)
    return name


def _curl(container: str, url: str, *headers: str) -> str:
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10"]
    for header in headers:
        argv += ["-H", header]
    return _exec(container, *argv, url)


def test_admin_serves_with_group_1000_secret_files(admin_runs: AdminRuns) -> None:
    """The product's fix: root:1000 0640 secret files are readable by admin after it drops to `mailu`;
    DB_PW_FILE reaches PostgreSQL (migrations ran there) and API_TOKEN_FILE is the API's token."""
    name = _admin_listening(admin_runs)
    logs = _logs(name)
    assert "Context impl PostgresqlImpl" in logs and "Running upgrade  -> ff0417f4318f" in logs, logs[-4000:]
    assert "Traceback" not in logs and "Error" not in logs, logs[-4000:]
    assert _curl(name, "http://localhost:8080/ping") == "200"
    api = "http://localhost:8080/api/v1/domain"
    assert _curl(name, api, f"Authorization: Bearer {admin_runs.api_token}") == "200"
    assert _curl(name, api, "Authorization: Bearer wrong-token") == "403"


def test_admin_root_only_secret_key_file_exits_1(admin_runs: AdminRuns) -> None:
    """The defect the product fixes: admin reads SECRET_KEY_FILE after dropping to `mailu`, so the same
    file as root:root 0600 is unreadable and set_env() kills start.py (exit 1)."""
    label = "SECRET_KEY_FILE-root0600"
    name, path = admin_runs.containers[label], admin_runs.bad_path[label]
    rc = _wait_exit(name)
    logs = _logs(name)
    assert rc == 1, logs[-3000:]
    assert f"Can't read SECRET_KEY from file: [Errno 13] Permission denied: '{path}'" in logs, logs[-3000:]


@pytest.mark.parametrize(
    "label",
    ["API_TOKEN_FILE-root0600", "DB_PW_FILE-root0600", "API_TOKEN_FILE-missing", "DB_PW_FILE-missing"],
)
def test_admin_unreadable_config_file_never_serves(admin_runs: AdminRuns, label: str) -> None:
    """Other *_FILE values are read by every flask/gunicorn process (configuration.py), not by set_env():
    start.py ignores the failing flask steps, then gunicorn --preload dies and start.py exits **0**
    (so Mailu's `restart: always` loops, `on-failure` would not restart it). It never listens."""
    name, path = admin_runs.containers[label], admin_runs.bad_path[label]
    if label.endswith("-missing"):
        error = "FileNotFoundError: [Errno 2] No such file or directory"
    else:
        error = "PermissionError: [Errno 13] Permission denied"
    rc = _wait_exit(name)
    logs = _logs(name)
    assert rc == 0, logs[-3000:]
    # flask mailu advertise, flask db upgrade and gunicorn each fail on the file
    assert logs.count(f"{error}: '{path}'") == 3, logs[-4000:]
    assert "gunicorn/arbiter.py" in logs and LISTENING not in logs


def test_admin_wrong_postgres_password_never_serves(admin_runs: AdminRuns) -> None:
    """A readable DB_PW_FILE with the wrong password: PostgreSQL refuses it and admin keeps retrying
    `flask db upgrade` (migrations/env.py: 100 tenacity tries) instead of serving."""
    name = admin_runs.containers["wrong-db-password"]
    refused = 'password authentication failed for user "mailu"'
    _wait("PostgreSQL to refuse admin's password", lambda: refused in _logs(admin_runs.postgres), 90)
    _admin_listening(admin_runs)
    assert _state(name)[0] == "running"
    assert LISTENING not in _logs(name)
    assert _curl(name, "http://localhost:8080/ping") == "000"


# --- 2./3. front: PROXY protocol and PORTS --------------------------------------------------------------


@dataclass(frozen=True)
class Fronts:
    """front with PROXY_PROTOCOL on the test network, its two clients, and front with default PORTS."""

    front: str
    front_ip: str
    trusted: str
    trusted_ip: str
    untrusted: str
    untrusted_ip: str
    default_ports: str


def _wait_front(container: str) -> None:
    def healthy() -> bool:
        if _state(container)[0] != "running":
            raise AssertionError(f"front {container} stopped:\n{_logs(container)[-4000:]}")
        return _docker("exec", container, "sh", "-c", FRONT_HEALTH, check=False).returncode == 0

    _wait(f"front {container} (nginx health and dovecot)", healthy, 60)


@pytest.fixture(scope="module")
def fronts(lab_images: dict[str, str], lab_ca: CaFiles, box: Box, net: Net) -> Fronts:
    """Mailu's front (nginx + Dovecot proxy) with the lab CA's certificate for mail.inlock.test; it needs
    no admin for these checks (no logins). WEBMAIL=none: unset, nginx.conf gets an empty `location` and
    nginx refuses to start."""
    certs = box.tmpdir()
    shutil.copy2(lab_ca.cert, certs / "cert.pem")
    shutil.copy2(lab_ca.key, certs / "key.pem")
    tools = box.tmpdir()
    shutil.copy2(lab_ca.ca_cert, tools / "ca.crt")
    (tools / "probe.py").write_text(PROBE)
    image = lab_images["mailu-front"]
    front_ip, trusted_ip, untrusted_ip = net.ip(10), net.ip(50), net.ip(51)
    base = {
        "DOMAIN": ZONE,
        "HOSTNAMES": MAIL_HOSTNAME,
        "POSTMASTER": "admin",
        "TLS_FLAVOR": "cert",
        "MESSAGE_SIZE_LIMIT": "50000000",
        "WEBMAIL": "none",
        "LD_PRELOAD": "",
    }
    pp = {
        **base,
        "PROXY_PROTOCOL": "25,465,993",
        "REAL_IP_FROM": f"{trusted_ip}/32",
        "PORTS": "25,80,443,465,587,143,993",
    }

    def env_opts(env: dict[str, str]) -> list[str]:
        return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]

    certs_mount = ["-v", f"{certs}:/certs:ro"]
    front = box.run("front", image, "--network", net.name, "--ip", front_ip, *certs_mount, *env_opts(pp))
    default_ports = box.run("front-default", image, "--network", "none", *certs_mount, *env_opts(base))
    clients = []
    for kind, ip in (("client-trusted", trusted_ip), ("client-untrusted", untrusted_ip)):
        opts = ("--network", net.name, "--ip", ip, "-v", f"{tools}:/mct:ro", "--entrypoint", "sleep")
        clients.append(box.run(kind, image, *opts, cmd=("infinity",)))
    _wait_front(front)
    _wait_front(default_ports)
    return Fronts(front, front_ip, clients[0], trusted_ip, clients[1], untrusted_ip, default_ports)


@dataclass(frozen=True)
class Probe:
    ok: bool
    line: str
    error: str
    tls: str


def _probe(
    f: Fronts, client: str, port: int, *, tls: bool, proxy_src: str | None, timeout: float = 8
) -> Probe:
    """Run PROBE in `client` against front; proxy_src given = send a PROXY v2 header announcing it."""
    args = [f.front_ip, str(port), "tls" if tls else "plain", proxy_src or "-", str(timeout), MAIL_HOSTNAME]
    out = _exec(client, "python3", "/mct/probe.py", *args, timeout=timeout + 30, check=True)
    data = json.loads(out)
    return Probe(bool(data["ok"]), str(data["line"]), str(data["error"]), str(data["tls"]))


def _front_log_has(f: Fronts, text: str) -> bool:
    """Dovecot logs a session when it ends, so poll briefly."""
    try:
        _wait(repr(text), lambda: text in _logs(f.front), 10)
    except AssertionError:
        return False
    return True


def test_993_with_proxy_header_from_trusted_client(fronts: Fronts) -> None:
    """993 is in PROXY_PROTOCOL: with a v2 header from REAL_IP_FROM, TLS (lab CA, mail.inlock.test) and the
    IMAP greeting work, and Dovecot takes the client address from the header."""
    r = _probe(fronts, fronts.trusted, 993, tls=True, proxy_src=PROXIED_SRC)
    assert r.ok and r.tls.startswith("TLSv1."), r
    assert r.line.startswith("* OK ") and "ready" in r.line, r
    assert _front_log_has(fronts, f"rip={PROXIED_SRC}, rport=40000, lip={fronts.front_ip}, lport=993")


def test_993_without_proxy_header_is_reset(fronts: Fronts) -> None:
    """A PROXY port must get a header first: a bare TLS ClientHello is refused by Dovecot."""
    r = _probe(fronts, fronts.trusted, 993, tls=True, proxy_src=None)
    assert not r.ok and r.error.startswith(("ConnectionResetError", "SSL", "ConnectionAbortedError")), r
    assert _front_log_has(fronts, f"Failed to read valid HAproxy data (rip={fronts.trusted_ip})")


def test_993_proxy_header_from_untrusted_client_is_rejected(fronts: Fronts) -> None:
    """Only REAL_IP_FROM may speak PROXY protocol to Dovecot (haproxy_trusted_networks); anyone else's
    header is refused, so a client cannot spoof its address."""
    r = _probe(fronts, fronts.untrusted, 993, tls=True, proxy_src=PROXIED_SRC)
    assert not r.ok and r.error.startswith(("ConnectionResetError", "SSL", "ConnectionAbortedError")), r
    assert _front_log_has(fronts, f"haproxy: Client not trusted (rip={fronts.untrusted_ip})")


def test_465_with_proxy_header_and_587_without(fronts: Fronts) -> None:
    """465 (listed) works with a header; 587 (in PORTS, not in PROXY_PROTOCOL) answers a plain client."""
    r = _probe(fronts, fronts.trusted, 465, tls=True, proxy_src=PROXIED_SRC)
    assert r.ok and r.line.startswith(f"220 {MAIL_HOSTNAME} "), r
    r = _probe(fronts, fronts.trusted, 587, tls=False, proxy_src=None)
    assert r.ok and r.line.startswith(f"220 {MAIL_HOSTNAME} "), r


def test_25_waits_for_proxy_header(fronts: Fronts) -> None:
    """nginx's `listen 25 proxy_protocol`: no banner until a header arrives; with one, the banner comes.
    (The header names the client's own address: nginx looks up the PTR of the announced address before
    the banner, and Docker's DNS answers that at once; an outside address would wait for the resolver.)"""
    r = _probe(fronts, fronts.trusted, 25, tls=False, proxy_src=None, timeout=3)
    assert not r.ok and r.error.startswith("TimeoutError"), r
    r = _probe(fronts, fronts.trusted, 25, tls=False, proxy_src=fronts.trusted_ip)
    assert r.ok and r.line == f"220 {MAIL_HOSTNAME} ESMTP ready", r


def _listening(container: str, *ports: int) -> dict[int, str]:
    out = _exec(container, "python3", "-c", PORT_CHECK, *map(str, ports), check=True)
    return {int(k): str(v) for k, v in json.loads(out).items()}


def test_default_ports_leave_587_and_143_closed(fronts: Fronts) -> None:
    """Mailu's default PORTS (25,80,443,465,993,995,4190): nothing on 587, 143 or 110. 995 and 4190 listen
    whatever PORTS says (Dovecot's built-in pop3s/sieve listeners), so only publishing can close them."""
    got = _listening(fronts.default_ports, 25, 80, 443, 465, 993, 995, 4190, 587, 143, 110)
    expect = dict.fromkeys((25, 80, 443, 465, 993, 995, 4190), "open")
    expect |= dict.fromkeys((587, 143, 110), "ConnectionRefusedError")
    assert got == expect


def test_ports_listing_587_and_143_opens_them(fronts: Fronts) -> None:
    """PORTS=25,80,443,465,587,143,993 adds submission and IMAP; 110 stays closed."""
    got = _listening(fronts.front, 25, 80, 443, 465, 587, 143, 993, 110)
    expect = dict.fromkeys((25, 80, 443, 465, 587, 143, 993), "open") | {110: "ConnectionRefusedError"}
    assert got == expect
