#!/usr/bin/python3
# mypy: ignore-errors
"""Stand-in for Mailu 2024.06 `front` (ghcr.io/mailu/nginx): nginx (HTTP + SMTP/25) and a Dovecot proxy.

Why this shape: it is how real Mailu's front works, so PORTS / PROXY_PROTOCOL / REAL_IP_FROM /
TLS mistakes fail here the way they fail in production. See ../README.md for the differences.
"""

import http.server
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, "/usr/local/lib/mailu")
import socrate
from socrate import log

HTTP_AUTH_PORT = 8000


def env(name, default=""):
    return os.environ.get(name) or default


def check_proxy_settings(proxy_ports):
    if not proxy_ports:
        return
    if not env("REAL_IP_FROM"):
        log.error(
            "PROXY_PROTOCOL=%s requires REAL_IP_FROM (the proxies allowed to send PROXY headers)",
            env("PROXY_PROTOCOL"),
        )
        sys.exit(1)
    if env("REAL_IP_HEADER"):
        log.error("PROXY_PROTOCOL and REAL_IP_HEADER are mutually exclusive; unset REAL_IP_HEADER")
        sys.exit(1)


def tls_files():
    """(flavor, cert, key, error) for TLS_FLAVOR; missing files set TLS_ERROR like Mailu's config.py."""
    flavor = env("TLS_FLAVOR", "cert")
    if flavor == "notls":
        return flavor, "", "", False
    if flavor not in ("cert", "letsencrypt", "mail", "mail-letsencrypt"):
        log.error("unknown TLS_FLAVOR %s", flavor)
        sys.exit(1)
    cert = "/certs/" + env("TLS_CERT_FILENAME", "cert.pem")
    key = "/certs/" + env("TLS_KEYPAIR_FILENAME", "key.pem")
    if "letsencrypt" in flavor and os.path.exists("/certs/letsencrypt/live/mailu/fullchain.pem"):
        cert = "/certs/letsencrypt/live/mailu/fullchain.pem"
        key = "/certs/letsencrypt/live/mailu/privkey.pem"
    error = not (os.access(cert, os.R_OK) and os.access(key, os.R_OK))
    if error:
        log.error("TLS_ERROR: missing or unreadable %s / %s; TLS ports disabled, HTTP answers 403", cert, key)
    return flavor, cert, key, error


class AuthHandler(http.server.BaseHTTPRequestHandler):
    """nginx mail auth_http for port 25 (Mailu: admin /internal/auth/email): route to postfix."""

    def do_GET(self):
        method = self.headers.get("Auth-Method", "")
        protocol = self.headers.get("Auth-Protocol", "")
        self.send_response(200)
        if protocol == "smtp" and method == "none":
            try:
                addr = socket.gethostbyname(env("SMTP_ADDRESS", "smtp"))
                self.send_header("Auth-Status", "OK")
                self.send_header("Auth-Server", addr)
                self.send_header("Auth-Port", "25")
            except OSError:
                self.send_header("Auth-Status", "Temporary server problem, try again later")
                self.send_header("Auth-Error-Code", "451 4.3.0")
                self.send_header("Auth-Wait", "0")
        else:
            self.send_header("Auth-Status", "Authentication credentials invalid")
            self.send_header("Auth-Error-Code", "535 5.7.8")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


def app_locations():
    out = []
    redirect = env("WEBROOT_REDIRECT")
    if redirect and redirect != "none":
        out.append(f"location = / {{ return 302 {redirect}; }}")
    proxy = (
        "proxy_set_header Host $http_host; proxy_set_header X-Real-IP $remote_addr; "
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
        "proxy_set_header X-Forwarded-Proto $scheme;"
    )
    admin = env("ADMIN_ADDRESS", "admin") + ":8080"
    if env("ADMIN") == "true":
        path = env("WEB_ADMIN", "/admin")
        out.append(f"location {path} {{ set $admin {admin}; proxy_pass http://$admin; {proxy} }}")
    if env("API") == "true":
        path = env("WEB_API", "/api")
        out.append(f"location ~ ^{path} {{ set $admin {admin}; proxy_pass http://$admin; {proxy} }}")
    webmail = env("WEBMAIL", "none")
    if webmail != "none":
        path = env("WEB_WEBMAIL", "/webmail")
        out.append(
            f"location {path} {{ set $webmail {env('WEBMAIL_ADDRESS', 'webmail')}:80; "
            f"rewrite ^({path})$ $1/ permanent; rewrite ^{path}/(.*) /$1 break; "
            f"proxy_pass http://$webmail; {proxy} }}"
        )
    out.append("include /overrides/*.conf;")
    return "\n    ".join(out)


