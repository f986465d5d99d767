"""The lab's authoritative DNS: a Knot primary and a Knot secondary on loopback, port 53.

The primary takes RFC 2136 updates signed with the lab's TSIG key and NOTIFYs the secondary, which
pulls the zone by AXFR/IXFR. Transfers of the lab zone need that key too (the `xfr` ACL: address and
key), as a primary should that gives a flow runner its zone: the runner's transfers are signed, and
the secondary signs its own (its `remote: primary` carries the key); an unsigned AXFR is refused.
NOTIFY stays unsigned, allowed by address. NOTIFY can be switched off (`set_notify(False)`) so that a
test can see a stale secondary until `refresh_secondary()`: that is how "slow propagation" is made
deterministic.

Layout under `lab_dir()`:

    secrets/tsig.key              0600, `hmac-sha256:<key name>:<base64>` (the `-y`/`-k` form of
                                  knsupdate and kdig, so `knsupdate -k` can use it as is)
    dns/primary/knot.conf         0600 (it holds the TSIG secret), zones/<zone>.zone, db/, run/
    dns/secondary/knot.conf       0600, zones/ (written by knotd), db/, run/

Updates survive restarts twice over: Knot writes them to the primary's journal at once and flushes
the zone file right after (`zonefile-sync: 0`); on start it loads the zone file and applies newer
journal changes. (`journal-content: all` with a never-synced zone file lost every update after a
`knotc reload` plus restart in Knot 3.2.6, so it is not used.) `ensure_dns()` writes the zone file
only if it does not exist yet. A secondary that ends up ahead of its primary (e.g. the primary's
state was wiped) is reset and re-bootstraps by AXFR.

The lab's DNS root, for validating resolvers in containers (Mailu's unbound; its admin waits for a
DNSSEC-validated answer). Containers cannot reach loopback, so the primary also listens on the docker
bridge's address (docker0, read at run time) and serves a signed root zone "." there and on loopback:
the root NS with its address, `example.org. A` (the name Mailu's admin checks), the lab ACME server's
name (`acme.test.`, see lab/pebble.py), and a delegation of the lab zone (with its DS when the lab zone
is signed, see `SIGN_ZONE`). Knot signs automatically with the `lab` policy (one ECDSA P-256 CSK per
zone, never rolled), its keys live in the KASP db under dns/primary/db/keys, so the root's trust anchor
(`lab.dnssec`) is the same across restarts as long as that directory is kept. The root zone file
(dns/primary/zones/root.zone) is the lab's: Knot never writes it back (`zonefile-sync: -1`) and loads
changes as a difference with its own serial.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.dnskeybase
import dns.tsig
import dns.tsigkeyring

from lab.endpoints import (
    ACME_NAME,
    DNS_PORT,
    DNS_PRIMARY,
    DNS_SECONDARY,
    OUTSIDE_MTA_IP,
    OUTSIDE_MTA_NAME,
    RUNNER_EDGE_IP,
    RUNNER_NAME,
    TSIG_KEY_NAME,
    ZONE,
    lab_dir,
    public_address,
)
from lab.files import write_atomic, write_if_changed
from lab.procs import LabError, running_pid, start_daemon, stop_daemon

TSIG_ALGORITHM = "hmac-sha256"
PRIMARY = "knot-primary"
SECONDARY = "knot-secondary"
_ROLES = {PRIMARY: "primary", SECONDARY: "secondary"}

# The lab's root zone (served by the primary, see the module docstring).
ROOT_NS = "a.root-servers.lab."
EXAMPLE_NAME = "example.org."  # Mailu's admin start.py resolves this with DO+AD and waits for AD
EXAMPLE_ADDRESS = "198.51.100.10"  # TEST-NET-2 (documentation range; nothing connects to it)
CONTAINER_BRIDGE = "docker0"
DNSSEC_POLICY = "lab"
# Sign the lab zone too (its DS then goes into the root, and resolvers give AD for its names).
# Off: signing puts RRSIG/NSEC/DNSKEY into every AXFR of the zone, and tests compare AXFR contents
# exactly (tests/lab/test_dns_providers.py::primary_records does not skip DNSSEC types). Turning it
# on later is one flip; turning it off again needs the zone's DNSSEC records removed by hand.
SIGN_ZONE = False


@dataclass(frozen=True)
class DnsInfo:
    """Where the lab's DNS listens and how to sign updates; the secret stays in its file."""

    zone: str
    primary: str
    secondary: str
    port: int
    tsig_key_name: str
    tsig_algorithm: str
    tsig_secret_file: Path = field(repr=True)

    def tsig_secret(self) -> str:
        """The base64 TSIG secret, read from its 0600 file on demand (never kept in the object)."""
        return read_tsig_secret(self.tsig_secret_file)

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        """A dnspython keyring holding the lab's TSIG key, for `dns.update.UpdateMessage(keyring=...)`."""
        return tsig_keyring(self.tsig_secret_file)


