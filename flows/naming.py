"""Flow names, run names and artifact keys that say what they are and which stack they belong to.

Flows carry a `mailu-` prefix so that they do not collide with other projects' flows on a shared
Prefect server; runs are named `<what>-<stack>` (`deploy-inlock-ai`, `rollback-teardown-inlock-ai`)
so that a list of runs reads without opening each; artifact keys end with the stack, so that two
stacks on one server keep separate histories.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FLOW_PREFIX = "mailu-"


def flow_name(what: str) -> str:
    """The Prefect flow name of one of our flows: `mailu-<what>`."""
    return FLOW_PREFIX + what


def _stack_name(config: Any) -> str:
    """The stack's name from the `config` parameter, as the run sees it: the config model, the stack
    block holding it, or the raw dict of a run created from a deployment before validation."""
    config = getattr(config, "config", config)  # a MailuStack block: its config
    name = config.get("name") if isinstance(config, dict) else getattr(config, "name", None)
    return str(name) if name else "unnamed-stack"


def run_name(what: str, qualifiers: tuple[str, ...], parameters: dict[str, Any]) -> str:
    """`<what>[-<qualifier value>...]-<stack>`, the qualifiers being parameter names (e.g. `mode`
    makes `rollback-teardown-<stack>`); a qualifier left empty is left out."""
    parts = [what, *(str(parameters[q]) for q in qualifiers if parameters.get(q) is not None)]
    return "-".join([*parts, _stack_name(parameters.get("config"))])


def run_namer(what: str, *qualifiers: str) -> Callable[[], str]:
    """A `flow_run_name` callable (Prefect calls it without arguments when the run starts) naming the
    run by `run_name` from the run's own parameters."""

    def name() -> str:
        from prefect.runtime import flow_run

        return run_name(what, qualifiers, dict(flow_run.parameters or {}))

    name.__name__ = f"run_name_{what.replace('-', '_')}"
    return name


def artifact_key(what: str, stack: str) -> str:
    """`mailu-<what>-<stack>`: Prefect keys allow lowercase letters, digits and dashes, as stack
    names do."""
    return f"{FLOW_PREFIX}{what}-{stack}".lower()
