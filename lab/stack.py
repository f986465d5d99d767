"""The lab's own stack config (`.lab/stack.yaml`) and the Prefect blocks holding the lab's credentials."""

from __future__ import annotations

from pathlib import Path

from lab import endpoints as ep


def write_lab_stack_config(images: dict[str, str]) -> Path:
    """Placeholder until the config model lands: records the pinned images."""
    import yaml

    path = ep.lab_dir() / "stack.yaml"
    path.write_text(yaml.safe_dump({"images": images}, sort_keys=False))
    return path