def dns_dir() -> Path:
    return lab_dir() / "dns"


def tsig_key_file() -> Path:
    return lab_dir() / "secrets" / "tsig.key"


def ensure_tsig_key() -> Path:
    """Generate the lab's TSIG secret once (256 random bits) and return its file."""
    path = tsig_key_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if not path.exists():
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        write_atomic(path, f"{TSIG_ALGORITHM}:{TSIG_KEY_NAME}:{secret}\n")
    os.chmod(path, 0o600)
    return path


def read_tsig_secret(path: Path | None = None) -> str:
    """The base64 secret from the key file (`alg:name:secret`)."""
    text = (path or tsig_key_file()).read_text().strip()
    alg, name, secret = text.split(":", 2)
    if alg != TSIG_ALGORITHM or name != TSIG_KEY_NAME:
        raise LabError(f"unexpected TSIG key file content ({alg}:{name}:…)")
    return secret


def tsig_keyring(path: Path | None = None) -> dict[dns.name.Name, dns.tsig.Key]:
    """A dnspython keyring with the lab's key."""
    ring: dict[dns.name.Name, dns.tsig.Key] = dns.tsigkeyring.from_text(
        {TSIG_KEY_NAME: (TSIG_ALGORITHM, read_tsig_secret(path))}
    )
    return ring


def dns_info() -> DnsInfo:
    return DnsInfo(
        zone=ZONE,
        primary=DNS_PRIMARY,
        secondary=DNS_SECONDARY,
        port=DNS_PORT,
        tsig_key_name=TSIG_KEY_NAME,
        tsig_algorithm=TSIG_ALGORITHM,
        tsig_secret_file=tsig_key_file(),
    )


# --- configs -----------------------------------------------------------------------------------------


def _notify_flag_file() -> Path:
    return dns_dir() / "primary" / "notify-disabled"


def notify_enabled() -> bool:
    """Whether the primary is configured to NOTIFY the secondary (the flag file marks 'off')."""
    return not _notify_flag_file().exists()


def _conf_path(role: str) -> Path:
    return dns_dir() / role / "knot.conf"


def container_address() -> str | None:
    """The host's address on the docker bridge (docker0's IPv4), which every container can reach; None
    without a docker bridge. Read from the interface each time, so a dockerd with another `--bip` works."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            req = struct.pack("256s", CONTAINER_BRIDGE.encode()[:15])
            raw = fcntl.ioctl(s.fileno(), 0x8915, req)  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(raw[20:24])


def _root_server_address() -> str:
    """Where the lab's root (and the delegated lab zone) is served to resolvers: docker0, else loopback."""
    return container_address() or DNS_PRIMARY


def _primary_listen() -> list[str]:
    extra = container_address()
    return [DNS_PRIMARY] + ([extra] if extra and extra != DNS_PRIMARY else [])


