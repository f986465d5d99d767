"""Accounts as code, pure part: the `accounts` section of the stack config and its plan against Mailu.

The section declares domains (with their alternative domains and managers), users, aliases and
relays. It never holds a password or a hash: a user's initial password comes from a Prefect `Secret` block
(`password_block`; generated and saved there when the block does not exist yet), or that block holds
the user's existing password hash for a migration (`password_block_holds: hash`). Passwords are set
when a user is created, never after (the user changes them).

Checks across entries run before any API call and name the entry: an alias or manager that points
at no declared user, a user in a domain neither this section nor the stack declares, a quota that
is not a size, an address declared twice.

The plan follows the DNS plan (mailu_core/dns/plan.py), octoDNS-style:
- ownership lives in Mailu's own data, beside the object: the comment of a domain, user, alias or
  relay carries `[mailu-flows:<stack>]`. A restore of admin's database brings the marks back with the
  objects, so ownership never disagrees with the data. Alternative domains and managers have no
  comment in Mailu: on a domain this config owns they are managed whole (the config's list is the
  truth); on a domain it does not own (the stack's primary domain, made by deploy) they are only added;
- an object Mailu holds without our mark, at an address this config declares, is a `Conflict` with
  the fix spelled out, never overwritten, unless `adopt` takes it over;
- the stack's own mail domains and its admin user (deploy makes them) are never deleted here, and an
  owned domain that still holds users or aliases we do not own is not deleted (Mailu would delete
  them with it);
- `Plan.raise_if_unsafe` refuses, unless forced, more deletes than `max(always_allowed_deletes,
  max_delete_fraction x owned objects)`: a delete of a user or domain loses mail;
- the same config planned against what the first apply left is empty: no API writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, StringConstraints, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from mailu_core.errors import MailuFlowsError
from mailu_core.fields import (
    MAIL_ADDRESS_PATTERN,
    MAIL_DOMAIN,
    BlockName,
    Checked,
    DnsName,
    MailAddress,
    newline_safe_patterns,
    schema_pattern,
)

__all__ = [
    "AccountAlias",
    "AccountDomain",
    "AccountUser",
    "Accounts",
    "AutoReply",
    "Change",
    "Conflict",
    "Current",
    "Forward",
    "Kind",
    "Plan",
    "Relay",
    "TooManyDeletes",
    "marker",
    "owned_by",
    "parse_size",
    "plan",
    "with_marker",
]

# The error type `mailu_core.config.ConfigError` splits into one issue per (field, detail) pair (its
# `_CROSS_FIELD`); this module cannot import config (config imports it).
_CROSS_FIELD = "invalid_fields"


def _fail(problems: Sequence[tuple[str, str]]) -> None:
    if problems:
        summary = "; ".join(f"{where}: {detail}" for where, detail in problems)
        raise PydanticCustomError(
            _CROSS_FIELD, "{summary}", {"summary": summary, "problems": [list(p) for p in problems]}
        )


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=newline_safe_patterns)


# --- field types ---------------------------------------------------------------------------------

_DOMAIN = MAIL_DOMAIN
EMAIL_PATTERN = MAIL_ADDRESS_PATTERN
# Mailu's wildcard aliases match the local part with SQL LIKE: '%' any run, '_' one character.
ALIAS_PATTERN = rf"^[a-z0-9%_](?:[a-z0-9._+%-]{{0,62}}[a-z0-9%_])?@{_DOMAIN}$"

Email = MailAddress
AliasAddress = Annotated[
    str,
    StringConstraints(max_length=320),
    Checked(
        ALIAS_PATTERN,
        "a lowercase mail address such as sales@example.com; with wildcard: true its local part may use "
        "'%' (any run of characters) and '_' (one character), e.g. %@example.com",
    ),
]
_TEXT = r"[^\x00-\x1f\x7f]*"
# Mailu keeps comments in 255 characters: 160 of ours, a space and our mark (at most 77) fit.
Comment = Annotated[
    str,
    StringConstraints(max_length=160),
    Checked(rf"^(?!.*\[mailu-flows:){_TEXT}$", "one line of text (without '[mailu-flows:', our mark)"),
]
DisplayName = Annotated[str, StringConstraints(max_length=160), Checked(rf"^{_TEXT}$", "one line of text")]
Subject = Annotated[str, StringConstraints(max_length=255), Checked(rf"^{_TEXT}$", "one line of text")]
ReplyLine = Annotated[str, StringConstraints(max_length=1000), Checked(rf"^{_TEXT}$", "one line of text")]
RelayHost = Annotated[
    str,
    StringConstraints(max_length=80),
    Checked(
        r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$",
        "a host, [address] or either with :port, e.g. smtp.example.com:25 or [192.0.2.10]",
    ),
]
# A password hash as Mailu stores it ({SCHEME} prefix optional; passlib's modular crypt format).
PASSWORD_HASH_PATTERN = r"^(?:\{[A-Z0-9-]{2,20}\})?\$[A-Za-z0-9-]{1,20}\$[A-Za-z0-9./$=,+-]{8,300}$"


def is_password_hash(value: str) -> bool:
    """True for a crypt-style hash such as {BLF-CRYPT}$2b$12$… or $pbkdf2-sha256$…."""
    return re.fullmatch(PASSWORD_HASH_PATTERN, value) is not None


# Sizes: decimal units as Mailu's own DEFAULT_QUOTA (1000000000 = 1G), binary with 'i'.
SIZE_PATTERN = r"^(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,3})?(?:[KMGT]i?)?B?$"
_UNIT = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_UNIT.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})
SIZE_HELP = "a size such as 1G, 500M or 2GiB (G = 10^9 bytes as Mailu counts, GiB = 2^30) or bytes"


def parse_size(text: str) -> int:
    """Bytes in a size such as `1G`, `1.5GB`, `500M`, `2GiB` or `1048576`; ValueError otherwise."""
    m = re.fullmatch(r"((?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,3})?)((?:[KMGT]i?)?)B?", text)
    if not m:
        raise ValueError(f"{text!r} is not {SIZE_HELP}")
    number, unit = m.groups()
    whole, _, frac = number.partition(".")
    scale = _UNIT[unit]
    value = int(whole) * scale + (int(frac) * scale) // (10 ** len(frac)) if frac else int(whole) * scale
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive size ({SIZE_HELP})")
    return value


class _SchemaPattern:
    """A pattern in the JSON schema only (the Prefect server refuses a bad value); Python checks the
    value in the entry's validator instead, so that the message names the entry."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = schema_pattern(self.pattern)
        return json_schema


