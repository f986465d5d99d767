"""DKIM keys where Mailu reads them: `/dkim/<domain>.<selector>.key` in the dkim volume, on the host.

Why this way:
- Mailu's API (`POST /domain/<d>/dkim`) *regenerates* the key, so it can never "ensure" one. We write
  the file ourselves, with a no-clobber publish (`ln` of a temp file: it fails if the key appeared in
  the meantime), so an existing key is never overwritten unless a rotation asks for it.
- The volume is reached through a throw-away container of the admin image (`docker run --rm`, no
  network, root as Mailu's admin is), so this works whether the stack is up or not and needs nothing
  on the host but docker.
- The private key is generated here, in memory, and travels only over the SSH channel's stdin; it is
  never on a command line and never logged (its lines are registered for redaction). Only public
  halves come back from the host.

The rotation calendar (which retired selectors stay published) is pure: `rotation_state`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailu_core.config import Dkim, StackConfig
from mailu_flows import dockercmd, redact
from mailu_flows.host import Host
from mailu_flows.remote import CommandFailed, RemoteError

__all__ = [
    "DkimKey",
    "DkimKeyError",
    "RotationState",
    "ensure_key",
    "generate_private_key_pem",
    "key_path",
    "read_keys",
    "rotation_state",
]

_BLOCK = re.compile(
    r"^===mailu-flows-dkim (\S+) (\S+) ?(.*?)===$\n?(.*?)(?=^===mailu-flows-dkim |\Z)", re.M | re.S
)


class DkimKeyError(RemoteError):
    """The key file could not be read or written on the host; the message names the file."""


@dataclass(frozen=True)
class DkimKey:
    """One key file as found on the host: its public half (PEM), mode and owner; `created` by this run."""

    domain: str
    selector: str
    path: str
    public_pem: bytes
    mode: str = ""
    owner: str = ""
    created: bool = False
    rotated_from: str | None = None

    @property
    def bits(self) -> int:
        pub = serialization.load_pem_public_key(self.public_pem)
        return pub.key_size if isinstance(pub, rsa.RSAPublicKey) else 0

    @property
    def public_der(self) -> bytes:
        pub = serialization.load_pem_public_key(self.public_pem)
        return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class RotationState:
    """Which retired selectors are still in their grace period (`keep`) and which are past it."""

    keep: tuple[str, ...]
    expired: tuple[str, ...]


def rotation_state(dkim: Dkim, today: date | None = None) -> RotationState:
    """Retired selectors stay published up to and including their `remove_after` day (UTC), so mail
    signed just before a rotation still verifies; after that day they are due for removal."""
    day = today or datetime.now(UTC).date()
    keep = tuple(r.selector for r in dkim.retired_selectors if day <= r.remove_after)
    expired = tuple(r.selector for r in dkim.retired_selectors if day > r.remove_after)
    return RotationState(keep, expired)


def key_path(domain: str, selector: str) -> str:
    """Mailu's DKIM_PATH default: `/dkim/{domain}.{selector}.key` (inside the admin container)."""
    return f"/dkim/{domain}.{selector}.key"


