"""PostgreSQL from its dump: the consistent copy a restore uses and the drill proves.

A live copy of a running PostgreSQL's files is not a consistent database (the server writes while
tar reads), so the backup also takes `pg_dump -Fc` inside the stack's postgres container, and:
- restore rebuilds the postgres volume from that dump: empty the volume, start a throwaway server of
  the stack's pinned image on it (it initialises the owner role and database with the stack's DB
  password file, as the stack's own container would), `pg_restore` the dump, stop the server;
- the verify drill does the same on a scratch volume with a throwaway password, then counts tables.

The throwaway servers run with `--network none`. Passwords never reach a command line: the stack's
is a mounted file, the drill's is drawn on the host into the `docker run` environment.
"""

from __future__ import annotations

import contextlib
import shlex
import time
import uuid
from collections.abc import Iterator

from mailu_core.config import StackConfig
from mailu_core.render.secrets import secret_file_specs
from mailu_core.services import POSTGRES_DATA_DIR
from mailu_flows import dockercmd
from mailu_flows.backup.engine import helper_run
from mailu_flows.host import Host

STACK_LABEL = "mailu-flows.stack"  # on throwaway servers and drill volumes: whose, so cleanup stays per stack
ROLE_LABEL = "mailu-flows.role"  # drill (verify, no lock) or restore (under the host lock)
PG_SERVICE = "postgres"  # the compose service of a managed PostgreSQL (render/compose.py)
READY_TIMEOUT_S = 120
PASSWORD_FILE_IN_CONTAINER = "/run/secrets/mailu-db-password"

# Inside the container: the password from the file the server was given, if any (an image whose local
# connections are trusted needs none), then the client; the password is in the environment only.
_WITH_PASSWORD = (
    'if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"; '
    'elif [ -n "${POSTGRES_PASSWORD:-}" ]; then PGPASSWORD="$POSTGRES_PASSWORD"; fi; '
    "export PGPASSWORD; "
)


def client_command(container: str, program: str, args: list[str], *, stdin: bool = False) -> str:
    """`docker exec` of a PostgreSQL client in `container`, authenticated from the server's password file."""
    script = _WITH_PASSWORD + 'exec "$@"'
    return shlex.join(dockercmd.exec_(container, ["sh", "-c", script, program, program, *args], stdin=stdin))


def dump_command(container: str, config: StackConfig) -> str:
    db = config.database
    return client_command(container, "pg_dump", ["-U", db.user, "-d", db.name, "-Fc"])


def restore_command(container: str, config: StackConfig) -> str:
    """pg_restore of a custom-format dump from stdin, stopping at the first error."""
    db = config.database
    args = ["-U", db.user, "-d", db.name, "--no-owner", "--exit-on-error", "--single-transaction"]
    return client_command(container, "pg_restore", args, stdin=True)


def table_count_command(container: str, config: StackConfig) -> str:
    db = config.database
    sql = "select count(*) from pg_tables where schemaname = 'public'"
    return client_command(container, "psql", ["-U", db.user, "-d", db.name, "-tAc", sql])


def db_password_file(config: StackConfig) -> str:
    """The stack's DB password file on the host (what its postgres container reads)."""
    spec = next((s for s in secret_file_specs(config) if s.block_field == "db_password"), None)
    if spec is None:
        raise ValueError("the stack has no DB password file (database.flavor is not postgresql)")
    return spec.host_path


def empty_volume(host: Host, config: StackConfig, volume: str) -> None:
    from mailu_flows.backup.engine import helper_image

    name = f"mailu-restore-{uuid.uuid4().hex[:8]}"
    mount = dockercmd.volume_mount(volume, "/v", read_only=False)
    host.run(helper_run(helper_image(config), name, [mount], "sh", ["-c", "find /v -mindepth 1 -delete"]))


@contextlib.contextmanager
def throwaway_server(
    host: Host, config: StackConfig, volume: str, *, password_file: str | None
) -> Iterator[str]:
    """A PostgreSQL of the stack's image on `volume`, ready for clients; stopped and removed afterwards.

    `password_file`: the host file holding the owner's password (a restore into the stack's volume);
    None: a random password drawn on the host (the drill's scratch volume)."""
    db = config.database
    role = "drill" if password_file is None else "restore"
    image = config.images.postgres
    if image is None:
        raise ValueError("images.postgres is not set: a database dump needs the PostgreSQL image to restore")
    name = f"mailu-restore-pg-{uuid.uuid4().hex[:8]}"
    mounts = [dockercmd.volume_mount(volume, POSTGRES_DATA_DIR, read_only=False)]
    env = [f"POSTGRES_USER={db.user}", f"POSTGRES_DB={db.name}", f"PGDATA={POSTGRES_DATA_DIR}"]
    draw = ""
    if password_file is not None:
        mounts.append(dockercmd.bind_mount(password_file, PASSWORD_FILE_IN_CONTAINER))
        env.append(f"POSTGRES_PASSWORD_FILE={PASSWORD_FILE_IN_CONTAINER}")
    else:
        env.append("POSTGRES_PASSWORD")  # the value comes from the environment set just before
        draw = "POSTGRES_PASSWORD=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \\n'); export POSTGRES_PASSWORD; "
    run = dockercmd.run(
        image, container_name=name, remove=False, detach=True, log_driver="none", mounts=mounts, env=env,
        labels={STACK_LABEL: config.name, ROLE_LABEL: role},
    )  # fmt: skip
    command = draw + shlex.join(run)
    try:
        host.run(command, timeout=120)
        deadline = time.monotonic() + READY_TIMEOUT_S
        ready = client_command(name, "pg_isready", ["-q", "-h", "127.0.0.1", "-U", db.user, "-d", db.name])
        while not host.run(ready, check=False, timeout=30).ok:
            inspect = dockercmd.inspect(name, format="{{.State.Running}}")
            state = host.run(inspect, check=False).text().strip()
            if state != "true" or time.monotonic() > deadline:
                # its log is not kept (--log-driver none: pg_restore errors may quote rows)
                why = "it exited" if state != "true" else f"not ready after {READY_TIMEOUT_S} s"
                raise RuntimeError(f"the throwaway PostgreSQL of {image} failed: {why}")
            time.sleep(0.5)
        yield name
    finally:
        host.run(dockercmd.stop(name, timeout_s=60), check=False, timeout=120)  # clean: a checkpoint
        host.run(dockercmd.rm(name), check=False)


def count_tables(host: Host, config: StackConfig, container: str) -> int:
    return int(host.run(table_count_command(container, config), timeout=120).text().strip() or "0")
