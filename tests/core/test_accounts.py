"""Accounts as code, pure part and engine: the section's checks (each bad entry refused and named before
any API call), the plan's ownership and delete limit, and the engine against an in-memory Mailu API
that behaves as Mailu 2024.06's (comments, alternatives, managers, password hashes never returned)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from mailu_core.accounts import Current, TooManyDeletes, owned_by, parse_size, plan, with_marker
from mailu_core.config import ConfigError, StackConfig, load_stack_config, stack_config_from_mapping
from mailu_flows.accounts import (
    PasswordUnavailable,
    UnresolvedConflicts,
    default_password_block,
    run_accounts,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "inlock.ai.yaml"

ACCOUNTS: dict[str, Any] = {
    "domains": [
        {"name": "one.example", "alternatives": ["one-alt.example"], "managers": ["bo@one.example"]},
        {"name": "two.example", "max_quota": "2G"},
    ],
    "users": [
        {"address": "bo@one.example", "display_name": "Bo", "quota": "1G"},
        {"address": "cy@one.example", "forward": {"to": ["cy@elsewhere.example"]}},
        {"address": "di@two.example", "reply": {"subject": "away", "body": ["back", "soon"]}},
    ],
    "aliases": [
        {"address": "team@one.example", "to": ["bo@one.example", "cy@one.example"]},
        {"address": "%@two.example", "to": ["di@two.example"], "wildcard": True},
    ],
    "relays": [{"name": "relay.example", "smtp": "smtp.relay.example:25"}],
}


def config(accounts: dict[str, Any] | None = None) -> StackConfig:
    data = load_stack_config(EXAMPLE).model_dump(mode="json")
    data["accounts"] = copy.deepcopy(ACCOUNTS if accounts is None else accounts)
    return stack_config_from_mapping(data, source="test")


def refused(accounts: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config(accounts)
    return caught.value.lines()


def changed(**edits: Any) -> dict[str, Any]:
    data = copy.deepcopy(ACCOUNTS)
    for key, value in edits.items():
        data[key] = value(data[key]) if callable(value) else value
    return data


# --- the section's checks -----------------------------------------------------------------------------


def test_the_example_section_is_valid_and_sizes_parse() -> None:
    cfg = config()
    assert [u.address for u in cfg.accounts.users] == ["bo@one.example", "cy@one.example", "di@two.example"]
    assert parse_size("1G") == 10**9 and parse_size("1GiB") == 2**30 and parse_size("1.5M") == 1_500_000
    assert parse_size("4096") == 4096


def test_an_alias_that_points_nowhere_is_refused_naming_it() -> None:
    data = changed(aliases=lambda a: [*a, {"address": "x@one.example", "to": ["nobody@one.example"]}])
    (line,) = refused(data)
    assert line.startswith("accounts.aliases[2].to[0]")
    assert "alias 'x@one.example' points nowhere: 'nobody@one.example' is not a declared user" in line


def test_a_user_in_an_undeclared_domain_is_refused_naming_it() -> None:
    data = changed(users=lambda u: [*u, {"address": "ed@three.example"}])
    (line,) = refused(data)
    assert line.startswith("accounts.users[3].address")
    assert "user 'ed@three.example' is in an undeclared domain" in line and "add 'three.example'" in line


def test_a_user_at_an_alternative_domain_is_told_to_use_the_domain() -> None:
    (line,) = refused(changed(users=lambda u: [*u, {"address": "ed@one-alt.example"}]))
    assert "'one-alt.example' is an alternative of 'one.example': use @one.example" in line


def test_a_user_in_the_stacks_own_domain_needs_no_declaration() -> None:
    cfg = config(changed(users=lambda u: [*u, {"address": "ed@inlock.ai"}]))
    assert cfg.accounts.users[-1].address == "ed@inlock.ai"


@pytest.mark.parametrize("quota", ["1 gig", "lots", "1GG", "-1G", "0"])
def test_a_quota_that_is_not_a_size_is_refused_naming_the_user(quota: str) -> None:
    data = changed(users=lambda u: [{**u[0], "quota": quota}, *u[1:]])
    (line,) = refused(data)
    assert line.startswith("accounts.users[0].quota")
    assert "user 'bo@one.example'" in line and "a size such as 1G" in line


def test_a_domain_max_quota_that_is_not_a_size_is_refused_naming_the_domain() -> None:
    (line,) = refused(changed(domains=lambda d: [d[0], {**d[1], "max_quota": "big"}]))
    assert line.startswith("accounts.domains[1].max_quota") and "domain 'two.example'" in line


def test_a_duplicate_address_is_refused_naming_both_entries() -> None:
    data = changed(aliases=lambda a: [*a, {"address": "bo@one.example", "to": ["cy@one.example"]}])
    (line,) = refused(data)
    assert line.startswith("accounts.aliases[2].address")
    assert "address 'bo@one.example' is declared twice (also users[0])" in line
    (line,) = refused(changed(users=lambda u: [*u, {"address": "bo@one.example"}]))
    assert line.startswith("accounts.users[3].address") and "declared twice (also users[0])" in line


def test_a_duplicate_domain_name_is_refused() -> None:
    lines = refused(changed(relays=[{"name": "one-alt.example"}]))
    assert any(
        line.startswith("accounts.relays[0].name") and "'one-alt.example' is already domains[0]" in line
        for line in lines
    )


def test_a_manager_who_is_not_a_declared_user_is_refused() -> None:
    (line,) = refused(changed(domains=lambda d: [{**d[0], "managers": ["zz@one.example"]}, d[1]]))
    assert line.startswith("accounts.domains[0].managers[0]") and "'zz@one.example'" in line


def test_a_percent_without_wildcard_is_refused() -> None:
    (line,) = refused(changed(aliases=[{"address": "%@two.example", "to": ["di@two.example"]}]))
    assert line.startswith("accounts.aliases[0].wildcard") and "only with wildcard: true" in line


def test_bad_input_in_a_yaml_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    section = "accounts:\n  users:\n  - address: bo@nowhere.example\n    quota: {}\n"
    path.write_text(EXAMPLE.read_text() + section.format("3 apples"))
    with pytest.raises(ConfigError) as caught:
        load_stack_config(path)
    (line,) = caught.value.lines()
    assert line.startswith("accounts.users[0].quota (line ") and "'bo@nowhere.example'" in line
    path.write_text(EXAMPLE.read_text() + section.format("3G"))
    with pytest.raises(ConfigError) as caught:
        load_stack_config(path)
    (line,) = caught.value.lines()
    assert line.startswith("accounts.users[0].address (line ") and "undeclared domain" in line


# --- an in-memory Mailu API -------------------------------------------------------------------------


class FakeMailu:
    """Mailu 2024.06's API rules that matter here: a user needs its domain, an alias's destinations must
    be users, deleting a domain deletes what it holds, GET never returns a password."""

    def __init__(self) -> None:
        self.domains: dict[str, dict[str, Any]] = {}
        self.alternatives: dict[str, str] = {}
        self.relays: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, dict[str, Any]] = {}
        self.passwords: dict[str, str] = {}
        self.writes: list[str] = []

    def add_domain(self, name: str, comment: str = "") -> None:
        self.domains[name] = {"name": name, "comment": comment, "managers": [], "max_users": -1,
                              "max_aliases": -1, "max_quota_bytes": 0, "signup_enabled": False}  # fmt: skip

    def add_user(self, email: str, comment: str = "") -> None:
        self.users[email] = {
            "email": email, "comment": comment, "quota_bytes": 1_000_000_000, "quota_bytes_used": 0,
            "global_admin": False, "enabled": True, "change_pw_next_login": False, "enable_imap": True,
            "enable_pop": True, "allow_spoofing": False, "forward_enabled": False, "forward_destination": [],
            "forward_keep": True, "reply_enabled": False, "reply_startdate": "1900-01-01",
            "reply_enddate": "2999-12-31", "displayed_name": "", "spam_enabled": True,
        }  # fmt: skip

    def read(self) -> Current:
        domains = [
            {**d, "alternatives": [a for a, p in self.alternatives.items() if p == n]}
            for n, d in self.domains.items()
        ]
        return Current(
            domains=copy.deepcopy(domains),
            alternatives=[{"name": a, "domain": d} for a, d in self.alternatives.items()],
            relays=copy.deepcopy(list(self.relays.values())),
            users=copy.deepcopy(list(self.users.values())),
            aliases=copy.deepcopy(list(self.aliases.values())),
        )

    def write(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for call in calls:
            status = self._call(call["method"], call["path"], copy.deepcopy(call.get("body") or {}))
            self.writes.append(f"{call['method']} {call['path']}")
            out.append({"status": status, "body": {"code": status, "message": "fake"}})
            if status >= 300:
                break
        return out

    def set_password_hash(self, email: str, password_hash: str) -> None:
        self.passwords[email] = password_hash

    def _call(self, method: str, path: str, body: dict[str, Any]) -> int:
        parts = path.strip("/").split("/")
        kind = parts[0]
        if method == "POST" and kind == "domain" and len(parts) == 3:
            self.domains[parts[1]]["managers"].append(body["user_email"])
            return 200 if body["user_email"] in self.users else 404
        if method == "DELETE" and kind == "domain" and len(parts) == 4:
            self.domains[parts[1]]["managers"].remove(parts[3])
            return 200
        if method == "POST":
            if kind == "domain":
                name = body.pop("name")
                self.add_domain(name)
                self.domains[name].update(body)
            elif kind == "alternative":
                self.alternatives[body["name"]] = body["domain"]
            elif kind == "relay":
                self.relays[body["name"]] = {k: body.get(k) for k in ("name", "smtp", "comment")}
            elif kind == "user":
                email = body.pop("email")
                if email.split("@")[1] not in self.domains:
                    return 404
                self.passwords[email] = body.pop("raw_password")
                self.add_user(email)
                self.users[email].update(body)
            elif kind == "alias":
                if any(d not in self.users for d in body["destination"]):
                    return 404
                self.aliases[body["email"]] = body
            return 200
        key = parts[1]
        table = {"domain": self.domains, "relay": self.relays, "user": self.users, "alias": self.aliases}
        if kind == "alternative":
            return 200 if self.alternatives.pop(key, None) else 404
        if key not in table[kind]:
            return 404
        if method == "PATCH":
            body.pop("forward_destination", None)  # Mailu 2024.06 ignores it on update
            table[kind][key].update(body)
        elif method == "DELETE":
            del table[kind][key]
            if kind == "domain":
                for t in (self.users, self.aliases):
                    for k in [k for k in t if k.endswith("@" + key)]:
                        del t[k]
        return 200


class Passwords:
    def __init__(self, **blocks: str) -> None:
        self.blocks = dict(blocks)
        self.saved: list[str] = []

    def load(self, name: str) -> str | None:
        return self.blocks.get(name)

    def save(self, name: str, value: str) -> None:
        assert name not in self.blocks
        self.blocks[name] = value
        self.saved.append(name)


def lab_mailu() -> FakeMailu:
    """What a deploy leaves: the stack's domain and admin, unmarked."""
    fake = FakeMailu()
    fake.add_domain("inlock.ai")
    fake.add_user("admin@inlock.ai")
    return fake