def _common(d: Path, addresses: list[str]) -> str:
    listen = ", ".join(f"{a}@{DNS_PORT}" for a in addresses)
    if len(addresses) > 1:
        listen = f"[ {listen} ]"
    return f"""server:
    rundir: "{d}/run"
    listen: {listen}
    identity: ""
    version: ""
log:
  - target: stderr
    any: info
database:
    storage: "{d}/db"
control:
    listen: "{d}/run/knot.sock"
"""


def _primary_conf(notify: bool) -> str:
    d = dns_dir() / "primary"
    secret = read_tsig_secret()
    notify_line = "    notify: secondary\n" if notify else ""
    signing = f"    dnssec-signing: on\n    dnssec-policy: {DNSSEC_POLICY}\n" if SIGN_ZONE else ""
    # Policy `lab`: one CSK per zone, never rolled (the root's key is the resolver image's trust
    # anchor), no CDS/CDNSKEY (the lab writes the DS into the root itself). Template `root`: the root
    # zone file is the lab's (never written back), edits load as a difference with Knot's own serial.
    return (
        _common(d, _primary_listen())
        + f"""key:
  - id: {TSIG_KEY_NAME}
    algorithm: {TSIG_ALGORITHM}
    secret: {secret}
remote:
  - id: secondary
    address: {DNS_SECONDARY}@{DNS_PORT}
acl:
  - id: ddns
    key: {TSIG_KEY_NAME}
    action: update
  - id: xfr
    address: 127.0.0.0/8
    key: {TSIG_KEY_NAME}
    action: transfer
  - id: xfr_root
    address: 127.0.0.0/8
    action: transfer
policy:
  - id: {DNSSEC_POLICY}
    algorithm: ecdsap256sha256
    single-type-signing: on
    ksk-lifetime: 0
    cds-cdnskey-publish: none
template:
  - id: default
    storage: "{d}/zones"
    file: "%s.zone"
    zonefile-sync: 0
    zonefile-load: whole
    journal-content: changes
    semantic-checks: off
  - id: root
    storage: "{d}/zones"
    file: "root.zone"
    zonefile-sync: -1
    zonefile-load: difference-no-serial
    journal-content: all
    dnssec-signing: on
    dnssec-policy: {DNSSEC_POLICY}
zone:
  - domain: .
    template: root
    acl: [xfr_root]
  - domain: {ZONE}
    acl: [ddns, xfr]
{signing}{notify_line}"""
    )


def _secondary_conf() -> str:
    d = dns_dir() / "secondary"
    secret = read_tsig_secret()
    # The secondary knows the key too, so that signed queries (e.g. `kdig -k`) get a signed answer, and
    # signs its refreshes and transfers from the primary with it (the primary allows no other).
    return (
        _common(d, [DNS_SECONDARY])
        + f"""key:
  - id: {TSIG_KEY_NAME}
    algorithm: {TSIG_ALGORITHM}
    secret: {secret}
remote:
  - id: primary
    address: {DNS_PRIMARY}@{DNS_PORT}
    key: {TSIG_KEY_NAME}
acl:
  - id: notify_in
    address: 127.0.0.0/8
    action: notify
  - id: xfr
    address: 127.0.0.0/8
    key: {TSIG_KEY_NAME}
    action: transfer
template:
  - id: default
    storage: "{d}/zones"
    file: "%s.zone"
    journal-content: all
zone:
  - domain: {ZONE}
    master: primary
    acl: [notify_in, xfr]
"""
    )


def _zone_file_text() -> str:
    return f"""$ORIGIN {ZONE}.
$TTL 300
@       SOA  ns1 hostmaster 1 3600 600 86400 60
@       NS   ns1
@       NS   ns2
ns1     A    {DNS_PRIMARY}
ns2     A    {DNS_SECONDARY}
"""


def _root_zone_path() -> Path:
    return dns_dir() / "primary" / "zones" / "root.zone"


