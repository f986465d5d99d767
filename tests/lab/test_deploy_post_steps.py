"""The deploy's steps after a good release, on the lab's Mailu (its own code): the accounts section is
applied by the deploy (a second deploy makes no API write and says so), the mail canary runs once after
the release (and not with `canary: false`), and a release whose mail does not pass the canary is undone:
the deploy returns to the previous good release and fails naming the failed step.

The tests run in order and leave the lab as they found it: the last one deploys the lab's own config
again (which also deletes what the accounts step made for these tests: the lab's config declares none).
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailu_core.accounts import owned_by
from mailu_core.config import StackConfig, load_stack_config, stack_config_from_mapping
from tests.lab.fixtures.deploying import exception_text

pytestmark = pytest.mark.lab


def _deploy(cfg: StackConfig, **kw: Any) -> Any:
    from mailu_flows.flows.deploy import deploy

    return deploy(config=cfg, return_state=True, lock_wait_s=300, **kw)


def _ok(state: Any) -> dict[str, Any]:
    assert state.is_completed(), exception_text(state)
    result: dict[str, Any] = state.result()
    return result


def _task_runs(state: Any, name: str) -> int:
    """How many task runs named `name` the flow run of `state` made."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return sum(1 for r in runs if r.name.startswith(f"{name}-"))


def _users(cfg: StackConfig) -> dict[str, dict[str, Any]]:
    from mailu_flows.accounts import MailuAccountsApi
    from mailu_flows.blocks import MailuSecrets, load_block
    from mailu_flows.tasks.host import connect_host

    token = load_block(MailuSecrets, cfg.blocks.mailu_secrets).api_token.get_secret_value()
    host = connect_host(cfg)
    try:
        return {u["email"]: u for u in MailuAccountsApi(cfg, host, token).read().users}
    finally:
        host.close()


def _releases(cfg: StackConfig) -> dict[str, str]:
    """Release id -> status, from the host's records."""
    from mailu_flows.deploy.releases import list_releases
    from mailu_flows.tasks.host import connect_host

    host = connect_host(cfg)
    try:
        return {r.id: r.status for r in list_releases(host, cfg.paths)}
    finally:
        host.close()


def _current(cfg: StackConfig) -> str:
    good = sorted(rid for rid, status in _releases(cfg).items() if status == "good")
    return good[-1]


def _delete_secret(name: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            doc = client.read_block_document_by_name(name, block_type_slug="secret")
        except Exception:
            return
        client.delete_block_document(doc.id)


def _with(cfg: StackConfig, **sections: dict[str, Any]) -> StackConfig:
    data = cfg.model_dump(mode="json")
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    return stack_config_from_mapping(data, source="test_deploy_post_steps")


@pytest.fixture(scope="module")
def base(lab: dict[str, Any]) -> Iterator[StackConfig]:
    """The lab's config, deployed; deployed again at the end (the lab as the other tests expect it)."""
    cfg = load_stack_config(Path(lab["stack_config"]))
    _ok(_deploy(cfg))
    yield cfg
    _ok(_deploy(cfg))


def test_a_deploy_applies_the_accounts_section_and_a_second_deploy_writes_nothing(base: StackConfig) -> None:
    from mailu_flows.accounts import default_password_block

    address = f"post-{secrets.token_hex(3)}@{base.mailu.domain}"
    users = [*base.model_dump(mode="json")["accounts"]["users"], {"address": address, "display_name": "Post"}]
    cfg = _with(base, accounts={"users": users})
    try:
        first = _ok(_deploy(cfg))
        assert f"user {address}" in first["accounts"]["creates"], first["accounts"]
        assert first["accounts"]["writes"] > 0
        assert first["canary"]["status"] == "skipped" and "not configured" in first["canary"]["detail"]
        made = _users(cfg)[address]
        assert owned_by(made["comment"]) == cfg.name and made["displayed_name"] == "Post"

        second = _ok(_deploy(cfg))
        assert second["summary"].startswith("no changes"), second["summary"]
        assert second["accounts"]["writes"] == 0 and second["accounts"]["creates"] == []
        assert (
            second["accounts"]["summary"].startswith("no changes")
            and "no API write" in second["accounts"]["summary"]
        )

        planned = _ok(_deploy(cfg, dry_run=True))["plan"]
        assert "# Accounts plan" in planned and "No changes: Mailu already holds" in planned, planned

        preview = _ok(_deploy(base, dry_run=True))["plan"]  # `mailu-flows plan` shows the delete first
        assert f"| delete | user `{address}` |" in preview, preview
        removed = _ok(_deploy(base))  # the declared user is gone from the config: deleted, within the limit
        assert f"user {address}" in removed["accounts"]["deletes"]
        assert address not in _users(base)
    finally:
        _delete_secret(default_password_block(cfg.name, address))


def test_the_canary_runs_once_after_the_release_and_not_with_the_parameter_off(base: StackConfig) -> None:
    from lab.stack_config import with_canary

    cfg = with_canary(base)  # its alert rules change a monitoring file: a new release
    before = _current(base)
    state = _deploy(cfg)
    result = _ok(state)
    assert result["changed"] and result["release"] != before
    mailbox = cfg.canary.mailbox_for(cfg.mailu.domain)
    assert mailbox in _users(cfg)  # the accounts step made the canary's mailbox before the canary ran
    canary = result["canary"]
    assert canary["status"] == "ok", canary
    assert {"outbound", "inbound"} <= set(canary["latency_s"])
    assert {row["step"] for row in canary["steps"]} >= {"submit", "fetch over IMAPS", "delete probe messages"}
    assert _task_runs(state, "mail-canary-round-trip") == 1

    off = _deploy(cfg, canary=False)
    quiet = _ok(off)
    assert quiet["canary"] == {"status": "skipped", "detail": "off (deploy parameter canary: false)",
                               "steps": [], "latency_s": {}}  # fmt: skip
    assert _task_runs(off, "mail-canary-round-trip") == 0


class NxdomainResolver:
    """A DNS server on loopback that knows no name: the canary's DKIM lookup finds no published key."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode

        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            response = dns.message.make_response(dns.message.from_wire(data))
            response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def test_a_release_that_fails_the_canary_is_undone_and_the_run_fails(base: StackConfig) -> None:
    """The canary's DKIM check looks the key up where it is not published (a resolver that knows no
    name), in a config whose canary alert threshold also changes the rules file (so: a new release).
    The release passes every other check; the canary fails; the deploy returns to the previous good
    release and fails naming the step."""
    from lab.stack_config import with_canary

    good = with_canary(base)
    _ok(_deploy(good))
    previous = _current(good)
    resolver = NxdomainResolver()
    try:
        bad = _with(good, canary={"resolvers": [f"127.0.0.1:{resolver.port}"], "max_latency_s": 59})
        state = _deploy(bad)
    finally:
        resolver.close()
    assert state.is_failed()
    text = exception_text(state)
    assert text.startswith("DeployCanaryFailed: deploy failed: the mail canary after release "), text
    assert "DKIM signature verifies against the published key: " in text, text
    assert f"returned to release {previous}, which is healthy again" in text, text
    releases = _releases(good)
    assert _current(good) == previous
    failed = [rid for rid, status in releases.items() if rid > previous]
    assert failed and all(releases[rid] == "rolled-back" for rid in failed), releases
    rules = Path(good.host.stack_root) / "monitoring" / "rules" / f"mailu-{good.name}.yml"
    assert "> 60" in rules.read_text() and "> 59" not in rules.read_text()  # the previous release's file
