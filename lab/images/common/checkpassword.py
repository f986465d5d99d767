#!/usr/bin/python3
# mypy: ignore-errors
"""Dovecot checkpassword helper: asks the admin stand-in whether user/password is valid.

Why: real Mailu's Dovecot (front proxy and imap) authenticates against admin over HTTP (Lua passdb);
the lab keeps that dependency so a broken admin breaks logins too. Config: /etc/dovecot/lab-auth.json.
"""

import json
import os
import socket
import sys
import urllib.error
import urllib.request


def main() -> int:
    with os.fdopen(3, "rb") as fh:
        parts = fh.read(4096).split(b"\0")
    user, password = parts[0].decode(), parts[1].decode()
    with open("/etc/dovecot/lab-auth.json") as fh:
        cfg = json.load(fh)
    body = json.dumps({"user": user, "password": password, "service": os.environ.get("SERVICE", "")})
    req = urllib.request.Request(
        cfg["admin_url"] + "/internal/auth/check",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            ok = resp.status == 200
    except urllib.error.HTTPError as exc:
        ok = False
        if exc.code >= 500:
            return 111
    except OSError:
        return 111
    if not ok:
        return 1
    os.environ["USER"] = user
    extra = []
    proxy_host = cfg.get("proxy_host")
    if proxy_host and os.environ.get("SERVICE") in ("imap", "pop3", "sieve"):
        os.environ["proxy"] = "y"
        try:
            os.environ["host"] = socket.gethostbyname(proxy_host)
        except OSError:
            return 111
        extra += ["proxy", "host"]
    if extra:
        os.environ["EXTRA"] = " ".join(extra)
    os.execvp(sys.argv[1], sys.argv[1:])
    return 111


if __name__ == "__main__":
    sys.exit(main())
