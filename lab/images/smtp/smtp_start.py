#!/usr/bin/python3
# mypy: ignore-errors
"""Stand-in for Mailu 2024.06 `smtp` (ghcr.io/mailu/postfix): real Postfix, logging to stdout.

Why: Postfix's own log is where the lab proves the client's real IP survives Traefik -> front ->
XCLIENT; `mynetworks`/`smtpd_authorized_xclient_hosts` follow Mailu's main.cf (SUBNET, RELAYNETS).
"""

import os
import subprocess
import sys

sys.path.insert(0, "/usr/local/lib/mailu")
import socrate
from socrate import log


def env(name, default=""):
    return os.environ.get(name) or default


def main():
    socrate.set_env()
    subnet = env("SUBNET", "192.168.203.0/24")
    relaynets = " ".join(n.strip() for n in env("RELAYNETS").split(",") if n.strip())
    settings = {
        "maillog_file": "/dev/stdout",
        "myhostname": env("HOSTNAME"),
        "mydomain": env("DOMAIN", "localdomain"),
        "myorigin": "$mydomain",
        "mydestination": "",
        "inet_interfaces": "all",
        "inet_protocols": "ipv4",
        "queue_directory": "/queue",
        "mynetworks": f"127.0.0.1/32 {subnet} {relaynets}".strip(),
        "smtpd_authorized_xclient_hosts": subnet,
        "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
        "smtpd_banner": "$myhostname ESMTP",
        "message_size_limit": env("MESSAGE_SIZE_LIMIT", "50000000"),
        "virtual_mailbox_domains": env("DOMAIN", ""),
        "virtual_transport": f"lmtp:inet:{env('LMTP_ADDRESS', 'imap')}:2525",
        "compatibility_level": "3.6",
        "smtputf8_enable": "no",
        "biff": "no",
        "append_dot_mydomain": "no",
    }
    if env("RELAYHOST"):
        settings["relayhost"] = env("RELAYHOST")
    subprocess.run(["postconf", "-e", *[f"{k}={v}" for k, v in settings.items()]], check=True)
    subprocess.run(["postconf", "-F", "*/*/chroot=n"], check=True)
    subprocess.run(
        [
            "postconf",
            "-M",
            "10025/inet=10025 inet n - n - - smtpd -o smtpd_sasl_auth_enable=no "
            "-o smtpd_client_restrictions=permit_mynetworks,reject -o smtpd_authorized_xclient_hosts=",
        ],
        check=True,
    )
    os.makedirs("/queue", exist_ok=True)
    subprocess.run(["postfix", "post-install", "create-missing"], check=False)
    subprocess.run(["postfix", "set-permissions"], check=False, stdout=subprocess.DEVNULL)
    if os.path.exists("/queue/pid/master.pid"):
        os.unlink("/queue/pid/master.pid")
    log.info("smtp: postfix for %s, mynetworks %s", env("HOSTNAME"), settings["mynetworks"])
    os.execvp("postfix", ["postfix", "start-fg"])


if __name__ == "__main__":
    main()
