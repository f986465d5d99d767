"""Accounts as code, engine: read Mailu through its REST API, plan (mailu_core/accounts.py), apply.

The API is called the way the deploy calls it (mailu_flows/deploy/mailu_api.py): from inside the admin
container over SSH, the token and any initial password on stdin, one round trip to read everything and
one to write the plan. Passwords are resolved before the first write (loaded from, or generated into,
their blocks by the flow's `PasswordStore`), so a missing block stops the run with nothing changed.

Two things Mailu's API cannot do are done with Mailu's own CLI in the same container, on stdin:
a user created from a migrated password hash (POST /user takes a plain password only) gets its hash
with `flask mailu config-import --update` right after its creation.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailu_core.accounts import AccountUser, Change, Current, Plan, TooManyDeletes, is_password_hash, plan
from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_flows import dockercmd
from mailu_flows.deploy.mailu_api import api_calls
from mailu_flows.host import Host

__all__ = [
    "AccountsApi",
    "AccountsApiError",
    "AccountsResult",
    "MailuAccountsApi",
    "PasswordStore",
    "PasswordUnavailable",
    "TooManyDeletes",
    "UnresolvedConflicts",
    "default_password_block",
    "run_accounts",
]

Log = Callable[[str], None]
PASSWORD_LENGTH = 24  # token_urlsafe(24): 32 characters


class AccountsApiError(MailuFlowsError, RuntimeError):
    """Mailu's API refused a call: what was asked, its answer, and what had already been done."""


class PasswordUnavailable(MailuFlowsError, RuntimeError):
    """A user's initial password (or migration hash) cannot be had: nothing was changed."""


class UnresolvedConflicts(MailuFlowsError, RuntimeError):
    """The plan was applied except where Mailu holds something this stack must not overwrite."""


class PasswordStore(Protocol):
    """Where initial passwords live (the flow: Prefect `Secret` blocks)."""

    def load(self, name: str) -> str | None:
        """The block's value, or None when no such block exists."""

    def save(self, name: str, value: str) -> None:
        """Create the block with `value` (never overwrites one: only called when `load` found none)."""


