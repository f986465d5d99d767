"""The stack config as a block (`mailu-flows config push` / `pull`): saved only when valid, unchanged when
pushed again, read back as the same config, and refused with the file's own errors before anything is
saved. On the session's throwaway Prefect server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from mailu_core.config import StackConfig, load_stack_config
from mailu_flows.blocks import BlockNotFound, MailuStack, load_block
from mailu_flows.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inlock.ai.yaml"


def test_push_saves_once_pull_reads_it_back(
    prefect_server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = load_stack_config(EXAMPLE)
    data = cast(dict[str, Any], yaml.safe_load(EXAMPLE.read_text()))
    data["name"] = "push-pull-test"
    source = tmp_path / "stack.yaml"
    source.write_text(yaml.safe_dump(data))
    assert main(["config", "push", "--config", str(source)]) == 0
    assert "block mailu-stack/push-pull-test saved" in capsys.readouterr().out
    assert main(["config", "push", "--config", str(source)]) == 0
    assert "block mailu-stack/push-pull-test unchanged" in capsys.readouterr().out
    assert main(["config", "pull", "--stack", "push-pull-test"]) == 0
    pulled = StackConfig.model_validate(yaml.safe_load(capsys.readouterr().out))
    assert pulled == cfg.model_copy(update={"name": "push-pull-test"})
    assert load_block(MailuStack, "push-pull-test").config == pulled


def test_an_invalid_file_is_refused_and_nothing_is_saved(
    prefect_server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = cast(dict[str, Any], yaml.safe_load(EXAMPLE.read_text()))
    data["name"] = "never-saved"
    data["images"]["front"] = "mailu/nginx:latest"  # a tag, not a digest
    source = tmp_path / "stack.yaml"
    source.write_text(yaml.safe_dump(data))
    assert main(["config", "push", "--config", str(source)]) == 1
    assert "images.front" in capsys.readouterr().out
    with pytest.raises(BlockNotFound, match="mailu-flows config push --config"):
        load_block(MailuStack, "never-saved")
    assert main(["config", "pull", "--stack", "never-saved"]) == 2


def test_a_start_of_serve_keeps_a_block_edited_in_the_ui_and_names_what_differs(prefect_server: str) -> None:
    """`serve` and `prefect-yaml` save the file only where the stack has no block: an edit made in the
    UI survives their restart, and they say which fields differ and how to settle it."""
    from mailu_flows.blocks.stack import push_stack_config

    cfg = load_stack_config(EXAMPLE).model_copy(update={"name": "kept-test"})
    first = push_stack_config(cfg, replace=False)
    assert first.saved and first.kept == []  # no block yet: saved
    edited = cfg.model_copy(update={"mailu": cfg.mailu.model_copy(update={"timezone": "Europe/Paris"})})
    assert push_stack_config(edited).saved  # the edit (as in the UI)
    kept = push_stack_config(cfg, replace=False)
    assert not kept.saved and kept.kept == ["mailu.timezone"] and kept.block_id == first.block_id
    assert load_block(MailuStack, "kept-test").config == edited
    message = kept.describe("kept-test", "stack.yaml")
    assert "differs from stack.yaml in mailu.timezone" in message
    assert (
        "mailu-flows config push --config stack.yaml" in message
        and "config pull --stack kept-test" in message
    )


def test_a_good_upgrade_records_its_pins_in_the_block_that_held_the_config_it_started_from(
    prefect_server: str,
) -> None:
    """The upgraded config replaces the block only when the block still says what the upgrade started
    from; an edited block is kept (and named), and a stack with no block gets none."""
    from mailu_core.upgrade import mailu_images, plan_upgrade
    from mailu_flows.blocks.stack import push_stack_config, record_upgrade

    before = load_stack_config(EXAMPLE).model_copy(update={"name": "upgrade-pins-test"})
    digests = {service: "sha256:" + "ab" * 32 for service in mailu_images(before)}
    after = plan_upgrade(before, "2024.06.10", digests).config
    assert after != before

    saved, detail = record_upgrade(before, after)  # no block: nothing made
    assert not saved and "no block mailu-stack/upgrade-pins-test" in detail
    with pytest.raises(BlockNotFound):
        load_block(MailuStack, "upgrade-pins-test")

    push_stack_config(before)
    saved, detail = record_upgrade(before, after)
    assert saved and "config pull --stack upgrade-pins-test" in detail
    assert load_block(MailuStack, "upgrade-pins-test").config == after

    edited = after.model_copy(update={"mailu": after.mailu.model_copy(update={"timezone": "Europe/Paris"})})
    push_stack_config(edited)
    saved, detail = record_upgrade(before, after)
    assert not saved and "kept" in detail and "mailu.timezone" in detail and "images" in detail
    assert load_block(MailuStack, "upgrade-pins-test").config == edited
