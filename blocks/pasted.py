"""Undo what a single-line form field does to a pasted key, so a key pasted in the Prefect UI works.

The UI renders secret fields as `<input type=password>`: a browser turns each line break of a pasted
key into a space (Chromium, Firefox) and drops the trailing one; JSON tools and secret managers
often hand over literal `\\n` instead; a value set by a script may lose its line breaks altogether.
PEM, OpenSSH and OpenPGP armor all need their lines back. The key data is base64, so its own
spaces can only be line breaks: the structure is rebuilt from the
BEGIN/END lines, the armor headers (`Name: value`, e.g. `Proc-Type:` of an encrypted PEM key) and the
base64 lines (rewrapped as ssh-keygen and gpg write them when the breaks were dropped, not replaced).
Prefect's own integrations do the same for their PEM keys (prefect-snowflake recomposes a pasted
private key when its block is validated).

Errors never quote the key: they say what is wrong with its shape.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable

from mailu_core.errors import MailuFlowsError

_ARMOR = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----(?P<body>.*?)-----END (?P=label)-----", re.S)
_HEADER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_CRC = re.compile(r"^=[A-Za-z0-9+/]{4}$")


class FlattenedKeyError(MailuFlowsError, ValueError):
    """A flattened key whose structure cannot be rebuilt without guessing."""


def _unescape(text: str) -> str:
    """Literal `\\n` (JSON-escaped keys) back to line breaks, only when there is no real one."""
    if "\n" not in text.strip() and "\\n" in text:
        return text.replace("\\r\\n", "\n").replace("\\n", "\n")
    return text


def _body_start(tokens: list[str], first: int) -> int | None:
    """Index of the first body token at or after `first`: the tokens from there on are base64 lines of
    one width (the last may be shorter), so header values (`4,ENCRYPTED`, `GnuPG v2`) are not taken."""
    for start in range(first, len(tokens)):
        lines = tokens[start:]
        if not all(_BASE64.match(t) for t in lines):
            continue
        width = len(lines[0])
        if all(len(t) == width for t in lines[:-1]) and len(lines[-1]) <= width:
            return start
    return None


def _rebuild(label: str, body: str) -> str:
    """One armored block from its label and a body whose line breaks were lost."""
    tokens = body.split()
    crc = tokens.pop() if label.startswith("PGP ") and tokens and _CRC.match(tokens[-1]) else None
    if len(tokens) == 1 and ":" not in tokens[0]:  # line breaks dropped, not replaced
        data = tokens[0]
        if label.startswith("PGP ") and crc is None and len(data) % 4 == 1 and _CRC.match(data[-5:]):
            data, crc = data[:-5], data[-5:]
        tokens = [data]
    elif len(tokens) == 1:
        raise FlattenedKeyError(f"the header lines of this {label} cannot be told apart from the key data")
    headers: list[str] = []
    i = 0
    while i < len(tokens) and _HEADER_NAME.match(tokens[i]):
        start = _body_start(tokens, i + 2)
        nxt = next((j for j in range(i + 1, len(tokens)) if _HEADER_NAME.match(tokens[j])), None)
        end = nxt if nxt is not None and (start is None or nxt < start) else start
        if end is None or end <= i + 1:
            raise FlattenedKeyError(
                f"the header lines of this {label} cannot be told apart from the key data"
            )
        headers.append(f"{tokens[i]} {' '.join(tokens[i + 1 : end])}")
        i = end
    body_lines = tokens[i:]
    if not body_lines or not all(_BASE64.match(t) for t in body_lines):
        raise FlattenedKeyError(f"the body of this {label} is not base64")
    if len(body_lines) == 1:  # its line breaks were dropped: wrap it as the tool that wrote it does
        body_lines = textwrap.wrap(body_lines[0], 70 if label == "OPENSSH PRIVATE KEY" else 64)
    lines = [f"-----BEGIN {label}-----", *headers]
    if headers or label.startswith("PGP "):
        lines.append("")  # OpenPGP armor always, PEM after headers: a blank line before the data
    lines += body_lines
    if crc:
        lines.append(crc)
    lines.append(f"-----END {label}-----")
    return "\n".join(lines)


def restore_armor(text: str) -> str:
    """`text` with every armored block (PEM, OpenSSH, OpenPGP) given its line breaks back if it lost
    them; a block that kept them is left as it is (`\\r\\n` become `\\n`). Text that holds no armored
    block is returned unchanged: the caller's own checks say what it is instead."""
    text = _unescape(text).replace("\r\n", "\n").replace("\r", "\n").strip()
    blocks = list(_ARMOR.finditer(text))
    if not blocks:
        return text
    out = []
    for match in blocks:
        body = match["body"]
        if "\n" in body.strip():
            out.append(match[0])
        else:
            out.append(_rebuild(match["label"], body))
    return "\n".join(out)


def split_lines(entries: Iterable[str]) -> list[str]:
    """Entries of a list field pasted several to a box (or with literal `\\n`): one per line, blank
    lines and `#` comments dropped."""
    lines = []
    for entry in entries:
        for line in _unescape(entry).splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines
