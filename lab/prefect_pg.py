"""A second Prefect server for the lab, on PostgreSQL (the production setup), with a process work pool
and workers: the fleet of stacks runs on Prefect's own distributed machinery here.

Started on demand (tests/lab/test_workers.py), not by every `lab up`: a PostgreSQL 15 cluster under
`<lab>/prefect-pg/` (Debian's binaries, run as the `postgres` user, TCP on loopback only), a database
and a user for Prefect (the password in a 0600 lab secret, passed in the environment, never argv), the
Prefect server on its own port, and workers (`prefect worker start`), each a lab daemon. `lab down`
stops all of them (`stop_prefect_pg`); the cluster's data stays, as the lab's volumes do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lab import endpoints as ep
from lab.files import write_atomic
from lab.procs import LabError, log_file, running_pid, start_daemon, stop_daemon, tcp_open

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"  # the cluster's owner: postgres refuses to run as root
PG_PORT = 15432
PREFECT_DB = "prefect"
PREFECT_DB_USER = "prefect"

PREFECT_PG_PORT = 4210
PREFECT_PG_API_URL = f"http://127.0.0.1:{PREFECT_PG_PORT}/api"
SERVER_NAME = "prefect-pg-server"

WORK_POOL = "mailu-process"
WORKER_PREFIX = "prefect-pg-worker-"  # lab daemon names: prefect-pg-worker-<worker name>


def base_dir() -> Path:
    return ep.lab_dir() / "prefect-pg"


def data_dir() -> Path:
    return base_dir() / "data"


def socket_dir() -> Path:
    """The cluster's Unix socket (local administration as the postgres user, by peer authentication)."""
    return base_dir() / "run"


def pg_log() -> Path:
    return log_file("prefect-postgres")


# --- PostgreSQL -------------------------------------------------------------------------------


def _as_postgres(argv: Sequence[str], *, input_text: str | None = None, timeout: float = 120) -> str:
    """Run a PostgreSQL tool as the cluster's owner; its stdout, or LabError with its output."""
    proc = subprocess.run(
        ["runuser", "-u", PG_USER, "--", *argv],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
    )
    if proc.returncode != 0:
        raise LabError(
            f"{' '.join(argv[:3])} … failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}"
        )
    return proc.stdout


def postgres_ready() -> bool:
    if not tcp_open("127.0.0.1", PG_PORT):
        return False
    proc = subprocess.run(
        [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(PG_PORT), "-q"], check=False, timeout=10
    )
    return proc.returncode == 0


def db_password() -> str:
    """The Prefect database user's password (generated once, 0600 in the lab's secrets)."""
    from lab.services import ensure_secret

    return ensure_secret("prefect-pg-password").read_text().strip()


def ensure_postgres() -> str:
    """The lab's PostgreSQL 15 cluster, running on 127.0.0.1:PG_PORT, with Prefect's database and user.
    Returns `host:port`."""
    base = base_dir()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    for d in (data_dir(), socket_dir()):
        d.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(d, PG_USER, PG_USER)
    log = pg_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    shutil.chown(log, PG_USER, PG_USER)
    if not (data_dir() / "PG_VERSION").exists():
        # local: peer (the postgres user administers); TCP: passwords only (scram-sha-256)
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(data_dir()), "--auth-local=peer",
             "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"]
        )  # fmt: skip
    if not postgres_ready():
        options = f"-c listen_addresses=127.0.0.1 -c port={PG_PORT} -c unix_socket_directories={socket_dir()}"
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "start", "-D", str(data_dir()), "-l", str(log), "-w", "-t", "60",
             "-o", options]
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not postgres_ready():
            if time.monotonic() > deadline:
                raise LabError(f"PostgreSQL did not accept connections on {PG_PORT}; see {log}")
            time.sleep(0.2)
    _ensure_prefect_database()
    return f"127.0.0.1:{PG_PORT}"


def psql_admin(sql: str, database: str = "postgres") -> str:
    """SQL as the cluster's superuser over the Unix socket (statements on stdin, never argv)."""
    return _as_postgres(
        [str(PG_BIN / "psql"), "-h", str(socket_dir()), "-p", str(PG_PORT), "-d", database,
         "-v", "ON_ERROR_STOP=1", "-X", "-q", "-tA"],
        input_text=sql,
    )  # fmt: skip


