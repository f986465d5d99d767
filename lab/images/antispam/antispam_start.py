#!/usr/bin/python3
# mypy: ignore-errors
"""Stand-in for Mailu 2024.06 `antispam` (ghcr.io/mailu/rspamd): Debian's real rspamd.

Why: the flows' monitoring scrapes the controller's Prometheus `/metrics` on 11334 and the DKIM
signing keys come from admin's vault endpoint, both as in Mailu's rspamd config.
"""

import os
import sys

sys.path.insert(0, "/usr/local/lib/mailu")
import socrate
from socrate import log


def env(name, default=""):
    return os.environ.get(name) or default


def main():
    socrate.set_env()
    local = "/etc/rspamd/local.d"
    subnet = env("SUBNET", "192.168.203.0/24")
    socrate.write(
        f"{local}/worker-controller.inc",
        f'bind_socket = "*:11334";\nsecure_ip = "127.0.0.1";\nsecure_ip = "{subnet}";\n',
    )
    socrate.write(f"{local}/worker-normal.inc", 'bind_socket = "*:11332";\n')
    socrate.write(
        f"{local}/worker-proxy.inc",
        'bind_socket = "*:11335";\nmilter = yes;\nupstream "local" { default = yes; self_scan = yes; }\n',
    )
    socrate.write(f"{local}/logging.inc", 'type = "console";\nlevel = "notice";\n')
    socrate.write(f"{local}/redis.conf", f'servers = "{env("REDIS_ADDRESS", "redis")}";\n')
    socrate.write(
        f"{local}/dkim_signing.conf",
        "try_fallback = false;\nuse_esld = false;\nallow_username_mismatch = true;\n"
        "use_vault = true;\n"
        f'vault_url = "http://{env("ADMIN_ADDRESS", "admin")}:8080/internal/rspamd/vault";\n'
        'vault_token = "mailu";\n',
    )
    for d in ("/var/lib/rspamd", "/run/rspamd"):
        os.makedirs(d, exist_ok=True)
        os.system(f"chown -R _rspamd:_rspamd {d}")
    log.info("antispam: rspamd, controller on 11334")
    os.execvp("rspamd", ["rspamd", "-f", "-u", "_rspamd", "-g", "_rspamd"])


if __name__ == "__main__":
    main()
