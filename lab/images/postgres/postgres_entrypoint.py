#!/usr/bin/python3
# mypy: ignore-errors
"""Stand-in for the official `postgres:15` image entrypoint (Debian's PostgreSQL 15).

Honours POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE and PGDATA like the
official image: first start runs initdb (password via a 0600 file, never argv) and creates the DB;
all hosts must use scram-sha-256, so a wrong password really fails.
"""

import os
import pwd
import subprocess
import sys
import tempfile

BIN = "/usr/lib/postgresql/15/bin"


def password():
    path = os.environ.get("POSTGRES_PASSWORD_FILE")
    if path:
        try:
            with open(path) as fh:
                return fh.read().rstrip("\n")
        except OSError as exc:
            print(f"error: cannot read POSTGRES_PASSWORD_FILE {path}: {exc}", file=sys.stderr)
            sys.exit(1)
    return os.environ.get("POSTGRES_PASSWORD", "")


def as_postgres():
    pw = pwd.getpwnam("postgres")
    os.setgid(pw.pw_gid)
    os.initgroups("postgres", pw.pw_gid)
    os.setuid(pw.pw_uid)


def main():
    pgdata = os.environ.get("PGDATA", "/var/lib/postgresql/data")
    user = os.environ.get("POSTGRES_USER") or "postgres"
    db = os.environ.get("POSTGRES_DB") or user
    pw = pwd.getpwnam("postgres")
    os.makedirs(pgdata, exist_ok=True)
    os.chown(pgdata, pw.pw_uid, pw.pw_gid)
    os.chmod(pgdata, 0o700)
    if not os.path.exists(os.path.join(pgdata, "PG_VERSION")):
        secret = password()
        if not secret:
            print(
                "error: database is uninitialized and superuser password is not specified "
                "(POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE)",
                file=sys.stderr,
            )
            sys.exit(1)
        with tempfile.NamedTemporaryFile("w", dir="/var/run/postgresql", delete=False) as fh:
            os.chmod(fh.name, 0o600)
            os.chown(fh.name, pw.pw_uid, pw.pw_gid)
            fh.write(secret + "\n")
        try:
            subprocess.run(
                [
                    f"{BIN}/initdb",
                    "-D",
                    pgdata,
                    "--username",
                    user,
                    "--pwfile",
                    fh.name,
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                ],
                preexec_fn=as_postgres,
                check=True,
            )
        finally:
            os.unlink(fh.name)
        with open(os.path.join(pgdata, "pg_hba.conf"), "a") as hba:
            hba.write("host all all all scram-sha-256\n")
        if db != "postgres":
            quoted = db.replace('"', '""')
            subprocess.run(
                [f"{BIN}/postgres", "--single", "-j", "-D", pgdata, "postgres"],
                input=f'CREATE DATABASE "{quoted}";\n'.encode(),
                preexec_fn=as_postgres,
                check=True,
                stdout=subprocess.DEVNULL,
            )
    as_postgres()
    os.execv(f"{BIN}/postgres", ["postgres", "-D", pgdata, "-c", "listen_addresses=*"])


if __name__ == "__main__":
    main()
