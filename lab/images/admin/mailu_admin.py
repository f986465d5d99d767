# mypy: ignore-errors
"""Data layer of the lab's Mailu `admin` stand-in: domains, users, DKIM keys, DNS record texts.

Why: the flows talk to admin through Mailu's REST API and `flask mailu` CLI; both entry points share
this module so they see the same state (SQLite in /data, or PostgreSQL when DB_FLAVOR=postgresql).
"""

import base64
import crypt
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time

log = logging.getLogger("mailu.admin")

DOMAIN_DEFAULTS = {
    "comment": "",
    "max_users": -1,
    "max_aliases": -1,
    "max_quota_bytes": 0,
    "signup_enabled": False,
    "alternatives": [],
}
USER_DEFAULTS = {
    "comment": "",
    "quota_bytes": 1000000000,
    "global_admin": False,
    "enabled": True,
    "change_pw_next_login": False,
    "enable_imap": True,
    "enable_pop": True,
    "allow_spoofing": False,
    "forward_enabled": False,
    "forward_destination": [],
    "forward_keep": True,
    "reply_enabled": False,
    "reply_subject": "",
    "reply_body": "",
    "displayed_name": "",
    "spam_enabled": True,
    "spam_mark_as_read": True,
    "spam_threshold": 80,
}


def env(name, default=""):
    return os.environ.get(name) or default


def load_file_secrets():
    """Admin's ConfigManager reads <KEY>_FILE for every config key; these are the ones that matter."""
    sys.path.insert(0, "/usr/local/lib/mailu")
    import socrate

    for key in ("SECRET_KEY", "DB_PW", "API_TOKEN", "SQLALCHEMY_DATABASE_URI", "INITIAL_ADMIN_PW"):
        socrate.read_file_env(key)


class DbAuthError(Exception):
    pass


class Db:
    """A tiny DB-API wrapper over sqlite3 or psycopg2 with one lock (the server is threaded)."""

    def __init__(self, wait=60.0):
        self.lock = threading.Lock()
        self.flavor = env("DB_FLAVOR", "sqlite")
        if self.flavor == "postgresql":
            import psycopg2

            deadline = time.monotonic() + wait
            while True:
                try:
                    self.conn = psycopg2.connect(
                        host=env("DB_HOST", "database"),
                        user=env("DB_USER", "mailu"),
                        password=env("DB_PW"),
                        dbname=env("DB_NAME", "mailu"),
                        connect_timeout=5,
                    )
                    break
                except psycopg2.OperationalError as exc:
                    msg = str(exc)
                    if "authentication failed" in msg or "no password supplied" in msg:
                        raise DbAuthError(msg.strip()) from exc
                    if time.monotonic() > deadline:
                        raise
                    log.warning("database not reachable yet: %s", msg.strip())
                    time.sleep(1)
            self.conn.autocommit = True
            self.ph = "%s"
        elif self.flavor == "sqlite":
            uri = env("SQLALCHEMY_DATABASE_URI", "sqlite:////data/main.db")
            path = uri.removeprefix("sqlite:///")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.ph = "?"
        else:
            raise SystemExit(f"DB_FLAVOR {self.flavor} is not supported by the lab stand-in")
        self.q("CREATE TABLE IF NOT EXISTS mailu_domain (name TEXT PRIMARY KEY, data TEXT NOT NULL)")
        self.q(
            "CREATE TABLE IF NOT EXISTS mailu_user (email TEXT PRIMARY KEY, domain TEXT NOT NULL, "
            "password TEXT NOT NULL, data TEXT NOT NULL)"
        )

    def q(self, sql, args=()):
        sql = sql.replace("?", self.ph)
        with self.lock:
            cur = self.conn.cursor()
            cur.execute(sql, tuple(args))
            rows = cur.fetchall() if cur.description else []
            cur.close()
            return rows

    # domains
    def domains(self):
        return [
            dict(DOMAIN_DEFAULTS, **json.loads(d), name=n)
            for n, d in self.q("SELECT name, data FROM mailu_domain ORDER BY name")
        ]

    def domain(self, name):
        rows = self.q("SELECT data FROM mailu_domain WHERE name = ?", (name.lower(),))
        return dict(DOMAIN_DEFAULTS, **json.loads(rows[0][0]), name=name.lower()) if rows else None

    def put_domain(self, name, data):
        name = name.lower()
        clean = {k: data[k] for k in DOMAIN_DEFAULTS if k in data}
        merged = dict(self.domain(name) or {}, **clean)
        merged.pop("name", None)
        self.q("DELETE FROM mailu_domain WHERE name = ?", (name,))
        self.q("INSERT INTO mailu_domain (name, data) VALUES (?, ?)", (name, json.dumps(merged)))

    def delete_domain(self, name):
        self.q("DELETE FROM mailu_user WHERE domain = ?", (name.lower(),))
        self.q("DELETE FROM mailu_domain WHERE name = ?", (name.lower(),))

    # users
    def users(self, domain=None):
        sql = "SELECT email, data FROM mailu_user"
        rows = (
            self.q(sql + " WHERE domain = ? ORDER BY email", (domain,))
            if domain
            else self.q(sql + " ORDER BY email")
        )
        return [dict(USER_DEFAULTS, **json.loads(d), email=e, quota_bytes_used=0) for e, d in rows]

    def user(self, email):
        rows = self.q("SELECT data FROM mailu_user WHERE email = ?", (email.lower(),))
        if not rows:
            return None
        return dict(USER_DEFAULTS, **json.loads(rows[0][0]), email=email.lower(), quota_bytes_used=0)

    def password_hash(self, email):
        rows = self.q("SELECT password FROM mailu_user WHERE email = ?", (email.lower(),))
        return rows[0][0] if rows else None

    def put_user(self, email, data, password_hash=None):
        email = email.lower()
        domain = email.split("@", 1)[1]
        current = self.user(email)
        merged = dict(current or {}, **{k: data[k] for k in USER_DEFAULTS if k in data})
        for k in ("email", "quota_bytes_used"):
            merged.pop(k, None)
        pw = password_hash or self.password_hash(email)
        if pw is None:
            raise ValueError("a new user needs a password")
        self.q("DELETE FROM mailu_user WHERE email = ?", (email,))
        self.q(
            "INSERT INTO mailu_user (email, domain, password, data) VALUES (?, ?, ?, ?)",
            (email, domain, pw, json.dumps(merged)),
        )

    def delete_user(self, email):
        self.q("DELETE FROM mailu_user WHERE email = ?", (email.lower(),))


