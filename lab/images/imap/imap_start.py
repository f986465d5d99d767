#!/usr/bin/python3
# mypy: ignore-errors
"""Stand-in for Mailu 2024.06 `imap` (ghcr.io/mailu/dovecot): real Dovecot behind front's proxy.

Why: mail lands in /mail (Maildir per user) via LMTP on 2525 from postfix, and logins are checked
against admin (as Mailu's Lua passdb does), so the volume and the admin dependency are real.
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
    subnet = env("SUBNET", "192.168.203.0/24")
    conf = f"""base_dir = /run/dovecot
log_path = /dev/stderr
protocols = imap pop3 lmtp sieve
listen = *
hostname = {env("HOSTNAME")}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = {subnet}
mail_location = maildir:/mail/%u
mail_uid = mail
mail_gid = mail
first_valid_uid = 8
mail_privileged_group = mail
passdb {{
  driver = checkpassword
  args = /usr/local/bin/checkpassword
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home=/mail/%u
}}
service lmtp {{
  inet_listener lmtp {{
    port = 2525
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 143
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 110
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    port = 4190
  }}
}}
protocol lmtp {{
  postmaster_address = {env("POSTMASTER", "admin")}@{env("DOMAIN", "localdomain")}
}}
"""
    socrate.write("/etc/dovecot/dovecot.conf", conf)
    admin = env("ADMIN_ADDRESS", "admin")
    socrate.write("/etc/dovecot/lab-auth.json", f'{{"admin_url": "http://{admin}:8080"}}', 0o644)
    os.makedirs("/mail", exist_ok=True)
    os.chown("/mail", 8, 8)
    log.info("imap: dovecot for %s", env("HOSTNAME"))
    os.execvp("dovecot", ["dovecot", "-F", "-c", "/etc/dovecot/dovecot.conf"])


if __name__ == "__main__":
    main()