# --- the plan and the engine -------------------------------------------------------------------------


def test_apply_creates_everything_then_a_second_run_makes_no_write() -> None:
    cfg, fake, store = config(), lab_mailu(), Passwords()
    result = run_accounts(cfg, fake, store)
    assert result.applied and not result.conflicts
    assert set(fake.domains) == {"inlock.ai", "one.example", "two.example"}
    assert fake.alternatives == {"one-alt.example": "one.example"}
    assert fake.domains["one.example"]["managers"] == ["bo@one.example"]
    assert fake.users["bo@one.example"]["quota_bytes"] == 10**9
    assert fake.users["di@two.example"]["reply_body"] == "back\nsoon"
    assert fake.users["cy@one.example"]["forward_destination"] == ["cy@elsewhere.example"]
    assert owned_by(fake.users["bo@one.example"]["comment"]) == cfg.name
    assert owned_by(fake.users["admin@inlock.ai"]["comment"]) is None
    # each new user's password came from (here: was generated into) its own block
    assert sorted(store.saved) == sorted(
        default_password_block(cfg.name, u.address) for u in cfg.accounts.users
    )
    assert (
        fake.passwords["bo@one.example"] == store.blocks[default_password_block(cfg.name, "bo@one.example")]
    )
    writes = len(fake.writes)
    again = run_accounts(cfg, fake, store)
    assert again.summary == "accounts: 0 create, 0 update, 0 delete" and again.writes == 0
    assert len(fake.writes) == writes