SizeText = Annotated[str, StringConstraints(max_length=24), _SchemaPattern(SIZE_PATTERN)]


def _size_field(description: str) -> Any:
    return Field(None, description=description)


def _domain_of(address: str) -> str:
    return address.rsplit("@", 1)[1]


# --- the section -----------------------------------------------------------------------------------


class Forward(_Model):
    """Automatic forwarding (Mailu's forward_*): any address, inside the stack or outside."""

    to: list[Email] = Field(min_length=1, max_length=20, description="Forward destinations.")
    keep: bool = Field(True, description="Keep a copy in the mailbox.")


class AutoReply(_Model):
    """An automatic reply (out of office), between optional dates."""

    subject: Subject = Field("", description="Subject of the reply.")
    body: list[ReplyLine] = Field(
        min_length=1, max_length=50, description="The reply's text, one item per line (one-line strings)."
    )
    start: date | None = Field(None, description="First day (YYYY-MM-DD); none: Mailu's default.")
    end: date | None = Field(None, description="Last day (YYYY-MM-DD); none: Mailu's default.")


class AccountUser(_Model):
    """A mailbox. Its password is set once, at creation (the user changes it afterwards)."""

    address: Email = Field(description="The mailbox address; its domain must be declared.")
    display_name: DisplayName | None = Field(None, description="Display name (none: not managed).")
    comment: Comment | None = Field(None, description="Shown on Mailu's user list (our mark is appended).")
    quota: SizeText | None = _size_field("Mailbox quota, e.g. 1G or 500M (none: not managed).")
    enabled: bool = Field(True, description="A disabled user cannot log in or receive mail.")
    global_admin: bool = Field(False, description="Mailu global administrator.")
    enable_imap: bool = Field(True, description="Allow IMAP.")
    enable_pop: bool = Field(True, description="Allow POP3.")
    allow_spoofing: bool = Field(False, description="Allow sending as any address.")
    forward: Forward | None = Field(None, description="Automatic forwarding (none: off).")
    reply: AutoReply | None = Field(None, description="Automatic reply (none: off).")
    change_password_at_first_login: bool = Field(
        False, description="Ask the user to change the initial password at the first login."
    )
    password_block: BlockName | None = Field(
        None,
        description="Prefect Secret block with the initial password; when it does not exist, a password is "
        "generated and saved there. Default: <stack>-user-<address, '@' and '.' as '-'>.",
    )
    password_block_holds: Literal["password", "hash"] = Field(
        "password",
        description="hash: the block holds the user's existing password hash (a migration), e.g. "
        "{BLF-CRYPT}$2b$12$...; the user is created with it as is (the block must exist).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AccountUser:
        who = repr(self.address)
        problems: list[tuple[str, str]] = []
        if self.quota is not None:
            try:
                parse_size(self.quota)
            except ValueError as exc:
                problems.append(("quota", f"user {who}: {exc}"))
        reply = self.reply
        if reply is not None and reply.start and reply.end and reply.end < reply.start:
            problems.append(("reply.end", f"user {who}: {reply.end} is before start {reply.start}"))
        if self.forward is not None and self.address in self.forward.to:
            problems.append(("forward.to", f"user {who} forwards to itself"))
        _fail(problems)
        return self


class AccountAlias(_Model):
    """An alias: mail to `address` goes to the users in `to` (Mailu's API takes only its own users)."""

    address: AliasAddress = Field(description="The alias address (with wildcard: '%' and '_' allowed).")
    to: list[Email] = Field(min_length=1, max_length=50, description="Declared users it delivers to.")
    wildcard: bool = Field(False, description="Match the local part with SQL LIKE ('%', '_'), as Mailu does.")
    comment: Comment | None = Field(None, description="Shown on Mailu's alias list (our mark is appended).")

    @model_validator(mode="after")
    def _consistent(self) -> AccountAlias:
        local = self.address.rsplit("@", 1)[0]
        if "%" in local and not self.wildcard:
            _fail([("wildcard", f"alias {self.address!r}: '%' matches anything only with wildcard: true")])
        return self


class AccountDomain(_Model):
    """A mail domain, with its alternative domains (same mailboxes) and its managers."""

    name: DnsName = Field(description="The domain, e.g. example.com.")
    alternatives: list[DnsName] = Field(
        default_factory=list, description="Alternative domains: mail to user@alternative reaches user@name."
    )
    managers: list[Email] = Field(default_factory=list, description="Declared users who manage the domain.")
    max_users: int = Field(-1, ge=-1, le=1_000_000, description="-1: no limit.")
    max_aliases: int = Field(-1, ge=-1, le=1_000_000, description="-1: no limit.")
    max_quota: SizeText | None = _size_field("Largest quota a manager may give (none: no limit).")
    signup_enabled: bool = Field(False, description="Let anyone sign up for a mailbox.")
    comment: Comment | None = Field(None, description="Shown on Mailu's domain list (our mark is appended).")

    @model_validator(mode="after")
    def _consistent(self) -> AccountDomain:
        problems: list[tuple[str, str]] = []
        if self.max_quota is not None:
            try:
                parse_size(self.max_quota)
            except ValueError as exc:
                problems.append(("max_quota", f"domain {self.name!r}: {exc}"))
        for i, manager in enumerate(self.managers):
            if self.managers.index(manager) != i:
                problems.append((f"managers[{i}]", f"domain {self.name!r}: {manager!r} listed twice"))
        _fail(problems)
        return self


class Relay(_Model):
    """A relayed domain: Mailu accepts its mail and passes it to `smtp` (or the domain's MX)."""

    name: DnsName = Field(description="The relayed domain.")
    smtp: RelayHost | None = Field(None, description="Where to relay (none: the domain's MX).")
    comment: Comment | None = Field(None, description="Shown on Mailu's relay list (our mark is appended).")


class Accounts(_Model):
    """Mailu's domains, users, aliases and relays, applied through its REST API by the accounts flow."""

    domains: list[AccountDomain] = Field(default_factory=list, description="Mail domains this stack manages.")
    users: list[AccountUser] = Field(default_factory=list, description="Mailboxes.")
    aliases: list[AccountAlias] = Field(default_factory=list, description="Aliases.")
    relays: list[Relay] = Field(default_factory=list, description="Relayed domains.")
    max_delete_fraction: float = Field(
        0.3,
        gt=0,
        le=1,
        description="A plan deleting more than this fraction of the objects we own is refused without force.",
    )
    always_allowed_deletes: int = Field(
        1, ge=0, le=1000, description="This many deletes always pass (0: every delete needs force)."
    )

    @property
    def empty(self) -> bool:
        return not (self.domains or self.users or self.aliases or self.relays)

    def problems(self, stack_domains: Sequence[str], stack_admin: str) -> list[tuple[str, str]]:
        """What this section gets wrong given the stack (its mail domains, its admin): (where, detail),
        `where` relative to the section. Runs in the stack config's validation, before any API call."""
        out: list[tuple[str, str]] = []
        declared = [d.name for d in self.domains]
        mailbox_domains = set(declared) | set(stack_domains)
        users = {u.address for u in self.users} | {stack_admin}

        # every name Mailu keeps in one namespace (fqdn_in_use): domains, alternatives, relays
        names: dict[str, str] = {d: "mailu.domain/alternative_domains (the stack's)" for d in stack_domains}
        for i, d in enumerate(self.domains):
            where = f"domains[{i}]"
            if d.name in names and d.name not in stack_domains:
                out.append((f"{where}.name", f"domain {d.name!r} is declared twice (also {names[d.name]})"))
            names.setdefault(d.name, where)
        for i, d in enumerate(self.domains):
            for j, alt in enumerate(d.alternatives):
                where = f"domains[{i}].alternatives[{j}]"
                if alt in names:
                    out.append((where, f"alternative {alt!r} of {d.name!r} is already {names[alt]}"))
                names.setdefault(alt, where)
        for i, r in enumerate(self.relays):
            where = f"relays[{i}].name"
            if r.name in names:
                out.append((where, f"relay {r.name!r} is already {names[r.name]}"))
            names.setdefault(r.name, where)

        addresses: dict[str, str] = {}
        entries = [("users", i, u.address) for i, u in enumerate(self.users)]
        entries += [("aliases", i, a.address) for i, a in enumerate(self.aliases)]
        for kind, i, address in entries:
            where = f"{kind}[{i}]"
            if address in addresses:
                out.append(
                    (
                        f"{where}.address",
                        f"address {address!r} is declared twice (also {addresses[address]})",
                    )
                )
            addresses.setdefault(address, where)
            domain = _domain_of(address)
            if domain not in mailbox_domains:
                parent = next((d.name for d in self.domains if domain in d.alternatives), None)
                hint = (
                    f"{domain!r} is an alternative of {parent!r}: use @{parent}"
                    if parent
                    else f"add {domain!r} to accounts.domains"
                )
                what = "user" if kind == "users" else "alias"
                out.append((f"{where}.address", f"{what} {address!r} is in an undeclared domain: {hint}"))
        if stack_admin in addresses and addresses[stack_admin].startswith("aliases"):
            out.append((f"{addresses[stack_admin]}.address", f"{stack_admin!r} is the stack's admin user"))
        for i, u in enumerate(self.users):
            if u.address == stack_admin and not (u.global_admin and u.enabled):
                out.append(
                    (
                        f"users[{i}]",
                        f"user {stack_admin!r} is the stack's admin (the deploy logs in with it): it must "
                        "stay global_admin: true and enabled: true",
                    )
                )

        for i, a in enumerate(self.aliases):
            for j, dest in enumerate(a.to):
                if dest not in users:
                    out.append(
                        (
                            f"aliases[{i}].to[{j}]",
                            f"alias {a.address!r} points nowhere: {dest!r} is not a declared user "
                            "(Mailu's API delivers aliases to its own users only); declare the user, or "
                            "use a user's forward for an outside address",
                        )
                    )
        for i, d in enumerate(self.domains):
            for j, manager in enumerate(d.managers):
                if manager not in users:
                    out.append(
                        (
                            f"domains[{i}].managers[{j}]",
                            f"manager {manager!r} of {d.name!r} is not a declared user; declare it in "
                            "accounts.users",
                        )
                    )
        return out


# --- ownership -------------------------------------------------------------------------------------

_MARK = re.compile(r"\s*\[mailu-flows:([a-z0-9-]{1,63})\]\s*$")


def marker(stack: str) -> str:
    return f"[mailu-flows:{stack}]"


def with_marker(comment: str | None, stack: str) -> str:
    """The comment Mailu keeps for an object this stack owns: the declared comment, then our mark."""
    return f"{comment} {marker(stack)}" if comment else marker(stack)


def owned_by(comment: str | None) -> str | None:
    """The stack whose mark a Mailu comment carries, or None (made by hand, or by another tool)."""
    m = _MARK.search(comment or "")
    return m.group(1) if m else None


# --- plan ------------------------------------------------------------------------------------------

Kind = Literal["domain", "alternative", "relay", "user", "manager", "alias"]
# Creates and updates in this order (a user needs its domain, an alias its users); deletes reversed.
KIND_ORDER: tuple[Kind, ...] = ("domain", "alternative", "relay", "user", "manager", "alias")
ChangeKind = Literal["create", "update", "delete"]

# User fields Mailu's API sets on create but ignores on update (2024.06 user.py PATCH only assigns
# forward_destination when the new list is both non-empty and empty): planned as a conflict.
CREATE_ONLY = {"user": ("forward_destination",)}


@dataclass(frozen=True)
class Obj:
    """One Mailu object as the plan compares it: the fields we manage, and its comment."""

    kind: Kind
    key: str
    fields: Mapping[str, Any]
    comment: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.key}"