def _reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def _root_zone_text(address: str, zone_ds: list[str]) -> str:
    """The lab's root zone: its NS and address, admin's example.org, the lab zone's delegation (+DS),
    and the DNS of an outside mail server (A, PTR, example.org's SPF) that tests send inbound mail from.

    The lab zone is delegated to the root server's own name and address: the lab zone's in-zone NS
    (ns1/ns2) point at loopback, which a resolver in a container can neither reach nor use.
    """
    ds = "".join(f"{ZONE}.  DS  {d}\n" for d in zone_ds)
    return f"""$ORIGIN .
$TTL 300
.  SOA  {ROOT_NS} hostmaster.root-servers.lab. 1 3600 600 86400 60
.  NS   {ROOT_NS}
{ROOT_NS}  A  {address}
{EXAMPLE_NAME}  A  {EXAMPLE_ADDRESS}
{EXAMPLE_NAME}  TXT  "v=spf1 ip4:{OUTSIDE_MTA_IP} ip4:{RUNNER_EDGE_IP} -all"
{OUTSIDE_MTA_NAME}.  A  {OUTSIDE_MTA_IP}
{RUNNER_NAME}.  A  {RUNNER_EDGE_IP}
{_reverse_name(RUNNER_EDGE_IP)}  PTR  {RUNNER_NAME}.
{ACME_NAME}.  A  {public_address()}
{_reverse_name(OUTSIDE_MTA_IP)}  PTR  {OUTSIDE_MTA_NAME}.
{ZONE}.  NS  {ROOT_NS}
{ds}"""