def psql_prefect(sql: str) -> str:
    """A query as Prefect's database user over TCP with its password (as the Prefect server connects)."""
    psql = shutil.which("psql") or str(PG_BIN / "psql")
    proc = subprocess.run(
        [psql, "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", PREFECT_DB_USER, "-d", PREFECT_DB, "-X", "-tA",
         "-v", "ON_ERROR_STOP=1"],
        input=sql, capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PGPASSWORD": db_password()},
    )  # fmt: skip
    if proc.returncode != 0:
        raise LabError(f"psql as {PREFECT_DB_USER} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def _ensure_prefect_database() -> None:
    """Prefect's user (no superuser), its database, and pg_trgm, which Prefect's migrations create and
    a plain user may not."""
    password = db_password()
    # dollar-quoted: the password is URL-safe base64 (letters, digits, - and _), so it cannot end the quote
    psql_admin(
        "DO $do$ BEGIN\n"
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PREFECT_DB_USER}') THEN\n"
        f"    CREATE ROLE {PREFECT_DB_USER} LOGIN;\n"
        "  END IF;\n"
        "END $do$;\n"
        f"ALTER ROLE {PREFECT_DB_USER} PASSWORD $pw${password}$pw$;\n"
    )
    if psql_admin(f"SELECT 1 FROM pg_database WHERE datname = '{PREFECT_DB}'").strip() != "1":
        psql_admin(f"CREATE DATABASE {PREFECT_DB} OWNER {PREFECT_DB_USER}")
    psql_admin("CREATE EXTENSION IF NOT EXISTS pg_trgm", database=PREFECT_DB)


def stop_postgres() -> bool:
    """Stop the cluster (fast shutdown: open sessions are ended) by its own pid file."""
    if not (data_dir() / "postmaster.pid").exists():
        return False
    status = subprocess.run(
        ["runuser", "-u", PG_USER, "--", str(PG_BIN / "pg_ctl"), "status", "-D", str(data_dir())],
        capture_output=True, check=False, cwd="/",
    )  # fmt: skip
    if status.returncode != 0:  # a pid file left by a cluster that no longer runs
        return False
    _as_postgres([str(PG_BIN / "pg_ctl"), "stop", "-D", str(data_dir()), "-m", "fast", "-w", "-t", "60"])
    return True


def database_url() -> str:
    """The Prefect server's database URL (holds the password: environment only)."""
    return f"postgresql+asyncpg://{PREFECT_DB_USER}:{db_password()}@127.0.0.1:{PG_PORT}/{PREFECT_DB}"


# --- the Prefect server on PostgreSQL -----------------------------------------------------------


def home_dir() -> Path:
    """PREFECT_HOME of the server, the workers and their flow runs (apart from the lab's main server)."""
    home = base_dir() / "home"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    return home


def client_env() -> dict[str, str]:
    """Environment of Prefect clients of this server (no secrets in it)."""
    return {
        "PREFECT_HOME": str(home_dir()),
        "PREFECT_API_URL": PREFECT_PG_API_URL,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{PREFECT_PG_API_URL}/health", timeout=1) as resp:
            answer: object = json.loads(resp.read())
            return answer is True
    except Exception:
        return False


def _prefect_cli() -> str:
    return shutil.which("prefect") or str(Path(sys.executable).parent / "prefect")


def ensure_prefect_pg() -> str:
    """PostgreSQL, then the Prefect server on PREFECT_PG_PORT with its database there. Returns its API
    URL. Blocks are encrypted with the lab's key, as on the main server."""
    ensure_postgres()
    if healthy():
        return PREFECT_PG_API_URL
    from lab.services import prefect_encryption_key_file

    env = {
        **client_env(),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(PREFECT_PG_PORT),  # --port alone leaves the UI on 4200
        # environment, never argv: the URL holds the password, the key encrypts the blocks
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url(),
        "PREFECT_SERVER_ENCRYPTION_KEY": prefect_encryption_key_file().read_text().strip(),
    }
    start_daemon(
        SERVER_NAME,
        [_prefect_cli(), "server", "start", "--host", "127.0.0.1", "--port", str(PREFECT_PG_PORT)],
        env=env,
        ready=healthy,
        timeout=180,
    )
    return PREFECT_PG_API_URL


def api(method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
    """One call to this server's REST API; the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{PREFECT_PG_API_URL}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


# --- work pool, workers, deployments ------------------------------------------------------------


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """A process work pool, as `prefect work-pool create NAME --type process` makes it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    with temporary_settings({PREFECT_API_URL: PREFECT_PG_API_URL}), get_client(sync_client=True) as client:
        template = ProcessWorker.get_default_base_job_template()
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))


def worker_names(pool: str = WORK_POOL) -> set[str]:
    """Workers of `pool` that sent a heartbeat in the last 30 s."""
    rows = api("POST", f"/work_pools/{pool}/workers/filter", {})
    now = time.time()
    out = set()
    from datetime import datetime

    for row in rows:
        beat = row.get("last_heartbeat_time")
        if beat and now - datetime.fromisoformat(beat.replace("Z", "+00:00")).timestamp() < 30:
            out.add(row["name"])
    return out


def ensure_worker(name: str, pool: str = WORK_POOL, limit: int = 1) -> int:
    """`prefect worker start --pool POOL --name NAME --limit LIMIT` as a lab daemon, polling every second,
    whose flow runs find the code in this checkout (MAILU_FLOWS_DIR, the pull step's directory)."""
    env = {
        **client_env(),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
        "MAILU_FLOWS_DIR": str(ep.REPO_ROOT),
    }
    return start_daemon(
        f"{WORKER_PREFIX}{name}",
        [_prefect_cli(), "worker", "start", "--pool", pool, "--name", name, "--type", "process",
         "--limit", str(limit)],
        env=env,
        cwd=ep.REPO_ROOT,
        ready=lambda: name in worker_names(pool),
        timeout=120,
    )  # fmt: skip