@dataclass(frozen=True)
class Change:
    """A create, update or delete; `old` is what Mailu holds, `new` what it will hold."""

    action: ChangeKind
    kind: Kind
    key: str
    old: Mapping[str, Any] | None = None
    new: Mapping[str, Any] | None = None
    adopt: bool = False

    def changed(self) -> dict[str, tuple[Any, Any]]:
        """Field -> (old, new), for updates: what differs."""
        old, new = self.old or {}, self.new or {}
        return {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}

    def __str__(self) -> str:
        if self.action == "create":
            return f"create {self.kind} {self.key}"
        if self.action == "delete":
            return f"delete {self.kind} {self.key}"
        parts = ", ".join(f"{k}: {_short(o)} -> {_short(n)}" for k, (o, n) in self.changed().items())
        return f"update{' (adopt)' if self.adopt else ''} {self.kind} {self.key}: {parts}"


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class Conflict:
    """Something the plan will not do; `fix` says what would."""

    kind: Kind
    key: str
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.reason}. Fix: {self.fix}"


class TooManyDeletes(MailuFlowsError):
    """More deletes than the plan's limit: nothing was changed."""

    def __init__(self, deletes: list[Change], owned: int, limit: int, fraction: float, always: int) -> None:
        self.deletes, self.owned, self.limit = deletes, owned, limit
        names = ", ".join(f"{c.kind} {c.key}" for c in deletes[:10]) + (" …" if len(deletes) > 10 else "")
        super().__init__(
            f"too many deletes: {len(deletes)} of the {owned} Mailu objects this stack owns ({names}), over "
            f"the limit of {limit} (accounts.max_delete_fraction {fraction:g} of {owned}, but at least "
            f"accounts.always_allowed_deletes {always}); nothing was changed. A deleted user's mail is "
            "gone: review the plan, then apply with force (`mailu-flows accounts --force`, or the "
            "accounts flow with force=true)"
        )