def test_a_hand_made_user_survives_and_a_removed_user_is_deleted_within_the_limit() -> None:
    cfg, fake, store = config(), lab_mailu(), Passwords()
    run_accounts(cfg, fake, store)
    fake.add_user("hand@one.example", comment="made in the UI")
    fewer = config(changed(users=lambda u: u[:2], aliases=lambda a: a[:1]))
    result = run_accounts(fewer, fake, store)
    assert result.deletes == ["alias %@two.example", "user di@two.example"]
    assert "hand@one.example" in fake.users and "di@two.example" not in fake.users


def test_too_many_deletes_are_refused_without_force_and_nothing_changes() -> None:
    cfg, fake, store = config(), lab_mailu(), Passwords()
    run_accounts(cfg, fake, store)
    none_left = config(changed(aliases=[], users=[], domains=[], relays=[]))
    before = copy.deepcopy(fake.read())
    with pytest.raises(TooManyDeletes) as caught:
        run_accounts(none_left, fake, store)
    assert "too many deletes" in str(caught.value) and "force" in str(caught.value)
    assert fake.read() == before
    strict = config({**ACCOUNTS, "users": ACCOUNTS["users"][:2], "aliases": ACCOUNTS["aliases"][:1],
                     "always_allowed_deletes": 0, "max_delete_fraction": 0.1})  # fmt: skip
    plan_only = run_accounts(strict, fake, store, dry_run=True)
    assert plan_only.deletes == ["alias %@two.example", "user di@two.example"]
    with pytest.raises(TooManyDeletes):
        run_accounts(strict, fake, store)
    assert "di@two.example" in fake.users
    run_accounts(strict, fake, store, force=True)
    assert "di@two.example" not in fake.users


