"""Secrets registered with `mailu_flows.redact` never reach a log line, a traceback, a failed state's
message or a pickled exception: as is, line by line, or encoded."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import pickle
import secrets
import subprocess
import traceback
import urllib.parse
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings

from mailu_flows import redact

MASK = "********"


def _secret() -> str:
    """A fresh secret with characters that every encoding changes: quote, backslash, slash, plus."""
    return f"pw'{secrets.token_hex(8)}\\/+\"{secrets.token_hex(4)}"


def _pem_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()


def _body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What a handler on `prefect.flow_runs` (like Prefect's API log handler) and one on the root
    logger would send out, formatted with the traceback the way `logging.Formatter` appends it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    run_logger, root = logging.getLogger("prefect.flow_runs"), logging.getLogger()
    run_logger.addHandler(handler)
    root.addHandler(handler)
    old_level = run_logger.level
    run_logger.setLevel(logging.INFO)
    redact.install()
    try:
        # Prefect's own API handler is on that logger too: outside a flow run it has nowhere to send
        with temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
            yield out
    finally:
        run_logger.removeHandler(handler)
        root.removeHandler(handler)
        run_logger.setLevel(old_level)


def test_a_value_and_each_line_of_a_key_are_masked() -> None:
    value, pem = _secret(), _pem_key()
    redact.register_secret(value)
    redact.register_secret(pem)
    assert redact.redact(f"password is {value}.") == f"password is {MASK}."
    for line in _body_lines(pem):
        assert redact.redact(f"line: {line}") == f"line: {MASK}"
    assert redact.redact(f"key:\n{pem}") == f"key:\n{MASK}\n"
    reflowed = pem.replace("\n", "\r\n")  # another line ending: the lines still match
    assert "-----BEGIN OPENSSH PRIVATE KEY-----" in redact.redact(reflowed)
    assert not any(line in redact.redact(reflowed) for line in _body_lines(pem))


def _encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "urlsafe base64": base64.urlsafe_b64encode(raw).decode(),
        "base64 inside a blob, offset 0": base64.b64encode(raw + b"-and more data").decode(),
        "base64 inside a blob, offset 1": base64.b64encode(b"x" + raw + b"-and more data").decode(),
        "base64 inside a blob, offset 2": base64.b64encode(b"xy" + raw + b"-and more data").decode(),
        "base64 inside a blob, offset 3": base64.b64encode(b"xyz" + raw + b"-and more").decode(),
        "url-encoded": urllib.parse.quote(value, safe=""),
        "url-encoded path": urllib.parse.quote(value),
        "form-encoded": urllib.parse.urlencode({"password": value}),
        "json": json.dumps({"password": value}),
        "json twice": json.dumps({"line": json.dumps({"password": value})}),
        "repr": repr(value),
        "repr of bytes": repr(raw),
    }


@pytest.mark.parametrize("form", list(_encodings("x")))
def test_encoded_forms_of_a_value_are_masked(form: str) -> None:
    value = _secret()
    redact.register_secret(value)
    text = _encodings(value)[form]
    masked = redact.redact(text)
    assert MASK in masked
    # the mask took the encoded value but for the few base64 characters it shares with its neighbours
    assert len(text) - len(masked) + len(MASK) >= len(value) - 8


@pytest.mark.parametrize(
    "form",
    ["repr", "json", "base64", "url-encoded", "traceback of an exception holding it"],
)
def test_a_whole_key_in_encoded_form_is_masked(form: str) -> None:
    pem = _pem_key()
    redact.register_secret(pem)
    if form == "repr":
        text = f"key={pem!r}"  # escaped newlines: the lines are glued by a literal backslash-n
    elif form == "json":
        text = json.dumps({"private_key": pem})
    elif form == "base64":
        text = base64.b64encode(pem.encode()).decode()
    elif form == "url-encoded":
        text = urllib.parse.urlencode({"k": pem})
    else:
        try:
            raise ValueError(f"cannot parse {pem!r}")
        except ValueError as exc:
            text = "".join(traceback.format_exception(exc))
    masked = redact.redact(text)
    assert MASK in masked
    for line in _body_lines(pem):
        assert line not in masked
    assert base64.b64encode(pem.encode()).decode()[8:40] not in masked


def test_short_values_and_armor_lines_are_not_registered() -> None:
    redact.register_secret("abc12")  # too short: would mask ordinary words
    assert redact.redact("abc12 stays") == "abc12 stays"
    redact.register_secret(_pem_key())
    assert redact.redact("-----END OPENSSH PRIVATE KEY-----") == "-----END OPENSSH PRIVATE KEY-----"


def test_a_failed_runs_traceback_through_the_run_logger_is_masked(captured: io.StringIO) -> None:
    """What Prefect's flow engine does on failure: `logger.exception("Encountered exception during
    execution: %r", exc)` on `prefect.flow_runs`; the API handler formats the traceback into the text."""
    value, pem = _secret(), _pem_key()
    redact.register_secret(value)
    redact.register_secret(pem)
    try:
        try:
            raise KeyError(f"no key for {pem!r}")
        except KeyError as inner:
            raise RuntimeError(f"login with {value} failed") from inner
    except RuntimeError as exc:
        logging.getLogger("prefect.flow_runs").exception("Encountered exception during execution: %r", exc)
        caught = exc
    text = captured.getvalue()
    assert "Encountered exception during execution" in text
    assert "Traceback (most recent call last)" in text and "KeyError" in text and "RuntimeError" in text
    assert MASK in text
    assert value not in text and json.dumps(value)[1:-1] not in text and repr(value)[1:-1] not in text
    assert not any(line in text for line in _body_lines(pem))
    # the exception itself is masked in place: the failed state's message and the persisted result
    # Prefect builds from it afterwards carry no secret
    assert value not in str(caught) and MASK in str(caught)
    assert caught.__cause__ is not None and not any(
        line in str(caught.__cause__) for line in _body_lines(pem)
    )
    assert value.encode() not in pickle.dumps(caught)