def _prepare(role: str) -> bool:
    d = dns_dir() / role
    for sub in ("zones", "db", "run"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    text = _primary_conf(notify_enabled()) if role == "primary" else _secondary_conf()
    changed = write_if_changed(d / "knot.conf", text)
    zone_file = d / "zones" / f"{ZONE}.zone"
    if role == "primary" and not zone_file.exists():
        zone_file.write_text(_zone_file_text())
    if role == "primary" and not _root_zone_path().exists():
        # The lab zone's DS is added by `_sync_root()` once Knot has signed that zone.
        write_atomic(_root_zone_path(), _root_zone_text(_root_server_address(), []), 0o644)
    return changed


def _listen_line(path: Path) -> str | None:
    """The server's `listen:` line of a written config (the first one; control's comes later). Its
    change needs a restart, not a reload: Knot binds its sockets at start only."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return next((line for line in text.splitlines() if line.startswith("    listen:")), None)


# --- queries -----------------------------------------------------------------------------------------


def soa_serial(address: str, timeout: float = 1.0) -> int | None:
    """The zone's SOA serial as `address` serves it authoritatively, or None."""
    q = dns.message.make_query(f"{ZONE}.", dns.rdatatype.SOA)
    q.flags &= ~dns.flags.RD
    try:
        resp = dns.query.udp(q, address, port=DNS_PORT, timeout=timeout)
    except Exception:
        return None
    if resp.rcode() != dns.rcode.NOERROR or not resp.flags & dns.flags.AA:
        return None
    for rrset in resp.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


def _knotc(role: str, *args: str, timeout: float = 15.0) -> str:
    """Run knotc against one instance's config (the config holds the key, so it stays in a file)."""
    proc = subprocess.run(
        ["knotc", "-c", str(_conf_path(role)), "-t", str(int(timeout)), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"knotc {role} {' '.join(args)} failed: {proc.stdout}{proc.stderr}".strip())
    return proc.stdout


def _conf_check(role: str) -> None:
    _knotc(role, "conf-check")


def _start(role: str) -> None:
    name = PRIMARY if role == "primary" else SECONDARY
    address = DNS_PRIMARY if role == "primary" else DNS_SECONDARY
    start_daemon(
        name,
        ["/usr/sbin/knotd", "-c", str(_conf_path(role))],
        ready=lambda: soa_serial(address, timeout=0.3) is not None,
        timeout=20.0,
    )


def ensure_dns() -> DnsInfo:
    """Bring both Knot instances up (or leave them running) with the lab's canonical config.

    Idempotent: configs are rewritten only when they differ, and a running instance then gets
    `knotc reload` (a restart when its listen addresses changed, e.g. docker0 appeared). NOTIFY is
    switched back on (the default) if a test left it off. Returns once the signed root is served.
    """
    ensure_tsig_key()
    _notify_flag_file().unlink(missing_ok=True)
    started = False
    for role, name in (("primary", PRIMARY), ("secondary", SECONDARY)):
        listen_before = _listen_line(_conf_path(role))
        changed = _prepare(role)
        if running_pid(name) is not None and changed and _listen_line(_conf_path(role)) != listen_before:
            _conf_check(role)
            stop_daemon(name)
        if running_pid(name) is not None:
            if changed:
                _knotc(role, "reload")
        else:
            _conf_check(role)
            started = True
        _start(role)
    _sync_root()
    _signing_keys_owner_only()
    # A restarted secondary serves its journal's older serial until NOTIFY/refresh: catch up now.
    behind = started and soa_serial(DNS_SECONDARY) != soa_serial(DNS_PRIMARY)
    if behind and refresh_secondary(wait=5.0) is None:
        _reset_secondary()
    return dns_info()


def _signing_keys_owner_only() -> None:
    """Knot writes its KASP keys (the zones' private signing keys) 0640 in 0770/0750 directories; the
    lab's keys are root's alone (knotd runs as root). Once signed, they are never rolled: set once."""
    for role in ("primary", "secondary"):
        keys = _conf_path(role).parent / "db" / "keys"
        if not keys.is_dir():
            continue
        for path in [keys, *keys.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)


def served_sep_keys(zone: str, address: str | None = None, timeout: float = 1.0) -> list[Any]:
    """The DNSKEYs with the SEP flag (KSK/CSK) that `address` (default: the primary) serves
    authoritatively for `zone`; [] if none or no answer."""
    q = dns.message.make_query(zone, dns.rdatatype.DNSKEY, use_edns=0, payload=1232)
    q.flags &= ~dns.flags.RD
    try:
        resp, _ = dns.query.udp_with_fallback(q, address or DNS_PRIMARY, port=DNS_PORT, timeout=timeout)
    except Exception:
        return []
    if resp.rcode() != dns.rcode.NOERROR or not resp.flags & dns.flags.AA:
        return []
    return [
        rd
        for rrset in resp.answer
        if rrset.rdtype == dns.rdatatype.DNSKEY
        for rd in rrset
        if rd.flags & dns.rdtypes.dnskeybase.Flag.SEP
    ]


def ds_texts(zone: str, keys: list[Any]) -> list[str]:
    """`DS` rdata texts (SHA-256 digests) for `keys` of `zone`, sorted."""
    return sorted(dns.dnssec.make_ds(zone, key, "SHA256").to_text() for key in keys)


def _wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"the Knot primary did not {what} within {timeout:.0f}s; see its log")
        time.sleep(0.05)


def _served_root(address: str) -> tuple[str | None, list[str]]:
    """(root server address, DS texts of the lab zone) as the root zone serves them now."""
    found: dict[str, Any] = {}
    for name, rdtype in ((ROOT_NS, dns.rdatatype.A), (f"{ZONE}.", dns.rdatatype.DS)):
        q = dns.message.make_query(name, rdtype)
        q.flags &= ~dns.flags.RD
        try:
            resp = dns.query.udp(q, address, port=DNS_PORT, timeout=1.0)
        except Exception:
            return None, []
        found[dns.rdatatype.to_text(rdtype)] = [rd.to_text() for rrset in resp.answer for rd in rrset]
    return next(iter(found["A"]), None), sorted(found["DS"])


def _sync_root(timeout: float = 15.0) -> None:
    """Write the root zone for the current docker0 address and lab-zone keys; reload it if it changed;
    return once the primary serves it signed and current."""
    zone_ds: list[str] = []
    if SIGN_ZONE:
        keys = _wait_for("sign " + ZONE, lambda: served_sep_keys(f"{ZONE}."), timeout)
        zone_ds = ds_texts(f"{ZONE}.", keys)
    address = _root_server_address()
    if write_if_changed(_root_zone_path(), _root_zone_text(address, zone_ds), 0o644):
        _knotc("primary", "zone-reload", ".")
    _wait_for("sign the root zone", lambda: served_sep_keys("."), timeout)
    _wait_for("serve the current root zone", lambda: _served_root(DNS_PRIMARY) == (address, zone_ds), timeout)


def _reset_secondary() -> None:
    """Throw away the secondary's copy (it refuses a primary with a lower serial) and bootstrap again."""
    stop_daemon(SECONDARY)
    d = dns_dir() / "secondary"
    for sub in ("zones", "db"):
        shutil.rmtree(d / sub, ignore_errors=True)
    _prepare("secondary")
    _start("secondary")
    deadline = time.monotonic() + 10
    while soa_serial(DNS_SECONDARY) != soa_serial(DNS_PRIMARY):
        if time.monotonic() > deadline:
            raise LabError("the Knot secondary did not catch up with the primary; see its log")
        time.sleep(0.05)


def set_notify(enabled: bool) -> None:
    """Switch the primary's NOTIFY to the secondary on or off (config rewrite + `knotc reload`)."""
    flag = _notify_flag_file()
    if enabled:
        flag.unlink(missing_ok=True)
    else:
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()
    if _prepare("primary") and running_pid(PRIMARY) is not None:
        _knotc("primary", "reload")


def refresh_secondary(wait: float = 10.0) -> int | None:
    """Make the secondary ask the primary now (`knotc zone-refresh`); wait until serials match.

    Returns the secondary's serial afterwards (None if it did not catch up within `wait`).
    """
    _knotc("secondary", "zone-refresh", ZONE)
    deadline = time.monotonic() + wait
    while True:
        want = soa_serial(DNS_PRIMARY)
        have = soa_serial(DNS_SECONDARY)
        if want is not None and have == want:
            return have
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def stop_dns() -> bool:
    """Stop both instances (only the pids this lab recorded). True if anything was stopped."""
    stopped_secondary = stop_daemon(SECONDARY)
    stopped_primary = stop_daemon(PRIMARY)
    return stopped_primary or stopped_secondary


def dns_status() -> dict[str, Any]:
    """Whether each instance runs, where it listens and which serial it serves."""
    out: dict[str, Any] = {"zone": ZONE, "port": DNS_PORT, "notify": notify_enabled()}
    for name, address in ((PRIMARY, DNS_PRIMARY), (SECONDARY, DNS_SECONDARY)):
        pid = running_pid(name)
        out[_ROLES[name]] = {
            "running": pid is not None,
            "pid": pid,
            "address": address,
            "serial": soa_serial(address) if pid is not None else None,
        }
    out["running"] = out["primary"]["running"] and out["secondary"]["running"]
    up = out["primary"]["running"]
    out["root"] = {
        "address": _root_server_address(),
        "signed": bool(up and served_sep_keys(".")),
        "zone_signed": bool(up and served_sep_keys(f"{ZONE}.")),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.dns up|down|status|notify on|off|refresh` for poking at the lab by hand."""
    p = argparse.ArgumentParser(prog="python -m lab.dns")
    p.add_argument("command", choices=["up", "down", "status", "notify", "refresh"])
    p.add_argument("value", nargs="?", choices=["on", "off"])
    a = p.parse_args(argv)
    if a.command == "up":
        print(ensure_dns())
    elif a.command == "down":
        stop_dns()
    elif a.command == "notify":
        set_notify(a.value != "off")
    elif a.command == "refresh":
        print(refresh_secondary())
    print(json.dumps(dns_status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