class AccountsApi(Protocol):
    """Mailu's REST API as the engine uses it: list everything, run calls in order."""

    def read(self) -> Current: ...

    def write(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def set_password_hash(self, email: str, password_hash: str) -> None: ...


def default_password_block(stack: str, address: str) -> str:
    """`<stack>-user-<address>` with every character outside [a-z0-9] as '-', cut to the block name limit."""
    slug = re.sub(r"[^a-z0-9]+", "-", address.lower()).strip("-")
    return f"{stack}-user-{slug}"[:100].rstrip("-")


class MailuAccountsApi:
    """The API inside the stack's admin container, reached over the flow's SSH connection."""

    def __init__(self, cfg: StackConfig, host: Host, token: str) -> None:
        self.cfg, self.host, self._token = cfg, host, token

    def _calls(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return api_calls(
            self.host, dockercmd.stack_compose(self.cfg), self.cfg.mailu.api_path, self._token, calls
        )

    def read(self) -> Current:
        paths = ["/domain", "/alternative", "/relay", "/user", "/alias"]
        answers = self._calls([{"method": "GET", "path": p} for p in paths])
        for path, answer in zip(paths, answers, strict=False):
            if answer["status"] != 200:
                raise AccountsApiError(
                    f"GET {path}: HTTP {answer['status']} {_message(answer)} (is the API token in the "
                    f"{self.cfg.blocks.mailu_secrets!r} block Mailu's API_TOKEN?)"
                )
        if len(answers) != len(paths):
            raise AccountsApiError(f"Mailu's API answered {len(answers)} of {len(paths)} reads")
        domains, alternatives, relays, users, aliases = (list(a["body"]) for a in answers)
        return Current(domains, alternatives, relays, users, aliases)

    def write(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._calls(calls)

    def set_password_hash(self, email: str, password_hash: str) -> None:
        """Mailu's own `config-import --update`, the hash on stdin (never on a command line)."""
        doc = json.dumps({"user": [{"email": email, "password": password_hash}]})
        script = "cd /app && flask mailu config-import --update --quiet -"
        cmd = shlex.join(
            dockercmd.compose_exec(dockercmd.stack_compose(self.cfg), "admin", ["sh", "-c", script])
        )
        self.host.run(cmd, stdin=doc.encode())


def _message(answer: dict[str, Any]) -> str:
    body = answer.get("body")
    if isinstance(body, dict):
        return str(body.get("message") or body.get("errors") or "")[:300]
    return str(body or "")[:300]


@dataclass
class AccountsResult:
    """What a run planned and did; `plan_markdown` is the artifact's table."""

    summary: str
    plan_text: str
    plan_markdown: str
    applied: bool
    writes: int = 0
    creates: list[str] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    passwords_generated: list[str] = field(default_factory=list)  # block names, never values


def _body_for(change: Change) -> dict[str, Any]:
    return {k: v for k, v in (change.new or {}).items()}


def calls_for(change: Change, password: str | None = None) -> list[dict[str, Any]]:
    """The API calls that make one change (an alternative moves by delete + create: no PATCH for it)."""
    kind, key, new = change.kind, change.key, _body_for(change)
    if change.action == "delete":
        if kind == "manager":
            domain, user = key.split(":", 1)
            return [{"method": "DELETE", "path": f"/domain/{domain}/manager/{user}"}]
        return [{"method": "DELETE", "path": f"/{kind}/{key}"}]
    if kind == "manager":
        domain, user = key.split(":", 1)
        return [{"method": "POST", "path": f"/domain/{domain}/manager", "body": {"user_email": user}}]
    if kind == "alternative":
        create = {"method": "POST", "path": "/alternative", "body": {"name": key, "domain": new["domain"]}}
        if change.action == "update":
            return [{"method": "DELETE", "path": f"/alternative/{key}"}, create]
        return [create]
    if change.action == "update":
        changed = {k: n for k, (_, n) in change.changed().items()}
        if kind == "user" and "forward_destination" in changed and not changed["forward_destination"]:
            changed.pop("forward_destination")  # Mailu refuses an empty list; forward_enabled false is enough
        return [{"method": "PATCH", "path": f"/{kind}/{key}", "body": changed}]
    # create
    if kind == "domain":
        return [{"method": "POST", "path": "/domain", "body": {"name": key, **new}}]
    if kind == "relay":
        body = {"name": key, **new}
        if not body.get("smtp"):
            body.pop("smtp", None)
        return [{"method": "POST", "path": "/relay", "body": body}]
    if kind == "user":
        body = {"email": key, **new, "raw_password": password}
        if not body.get("forward_destination"):
            body.pop("forward_destination", None)
        return [{"method": "POST", "path": "/user", "body": body}]
    if kind == "alias":
        return [{"method": "POST", "path": "/alias", "body": {"email": key, **new}}]
    raise ValueError(f"no API call for {change}")


def _passwords(
    cfg: StackConfig, creates: list[Change], store: PasswordStore, log: Log
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(address -> initial password, address -> migration hash, blocks created). Generated passwords are
    saved to their blocks before any API write, so a failed run never loses one."""
    users: dict[str, AccountUser] = {u.address: u for u in cfg.accounts.users}
    plain: dict[str, str] = {}
    hashes: dict[str, str] = {}
    generated: list[str] = []
    missing: list[str] = []
    for change in creates:
        if change.kind != "user":
            continue
        user = users[change.key]
        block = user.password_block or default_password_block(cfg.name, user.address)
        value = store.load(block)
        if user.password_block_holds == "hash":
            if value is None:
                missing.append(
                    f"user {user.address!r}: the Secret block {block!r} does not exist (it must "
                    "hold the migrated password hash)"
                )
            elif not is_password_hash(value.strip()):
                missing.append(
                    f"user {user.address!r}: the Secret block {block!r} does not hold a password "
                    "hash such as {BLF-CRYPT}$2b$12$… (password_block_holds: hash)"
                )
            else:
                hashes[user.address] = value.strip()
                plain[user.address] = secrets.token_urlsafe(PASSWORD_LENGTH)  # replaced by the hash at once
            continue
        if value is None:
            value = secrets.token_urlsafe(PASSWORD_LENGTH)
            store.save(block, value)
            generated.append(block)
            log(f"user {user.address}: initial password generated into Secret block {block!r}")
        elif not value:
            missing.append(f"user {user.address!r}: the Secret block {block!r} is empty")
            continue
        plain[user.address] = value
    if missing:
        raise PasswordUnavailable("nothing was changed:\n" + "\n".join(f"- {m}" for m in missing))
    return plain, hashes, generated


def run_accounts(
    cfg: StackConfig,
    api: AccountsApi,
    store: PasswordStore,
    *,
    dry_run: bool = False,
    force: bool = False,
    adopt: bool = False,
    log: Log = lambda _m: None,
    on_plan: Callable[[Plan], None] = lambda _p: None,
) -> AccountsResult:
    """Read, plan, refuse an unsafe plan (unless `force`), apply in order; fail at the end when a
    conflict was left (the rest is applied). A plan with no changes makes no API write."""
    current = api.read()
    admin = f"{cfg.mailu.postmaster}@{cfg.mailu.domain}"
    the_plan = plan(
        cfg.accounts,
        current,
        cfg.name,
        protected_domains=cfg.mail_domains,
        protected_users=[admin],
        adopt=adopt,
    )
    on_plan(the_plan)
    log(the_plan.render_text())
    result = AccountsResult(
        summary=the_plan.summary(),
        plan_text=the_plan.render_text(),
        plan_markdown=the_plan.render_markdown(),
        applied=False,
        creates=[f"{c.kind} {c.key}" for c in the_plan.creates],
        updates=[f"{c.kind} {c.key}" for c in the_plan.updates],
        deletes=[f"{c.kind} {c.key}" for c in the_plan.deletes],
        conflicts=[str(c) for c in the_plan.conflicts],
    )
    if dry_run:
        return result
    the_plan.raise_if_unsafe(force=force)
    if not the_plan.empty:
        plain, hashes, generated = _passwords(cfg, the_plan.creates, store, log)
        result.passwords_generated = generated
        first_login = {u.address for u in cfg.accounts.users if u.change_password_at_first_login}
        calls: list[dict[str, Any]] = []
        labels: list[str] = []
        for change in the_plan.changes:
            for call in calls_for(change, plain.get(change.key)):
                if change.kind == "user" and call["method"] == "POST" and change.key in first_login:
                    call["body"]["change_pw_next_login"] = True
                calls.append(call)
                labels.append(str(change))
        answers = api.write(calls)
        done = [labels[i] for i, a in enumerate(answers) if int(a["status"]) < 300]
        result.writes = len(answers)
        if len(answers) < len(calls) or any(int(a["status"]) >= 300 for a in answers):
            failed = answers[-1]
            call = calls[len(answers) - 1]
            raise AccountsApiError(
                f"{call['method']} {call['path']} ({labels[len(answers) - 1]}): HTTP {failed['status']} "
                f"{_message(failed)}; done before it: {', '.join(done) or 'nothing'}; not done: "
                f"{len(calls) - len(answers) + 1} call(s). Re-running plans what is left."
            )
        for email, password_hash in hashes.items():
            api.set_password_hash(email, password_hash)
            log(f"user {email}: password hash from its block set (Mailu's config-import)")
        result.applied = True
    if the_plan.conflicts:
        raise UnresolvedConflicts(
            f"{the_plan.summary()}; applied everything else. Left alone:\n"
            + "\n".join(f"- {c}" for c in the_plan.conflicts)
        )
    result.applied = True
    return result