def test_a_library_logger_record_is_masked_by_the_handler_filter(captured: io.StringIO) -> None:
    """A child logger's record skips its parents' filters but not their handlers' (paramiko, gnupg)."""
    value = _secret()
    redact.register_secret(value)
    logging.getLogger("gnupg.sc-test").warning("import_keys: %r", value.encode())
    logging.getLogger("sc-test-library").error(RuntimeError(value))  # an exception logged as the message
    text = captured.getvalue()
    assert text.count(MASK) == 2 and value not in text and repr(value.encode())[2:-1] not in text


def test_a_command_error_is_masked_in_its_attributes(captured: io.StringIO) -> None:
    value = _secret()
    redact.register_secret(value)
    exc = subprocess.CalledProcessError(
        1, ["docker", "run", "-e", f"DB_PW={value}", "img"], stderr=value.encode()
    )
    redact.redact_exception(exc)
    assert value not in " ".join(exc.cmd) and value.encode() not in exc.stderr
    assert value not in str(exc) and value.encode() not in pickle.dumps(exc)


def test_a_failed_states_message_is_masked() -> None:
    """Prefect builds a failed or crashed state's message from the exception outside logging."""
    from prefect._internal.states import exception_to_failed_state_sync
    from prefect.states import exception_to_crashed_state, exception_to_failed_state

    value = _secret()
    redact.register_secret(value)
    redact.install()
    failed = asyncio.run(exception_to_failed_state(RuntimeError(f"token {value} refused")))
    assert failed.message is not None and value not in failed.message and MASK in failed.message
    failed_sync = exception_to_failed_state_sync(RuntimeError(f"token {value} refused"))
    assert failed_sync.message is not None and value not in failed_sync.message
    crashed = asyncio.run(exception_to_crashed_state(OSError(f"token {value} refused")))
    assert crashed.message is not None and value not in crashed.message and MASK in crashed.message


def test_install_is_idempotent_and_reaches_handlers_added_later() -> None:
    redact.install()
    redact.install()
    run_logger = logging.getLogger("prefect.flow_runs")
    assert run_logger.filters.count(redact._FILTER) == 1
    handler = logging.NullHandler()
    run_logger.addHandler(handler)
    try:
        redact.install()
        assert handler.filters == [redact._FILTER]
    finally:
        run_logger.removeHandler(handler)
