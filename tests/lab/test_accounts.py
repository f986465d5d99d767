"""Accounts as code on the lab's running Mailu (its own code, deployed by the product): the accounts flow
applies two domains, users, aliases and a manager through Mailu's REST API, a second run writes nothing,
a user made by hand survives, and removing a declared user plans a delete that is refused beyond the
limit without force.

Lean: the lab's Mailu as the other lab tests leave it (the module fixture deploys the lab config, a
no-op of a few seconds when it runs). Everything here lives under a stack name and domains of its own
(`acc-<hex>`), so nothing of the lab's own accounts is touched; the fixture removes it all afterwards.
"""

from __future__ import annotations

import imaplib
import secrets
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from lab import endpoints as ep
from mailu_core.accounts import Current, owned_by
from mailu_core.config import StackConfig, load_stack_config, stack_config_from_mapping
from mailu_flows.accounts import MailuAccountsApi, default_password_block
from tests.lab.fixtures.deploying import deploy_state, exception_text

pytestmark = pytest.mark.lab


def _accounts(tag: str, *, users: int = 3, **limits: Any) -> dict[str, Any]:
    one, two = f"one-{tag}.test", f"two-{tag}.test"
    all_users: list[dict[str, Any]] = [
        {"address": f"bo@{one}", "display_name": "Bo", "quota": "1G"},
        {"address": f"cy@{one}", "password_block": f"{tag}-cy-hash", "password_block_holds": "hash"},
        {"address": f"di@{two}", "reply": {"subject": "away", "body": ["back soon"]}},
    ]
    return {
        "domains": [
            {"name": one, "alternatives": [f"alt-{tag}.test"], "managers": [f"bo@{one}"]},
            {"name": two, "max_quota": "2G"},
        ],
        "users": all_users[:users],
        "aliases": [
            {
                "address": f"team@{one}",
                "to": [u["address"] for u in all_users[:users] if one in u["address"]],
            },
            {"address": f"%@{one}", "to": [f"bo@{one}"], "wildcard": True},
        ],
        **limits,
    }


def _with(base: StackConfig, name: str, accounts: dict[str, Any]) -> StackConfig:
    data = base.model_dump(mode="json")
    data["name"], data["accounts"] = name, accounts
    return stack_config_from_mapping(data, source="test_accounts")


def _run(cfg: StackConfig, **kw: Any) -> Any:
    from mailu_flows.flows.accounts import accounts

    return accounts(config=cfg, return_state=True, lock_wait_s=120, **kw)


def _secret(name: str, value: str | None = None) -> str | None:
    """Read (or, with `value`, create) a Prefect Secret block; None when it does not exist."""
    from prefect.blocks.system import Secret

    if value is not None:
        Secret(value=value).save(name, overwrite=True)
        return value
    try:
        block = Secret.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError:
        return None
    assert isinstance(block, Secret)
    return str(block.get())