def generate_private_key_pem(bits: int = 2048) -> bytes:
    """RSA, PKCS#8 PEM, unencrypted: what Mailu's `dkim.gen_key` writes. Registered for redaction."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    redact.register_secret(pem.decode())
    return pem


def _volume_command(cfg: StackConfig, script: str) -> list[str]:
    """A throw-away admin container with only the dkim volume, as root, without network."""
    return dockercmd.run(
        cfg.images.admin,
        ["-c", script],
        stdin=True,
        user="0:0",
        entrypoint="/bin/sh",
        mounts=[dockercmd.volume_mount(cfg.volumes.dkim, "/dkim", read_only=False)],
    )


# Prints one block per selector: a header line, then the public half (PEM) of the key if present.
# openssl where the image has it (Mailu's admin does), else python3 + cryptography (also in admin).
_SHOW = r"""
show() {
  f=$1; sel=$2; state=$3
  if [ -e "$f" ]; then
    meta=$(stat -c '%a %u:%g' "$f")
    echo "===mailu-flows-dkim $sel $state $meta==="
    if command -v openssl >/dev/null 2>&1; then
      openssl pkey -in "$f" -pubout || exit 3
    else
      python3 -c 'import sys
from cryptography.hazmat.primitives import serialization as s
k = s.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
pub = k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
sys.stdout.write(pub.decode())' "$f" || exit 3
    fi
  else
    echo "===mailu-flows-dkim $sel missing ==="
  fi
}
"""


def _parse(domain: str, out: str) -> dict[str, DkimKey | None]:
    found: dict[str, DkimKey | None] = {}
    for m in _BLOCK.finditer(out):
        sel, state, meta, body = m.group(1), m.group(2), m.group(3).split(), m.group(4)
        if state == "missing":
            found[sel] = None
            continue
        pem = body.strip().encode() + b"\n"
        if not pem.startswith(b"-----BEGIN PUBLIC KEY-----"):
            raise DkimKeyError(f"{key_path(domain, sel)}: the host did not return a public key")
        found[sel] = DkimKey(
            domain,
            sel,
            key_path(domain, sel),
            pem,
            mode=meta[0] if meta else "",
            owner=meta[1] if len(meta) > 1 else "",
            created=state in ("created", "rotated"),
        )
    return found


def _exec_or_run(cfg: StackConfig, script: str) -> str:
    """`docker exec` in the running admin container when there is one (its /dkim is the same volume,
    and an exec costs a fraction of a container start), else the throw-away container."""
    admin = f"{cfg.mailu.compose_project}-admin-1"
    exec_cmd = shlex.join(dockercmd.exec_(admin, ["/bin/sh", "-c", script], user="0:0", stdin=True))
    # running, and its /dkim is this config's dkim volume (not another stack's)
    fmt = '{{.State.Running}}:{{range .Mounts}}{{if eq .Destination "/dkim"}}{{.Name}}{{end}}{{end}}'
    probe = shlex.join(dockercmd.inspect(admin, format=fmt))
    want = shlex.quote(f"true:{cfg.volumes.dkim}")
    return (
        f'if [ "$({probe} 2>/dev/null)" = {want} ]; then exec {exec_cmd}; '
        f"else exec {shlex.join(_volume_command(cfg, script))}; fi"
    )


def _run(host: Host, cfg: StackConfig, script: str, what: str, stdin: bytes | None = None) -> str:
    try:
        return host.run(_exec_or_run(cfg, script), stdin=stdin, timeout=120).text()
    except CommandFailed as exc:
        raise DkimKeyError(
            f"{what} in volume {cfg.volumes.dkim} on {host.label} failed: {exc.last_line()}"
        ) from None


def read_keys(host: Host, cfg: StackConfig, selectors: Sequence[str]) -> dict[str, DkimKey | None]:
    """The primary domain's key for each selector (None where there is no file), in one container run."""
    domain = cfg.mailu.domain
    lines = [_SHOW]
    for sel in selectors:
        lines.append(f"show {shlex.quote(key_path(domain, sel))} {shlex.quote(sel)} present")
    out = _run(host, cfg, "\n".join(lines), f"reading DKIM keys of {domain}")
    found = _parse(domain, out)
    missing = [s for s in selectors if s not in found]
    if missing:
        raise DkimKeyError(f"no answer from the host for DKIM selector(s) {', '.join(missing)} of {domain}")
    return {s: found[s] for s in selectors}


def ensure_key(host: Host, cfg: StackConfig, *, rotate: bool = False) -> DkimKey:
    """The primary domain's key for the configured selector: created if missing (RSA of `key_bits`,
    PKCS#8 PEM, 0600 owned by admin's `mailu` user, which reads it after dropping root: a root-owned
    file stays unreadable until admin's next restart chowns /dkim), never overwritten; with `rotate`,
    replaced, the old file kept beside it as `<file>.<UTC timestamp>.old`."""
    domain, selector = cfg.mailu.domain, cfg.dns.dkim.selector
    current = read_keys(host, cfg, [selector])[selector]
    if current is not None and not rotate:
        return current
    pem = generate_private_key_pem(cfg.dns.dkim.key_bits)
    path = key_path(domain, selector)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    q, qsel = shlex.quote(path), shlex.quote(selector)
    tmp = shlex.quote(f"/dkim/.{domain}.{selector}.key.tmp")
    old = shlex.quote(f"{path}.{stamp}.old")
    if rotate and current is not None:
        # Keep the old key beside the new one, then replace atomically (rename over it).
        publish = f"cp -p {q} {old} && mv -f {tmp} {q} || exit 5\nshow {q} {qsel} rotated"
    else:
        # No clobber: `ln` fails if the key appeared meanwhile; then that key is the one we keep.
        publish = (
            f"if ln {tmp} {q} 2>/dev/null; then show {q} {qsel} created; else show {q} {qsel} present; fi"
        )
    script = "\n".join(
        [
            _SHOW,
            "umask 077",
            f"rm -f {tmp}",
            f"cat > {tmp} || exit 4",
            f"chmod 600 {tmp} && chown mailu:mailu {tmp} || exit 4",
            publish,
            f"rm -f {tmp}",
        ]
    )
    out = _run(host, cfg, script, f"writing DKIM key {path}", stdin=pem)
    key = _parse(domain, out).get(selector)
    if key is None:
        raise DkimKeyError(f"{path}: written, but the host does not show it")
    expected = serialization.load_pem_private_key(pem, None).public_key()
    same = key.public_der == expected.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if key.created and not same:
        raise DkimKeyError(f"{path}: the key on disk is not the one just written")
    if rotate and current is not None:
        return DkimKey(
            domain, selector, path, key.public_pem, key.mode, key.owner, True, f"{path}.{stamp}.old"
        )
    return key
