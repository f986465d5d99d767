"""The check a flow command makes before handing a run to the stack's deployment: which fields of the
file differ from the stack's block (named, so the refusal says what to push or pull)."""

from __future__ import annotations

from mailu_flows.commands._through_deployment import differing_fields


def test_equal_configs_differ_nowhere() -> None:
    config = {"name": "lab", "mailu": {"domain": "inlock.test", "hostnames": ["mail.inlock.test"]}}
    assert differing_fields(config, config) == []


def test_each_differing_field_is_named_down_to_two_levels() -> None:
    mine = {"name": "lab", "mailu": {"domain": "a.test", "tls": {"flavor": "mail"}}, "images": {"front": "x"}}
    theirs = {"name": "lab", "mailu": {"domain": "b.test", "tls": {"flavor": "cert"}}, "extra": 1}
    assert differing_fields(mine, theirs) == ["extra", "images", "mailu.domain", "mailu.tls"]
