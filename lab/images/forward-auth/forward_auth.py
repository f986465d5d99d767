#!/usr/bin/python3
# mypy: ignore-errors
"""Tiny forward-auth server for the lab's Traefik `admin-forward-auth` middleware (port 4181).

Why: Mailu's admin routes sit behind the host's SSO forward-auth; the lab needs the same gate.
Accepts `Authorization: Bearer <token>` or HTTP basic `admin:<token>`; the token is
FORWARD_AUTH_TOKEN_FILE's content, else FORWARD_AUTH_TOKEN, else `lab-admin`. 200 + X-Auth-User
when it matches, 401 otherwise.
"""

import base64
import hmac
import http.server
import os
import signal
import sys


def token():
    path = os.environ.get("FORWARD_AUTH_TOKEN_FILE")
    if path:
        with open(path) as fh:
            return fh.read().strip()
    return os.environ.get("FORWARD_AUTH_TOKEN") or "lab-admin"


TOKEN = token().encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def check(self):
        header = self.headers.get("Authorization", "")
        given = b""
        if header.startswith("Bearer "):
            given = header[7:].strip().encode()
        elif header.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                user, pw = "", ""
            given = pw.encode() if user == "admin" else b""
        return bool(given) and hmac.compare_digest(given, TOKEN)

    def answer(self):
        if self.check():
            self.send_response(200)
            self.send_header("X-Auth-User", "admin")
        else:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mailu-lab"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = answer

    def log_message(self, fmt, *args):
        uri = self.headers.get("X-Forwarded-Uri", self.path)
        sys.stderr.write(f"forward-auth: {uri} {fmt % args}\n")


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
http.server.ThreadingHTTPServer(("0.0.0.0", 4181), Handler).serve_forever()
