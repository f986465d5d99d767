"""Every runtime dependency in pyproject.toml is imported by the product (an unused one goes)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("mailu_core", "mailu_flows", "flows", "tasks", "blocks", "deployments")
# distribution name -> the module it is imported as
MODULE_OF = {"python-gnupg": "gnupg", "dnspython": "dns", "PyYAML": "yaml", "dkimpy": "dkim"}


def _imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    pattern = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
    for folder in PRODUCT:
        for path in (REPO / folder).rglob("*.py"):
            found |= set(pattern.findall(path.read_text()))
    return found


def test_every_runtime_dependency_is_imported_by_the_product() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0] for dep in project["dependencies"]]
    imported = _imported_top_level_modules()
    unused = [name for name in names if MODULE_OF.get(name, name.replace("-", "_")) not in imported]
    assert unused == [], f"dependencies the product never imports: {unused}"
