"""Deterministic YAML text for rendered files.

Why: the deploy writes a file only when its bytes differ, so the same data must always give the
same bytes: block style, the caller's key order (callers sort where order does not matter), no
line folding, and never an anchor/alias that PyYAML would invent for shared objects (the compose
file's `x-hardening` anchors are written on purpose by `compose.py`, not here).
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["dump_yaml", "indent"]


class _StableDumper(yaml.SafeDumper):
    """SafeDumper that never emits aliases and indents sequences under their key (compose style)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump_yaml(data: Any) -> str:
    """Block-style YAML of `data` in insertion order; identical input gives identical text."""
    text: str = yaml.dump(
        data,
        Dumper=_StableDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=1_000_000,
        indent=2,
    )
    return text


def indent(text: str, spaces: int) -> str:
    """Indent every non-empty line (to nest a dumped block under a hand-written key)."""
    pad = " " * spaces
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))