def _delete_secret(name: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            doc = client.read_block_document_by_name(name, block_type_slug="secret")
        except Exception:
            return
        client.delete_block_document(doc.id)


class Lab:
    """This module's stack (name and domains of its own) on the lab's Mailu."""

    def __init__(self, base: StackConfig, tag: str) -> None:
        self.base, self.tag, self.name = base, tag, f"acc-{tag}"
        self.one, self.two = f"one-{tag}.test", f"two-{tag}.test"
        self.cy_password = secrets.token_urlsafe(12)  # a migrated user's password: only its hash is stored

    def cfg(self, **kw: Any) -> StackConfig:
        return _with(self.base, self.name, _accounts(self.tag, **kw))

    def read(self) -> Current:
        from mailu_flows.blocks import MailuSecrets, load_block
        from mailu_flows.tasks.host import connect_host

        token = load_block(MailuSecrets, self.base.blocks.mailu_secrets).api_token.get_secret_value()
        host = connect_host(self.base)
        try:
            return MailuAccountsApi(self.base, host, token).read()
        finally:
            host.close()

    def call(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from mailu_flows.blocks import MailuSecrets, load_block
        from mailu_flows.tasks.host import connect_host

        token = load_block(MailuSecrets, self.base.blocks.mailu_secrets).api_token.get_secret_value()
        host = connect_host(self.base)
        try:
            return MailuAccountsApi(self.base, host, token).write(calls)
        finally:
            host.close()


@pytest.fixture(scope="module")
def lab_acc(lab: dict[str, Any]) -> Iterator[Lab]:
    base = load_stack_config(Path(lab["stack_config"]))
    state = deploy_state(base)  # the lab's Mailu, as the other lab tests leave it: a no-op when it runs
    assert state.is_completed(), exception_text(state)
    env = Lab(base, secrets.token_hex(3))
    hashed = bcrypt.hashpw(env.cy_password.encode(), bcrypt.gensalt(rounds=4)).decode()
    _secret(f"{env.tag}-cy-hash", "{BLF-CRYPT}" + hashed)  # the migrated hash waits in its Secret block
    try:
        yield env
    finally:
        env.call([{"method": "DELETE", "path": f"/user/hand@{env.one}", "stop_on_error": False}])
        emptied = _run(_with(base, env.name, {}), force=True)  # deletes all this stack owns
        assert emptied.is_completed(), exception_text(emptied)
        for name in [f"{env.tag}-cy-hash"] + [
            default_password_block(env.name, f"{u}") for u in (f"bo@{env.one}", f"di@{env.two}")
        ]:
            _delete_secret(name)
        shutil.rmtree(Path(env.cfg().paths.state_dir), ignore_errors=True)


def _imap_login(user: str, password: str) -> None:
    """A login over IMAPS through Traefik: Dovecot asks Mailu's admin, which checks the stored hash."""
    ctx = ssl.create_default_context(cafile=str(ep.lab_dir() / "ca" / "ca.crt"))
    port = next(e.host_port for e in ep.MAIL_ENTRYPOINTS if e.port == 993)
    client = _Imaps(ep.MAIL_HOSTNAME, port, ssl_context=ctx)
    try:
        client.login(user, password)
    finally:
        client.logout()


class _Imaps(imaplib.IMAP4_SSL):
    """IMAPS to Traefik's loopback entrypoint, the certificate checked for the mail hostname."""

    def _create_socket(self, timeout: float | None) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        wrapped: ssl.SSLSocket = self.ssl_context.wrap_socket(sock, server_hostname=ep.MAIL_HOSTNAME)
        return wrapped


@pytest.fixture(scope="module")
def applied(lab_acc: Lab) -> dict[str, Any]:
    state = _run(lab_acc.cfg())
    assert state.is_completed(), exception_text(state)
    result: dict[str, Any] = state.result()
    return result


def test_the_config_is_applied_through_mailus_api(lab_acc: Lab, applied: dict[str, Any]) -> None:
    one, two, name = lab_acc.one, lab_acc.two, lab_acc.name
    assert applied["applied"] and applied["conflicts"] == []
    now = lab_acc.read()
    domains = {d["name"]: d for d in now.domains}
    assert owned_by(domains[one]["comment"]) == name and owned_by(domains[two]["comment"]) == name
    assert domains[one]["managers"] == [f"bo@{one}"]
    assert domains[two]["max_quota_bytes"] == 2 * 10**9
    assert {"name": f"alt-{lab_acc.tag}.test", "domain": one} in now.alternatives
    users = {u["email"]: u for u in now.users}
    assert users[f"bo@{one}"]["quota_bytes"] == 10**9 and users[f"bo@{one}"]["displayed_name"] == "Bo"
    assert users[f"di@{two}"]["reply_enabled"] and users[f"di@{two}"]["reply_subject"] == "away"
    assert all("password" not in u for u in now.users)  # hashes never leave the admin container
    aliases = {a["email"]: a for a in now.aliases}
    assert sorted(aliases[f"team@{one}"]["destination"]) == [f"bo@{one}", f"cy@{one}"]
    assert aliases[f"%@{one}"]["wildcard"] is True
    # bo's password was generated into its Secret block; cy's migrated hash came from its block
    generated = default_password_block(name, f"bo@{one}")
    assert generated in applied["passwords_generated"]
    password = _secret(generated)
    assert password
    _imap_login(f"bo@{one}", password)
    _imap_login(f"cy@{one}", lab_acc.cy_password)


def test_a_second_apply_makes_no_write(lab_acc: Lab, applied: dict[str, Any]) -> None:
    before = lab_acc.read()
    state = _run(lab_acc.cfg())
    assert state.is_completed(), exception_text(state)
    result = state.result()
    assert result["summary"] == "accounts: 0 create, 0 update, 0 delete" and result["writes"] == 0
    assert lab_acc.read() == before


def test_a_hand_made_user_survives_and_a_removed_user_is_refused_beyond_the_limit(
    lab_acc: Lab, applied: dict[str, Any]
) -> None:
    one, two = lab_acc.one, lab_acc.two
    made = lab_acc.call(
        [
            {
                "method": "POST",
                "path": "/user",
                "body": {"email": f"hand@{one}", "raw_password": secrets.token_hex(8)},
            }
        ]
    )
    assert made[0]["status"] == 200
    # di@two is no longer declared; this config lets no delete pass without force
    fewer = lab_acc.cfg(users=2, always_allowed_deletes=0, max_delete_fraction=0.1)
    dry = _run(fewer, dry_run=True)
    assert dry.is_completed(), exception_text(dry)
    assert dry.result()["deletes"] == [f"user di@{two}"]
    refused = _run(fewer)
    assert refused.is_failed()
    assert "too many deletes: 1 of the" in exception_text(refused) and "force" in exception_text(refused)
    users = {u["email"] for u in lab_acc.read().users}
    assert {f"di@{two}", f"hand@{one}"} <= users
    forced = _run(fewer, force=True)
    assert forced.is_completed(), exception_text(forced)
    assert forced.result()["deletes"] == [f"user di@{two}"]
    users = {u["email"] for u in lab_acc.read().users}
    assert f"di@{two}" not in users and f"hand@{one}" in users and f"bo@{one}" in users