def test_an_unmarked_object_at_a_declared_address_is_a_conflict_unless_adopted() -> None:
    cfg, fake, store = config(), lab_mailu(), Passwords()
    fake.add_domain("one.example")
    fake.add_user("bo@one.example", comment="mine")
    with pytest.raises(UnresolvedConflicts) as caught:
        run_accounts(cfg, fake, store)
    text = str(caught.value)
    assert "user bo@one.example: Mailu already has this user, made by hand" in text and "adopt" in text
    assert fake.users["bo@one.example"]["comment"] == "mine"
    assert "di@two.example" in fake.users  # the rest was applied
    run_accounts(cfg, fake, store, adopt=True)
    assert owned_by(fake.users["bo@one.example"]["comment"]) == cfg.name


def test_the_stacks_own_domain_and_admin_are_never_deleted() -> None:
    cfg = config({})
    current = Current(
        domains=[{"name": "inlock.ai", "comment": with_marker(None, cfg.name), "managers": []}],
        users=[{"email": "admin@inlock.ai", "comment": with_marker(None, cfg.name)}],
    )
    result = plan(
        config({}).accounts,
        current,
        cfg.name,
        protected_domains=["inlock.ai"],
        protected_users=["admin@inlock.ai"],
    )
    assert result.deletes == [] and {c.kind for c in result.conflicts} == {"domain", "user"}


def test_a_domain_holding_a_hand_made_user_is_not_deleted() -> None:
    cfg, fake, store = config(), lab_mailu(), Passwords()
    run_accounts(cfg, fake, store)
    fake.add_user("hand@two.example")
    without_two = config(changed(domains=lambda d: d[:1], users=lambda u: u[:2], aliases=lambda a: a[:1]))
    with pytest.raises(UnresolvedConflicts) as caught:
        run_accounts(without_two, fake, store, force=True)
    assert "domain two.example: still holds objects this stack does not own: user hand@two.example" in str(
        caught.value
    )
    assert "two.example" in fake.domains and "hand@two.example" in fake.users


def test_an_update_shows_old_and_new_values_and_forward_changes_are_a_conflict() -> None:
    cfg, fake, store = config(), lab_mailu(), Passwords()
    run_accounts(cfg, fake, store)
    edited = config(
        changed(users=lambda u: [{**u[0], "quota": "2G", "enabled": False},
                                 {**u[1], "forward": {"to": ["new@elsewhere.example"]}}, u[2]])
    )  # fmt: skip
    with pytest.raises(UnresolvedConflicts) as caught:
        run_accounts(edited, fake, store)
    assert "forward_destination" in str(caught.value) and "admin" in str(caught.value)
    assert fake.users["bo@one.example"]["quota_bytes"] == 2 * 10**9
    assert fake.users["bo@one.example"]["enabled"] is False
    p = plan(edited.accounts, fake.read(), edited.name)
    assert p.changes == ()
    md = plan(cfg.accounts, fake.read(), cfg.name).render_markdown()
    assert "| update | user `bo@one.example` | `enabled=False, quota_bytes=2000000000` |" in md


