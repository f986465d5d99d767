"""Keep secret values out of run logs, state messages and persisted exceptions, even when a library
logs them, a traceback carries them, or they travel encoded.

Prefect only redacts PREFECT_API_KEY. Flows register every secret they load (`register_secret`);
`install()` then masks each occurrence with `********`:

- in log records (message, arguments, traceback text, stack text), through a filter on Prefect's run
  loggers, the root logger and every handler they have: a failed run's traceback reaches the API
  through the logger `prefect.flow_runs` with `exc_info`, whose text the filter renders and masks;
- in the exception object itself (its arguments and plain attributes, along its cause chain), so
  the failed state's message and the exception Prefect persists as the run's result are masked too
  (Prefect logs "Encountered exception during execution" before it builds the failed state);
- in the state message Prefect builds from an exception (`format_exception`), for the crash paths
  that log nothing first.

A value is masked as is and in the forms it takes on its way into text: each line of a multi-line
value (a PEM or armored key is cut into lines by logs and tracebacks), base64 (standard and URL-safe,
at any alignment inside a longer base64 blob), URL- and form-encoded, JSON-escaped, and repr'd
(escaped quotes, backslashes and newlines).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
import threading
import urllib.parse
from typing import Any

_MASK = "********"
_MIN_LENGTH = 6  # shorter values would mask ordinary words
_MIN_ENCODED_LENGTH = 8  # a derived form shorter than this is too likely to occur by chance
_ARMOR_LINE = re.compile(r"^(-----|[A-Za-z-]+: )")  # BEGIN/END lines, armor headers (Comment: ...)
_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _base64_forms(data: bytes) -> set[str]:
    """`data` base64-encoded on its own, and the part of its encoding that is the same wherever it sits
    inside a longer encoded blob (three byte alignments; the edge characters depend on the neighbours)."""
    forms = {base64.b64encode(data).decode(), base64.b64encode(data).decode().rstrip("=")}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        forms.add(encoded[4 if shift else 0 : (shift + len(data)) // 3 * 4])
    forms |= {f.replace("+", "-").replace("/", "_") for f in forms}
    return forms


def _text_forms(piece: str) -> set[str]:
    """How `piece` reads once URL-encoded, JSON-escaped (once, or twice: a JSON log line inside a JSON
    body) or repr'd."""
    json_once = json.dumps(piece)[1:-1]
    return {
        urllib.parse.quote(piece, safe=""),
        urllib.parse.quote(piece),
        urllib.parse.quote_plus(piece),
        json_once,
        json.dumps(piece, ensure_ascii=False)[1:-1],
        json.dumps(json_once)[1:-1],
        repr(piece)[1:-1],
        repr(piece.encode())[2:-1],
    }


def secret_forms(value: str) -> set[str]:
    """Every string `register_secret(value)` masks (exposed for tests)."""
    stripped = value.strip()
    pieces = {stripped}
    if "\n" in stripped:
        pieces |= {line.strip() for line in stripped.splitlines() if not _ARMOR_LINE.match(line.strip())}
    pieces = {p for p in pieces if len(p) >= _MIN_LENGTH}
    if not pieces:
        return set()
    forms = set(pieces)
    for piece in pieces | {value}:  # the value as given too: a key's base64 includes its final newline
        forms |= {f for f in _text_forms(piece) if len(f) >= _MIN_LENGTH}
        forms |= {f for f in _base64_forms(piece.encode()) if len(f) >= _MIN_ENCODED_LENGTH}
    return forms


def register_secret(value: str) -> None:
    """Mask `value` (each of its lines, and their encoded forms) in every log record from now on."""
    forms = secret_forms(value)
    if not forms:
        return
    global _pattern
    with _lock:
        if not forms <= _secrets:
            _secrets.update(forms)
            _pattern = None


def _compiled() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        if _pattern is None and _secrets:
            # longest first: at each position the longest registered form is the one replaced
            _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))
        return _pattern


def redact(text: str) -> str:
    """`text` with every registered secret, in any of its forms, replaced by `********`."""
    pattern = _compiled()
    if pattern is None:
        return text
    return pattern.sub(_MASK, text)


def _redacted(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with secrets masked when it is text (str, bytes, a list/tuple of them, or a
    dataclass holding them); `value` itself when nothing changed or it is something else."""
    if isinstance(value, str):
        cleaned = redact(value)
        return value if cleaned == value else cleaned
    if isinstance(value, bytes):
        text = value.decode("utf-8", "surrogateescape")
        cleaned = redact(text)
        return value if cleaned == text else cleaned.encode("utf-8", "surrogateescape")
    if depth >= 2:
        return value
    if isinstance(value, list | tuple):
        items = [_redacted(v, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name, None)
            new = _redacted(old, depth + 1)
            if new is not old and new != old:
                changes[f.name] = new
        if changes:
            try:
                return dataclasses.replace(value, **changes)
            except (TypeError, ValueError):
                return value
    return value


def redact_exception(exc: BaseException) -> None:
    """Mask secrets inside `exc` and its causes, in place: arguments and plain attributes (a command
    line, its output), so every later `str()`, traceback and pickle of it is clean."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        try:
            new_args = _redacted(current.args)
            if new_args is not current.args:
                current.args = tuple(new_args)
            for name, old in list(vars(current).items()):
                new = _redacted(old)
                if new is not old and new != old:
                    setattr(current, name, new)
        except (AttributeError, TypeError):  # read-only attributes: str() is still masked where logged
            pass
        todo += [current.__cause__, current.__context__]
        todo += list(getattr(current, "exceptions", ()) or ())


def redact_record(record: logging.LogRecord) -> None:
    """Mask secrets in a log record: its message with arguments, its exception (the object and the
    rendered traceback, which replaces `exc_info` so no handler renders the original) and stack."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed format: keep the raw parts, masked
        message = f"{record.msg} {record.args}"
    cleaned = redact(message)
    if cleaned != message or record.args or not isinstance(record.msg, str):
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        redact_exception(record.exc_info[1])
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        record.exc_text, record.exc_info = redact(text), None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            redact_record(record)
        return True


_FILTER = RedactSecrets()
_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.extra", "prefect", "")


def _wrap_format_exception() -> None:
    """Prefect builds a failed or crashed state's message with `prefect.states.format_exception`,
    outside logging; mask its result (it is looked up by name at call time in both modules)."""
    import prefect._internal.states as internal_states
    import prefect.states as states

    original = states.format_exception
    if getattr(original, "_mailu_redacting", False):
        return

    def format_exception(exc: BaseException, tb: Any = None) -> str:
        redact_exception(exc)
        return redact(original(exc, tb))

    format_exception._mailu_redacting = True  # type: ignore[attr-defined]
    for module in (states, internal_states):
        if getattr(module, "format_exception", None) is original:
            module.format_exception = format_exception  # type: ignore[attr-defined]


def install() -> None:
    """Put the filter on the loggers whose records reach the console and the Prefect API and on each
    of their handlers (records of child loggers skip a parent's filters, never its handlers), and
    mask Prefect's state messages. Idempotent; call it at each flow's start, after Prefect configured
    its logging, so handlers configured since the last call get the filter too."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    _wrap_format_exception()