def worker_log(name: str) -> Path:
    return log_file(f"{WORKER_PREFIX}{name}")


def stop_worker(name: str) -> bool:
    # `prefect worker start` may ignore SIGTERM when started with SIGINT ignored: stop_daemon kills it then
    return stop_daemon(f"{WORKER_PREFIX}{name}", timeout=10)


def running_workers() -> list[str]:
    pids = ep.lab_dir() / "pids"
    names = [p.stem.removeprefix(WORKER_PREFIX) for p in pids.glob(f"{WORKER_PREFIX}*.pid")]
    return [n for n in names if running_pid(f"{WORKER_PREFIX}{n}") is not None]


def fleet_prefect_yaml(
    configs: Sequence[Any], only: Sequence[str] = ("deploy",), pool: str = WORK_POOL
) -> dict[str, Any]:
    """One prefect.yaml for several stacks, as `mailu-flows deployments prefect-yaml --per-stack-names`
    makes it (each stack's config pushed to its block on this server; deployments `<name>-<stack>`),
    keeping only the deployments named in `only`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mailu_flows.blocks.stack import push_stack_config
    from mailu_flows.deployments import definitions

    with temporary_settings({PREFECT_API_URL: PREFECT_PG_API_URL}):
        for cfg in configs:
            push_stack_config(cfg)
    doc = definitions.fleet_prefect_yaml(configs, work_pool=pool)
    names = {
        definitions.deployment_name(definitions.SPECS_BY_NAME[n], cfg.name) for cfg in configs for n in only
    }
    return {**doc, "deployments": [d for d in doc["deployments"] if d["name"] in names]}


def deploy_to_pool(
    configs: Sequence[Any], only: Sequence[str] = ("deploy",), pool: str = WORK_POOL
) -> list[str]:
    """`prefect deploy --all` of the stacks' deployments onto `pool`; returns `<flow>/<deployment>` ids."""
    from mailu_flows.deployments.definitions import SPECS_BY_NAME, deployment_id

    doc = fleet_prefect_yaml(configs, only, pool)
    path = base_dir() / "prefect.yaml"
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False))
    env = {**os.environ, **client_env(), "MAILU_FLOWS_DIR": str(ep.REPO_ROOT)}
    proc = subprocess.run(
        [_prefect_cli(), "--no-prompt", "deploy", "--all", "--prefect-file", str(path)],
        env=env, capture_output=True, text=True, cwd=ep.REPO_ROOT, timeout=300, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise LabError(f"prefect deploy failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return [deployment_id(SPECS_BY_NAME[name], cfg.name) for cfg in configs for name in only]


def copy_blocks(names: Sequence[str]) -> list[str]:
    """Copy blocks (values included) from the lab's main server to this one, registering their types
    first; returns the names copied. A stack deployed from here reads the same credentials."""
    from prefect.blocks.core import Block
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mailu_flows.blocks.registry import register_block_types

    loaded: dict[str, Block] = {}
    with temporary_settings({PREFECT_API_URL: ep.PREFECT_API_URL}):
        for name in names:
            loaded[name] = _load_any_block(name)
    with temporary_settings({PREFECT_API_URL: PREFECT_PG_API_URL}):
        register_block_types()
        for name, block in loaded.items():
            # a new instance: the loaded one carries the main server's document and schema ids
            fields = {field: getattr(block, field) for field in type(block).model_fields}
            type(block).model_validate(fields).save(name, overwrite=True)
    return list(loaded)


def _load_any_block(name: str) -> Any:
    """A block by document name, whatever its type (block names are unique per type, the lab's per name)."""
    from prefect.blocks.core import Block
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        docs = client.read_block_documents(include_secrets=True)
    for doc in docs:
        if doc.name == name:
            return Block._from_block_document(doc)
    raise LabError(f"no block named {name!r} on {ep.PREFECT_API_URL}")


def ensure_empty_mailu_secrets(name: str) -> None:
    """A stack's Mailu secrets block on this server, created empty once (its first deploy fills it)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from mailu_flows.blocks import MailuSecrets

    with temporary_settings({PREFECT_API_URL: PREFECT_PG_API_URL}):
        try:
            MailuSecrets.load(name)
        except ValueError:
            MailuSecrets().save(name)


def stop_prefect_pg() -> list[str]:
    """Stop the workers, the server, then PostgreSQL (what `lab down` calls)."""
    done = [f"{WORKER_PREFIX}{n}" for n in running_workers() if stop_worker(n)]
    if stop_daemon(SERVER_NAME):
        done.append(SERVER_NAME)
    if stop_postgres():
        done.append("prefect-postgres")
    return done
