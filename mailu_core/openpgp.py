"""Just enough OpenPGP (RFC 4880) to check that an armored key matches the fingerprint given with it.

A block holding a backup key plus its fingerprint is only useful if the two agree; finding out at
backup time (or worse, at restore time) is too late. This reads the primary key packet of an
armored public or secret key and computes its v4 fingerprint (SHA-1 over the public part).
No cryptography is done and nothing is decrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from mailu_core.errors import MailuFlowsError

PUBLIC_ARMOR = "PGP PUBLIC KEY BLOCK"
PRIVATE_ARMOR = "PGP PRIVATE KEY BLOCK"

# Algorithm id -> number of MPIs in the public part (after any curve OID / before KDF params).
_ECDH, _ECDSA, _EDDSA = 18, 19, 22
_MPI_COUNT = {1: 2, 2: 2, 3: 2, 16: 3, 17: 4, 18: 1, 19: 1, 22: 1}


class OpenPgpError(MailuFlowsError, ValueError):
    """The text is not an armored OpenPGP key this module can read."""


def dearmor(text: str, kind: str) -> bytes:
    """The binary content of an ASCII-armored block of `kind` (e.g. PUBLIC_ARMOR)."""
    match = re.search(rf"-----BEGIN {kind}-----\r?\n(.*?)-----END {kind}-----", text, re.S)
    if match is None:
        raise OpenPgpError(f"no '-----BEGIN {kind}-----' ... '-----END {kind}-----' block found")
    body = match.group(1)
    # Armor headers (e.g. "Comment: ...") end at the first empty line, if there are any.
    if re.match(r"^[A-Za-z]+: ", body):
        _, _, body = body.partition("\n\n")
    lines = [line.strip() for line in body.splitlines() if line.strip() and not line.startswith("=")]
    try:
        return base64.b64decode("".join(lines), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OpenPgpError(f"the armored data is not valid base64 ({exc})") from None


def _first_packet(data: bytes) -> tuple[int, bytes]:
    if not data or not data[0] & 0x80:
        raise OpenPgpError("the data does not start with an OpenPGP packet")
    head = data[0]
    if head & 0x40:  # new format
        tag, first = head & 0x3F, data[1]
        if first < 192:
            length, start = first, 2
        elif first < 224:
            length, start = ((first - 192) << 8) + data[2] + 192, 3
        elif first == 255:
            length, start = int.from_bytes(data[2:6], "big"), 6
        else:
            raise OpenPgpError("partial body lengths are not allowed in key packets")
    else:  # old format
        tag, length_type = (head >> 2) & 0x0F, head & 0x03
        size = {0: 1, 1: 2, 2: 4}.get(length_type)
        if size is None:
            raise OpenPgpError("indeterminate packet length")
        length, start = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    return tag, data[start : start + length]


def _public_part_length(body: bytes) -> int:
    """Length of the public-key fields at the start of a v4 key packet body."""
    algorithm = body[5]
    if algorithm not in _MPI_COUNT:
        raise OpenPgpError(f"unsupported public-key algorithm {algorithm}")
    offset = 6
    if algorithm in (_ECDH, _ECDSA, _EDDSA):
        offset += 1 + body[offset]  # curve OID
    for _ in range(_MPI_COUNT[algorithm]):
        bits = int.from_bytes(body[offset : offset + 2], "big")
        offset += 2 + (bits + 7) // 8
    if algorithm == _ECDH:
        offset += 1 + body[offset]  # KDF parameters
    if offset > len(body):
        raise OpenPgpError("truncated key packet")
    return offset


def primary_fingerprint(armored: str, kind: str = PUBLIC_ARMOR) -> str:
    """The v4 fingerprint (40 uppercase hex) of the primary key in an armored key block."""
    tag, body = _first_packet(dearmor(armored, kind))
    expected_tag = 6 if kind == PUBLIC_ARMOR else 5
    if tag != expected_tag:
        raise OpenPgpError(
            f"the first packet has tag {tag}, not a primary {'public' if tag == 6 else 'secret'} key"
        )
    if not body or body[0] != 4:
        raise OpenPgpError(f"key version {body[0] if body else '?'} is not supported (only v4)")
    public = body[: _public_part_length(body)]
    digest = hashlib.sha1(b"\x99" + len(public).to_bytes(2, "big") + public, usedforsecurity=False)
    return digest.hexdigest().upper()