@dataclass(frozen=True)
class Plan:
    """What applying the accounts section to Mailu would do; empty when Mailu already agrees."""

    changes: tuple[Change, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    owned_count: int = 0
    max_delete_fraction: float = 0.3
    always_allowed_deletes: int = 1

    def of(self, action: ChangeKind) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    @property
    def creates(self) -> list[Change]:
        return self.of("create")

    @property
    def updates(self) -> list[Change]:
        return self.of("update")

    @property
    def deletes(self) -> list[Change]:
        return self.of("delete")

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def delete_limit(self) -> int:
        fraction = math.floor(self.max_delete_fraction * self.owned_count + 1e-9)
        return max(self.always_allowed_deletes, fraction)

    def raise_if_unsafe(self, *, force: bool = False) -> None:
        """`TooManyDeletes` if the deletes exceed `delete_limit`, unless `force`."""
        if not force and len(self.deletes) > self.delete_limit:
            raise TooManyDeletes(
                self.deletes,
                self.owned_count,
                self.delete_limit,
                self.max_delete_fraction,
                self.always_allowed_deletes,
            )

    def summary(self) -> str:
        text = f"accounts: {len(self.creates)} create, {len(self.updates)} update, {len(self.deletes)} delete"
        return text + (f", {len(self.conflicts)} conflict" if self.conflicts else "")

    def render_text(self) -> str:
        lines = [self.summary()]
        lines += [f"  {i}. {c}" for i, c in enumerate(self.changes, 1)]
        lines += [f"  CONFLICT {c}" for c in self.conflicts]
        return "\n".join(lines)

    def render_markdown(self) -> str:
        lines = [f"**Accounts plan** — {self.summary()}", ""]
        lines += [
            f"Mailu objects this stack owns: {self.owned_count}; deletes allowed without force: "
            f"{self.delete_limit}.",
            "",
        ]
        if self.changes:
            lines += ["| # | action | object | old | new |", "|---|---|---|---|---|"]
            for i, c in enumerate(self.changes, 1):
                if c.action == "update":
                    diff = c.changed()
                    old = ", ".join(f"{k}={_short(o, 40)}" for k, (o, _) in diff.items())
                    new = ", ".join(f"{k}={_short(n, 40)}" for k, (_, n) in diff.items())
                else:
                    old = _fields_text(c.old)
                    new = _fields_text(c.new)
                action = c.action + (" (adopt)" if c.adopt else "")
                lines.append(f"| {i} | {action} | {c.kind} `{c.key}` | {_cell(old)} | {_cell(new)} |")
        else:
            lines.append("No changes: Mailu already holds what the config declares.")
        if self.conflicts:
            lines += ["", "**Conflicts** (nothing written there):", ""]
            lines += [f"- {c.kind} `{c.key}`: {c.reason}. *Fix:* {c.fix}" for c in self.conflicts]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.render_text()


def _fields_text(fields: Mapping[str, Any] | None, most: int = 6) -> str:
    if not fields:
        return ""
    shown = [f"{k}={_short(v, 40)}" for k, v in fields.items() if k != "comment"]
    return ", ".join(shown[:most]) + (", …" if len(shown) > most else "")


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else ""


def _user_fields(u: AccountUser, stack: str) -> dict[str, Any]:
    f: dict[str, Any] = {
        "comment": with_marker(u.comment, stack),
        "enabled": u.enabled,
        "global_admin": u.global_admin,
        "enable_imap": u.enable_imap,
        "enable_pop": u.enable_pop,
        "allow_spoofing": u.allow_spoofing,
        "forward_enabled": u.forward is not None,
        "reply_enabled": u.reply is not None,
    }
    if u.display_name is not None:
        f["displayed_name"] = u.display_name
    if u.quota is not None:
        f["quota_bytes"] = parse_size(u.quota)
    if u.forward is not None:
        f["forward_destination"] = sorted(u.forward.to)
        f["forward_keep"] = u.forward.keep
    if u.reply is not None:
        f["reply_subject"] = u.reply.subject
        f["reply_body"] = "\n".join(u.reply.body)
        if u.reply.start is not None:
            f["reply_startdate"] = u.reply.start.isoformat()
        if u.reply.end is not None:
            f["reply_enddate"] = u.reply.end.isoformat()
    return f


def desired(accounts: Accounts, stack: str) -> list[Obj]:
    """Every object the section declares, with the fields (and marked comment) Mailu should hold."""
    out: list[Obj] = []
    for d in accounts.domains:
        f: dict[str, Any] = {
            "comment": with_marker(d.comment, stack),
            "max_users": d.max_users,
            "max_aliases": d.max_aliases,
            "max_quota_bytes": parse_size(d.max_quota) if d.max_quota else 0,
            "signup_enabled": d.signup_enabled,
        }
        out.append(Obj("domain", d.name, f, f["comment"]))
        out += [Obj("alternative", alt, {"domain": d.name}) for alt in d.alternatives]
        out += [Obj("manager", f"{d.name}:{m}", {"domain": d.name, "user": m}) for m in d.managers]
    for r in accounts.relays:
        f = {"comment": with_marker(r.comment, stack), "smtp": r.smtp or ""}
        out.append(Obj("relay", r.name, f, f["comment"]))
    for u in accounts.users:
        f = _user_fields(u, stack)
        out.append(Obj("user", u.address, f, f["comment"]))
    for a in accounts.aliases:
        f = {"comment": with_marker(a.comment, stack), "destination": sorted(a.to), "wildcard": a.wildcard}
        out.append(Obj("alias", a.address, f, f["comment"]))
    return out


@dataclass(frozen=True)
class Current:
    """What Mailu holds, as its API lists it (GET /domain, /alternative, /relay, /user, /alias)."""

    domains: list[dict[str, Any]] = field(default_factory=list)
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    relays: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    aliases: list[dict[str, Any]] = field(default_factory=list)

    def objects(self) -> list[Obj]:
        out: list[Obj] = []
        for d in self.domains:
            fields = {k: d.get(k) for k in ("max_users", "max_aliases", "max_quota_bytes", "signup_enabled")}
            fields["comment"] = d.get("comment") or ""
            out.append(Obj("domain", d["name"], fields, d.get("comment")))
            out += [
                Obj("manager", f"{d['name']}:{m}", {"domain": d["name"], "user": m})
                for m in d.get("managers") or []
            ]
        out += [Obj("alternative", a["name"], {"domain": a["domain"]}) for a in self.alternatives]
        for r in self.relays:
            out.append(
                Obj(
                    "relay",
                    r["name"],
                    {"comment": r.get("comment") or "", "smtp": r.get("smtp") or ""},
                    r.get("comment"),
                )
            )
        for u in self.users:
            fields = {k: v for k, v in u.items() if k not in ("email", "password")}
            fields["comment"] = u.get("comment") or ""
            fields["displayed_name"] = u.get("displayed_name") or ""
            fields["forward_destination"] = sorted(u.get("forward_destination") or [])
            for k in ("reply_subject", "reply_body"):
                fields[k] = u.get(k) or ""
            out.append(Obj("user", u["email"], fields, u.get("comment")))
        for a in self.aliases:
            fields = {
                "comment": a.get("comment") or "",
                "destination": sorted(a.get("destination") or []),
                "wildcard": bool(a.get("wildcard")),
            }
            out.append(Obj("alias", a["email"], fields, a.get("comment")))
        return out


def _parent(obj: Obj) -> str:
    return str(obj.fields.get("domain", ""))


def plan(
    accounts: Accounts,
    current: Current,
    stack: str,
    *,
    protected_domains: Iterable[str] = (),
    protected_users: Iterable[str] = (),
    adopt: bool = False,
) -> Plan:
    """The changes that make Mailu hold what `accounts` declares, touching only what `stack` owns.

    `protected_domains` / `protected_users` (the stack's mail domains and admin, which deploy makes)
    are never deleted. With `adopt`, a declared object Mailu holds without our mark is taken over.
    """
    want = {(o.kind, o.key): o for o in desired(accounts, stack)}
    have = {(o.kind, o.key): o for o in current.objects()}
    owned_domains = {o.key for o in have.values() if o.kind == "domain" and owned_by(o.comment) == stack}
    if adopt:
        owned_domains |= {k for (kind, k) in want if kind == "domain" and (kind, k) in have}
    no_delete_domains, no_delete_users = set(protected_domains), set(protected_users)

    def owned(o: Obj) -> bool:
        if o.kind in ("alternative", "manager"):
            return _parent(o) in owned_domains
        return owned_by(o.comment) == stack

    changes: list[Change] = []
    conflicts: list[Conflict] = []
    for key, new in want.items():
        old = have.get(key)
        if old is None:
            changes.append(Change("create", new.kind, new.key, new=dict(new.fields)))
            continue
        mine = owned(old)
        if new.kind in ("alternative", "manager"):
            if old.fields != new.fields:  # an alternative of another domain: moved by delete + create
                if mine:
                    changes.append(
                        Change("update", new.kind, new.key, old=dict(old.fields), new=dict(new.fields))
                    )
                else:
                    conflicts.append(
                        Conflict(
                            new.kind,
                            new.key,
                            f"is an alternative of {_parent(old)!r}, a domain this stack does not own",
                            f"remove it there by hand, or declare it under {_parent(old)!r}",
                        )
                    )
            continue
        if not mine and not adopt:
            other = owned_by(old.comment)
            who = f"stack {other!r}" if other else "hand (or another tool)"
            conflicts.append(
                Conflict(
                    new.kind,
                    new.key,
                    f"Mailu already has this {new.kind}, made by {who}; this stack does not own it",
                    "delete it in Mailu's admin, drop the entry from accounts, or apply with adopt to let "
                    "this stack manage it",
                )
            )
            continue
        managed = {k: old.fields.get(k) for k in new.fields}
        if managed != dict(new.fields):
            target = dict(new.fields)
            for name in CREATE_ONLY.get(new.kind, ()):
                if name in target and managed.get(name) != target[name]:
                    conflicts.append(
                        Conflict(
                            new.kind,
                            new.key,
                            f"{name} is {managed.get(name)!r}, the config says {target[name]!r}, and "
                            "Mailu's API cannot change it on an existing user",
                            "change it in Mailu's admin (user settings > auto-forward), or declare "
                            f"{managed.get(name)!r}",
                        )
                    )
                    target[name] = managed.get(name)
            if managed != target:
                changes.append(Change("update", new.kind, new.key, old=managed, new=target, adopt=not mine))

    # Deletes: objects we own that the config no longer declares.
    for key, old in have.items():
        if key in want or not owned(old):
            continue
        if old.kind == "domain" and old.key in no_delete_domains:
            conflicts.append(
                Conflict(
                    "domain",
                    old.key,
                    "is one of the stack's mail domains (deploy makes it)",
                    "it is never deleted here; keep it in accounts or leave it",
                )
            )
            continue
        if old.kind == "user" and old.key in no_delete_users:
            conflicts.append(
                Conflict(
                    "user", old.key, "is the stack's admin user (deploy makes it)", "it is never deleted here"
                )
            )
            continue
        if old.kind == "domain":
            foreign = [
                o.label
                for o in have.values()
                if o.kind in ("user", "alias") and _domain_of(o.key) == old.key and not owned(o)
            ]
            if foreign:
                conflicts.append(
                    Conflict(
                        "domain",
                        old.key,
                        "still holds objects this stack does not own: " + ", ".join(foreign[:5]),
                        "Mailu would delete them with the domain: move or delete them by hand first",
                    )
                )
                continue
        changes.append(Change("delete", old.kind, old.key, old=dict(old.fields)))

    order = {k: i for i, k in enumerate(KIND_ORDER)}
    writes = sorted((c for c in changes if c.action != "delete"), key=lambda c: (order[c.kind], c.key))
    deletes = sorted((c for c in changes if c.action == "delete"), key=lambda c: (-order[c.kind], c.key))
    return Plan(
        changes=tuple(writes + deletes),
        conflicts=tuple(conflicts),
        owned_count=sum(1 for o in have.values() if owned(o)),
        max_delete_fraction=accounts.max_delete_fraction,
        always_allowed_deletes=accounts.always_allowed_deletes,
    )
