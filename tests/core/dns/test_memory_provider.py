"""The in-memory provider: the provider contract, plus what only it can show cheaply (atomic refusal of
an outdated plan, a failed apply reported with nothing applied) and the registry that finds it."""

from __future__ import annotations

import secrets

import pytest

from mailu_core.dns import Record
from mailu_flows.dns.memory import MemoryProvider, MemoryZone
from mailu_flows.dns.provider import DnsConnectionError, PlanOutdatedError, Provider, plan_for
from mailu_flows.dns.registry import UnknownProvider, connect_provider, provider_plugin, providers
from tests.core.dns.conftest import example_config
from tests.core.dns.provider_contract import Factory, ProviderContract

ZONE = "inlock.test"


class TestMemoryProviderContract(ProviderContract):
    @pytest.fixture
    def zone(self) -> str:
        return ZONE

    @pytest.fixture
    def label(self) -> str:
        return f"t-{secrets.token_hex(4)}"

    @pytest.fixture
    def provider_factory(self) -> Factory:
        shared = MemoryZone(ZONE)
        return lambda owner: MemoryProvider(shared, owner)


def test_an_outdated_plan_is_refused_whole() -> None:
    zone = MemoryZone(ZONE)
    provider = MemoryProvider(zone, "me")
    a = Record(f"mail.{ZONE}", "A", 60, ("192.0.2.1",))
    provider.apply(plan_for(provider, [a])[0])
    plan, _ = plan_for(
        provider, [Record(a.name, "A", 60, ("192.0.2.2",)), Record(ZONE, "MX", 60, (f"10 {a.name}",))]
    )
    provider.apply(plan_for(provider, [Record(a.name, "A", 60, ("192.0.2.3",))])[0])  # someone moved it
    with pytest.raises(PlanOutdatedError) as refused:
        provider.apply(plan)
    assert refused.value.result is not None and refused.value.result.applied == ()
    assert [r for r, _ in zone.records] == [Record(a.name, "A", 60, ("192.0.2.3",))]  # the MX was not made


def test_a_failed_apply_reports_what_was_not_applied() -> None:
    provider = MemoryProvider(ZONE, "me")
    provider.fail_next = DnsConnectionError("cannot reach the nameserver")
    plan, _ = plan_for(provider, [Record(f"mail.{ZONE}", "A", 60, ("192.0.2.1",))])
    with pytest.raises(DnsConnectionError) as failed:
        provider.apply(plan)
    assert failed.value.result is not None and not failed.value.result.complete
    assert "re-run to converge" in str(failed.value)
    assert provider.list_records() == [] and provider.state.writes == 0


def test_the_registry_finds_every_provider_by_its_entry_point() -> None:
    assert {"cloudflare", "rfc2136", "memory"} <= set(providers())
    for name, plugin in providers().items():
        assert plugin.name == name and plugin.support.record_types
    assert "proxied" in provider_plugin("cloudflare").support.options
    assert provider_plugin("rfc2136").support.options == {}
    from mailu_flows.blocks import CloudflareDns, Rfc2136Dns

    blocks = {name: p.block_type() if p.block_type else None for name, p in providers().items()}
    assert blocks["cloudflare"] is CloudflareDns and blocks["rfc2136"] is Rfc2136Dns
    assert blocks["memory"] is None  # no credentials


def test_an_unknown_provider_names_the_installed_ones() -> None:
    with pytest.raises(UnknownProvider, match=r"'route53' is not an installed DNS provider.*cloudflare"):
        provider_plugin("route53")


def test_connect_provider_builds_the_configured_one() -> None:
    cfg = example_config()
    cfg = cfg.model_copy(update={"dns": cfg.dns.model_copy(update={"provider": "memory"})})
    provider: Provider = connect_provider(cfg, "mailu-flows-test")
    assert isinstance(provider, MemoryProvider) and provider.zone == cfg.dns.zone
    assert provider.owner == "mailu-flows-test"


def test_cloudflare_proxied_default_fills_in_only_for_cloudflare() -> None:
    from mailu_flows.dns.provider import with_option_defaults

    cf = provider_plugin("cloudflare")
    recs = [
        Record("mail.inlock.ai", "A", 60, ("192.0.2.1",)),
        Record("inlock.ai", "MX", 60, ("10 mail.inlock.ai",)),
    ]
    a, mx = with_option_defaults("cloudflare", cf.support, recs)
    assert a.options("cloudflare") == {"proxied": False} and mx.provider_options == ()
    assert with_option_defaults("memory", provider_plugin("memory").support, recs) == recs
