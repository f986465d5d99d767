#!/usr/bin/python3
# mypy: ignore-errors
"""Stand-in for Mailu 2024.06 `webmail` (Roundcube/SnappyMail image): nginx on 80 with /ping.

Why: front proxies WEB_WEBMAIL here and Mailu derives ROUNDCUBE_KEY from SECRET_KEY, so the
SECRET_KEY_FILE contract and the /data volume behave as in the real image; there is no mail UI.
"""

import os
import sys

sys.path.insert(0, "/usr/local/lib/mailu")
import socrate


def main():
    socrate.set_env(["ROUNDCUBE", "SNUFFLEUPAGUS"])
    os.makedirs("/data", exist_ok=True)
    os.system("chown www-data:www-data /data")
    socrate.write(
        "/etc/nginx/nginx.conf",
        """user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr info;
events { worker_connections 256; }
http {
  access_log /dev/stdout;
  server {
    listen 80;
    location = /ping { return 200 ""; }
    location / { default_type text/html; return 200 "<html><body>Mailu webmail (lab)</body></html>"; }
  }
}
""",
    )
    os.execvp("nginx", ["nginx", "-g", "daemon off;"])


if __name__ == "__main__":
    main()
