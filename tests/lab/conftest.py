"""Fixtures for the lab's image and stand-in contract tests (real docker, real registry)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.ca import CaFiles, ensure_ca
from lab.endpoints import MAIL_HOSTNAME, TRAEFIK_MGMT_IP, ZONE, lab_dir
from lab.images import ensure_images

FIXTURES = Path(__file__).parent / "fixtures"
COMPOSE_FILE = FIXTURES / "standins-compose.yml"
SUBNET_CANDIDATES = ("192.168.213.0/24", "192.168.214.0/24", "192.168.215.0/24", "192.168.216.0/24")


@pytest.fixture(scope="session")
def lab_images() -> dict[str, str]:
    """Every lab image, built if needed, as pinned `repo@sha256:…` references."""
    return ensure_images()


@pytest.fixture(scope="session")
def lab_ca() -> CaFiles:
    """The lab CA and mail certificate (shared with the lab's other parts under lab_dir()/ca)."""
    return ensure_ca(lab_dir() / "ca")


def _used_subnets() -> set[str]:
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True, check=True)
    out = subprocess.run(
        [
            "docker",
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            *ids.stdout.split(),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


@dataclass
class Standins:
    """A running compose project of the stand-ins; helpers to reach its containers."""

    project: str
    env: dict[str, str]
    subnet: str
    api_token: str
    workdir: Path
    _ports: dict[tuple[str, int], int] = field(default_factory=dict)

    def compose(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def port(self, service: str, port: int) -> int:
        """Loopback host port published for `service`'s container `port`."""
        key = (service, port)
        if key not in self._ports:
            out = self.compose("port", service, str(port)).stdout.strip()
            self._ports[key] = int(out.rsplit(":", 1)[1])
        return self._ports[key]

    def container(self, service: str) -> str:
        return f"{self.project}-{service}-1"

    def logs(self, service: str) -> str:
        proc = subprocess.run(
            ["docker", "logs", self.container(service)], capture_output=True, text=True, check=False
        )
        return proc.stdout + proc.stderr


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def start_standins(lab_images: dict[str, str], lab_ca: CaFiles) -> Standins:
    """Bring up the stand-in project (unique name, own volumes) and wait until all are healthy."""
    project = f"mlt-standins-{secrets.token_hex(3)}"
    used = _used_subnets()
    subnet = next((s for s in SUBNET_CANDIDATES if s not in used), None)
    if subnet is None:
        pytest.fail(f"no free test subnet among {SUBNET_CANDIDATES}")
    workdir = Path(tempfile.mkdtemp(prefix="mlt-standins-"))
    workdir.chmod(0o700)
    sec = workdir / "secrets"
    sec.mkdir(mode=0o700)
    api_token = secrets.token_hex(16)
    _write_secret(sec / "secret_key", secrets.token_hex(16))
    _write_secret(sec / "api_token", api_token)
    certs = workdir / "certs"
    certs.mkdir()
    shutil.copy2(lab_ca.cert, certs / "cert.pem")
    shutil.copy2(lab_ca.key, certs / "key.pem")
    env_file = workdir / "mailu.env"
    env_file.write_text(
        "\n".join(
            [
                "SECRET_KEY_FILE=/run/secrets/secret_key",
                f"DOMAIN={ZONE}",
                f"HOSTNAMES={MAIL_HOSTNAME},webmail.{ZONE}",
                "POSTMASTER=admin",
                "TLS_FLAVOR=cert",
                f"SUBNET={subnet}",
                "ADMIN=true",
                "WEBMAIL=roundcube",
                "API=true",
                "WEB_ADMIN=/admin",
                "WEB_WEBMAIL=/webmail",
                "WEB_API=/api",
                "DMARC_RUA=admin",
                "DMARC_RUF=admin",
                "MESSAGE_SIZE_LIMIT=50000000",
                "LOG_LEVEL=INFO",
                "TZ=Etc/UTC",
                "",
            ]
        )
    )
    env = {
        "MLT_ENV_FILE": str(env_file),
        "MLT_CERTS": str(certs),
        "MLT_SECRETS": str(sec),
        "MLT_SUBNET": subnet,
        "MLT_TRAEFIK_IP": TRAEFIK_MGMT_IP,
        **{f"MLT_IMG_{name.upper().replace('-', '_')}": ref for name, ref in lab_images.items()},
    }
    s = Standins(project=project, env=env, subnet=subnet, api_token=api_token, workdir=workdir)
    start = time.monotonic()
    up = s.compose("up", "-d", "--wait", "--wait-timeout", "180", check=False, timeout=400)
    if up.returncode != 0:
        ps = s.compose("ps", "-a", check=False).stdout
        logs = s.compose("logs", "--tail", "30", check=False).stdout
        stop_standins(s)
        raise RuntimeError(f"stand-ins did not come up healthy:\n{up.stderr[-3000:]}\n{ps}\n{logs[-8000:]}")
    print(f"stand-ins {project} healthy after {time.monotonic() - start:.1f}s")
    return s


def stop_standins(s: Standins) -> None:
    """Remove the project's containers, network and volumes, and the secrets directory."""
    s.compose("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=300)
    shutil.rmtree(s.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def standins(lab_images: dict[str, str], lab_ca: CaFiles) -> Iterator[Standins]:
    """The running stand-in project for the session; always taken down afterwards."""
    try:
        s = start_standins(lab_images, lab_ca)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield s
    finally:
        stop_standins(s)


# --- DNS (Knot primary + secondary) and the Cloudflare API emulator ---------------------------------
# Session-scoped: `ensure_*` is idempotent and takes well under a second when the lab already runs.

import collections.abc as _cabc  # noqa: E402

import pytest as _pytest  # noqa: E402


@_pytest.fixture(scope="session")
def lab_dns():
    """The lab's Knot primary and secondary, up (lab.dns.DnsInfo)."""
    from lab.dns import ensure_dns

    return ensure_dns()


@_pytest.fixture
def dns_notify_restored(lab_dns) -> _cabc.Iterator[None]:
    """Lets a test switch NOTIFY off; switches it back on afterwards, whatever happened."""
    from lab.dns import refresh_secondary, set_notify

    try:
        yield
    finally:
        set_notify(True)
        refresh_secondary()


@_pytest.fixture(scope="session")
def cf_base_url(lab_dns) -> str:
    """Base URL of the running Cloudflare API emulator (started with the DNS it writes to)."""
    from lab.cf_emulator import ensure_cf_emulator

    return ensure_cf_emulator()


@_pytest.fixture(scope="session")
def cf_token(cf_base_url) -> str:
    """The lab's DNS-edit API token (read from its 0600 file)."""
    from lab.cf_emulator import read_token

    return read_token()


@_pytest.fixture(scope="session")
def cf_readonly_token(cf_base_url) -> str:
    """The lab's read-only API token: writes with it get 403."""
    from lab.cf_emulator import read_token

    return read_token(readonly=True)


@_pytest.fixture
def cf_faults(cf_base_url) -> _cabc.Iterator[_cabc.Callable[..., None]]:
    """`inject(status=429, count=1, retry_after="0.1")`: the next API calls fail; cleared afterwards."""
    from lab.cf_emulator import lab_call

    lab_call("DELETE", "/__lab/faults")

    def inject(**spec: object) -> None:
        lab_call("POST", "/__lab/faults", dict(spec))

    try:
        yield inject
    finally:
        lab_call("DELETE", "/__lab/faults")


@_pytest.fixture
def cf_requests(cf_base_url) -> _cabc.Callable[[], list[dict[str, object]]]:
    """Returns a function giving the API calls made since the fixture was set up (method, path, …)."""
    from lab.cf_emulator import lab_call

    start = int(lab_call("GET", "/__lab/requests?since=999999999")["last_seq"])

    def since() -> list[dict[str, object]]:
        return list(lab_call("GET", f"/__lab/requests?since={start}")["requests"])

    return since
