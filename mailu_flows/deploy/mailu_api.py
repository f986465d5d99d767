"""Mailu's own interface for the domains and the admin account: its REST API, called from inside the
admin container (the API is not exposed through Traefik to the flows), one round trip.

The token and the admin password travel on stdin as JSON: never on a command line, never in a file.
Mailu's database is never written directly.
"""

from __future__ import annotations

import json
import shlex

from mailu_flows.host import Host

# Runs with the admin image's python3: idempotent ensure of domains and the admin user.
_ENSURE_SCRIPT = r"""
import json, sys, urllib.request, urllib.error
req = json.load(sys.stdin)
base = "http://127.0.0.1:8080" + req["api_path"] + "/v1"
def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(base + path, data=data, method=method,
        headers={"Authorization": "Bearer " + req["token"], "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=20) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
done = []
for domain in req["domains"]:
    status = call("GET", "/domain/" + domain)
    if status == 404:
        status = call("POST", "/domain", {"name": domain})
        if status >= 300:
            sys.exit("creating domain %s: HTTP %s" % (domain, status))
        done.append("domain " + domain)
    elif status >= 300:
        sys.exit("reading domain %s: HTTP %s (is API_TOKEN right?)" % (domain, status))
email = req["admin_email"]
status = call("GET", "/user/" + email)
if status == 404:
    body = {"email": email, "raw_password": req["admin_password"], "global_admin": True}
    status = call("POST", "/user", body)
    if status >= 300:
        sys.exit("creating admin %s: HTTP %s" % (email, status))
    done.append("admin " + email)
elif status >= 300:
    sys.exit("reading user %s: HTTP %s" % (email, status))
print(json.dumps(done))
"""


def ensure_domains_and_admin(
    host: Host,
    compose_args: list[str],
    api_path: str,
    token: str,
    domains: list[str],
    admin_email: str,
    admin_password: str,
) -> list[str]:
    """Create missing domains and the global admin through the API; returns what was created."""
    request = {
        "api_path": api_path,
        "token": token,
        "domains": domains,
        "admin_email": admin_email,
        "admin_password": admin_password,
    }
    cmd = shlex.join([*compose_args, "exec", "-T", "admin", "python3", "-c", _ENSURE_SCRIPT])
    out = host.run(cmd, stdin=json.dumps(request).encode()).text()
    created: list[str] = json.loads(out.strip().splitlines()[-1])
    return created


# Runs with the admin image's python3: a list of API calls, in order, stopping at the first failure.
# Password hashes in answers (GET /user lists them) are dropped here, inside the container.
_CALLS_SCRIPT = r"""
import json, sys, urllib.parse, urllib.request, urllib.error
req = json.load(sys.stdin)
base = "http://127.0.0.1:8080" + req["api_path"] + "/v1"
def scrub(value):
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in ("password", "raw_password")}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
out = []
for call in req["calls"]:
    data = json.dumps(call["body"]).encode() if call.get("body") is not None else None
    url = base + urllib.parse.quote(call["path"], safe="/@:")
    r = urllib.request.Request(url, data=data, method=call["method"],
        headers={"Authorization": "Bearer " + req["token"], "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        body = scrub(json.loads(raw or b"null"))
    except ValueError:
        body = raw.decode("utf-8", "replace")[:500]
    out.append({"status": status, "body": body})
    if status >= 300 and call.get("stop_on_error", True):
        break
print(json.dumps(out))
"""


def api_calls(
    host: Host,
    compose_args: list[str],
    api_path: str,
    token: str,
    calls: list[dict[str, object]],
) -> list[dict[str, object]]:
    """Run Mailu API calls (`{"method", "path", "body"}`) in order inside the admin container, one round
    trip; stops after the first answer >= 300. Returns `{"status", "body"}` per call made. The token and
    the bodies (which may hold a new user's initial password) travel on stdin; answers never hold a
    password or its hash."""
    request = {"api_path": api_path, "token": token, "calls": calls}
    cmd = shlex.join([*compose_args, "exec", "-T", "admin", "python3", "-c", _CALLS_SCRIPT])
    out = host.run(cmd, stdin=json.dumps(request).encode()).text()
    results: list[dict[str, object]] = json.loads(out.strip().splitlines()[-1])
    return results
