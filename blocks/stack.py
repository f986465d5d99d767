"""The stack config as a block: the one copy every deployment of a stack reads when its run starts.

Deployments refer to the block (by id when served, by `mailu-stack/<name>` in prefect.yaml) instead
of carrying a copy of the config in their parameter defaults, so editing the block (in the UI, or
with `mailu-flows config push`) changes what the next run of every deployment of that stack uses,
and the run form shows a block picker. A run may still be given the whole config (a local run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from prefect.blocks.core import Block
from pydantic import BeforeValidator, ConfigDict, Field

from mailu_core.config import StackConfig
from mailu_flows.blocks.meta import DOCS_URL, LOGO_URL


class MailuStack(Block):
    """One Mailu stack's config (host, Mailu settings, images, DNS, backup): what its flows run with."""

    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "Mailu Stack"
    _block_type_slug = "mailu-stack"
    _description = (
        "The stack config file's contents; every deployment of the stack reads it when a run starts "
        "(named after the stack)."
    )
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL
    _code_example = """
    ```python
    from mailu_flows.blocks import MailuStack

    stack = MailuStack.load("BLOCK_NAME")  # the stack's name; `mailu-flows config push` saves it
    print(stack.config.summary())
    ```
    """

    config: StackConfig = Field(description="The stack config (the same fields as the YAML file).")


def stack_config(value: Any) -> Any:
    """The config inside a stack block (Prefect hands the loaded block to the flow); anything else as
    it is, for the config's own validation."""
    return value.config if isinstance(value, MailuStack) else value


StackParameter = Annotated[
    StackConfig, BeforeValidator(stack_config, json_schema_input_type=StackConfig | MailuStack)
]
"""A flow's `config` parameter: the stack's block (a deployment's default, or picked in the UI) or
the whole config (a local run). The schema the server and the UI see offers both; the flow always
gets the config, and a bad value is named by its place in the config (`config.mailu.timezone`)."""


@dataclass(frozen=True)
class PushOutcome:
    """What saving a config file to its stack's block did."""

    block_id: UUID
    saved: bool  # the block now says what the file says, and did not before
    kept: list[str]  # fields in which the block, left as it was, differs from the file

    def describe(self, stack: str, source: str) -> str:
        block = f"block {block_slug(stack)}"
        if self.kept:
            return (
                f"{block} kept: it differs from {source} in {', '.join(self.kept)} (edited in the UI?) and "
                f"every run reads the block; {settle_hint(stack, source)}"
            )
        return f"{block} {'saved' if self.saved else 'unchanged'} (every run of the stack reads it)"


def block_slug(stack: str) -> str:
    """`mailu-stack/<stack>`: the stack's block as the CLI and the UI name it."""
    return f"{MailuStack.get_block_type_slug()}/{stack}"


def settle_hint(stack: str, source: str) -> str:
    """How to settle a stack file that differs from its block, whichever should win."""
    return (
        f"make the file the config with `mailu-flows config push --config {source}`, or bring the "
        f"block into the file with `mailu-flows config pull --stack {stack}`"
    )


def push_stack_config(config: StackConfig, replace: bool = True) -> PushOutcome:
    """Save `config` as the stack's block (named after the stack) on the current Prefect server. With
    `replace` false, a block that already exists is left as it is (a start of `serve` must not undo
    an edit made in the UI), and the fields it differs in are returned."""
    from mailu_core.config import differing_fields

    MailuStack.register_type_and_schema()
    current = _saved_config(config.name)
    if current is not None:
        block_id, saved_json = current
        differing = differing_fields(config.model_dump(mode="json"), saved_json)
        if not differing:
            return PushOutcome(block_id, saved=False, kept=[])
        if not replace:
            return PushOutcome(block_id, saved=False, kept=differing)
    return PushOutcome(_save(config), saved=True, kept=[])


def record_upgrade(before: StackConfig, after: StackConfig) -> tuple[bool, str]:
    """After a good upgrade: the stack's block, when it still holds the config the upgrade started from,
    now holds the upgraded one (new pins and version), so that the next run of any deployment (a deploy
    from the UI, the next upgrade) works with the release the host runs rather than going back to the
    old images over a migrated database. A block that says something else is left as it is.
    (saved, what was done and what the operator does next)."""
    from mailu_core.config import differing_fields

    slug = block_slug(before.name)
    current = _saved_config(before.name)
    if current is None:
        return False, f"no block {slug}: put the new pins (the plan artifact) into the config file"
    differing = differing_fields(before.model_dump(mode="json"), current[1])
    if differing:
        return False, (
            f"block {slug} kept: it differs from the config this upgrade started from in "
            f"{', '.join(differing)}; put the new pins (the plan artifact) into it"
        )
    _save(after)
    return True, (
        f"block {slug} now pins the upgraded images (every run of the stack reads it); bring them into "
        f"the config file with `mailu-flows config pull --stack {before.name}`"
    )


def _saved_config(stack: str) -> tuple[UUID, Any] | None:
    """(block id, the config as saved, JSON-like) of the stack's block; None when it has none. Loaded
    unvalidated: a block that no longer validates is still compared, not refused."""
    from prefect.exceptions import ObjectNotFound

    try:
        current: Any = MailuStack.load(stack, validate=False)
    except (ValueError, ObjectNotFound):
        return None
    if current._block_document_id is None:
        return None
    saved = current.config
    return current._block_document_id, (
        saved.model_dump(mode="json") if isinstance(saved, StackConfig) else saved
    )


def _save(config: StackConfig) -> UUID:
    block_id: UUID = MailuStack(config=config).save(config.name, overwrite=True)  # type: ignore[assignment]
    return block_id
