"""A Mailu release upgrade, planned without touching anything: the release tag's image in the registry
each of the stack's Mailu images already comes from, old and new digests side by side, and the config
pinned to the new ones.

The digests are resolved by `mailu_flows.registry` (the registry's HTTP API); this module only decides.
Redis and PostgreSQL are not Mailu's images and keep their pins: their upgrades are the operator's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailu_core.config import StackConfig, stack_config_from_mapping
from mailu_core.services import SERVICES

__all__ = ["ImageChange", "UpgradePlan", "mailu_images", "plan_upgrade", "release_reference", "repository_of"]

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # Docker's tag grammar


def repository_of(reference: str) -> str:
    """`registry/repo` of a pinned reference `registry/repo[:tag]@sha256:…`."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


def release_reference(reference: str, tag: str) -> str:
    """The same repository at `tag` (what the registry is asked for)."""
    if not _TAG.match(tag):
        raise ValueError(f"{tag!r} is not an image tag (letters, digits, '_', '.', '-'; at most 128)")
    return f"{repository_of(reference)}:{tag}"


def mailu_images(cfg: StackConfig) -> dict[str, str]:
    """Service -> pinned reference of each of Mailu's own images the stack runs."""
    images: dict[str, str] = {}
    for spec in SERVICES:
        reference = getattr(cfg.images, spec.image_field)
        if spec.mailu and reference is not None:
            images[spec.name] = reference
    return images


@dataclass(frozen=True)
class ImageChange:
    service: str
    old: str
    new: str

    @property
    def changed(self) -> bool:
        """A different image: the digests differ (an informative `:tag` in the old pin is no change)."""
        return self.old.rsplit("@", 1)[-1] != self.new.rsplit("@", 1)[-1]


@dataclass(frozen=True)
class UpgradePlan:
    """From the config's release to `tag`: each Mailu image's old and new pinned reference."""

    from_version: str
    to_version: str
    changes: tuple[ImageChange, ...]
    config: StackConfig  # the config pinned to the new release

    @property
    def admin_changes(self) -> bool:
        """admin migrates its database when it starts: going back later needs its pre-upgrade data."""
        return any(c.service == "admin" and c.changed for c in self.changes)

    def table(self) -> str:
        rows = [f"Mailu {self.from_version} -> {self.to_version}", "| service | old | new |", "|---|---|---|"]
        rows += [
            f"| {c.service} | `{c.old.split('@')[-1][:19]}` | `{c.new.split('@')[-1][:19]}`"
            f"{'' if c.changed else ' (same)'} |"
            for c in self.changes
        ]
        return "\n".join(rows)


def plan_upgrade(cfg: StackConfig, tag: str, digests: dict[str, str]) -> UpgradePlan:
    """The plan to `tag`, given each service's `sha256:…` digest at that tag (from the registry)."""
    current = mailu_images(cfg)
    missing = sorted(set(current) - set(digests))
    if missing:
        raise ValueError(f"no digest for {', '.join(missing)} at {tag!r}")
    changes = []
    for service, old in current.items():
        digest = digests[service]
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError(f"{service}: {digest!r} is not a sha256 digest")
        changes.append(ImageChange(service, old, f"{repository_of(old)}@{digest}"))
    data = cfg.model_dump(mode="json")
    data["mailu"]["version"] = _version_of(tag, cfg.mailu.version)
    data["images"].update({c.service: c.new for c in changes})
    upgraded = stack_config_from_mapping(data, source=f"upgrade to {tag}")
    return UpgradePlan(cfg.mailu.version, upgraded.mailu.version, tuple(changes), upgraded)


def _version_of(tag: str, current: str) -> str:
    """mailu.version for `tag`: the tag's YYYY.MM release (2024.06.10 -> 2024.06), else the current one."""
    found = re.match(r"^(\d{4}\.\d{2})(?:\.\d+)?$", tag)
    return found.group(1) if found else current
