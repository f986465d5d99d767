"""Keep secret values out of run logs, even when a library logs them.

Prefect only redacts PREFECT_API_KEY. Flows register every secret they load (`register_secret`) and
this filter, installed on Prefect's run loggers and the root logger, replaces each occurrence with
`********` in the message and its arguments before any handler (console or API) sees it.
"""

from __future__ import annotations

import logging
import threading

_MASK = "********"
_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Mask `value` (and each of its lines, for PEM keys) in every log record from now on."""
    candidates = {value.strip(), *(line.strip() for line in value.splitlines())}
    with _lock:
        _secrets.update(c for c in candidates if len(c) >= 6 and not c.startswith("-----"))


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


_installed = False


def install() -> None:
    """Install the filter on the loggers whose records reach the console and the Prefect API."""
    global _installed
    if _installed:
        return
    flt = RedactSecrets()
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect", ""):
        logging.getLogger(name).addFilter(flt)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
    _installed = True