def test_passwords_come_from_blocks_and_a_missing_hash_block_stops_before_any_write() -> None:
    users = [
        {"address": "bo@one.example", "password_block": "bo-pw"},
        {"address": "cy@one.example", "password_block": "cy-hash", "password_block_holds": "hash"},
    ]
    cfg = config({"domains": [{"name": "one.example"}], "users": users})
    fake = lab_mailu()
    with pytest.raises(PasswordUnavailable) as caught:
        run_accounts(cfg, fake, Passwords(**{"bo-pw": "given-password"}))
    assert "'cy-hash' does not exist" in str(caught.value) and fake.writes == []
    with pytest.raises(PasswordUnavailable):
        run_accounts(cfg, fake, Passwords(**{"bo-pw": "x" * 12, "cy-hash": "plain-text"}))
    assert fake.writes == []
    hashed = "{BLF-CRYPT}$2b$12$n/.9cieaTzXJpapGknAnd.8KMf7K0lF4p4L3j2V6fegudccvrNp9u"
    store = Passwords(**{"bo-pw": "given-password", "cy-hash": hashed})
    run_accounts(cfg, fake, store)
    assert fake.passwords == {"bo@one.example": "given-password", "cy@one.example": hashed}
    assert store.saved == []


def test_default_password_block_names_are_block_names() -> None:
    assert default_password_block("lab", "bo.x+y@one.example") == "lab-user-bo-x-y-one-example"


# --- the flow's parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "value", "where"),
    [
        ("dry_run", "false; rm -rf /", "dry_run"),
        ("force", "yes please", "force"),
        ("adopt", ["true"], "adopt"),
        ("lock_wait_s", -1, "lock_wait_s"),
        ("lock_wait_s", 3601, "lock_wait_s"),
        ("config", {"users": [{"address": "bo@one.example", "quota": "1G; id"}]}, "config.accounts"),
        ("config", {"aliases": [{"address": "x\n@one.example", "to": ["bo@one.example"]}]}, "config"),
    ],
)
def test_hostile_flow_parameters_are_refused_before_the_run(parameter: str, value: Any, where: str) -> None:
    from prefect.exceptions import ParameterTypeError

    from mailu_flows.flows.accounts import accounts

    params: dict[str, Any] = {"config": config().model_dump(mode="json")}
    if parameter == "config":
        params["config"]["accounts"] = {**params["config"]["accounts"], **value}
    else:
        params[parameter] = value
    with pytest.raises(ParameterTypeError) as caught:
        accounts.validate_parameters(params)
    assert where in str(caught.value).replace("'", "").replace(" -> ", ".")


def test_the_flow_schema_carries_the_accounts_patterns() -> None:
    from prefect.utilities.callables import parameter_schema

    from mailu_flows.flows.accounts import accounts

    schema = parameter_schema(accounts.fn).model_dump_for_openapi()
    text = str(schema)
    assert "AccountUser" in text and "password_block_holds" in text and "raw_password" not in text


# --- the API transport, on a fake host --------------------------------------------------------------


def test_the_token_passwords_and_hashes_travel_on_stdin_never_on_the_command_line() -> None:
    import json
    import re

    from mailu_flows.accounts import MailuAccountsApi
    from mailu_flows.fake_host import FakeHost

    host = FakeHost()
    empty = json.dumps([{"status": 200, "body": []}] * 5)
    host.on(re.compile(r"exec -T admin python3 -c"), stdout=empty + "\n")
    host.on(re.compile(r"config-import"), stdout="")
    cfg = config({"domains": [{"name": "one.example"}], "users": [{"address": "bo@one.example"}]})
    api = MailuAccountsApi(cfg, host, "token-" + "t" * 26)
    assert api.read() == Current()
    api.write(
        [
            {
                "method": "POST",
                "path": "/user",
                "body": {"email": "bo@one.example", "raw_password": "pw-123456"},
            }
        ]
    )
    api.set_password_hash("bo@one.example", "{BLF-CRYPT}$2b$04$" + "h" * 53)
    runs = [c for c in host.calls if c.kind == "run"]
    assert len(runs) == 3
    for call in runs:
        assert "token-" not in call.command and "pw-123456" not in call.command and "$2b$" not in call.command
        assert call.command.startswith("docker compose -p ")
    stdins = [(c.stdin or b"").decode() for c in runs]
    assert "token-" in stdins[0] and "pw-123456" in stdins[1] and "$2b$04$" in stdins[2]


def test_the_stacks_admin_cannot_be_demoted_or_disabled_by_accident() -> None:
    (line,) = refused({"users": [{"address": "admin@inlock.ai"}]})
    assert line.startswith("accounts.users[0]") and "must stay global_admin: true" in line
    ok = config({"users": [{"address": "admin@inlock.ai", "global_admin": True, "quota": "5G"}]})
    assert ok.accounts.users[0].quota == "5G"
