#!/usr/bin/python3
# mypy: ignore-errors
"""`flask` shim for the admin stand-in: the subset of Mailu 2024.06's `flask mailu` CLI the flows use.

Supported: `flask db upgrade` (schema), `flask mailu admin|user|password|domain|user-delete`,
`flask mailu config-import [-u] [-v] [-n] [FILE|-]` (YAML/JSON with `domain` and `user` lists).
"""

import argparse
import sys

import yaml

sys.path.insert(0, "/usr/local/lib/mailu")
import mailu_admin as m
import socrate


def config_import(db, args):
    if args.source in ("-", None):
        text = sys.stdin.read()
    else:
        with open(args.source) as fh:
            text = fh.read()
    data = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(data, dict) or set(data) - {"domain", "user", "alias", "relay"}:
        print("[ERROR] config-import: top-level keys must be domain, user, alias, relay", file=sys.stderr)
        return 1
    domains = data.get("domain") or []
    users = data.get("user") or []
    if not args.update and not args.dry_run:
        keep_d = {str(d["name"]).lower() for d in domains}
        keep_u = {str(u["email"]).lower() for u in users}
        for u in db.users():
            if u["email"] not in keep_u:
                db.delete_user(u["email"])
        for d in db.domains():
            if d["name"] not in keep_d:
                db.delete_domain(d["name"])
    for d in domains:
        name = str(d["name"]).lower()
        if args.verbose:
            print(f"{'modified' if db.domain(name) else 'created'} domain: {name}")
        if args.dry_run:
            continue
        db.put_domain(name, d)
        key = d.get("dkim_key")
        if key == "-generate-":
            m.generate_dkim_key(name)
        elif isinstance(key, str) and "PRIVATE KEY" in key:
            m.set_dkim_key(name, key.encode())
    for u in users:
        email = str(u["email"]).lower()
        if db.domain(email.split("@", 1)[1]) is None:
            print(f"[ERROR] domain of {email} does not exist", file=sys.stderr)
            return 1
        pw = None
        if u.get("raw_password"):
            pw = m.hash_password(str(u["raw_password"]))
        elif u.get("password"):
            pw = str(u["password"])
        if args.verbose:
            print(f"{'modified' if db.user(email) else 'created'} user: {email}")
        if not args.dry_run:
            db.put_user(email, u, pw)
    return 0


def main(argv):
    socrate.setup_logging()
    m.load_file_secrets()
    p = argparse.ArgumentParser(prog="flask")
    top = p.add_subparsers(dest="group", required=True)
    dbp = top.add_parser("db")
    dbp.add_argument("action", choices=["upgrade"])
    mailu = top.add_parser("mailu").add_subparsers(dest="cmd", required=True)
    a = mailu.add_parser("admin")
    a.add_argument("localpart")
    a.add_argument("domain_name")
    a.add_argument("password")
    a.add_argument("-m", "--mode", choices=["create", "ifmissing", "update"], default="create")
    for name in ("user", "password"):
        u = mailu.add_parser(name)
        u.add_argument("localpart")
        u.add_argument("domain_name")
        u.add_argument("password")
    d = mailu.add_parser("domain")
    d.add_argument("domain_name")
    d.add_argument("-u", "--max-users", type=int, default=-1)
    d.add_argument("-a", "--max-aliases", type=int, default=-1)
    d.add_argument("-q", "--max-quota-bytes", type=int, default=0)
    ud = mailu.add_parser("user-delete")
    ud.add_argument("email")
    ud.add_argument("-r", "--really", action="store_true")
    ci = mailu.add_parser("config-import")
    ci.add_argument("source", nargs="?", default="-")
    ci.add_argument("-v", "--verbose", action="count", default=0)
    ci.add_argument("-u", "--update", action="store_true")
    ci.add_argument("-n", "--dry-run", action="store_true")
    ci.add_argument("-s", "--secrets", action="store_true")
    ci.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        db = m.Db(wait=10)
    except m.DbAuthError as exc:
        print(f"[ERROR] database authentication failed: {exc}", file=sys.stderr)
        return 1
    if args.group == "db":
        return 0
    if args.cmd == "admin":
        try:
            print(f"{m.create_admin(db, args.localpart, args.domain_name, args.password, args.mode)} admin")
        except ValueError as exc:
            print(f"[ERROR] {exc}", file=sys.stderr)
            return 1
        return 0
    if args.cmd in ("user", "password"):
        email = f"{args.localpart}@{args.domain_name}".lower()
        if args.cmd == "user":
            if db.domain(args.domain_name) is None:
                db.put_domain(args.domain_name, {})
            if db.user(email):
                print(f"[ERROR] user {email} already exists", file=sys.stderr)
                return 1
        elif db.user(email) is None:
            print(f"[ERROR] user {email} does not exist", file=sys.stderr)
            return 1
        db.put_user(email, {"change_pw_next_login": True}, m.hash_password(args.password))
        return 0
    if args.cmd == "domain":
        if db.domain(args.domain_name) is None:
            db.put_domain(
                args.domain_name,
                {
                    "max_users": args.max_users,
                    "max_aliases": args.max_aliases,
                    "max_quota_bytes": args.max_quota_bytes,
                },
            )
        return 0
    if args.cmd == "user-delete":
        if args.really:
            db.delete_user(args.email)
        elif db.user(args.email):
            db.put_user(args.email, {"enabled": False})
        return 0
    if args.cmd == "config-import":
        return config_import(db, args)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