def nginx_conf(ports, proxy_ports, flavor, cert, key, tls_error):
    real_from = [c.strip() for c in env("REAL_IP_FROM").split(",") if c.strip()]
    set_real = " ".join(f"set_real_ip_from {c};" for c in real_from)
    msl = int(env("MESSAGE_SIZE_LIMIT", "50000000"))
    tls_ok = flavor != "notls" and not tls_error
    servers = []

    def realip(port):
        if port in proxy_ports:
            return f"real_ip_header proxy_protocol; {set_real}"
        if env("REAL_IP_HEADER") and real_from:
            return f"real_ip_header {env('REAL_IP_HEADER')}; real_ip_recursive on; {set_real}"
        return ""

    if 80 in ports:
        pp = " proxy_protocol" if 80 in proxy_ports else ""
        if tls_error:
            body = "location / { return 403; }"
        elif tls_ok and flavor in ("cert", "letsencrypt"):
            body = (
                "location /.well-known/acme-challenge/ { return 404; }\n"
                "    location / { return 301 https://$host$request_uri; }"
            )
        else:
            body = app_locations()
        servers.append(f"server {{\n    listen 80{pp};\n    {realip(80)}\n    {body}\n}}")
    if 443 in ports and tls_ok:
        pp = " proxy_protocol" if 443 in proxy_ports else ""
        servers.append(
            f"server {{\n    listen 443 ssl{pp};\n    ssl_certificate {cert}; ssl_certificate_key {key};\n"
            f"    ssl_protocols TLSv1.2 TLSv1.3;\n    {realip(443)}\n    {app_locations()}\n}}"
        )
    mail = ""
    if 25 in ports:
        pp = " proxy_protocol" if 25 in proxy_ports else ""
        tls = (
            f"ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.2 TLSv1.3;"
            if tls_ok
            else ""
        )
        starttls = "starttls on;" if tls_ok else ""
        mail = f"""
mail {{
  server_name {env("HOSTNAME")};
  auth_http http://127.0.0.1:{HTTP_AUTH_PORT}/auth/email;
  proxy_pass_error_message on;
  resolver 127.0.0.11 valid=30s ipv6=off;
  error_log /dev/stderr info;
  {tls}
  {set_real if 25 in proxy_ports else ""}
  server {{
    listen 25{pp};
    protocol smtp;
    smtp_auth none;
    auth_http_header Auth-Port 25;
    xclient on;
    smtp_capabilities "SIZE {msl}" 8BITMIME ENHANCEDSTATUSCODES;
    {starttls}
  }}
}}"""
    return f"""user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr info;
include /etc/nginx/modules-enabled/*.conf;
events {{ worker_connections 1024; }}
http {{
  include /etc/nginx/mime.types;
  access_log /dev/stdout;
  client_max_body_size {msl + 8 * 1024 * 1024};
  resolver 127.0.0.11 valid=30s ipv6=off;
  server {{ listen 127.0.0.1:10204; location /health {{ return 204; }} }}
  {chr(10).join(servers)}
}}
{mail}
"""


def dovecot_conf(ports, proxy_ports, cert, key, tls_ok):
    def listener(name, port, ssl=False):
        enabled = port in ports and (tls_ok or not ssl)
        lines = [
            f"  inet_listener {name} {{",
            f"    port = {port if enabled else 0}",
            f"    haproxy = {'yes' if port in proxy_ports else 'no'}",
        ]
        if ssl:
            lines.append("    ssl = yes")
        return "\n".join([*lines, "  }"])

    trusted = " ".join(c.strip() for c in env("REAL_IP_FROM").split(",") if c.strip())
    ssl = (
        f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\nssl_min_protocol = TLSv1.2"
        if tls_ok
        else "ssl = no"
    )
    return f"""base_dir = /run/dovecot
log_path = /dev/stderr
protocols = imap pop3 submission sieve
listen = *
hostname = {env("HOSTNAME")}
{ssl}
disable_plaintext_auth = yes
auth_mechanisms = plain login
haproxy_trusted_networks = {trusted}
login_trusted_networks =
passdb {{
  driver = checkpassword
  args = /usr/local/bin/checkpassword
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home=/var/mail
}}
submission_host = {env("HOSTNAME")}
submission_relay_host = {env("SMTP_ADDRESS", "smtp")}
submission_relay_port = 10025
submission_relay_trusted = yes
submission_max_mail_size = {env("MESSAGE_SIZE_LIMIT", "50000000")}
service imap-login {{
{listener("imap", 143)}
{listener("imaps", 993, True)}
}}
service pop3-login {{
{listener("pop3", 110)}
{listener("pop3s", 995, True)}
}}
service submission-login {{
{listener("submission", 587)}
{listener("submissions", 465, True)}
}}
service managesieve-login {{
{listener("sieve", 4190)}
}}
"""


def main():
    socrate.set_env()
    ports = socrate.port_set("PORTS")
    proxy_ports = socrate.port_set("PROXY_PROTOCOL")
    check_proxy_settings(proxy_ports)
    flavor, cert, key, tls_error = tls_files()
    tls_ok = flavor != "notls" and not tls_error
    socrate.write("/etc/nginx/nginx.conf", nginx_conf(ports, proxy_ports, flavor, cert, key, tls_error))
    socrate.write("/etc/dovecot/dovecot.conf", dovecot_conf(ports, proxy_ports, cert, key, tls_ok))
    imap = env("IMAP_ADDRESS", "imap")
    admin = env("ADMIN_ADDRESS", "admin")
    socrate.write(
        "/etc/dovecot/lab-auth.json", f'{{"admin_url": "http://{admin}:8080", "proxy_host": "{imap}"}}', 0o644
    )
    log.info(
        "front: ports %s, PROXY protocol on %s, TLS %s",
        sorted(ports),
        sorted(proxy_ports),
        "ok" if tls_ok else "off",
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", HTTP_AUTH_PORT), AuthHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    procs = {
        "dovecot": subprocess.Popen(["dovecot", "-F", "-c", "/etc/dovecot/dovecot.conf"]),
        "nginx": subprocess.Popen(["nginx", "-g", "daemon off;"]),
    }
    sys.exit(socrate.supervise(procs))


if __name__ == "__main__":
    main()