def hash_password(raw):
    """SHA512-CRYPT with Dovecot's scheme prefix (Mailu stores passlib hashes; never plaintext)."""
    return "{SHA512-CRYPT}" + crypt.crypt(raw, crypt.mksalt(crypt.METHOD_SHA512))


def check_password(stored, raw):
    import hmac

    if not stored:
        return False
    value = stored.split("}", 1)[1] if stored.startswith("{") else stored
    return hmac.compare_digest(crypt.crypt(raw, value) or "", value)


# DKIM (keys only on disk, as in Mailu)
def dkim_selector():
    return env("DKIM_SELECTOR", "dkim")


def dkim_path(domain):
    return env("DKIM_PATH", "/dkim/{domain}.{selector}.key").format(domain=domain, selector=dkim_selector())


def dkim_key(domain):
    try:
        with open(dkim_path(domain), "rb") as fh:
            return fh.read() or None
    except OSError:
        return None


def set_dkim_key(domain, pem):
    path = dkim_path(domain)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, path)


def generate_dkim_key(domain):
    """RSA-2048, PKCS#8 PEM, unencrypted: what Mailu's dkim.gen_key writes."""
    pem = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        capture_output=True,
        check=True,
    ).stdout
    set_dkim_key(domain, pem)
    return pem


def dkim_publickey(pem):
    der = subprocess.run(
        ["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem, capture_output=True, check=True
    ).stdout
    return base64.b64encode(der).decode()


def hostname():
    return env("HOSTNAMES").split(",")[0].strip() or env("HOSTNAME")


def domain_view(db, d):
    """The API's DomainGet: the domain plus the DNS texts formatted as Mailu's models.py does."""
    name = d["name"]
    host = hostname()
    key = dkim_key(name)
    out = dict(d)
    out["managers"] = []
    out["dns_mx"] = f"{name}. 600 IN MX 10 {host}."
    out["dns_spf"] = f'{name}. 600 IN TXT "v=spf1 mx a:{host} ~all"'
    out["dns_dkim"] = out["dns_dmarc"] = out["dns_dmarc_report"] = None
    if key:
        sel = dkim_selector()
        out["dns_dkim"] = f'{sel}._domainkey.{name}. 600 IN TXT "v=DKIM1; k=rsa; p={dkim_publickey(key)}"'
        main = env("DOMAIN", name)
        rua = f" rua=mailto:{env('DMARC_RUA')}@{main};" if env("DMARC_RUA") else ""
        ruf = f" ruf=mailto:{env('DMARC_RUF')}@{main};" if env("DMARC_RUF") else ""
        out["dns_dmarc"] = f'_dmarc.{name}. 600 IN TXT "v=DMARC1; p=reject;{rua}{ruf} adkim=s; aspf=s"'
        out["dns_dmarc_report"] = f'{name}._report._dmarc.{main}. 600 IN TXT "v=DMARC1"'
    ports = set(env("PORTS", "25,80,443,465,993,995,4190").split(","))
    srv = []
    for proto, port, prio in (
        ("imap", "143", 20),
        ("pop3", "110", 20),
        ("submission", "587", 20),
        ("autodiscover", "443", 10),
        ("submissions", "465", 10),
        ("imaps", "993", 10),
        ("pop3s", "995", 10),
    ):
        target = f"1 {port} {host}." if port in ports else "0 0 ."
        srv.append(f"_{proto}._tcp.{name}. 600 IN SRV {prio} {target}")
    out["dns_autoconfig"] = [
        *srv,
        f"autoconfig.{name}. 600 IN CNAME {host}.",
        f"autodiscover.{name}. 600 IN CNAME {host}.",
    ]
    out["dns_tlsa"] = None
    return out


def create_admin(db, localpart, domain, password, mode="create"):
    """`flask mailu admin` semantics: create (error if exists), ifmissing (skip), update (reset pw)."""
    email = f"{localpart}@{domain}".lower()
    if db.domain(domain) is None:
        db.put_domain(domain, {})
    exists = db.user(email) is not None
    if exists and mode == "ifmissing":
        return "exists"
    if exists and mode == "create":
        raise ValueError(f"user {email} already exists")
    db.put_user(email, {"global_admin": True}, hash_password(password))
    return "updated" if exists else "created"
