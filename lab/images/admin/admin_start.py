#!/usr/bin/python3
# mypy: ignore-errors
"""Stand-in for Mailu 2024.06 `admin`: /ping, the REST API subset the flows use, internal endpoints.

Why: the flows provision domains, users and DKIM through this API exactly as against real Mailu
(token rules, status codes, DNS record texts), and front/imap authenticate logins against it.
"""

import hmac
import http.server
import json
import os
import re
import sys
import urllib.parse

sys.path.insert(0, "/usr/local/lib/mailu")
import mailu_admin as m
import socrate
from socrate import log

DB = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.info("%s %s", self.address_string(), fmt % args)

    def reply(self, code, body=None, ctype="application/json"):
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def api_auth(self):
        token = os.environ.get("API_TOKEN", "")
        header = self.headers.get("Authorization")
        if header is None:
            self.reply(401, {"message": "Authorization header missing"})
            return False
        given = header.removeprefix("Bearer ")
        if len(token) < 4 or not hmac.compare_digest(given.encode(), token.encode()):
            self.reply(403, {"message": "Invalid token"})
            return False
        return True

    def route(self, method):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path == "/ping" and method == "GET":
            return self.reply(200, b"", "text/plain")
        admin_prefix = os.environ.get("WEB_ADMIN") or "/admin"
        if path == admin_prefix or path.startswith(admin_prefix + "/"):
            return self.reply(200, b"<html><body>Mailu admin (lab stand-in)</body></html>", "text/html")
        if path.startswith("/internal/"):
            return self.internal(method, path)
        api = (os.environ.get("WEB_API") or "/api") + "/v1"
        if os.environ.get("API_TOKEN") and (path == api or path.startswith(api + "/")):
            if not self.api_auth():
                return None
            return self.api(method, path[len(api) :].rstrip("/") or "/")
        return self.reply(404, {"message": "not found"})

    def internal(self, method, path):
        match = re.fullmatch(r"/internal/rspamd/vault/v1/dkim/([^/]+)", path)
        if match and method == "GET":
            name = match.group(1).lower()
            selectors = []
            if DB.domain(name) and (key := m.dkim_key(name)):
                selectors.append({"domain": name, "key": key.decode(), "selector": m.dkim_selector()})
            return self.reply(200, {"data": {"selectors": selectors}})
        if path == "/internal/auth/check" and method == "POST":
            req = self.body() or {}
            user = DB.user(str(req.get("user", "")))
            service = req.get("service", "")
            ok = (
                user is not None
                and user["enabled"]
                and m.check_password(DB.password_hash(user["email"]), str(req.get("password", "")))
                and not (service == "imap" and not user["enable_imap"])
                and not (service == "pop3" and not user["enable_pop"])
            )
            return self.reply(200 if ok else 403, {"ok": bool(ok)})
        return self.reply(404, {"message": "not found"})

    def api(self, method, rest):
        if rest == "/domain":
            if method == "GET":
                return self.reply(200, [m.domain_view(DB, d) for d in DB.domains()])
            if method == "POST":
                req = self.body()
                if not isinstance(req, dict) or not req.get("name"):
                    return self.reply(
                        400, {"message": "Input payload validation failed", "errors": {"name": "required"}}
                    )
                if DB.domain(req["name"]):
                    return self.reply(409, {"code": 409, "message": f"Domain {req['name']} already exists"})
                DB.put_domain(req["name"], req)
                return self.reply(200, {"code": 200, "message": f"Domain {req['name']} has been created"})
        match = re.fullmatch(r"/domain/([^/]+)(/dkim|/users)?", rest)
        if match:
            name, sub = match.group(1).lower(), match.group(2)
            domain = DB.domain(name)
            if domain is None:
                return self.reply(404, {"code": 404, "message": f"Domain {name} does not exist"})
            if sub is None and method == "GET":
                return self.reply(200, m.domain_view(DB, domain))
            if sub is None and method == "PATCH":
                DB.put_domain(name, self.body() or {})
                return self.reply(200, {"code": 200, "message": f"Domain {name} has been updated"})
            if sub is None and method == "DELETE":
                DB.delete_domain(name)
                return self.reply(200, {"code": 200, "message": f"Domain {name} has been deleted"})
            if sub == "/dkim" and method == "POST":
                m.generate_dkim_key(name)
                return self.reply(
                    200, {"code": 200, "message": f"DKIM/DMARC keys have been generated for domain {name}"}
                )
            if sub == "/users" and method == "GET":
                return self.reply(200, DB.users(name))
        if rest == "/user":
            if method == "GET":
                return self.reply(200, DB.users())
            if method == "POST":
                req = self.body()
                if not isinstance(req, dict) or not req.get("email") or not req.get("raw_password"):
                    return self.reply(
                        400,
                        {
                            "message": "Input payload validation failed",
                            "errors": {"email/raw_password": "required"},
                        },
                    )
                email = str(req["email"]).lower()
                if "@" not in email:
                    return self.reply(
                        400,
                        {
                            "code": 400,
                            "message": f"Provided email address {email} is not a valid email address",
                        },
                    )
                domain = DB.domain(email.split("@", 1)[1])
                if domain is None:
                    return self.reply(
                        404, {"code": 404, "message": f"Domain {email.split('@', 1)[1]} does not exist"}
                    )
                if DB.user(email):
                    return self.reply(409, {"code": 409, "message": f"User {email} already exists"})
                if domain["max_users"] >= 0 and len(DB.users(domain["name"])) >= domain["max_users"]:
                    return self.reply(
                        409, {"code": 409, "message": f"Too many users for domain {domain['name']}"}
                    )
                DB.put_user(email, req, m.hash_password(str(req["raw_password"])))
                return self.reply(200, {"code": 200, "message": f"User {email} has been created"})
        match = re.fullmatch(r"/user/([^/]+)", rest)
        if match:
            email = match.group(1).lower()
            user = DB.user(email)
            if user is None:
                return self.reply(404, {"code": 404, "message": f"User {email} does not exist"})
            if method == "GET":
                return self.reply(200, user)
            if method == "PATCH":
                req = self.body() or {}
                pw = m.hash_password(str(req["raw_password"])) if req.get("raw_password") else None
                DB.put_user(email, req, pw)
                return self.reply(200, {"code": 200, "message": f"User {email} has been updated"})
            if method == "DELETE":
                DB.delete_user(email)
                return self.reply(200, {"code": 200, "message": f"User {email} has been deleted"})
        return self.reply(404, {"message": "not found"})

    def handle_any(self, method):
        try:
            self.route(method)
        except Exception as exc:
            log.exception("request failed")
            self.reply(500, {"message": str(exc)})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")


def main():
    global DB
    socrate.set_env(["SECRET"])
    m.load_file_secrets()
    os.makedirs("/data", exist_ok=True)
    os.makedirs("/dkim", exist_ok=True)
    try:
        DB = m.Db()
    except m.DbAuthError as exc:
        log.error("database authentication failed: %s", exc)
        sys.exit(1)
    except Exception as exc:
        log.error("database unavailable: %s", exc)
        sys.exit(1)
    account, domain, pw = (
        os.environ.get(k) for k in ("INITIAL_ADMIN_ACCOUNT", "INITIAL_ADMIN_DOMAIN", "INITIAL_ADMIN_PW")
    )
    if account and domain and pw:
        mode = os.environ.get("INITIAL_ADMIN_MODE") or "ifmissing"
        try:
            log.info(
                "initial admin %s@%s: %s", account, domain, m.create_admin(DB, account, domain, pw, mode)
            )
        except ValueError as exc:
            log.error("initial admin: %s", exc)
    log.info("admin: %s database, API %s", DB.flavor, "on" if os.environ.get("API_TOKEN") else "off")
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler)
    server.daemon_threads = True
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
