"""A managed PostgreSQL is backed up as a consistent dump, the verify drill restores that dump into a
fresh server, and a restore rebuilds the database volume from it (not from the live file copy).

The stack's postgres here is the lab's PostgreSQL image run as the compose service of a project of
its own (its labels are what the backup looks for), with its own volumes, stack root and password
file; everything is removed afterwards.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.endpoints import SSH_USER, lab_dir
from mailu_core.backup import PG_DUMP
from mailu_core.config import StackConfig, load_stack_config
from mailu_flows.backup import LocalDirectory, restore_backup
from mailu_flows.backup.postgres import PASSWORD_FILE_IN_CONTAINER, db_password_file
from mailu_flows.flows.backup import backup
from mailu_flows.flows.backup_verify import backup_verify
from tests.lab.test_backup import _dkim_pem, _fill, _host, _keys

pytestmark = pytest.mark.lab

MARKER = f"marker-{secrets.token_hex(8)}"


@dataclass
class PgStack:
    config: StackConfig
    server: str  # the running "postgres" service container
    root: Path
    dest: Path

    def psql(self, sql: str) -> str:
        db = self.config.database
        script = 'PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")" exec psql -v ON_ERROR_STOP=1 "$@"'
        cmd = ["docker", "exec", self.server, "sh", "-c", script, "psql", "-U", db.user, "-d", db.name,
               "-tAc", sql]  # fmt: skip
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                self.psql("select 1")
                return
            except subprocess.CalledProcessError:
                time.sleep(0.5)
        raise AssertionError("the stack's PostgreSQL did not become ready")


@pytest.fixture(scope="module")
def pg(lab: dict[str, Any]) -> Iterator[PgStack]:
    base = load_stack_config(lab_dir() / "stack.yaml")
    prefix = f"mlt-pg-{secrets.token_hex(3)}"
    keys = ("mail", "dkim", "rspamd", "redis", "admin", "webmail", "certs", "mailqueue", "postgres")
    names = {key: f"{prefix}-{key}" for key in keys}
    root = Path(tempfile.mkdtemp(prefix="mlt-pg-root-"))
    dest = Path(tempfile.mkdtemp(prefix="mlt-pg-dest-"))
    server = f"{prefix}-server"
    data = base.model_dump()
    data["mailu"]["compose_project"] = prefix
    data["volumes"] = names
    data["database"] = {**data["database"], "flavor": "postgresql", "managed": True}
    data["host"]["stack_root"] = str(root)
    data["backup"] = {
        **data["backup"],
        "volumes": [names["mail"], names["dkim"], names["postgres"]],
        "destination_dir": str(dest),
    }
    config = StackConfig.model_validate(data)
    image = config.images.postgres
    assert image is not None
    try:
        shutil.chown(root, SSH_USER, SSH_USER)  # the deploy user's stack root (its lock lives there)
        password_file = Path(db_password_file(config))
        password_file.parent.mkdir(parents=True)
        password_file.write_text(secrets.token_urlsafe(24))
        password_file.chmod(0o644)  # the lab image's server reads it as root; the stack sets group 0640
        _fill(base.images.redis, names["mail"], {"u/cur/1.eml": b"mail"})
        _fill(
            base.images.redis,
            names["dkim"],
            {f"{base.mailu.domain}.{base.dns.dkim.selector}.key": _dkim_pem()},
        )
        subprocess.run(
            ["docker", "run", "-d", "--name", server, "--network", "none",
             "--label", f"com.docker.compose.project={prefix}",
             "--label", "com.docker.compose.service=postgres",
             "-v", f"{names['postgres']}:/var/lib/postgresql/data",
             "--mount", f"type=bind,source={password_file},target={PASSWORD_FILE_IN_CONTAINER},readonly",
             "-e", f"POSTGRES_PASSWORD_FILE={PASSWORD_FILE_IN_CONTAINER}",
             "-e", f"POSTGRES_USER={config.database.user}",
             "-e", f"POSTGRES_DB={config.database.name}", image],
            check=True, capture_output=True,
        )  # fmt: skip
        stack = PgStack(config, server, root, dest)
        stack.wait_ready()
        stack.psql("create table mailbox (email text primary key, quota bigint)")
        stack.psql(f"insert into mailbox values ('{MARKER}@inlock.test', 1000), ('other@inlock.test', 5)")
        yield stack
    finally:
        subprocess.run(["docker", "rm", "-f", server], capture_output=True, check=False)
        for volume in names.values():
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)


def test_backup_holds_a_dump_and_the_drill_restores_it_into_a_fresh_server(pg: PgStack) -> None:
    report = backup(config=pg.config)
    dump = next((a for a in report.archives if a.name == PG_DUMP), None)
    assert dump is not None and dump.plain_bytes > 0
    assert any("pg_dump -Fc" in note for note in report.consistency)

    record = backup_verify(config=pg.config)
    assert record.ok, [r.message() for r in record.checks if not r.ok]
    drills = [r for r in record.checks if r.check == "restore-drill" and r.file.endswith(dump.file)]
    assert len(drills) == 1 and "1 table(s)" in drills[0].detail
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "name=mailu-restore-pg-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert left == []  # the drill's throwaway server is gone


def test_restore_rebuilds_the_database_from_the_dump(pg: PgStack, lab: dict[str, Any]) -> None:
    store = LocalDirectory(pg.dest, pg.config.name)
    good = store.list_backups()[-1]
    pg.psql(f"delete from mailbox where email like '{MARKER}%'")
    pg.psql("create table after_backup (x int)")
    subprocess.run(["docker", "stop", pg.server], check=True, capture_output=True)
    logged: list[str] = []
    with _host(lab) as host:
        result = restore_backup(
            host, pg.config, store, *_keys(pg.config), good, holder="test_backup_postgres",
            volumes=[pg.config.volumes.postgres], log=logged.append,
        )  # fmt: skip
    assert any("rebuilt from the database dump" in line for line in logged)
    restored = [r for r in result.checks if r.check == "restore"]
    assert restored and all(r.ok for r in restored) and "1 table(s)" in restored[-1].detail
    subprocess.run(["docker", "start", pg.server], check=True, capture_output=True)
    pg.wait_ready()
    assert pg.psql(f"select quota from mailbox where email = '{MARKER}@inlock.test'") == "1000"
    assert pg.psql("select count(*) from pg_tables where tablename = 'after_backup'") == "0"
    # the same password still opens it (the restored server was initialised from the stack's password file)
    assert pg.psql("select count(*) from mailbox") == "2"
