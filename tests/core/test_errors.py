"""One error root: every exception class the product defines derives from MailuFlowsError (and keeps the
standard base it had, so `except ValueError` still catches a bad field)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from mailu_core.errors import MailuFlowsError, tree

PRODUCT = ("mailu_core", "mailu_flows")  # mailu_flows holds flows, tasks, blocks, deployments


def product_exceptions() -> list[type[BaseException]]:
    """Every exception class defined (not imported) in a module of the product packages."""
    found: dict[str, type[BaseException]] = {}
    for package in PRODUCT:
        root = importlib.import_module(package)
        modules = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.")]
        for name in modules:
            module = importlib.import_module(name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == name:
                    found[f"{name}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def test_every_product_exception_derives_from_the_root() -> None:
    classes = product_exceptions()
    assert len(classes) > 30  # the walk found the product's exceptions, not an empty list
    strays = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, MailuFlowsError)]
    assert not strays, f"derive these from mailu_core.errors.MailuFlowsError too: {strays}"


@pytest.mark.parametrize(
    ("path", "standard"),
    [
        ("mailu_core.config.ConfigError", ValueError),
        ("mailu_core.dns.propagation.PropagationTimeout", TimeoutError),
        ("mailu_flows.host.CommandFailed", RuntimeError),
        ("mailu_flows.dns.provider.RecordOutsideZoneError", ValueError),
        ("mailu_flows.rollback.ConfirmationRefused", ValueError),
    ],
)
def test_the_standard_bases_stay(path: str, standard: type[BaseException]) -> None:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, MailuFlowsError) and issubclass(cls, standard)


def test_the_documented_tree_names_every_exception_class() -> None:
    """The tree in mailu_core.errors' docstring is what a reader sees: a new class goes in it."""
    import re

    import mailu_core.errors

    doc = mailu_core.errors.__doc__ or ""
    unnamed = sorted(
        {c.__qualname__ for c in product_exceptions() if not re.search(rf"\b{c.__qualname__}\b", doc)}
    )
    assert not unnamed, f"add these to the tree in mailu_core/errors.py's docstring: {unnamed}"


def test_the_tree_lists_the_families() -> None:
    product_exceptions()  # import every module, so the tree is complete
    text = tree()
    assert text.splitlines()[0] == "mailu_core.errors.MailuFlowsError"
    for name in ("RemoteError", "CommandFailed", "DnsError", "ConfigError", "UnsafePlan"):
        assert f".{name}" in text
