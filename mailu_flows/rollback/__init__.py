"""The rollback engine, as plain code over the flow's one SSH connection (the Prefect flows in
flows/rollback.py wrap it; nothing here knows Prefect).

- `plan`: the pure plan: from the config, the release records and the journal to ordered steps.
- `steps`: one class per step, each with `check(ctx)` (already done?) and `apply(ctx)`.
- `run`: `Rollback` reads the plan from the host and runs it, writing the journal as it goes.
- `journal`: the journal on the host (its format is shared with older versions).
- `teardown`: which files and DNS records a teardown removes, and how Traefik's view is judged (pure).
"""

from __future__ import annotations

from mailu_flows.rollback.errors import ConfirmationRefused, NoPreviousRelease, RollbackError
from mailu_flows.rollback.journal import Journal, now, read_journal, save_journal
from mailu_flows.rollback.plan import (
    MODES,
    Mode,
    RollbackPlan,
    blocking_journal,
    check_confirmation,
    make_plan,
    select_releases,
)
from mailu_flows.rollback.run import Rollback, RollbackResult
from mailu_flows.rollback.steps import RollbackContext, Row, Step
from mailu_flows.rollback.teardown import (
    dns_names,
    dns_teardown_plan,
    is_monitoring_file,
    kept_records,
    mailu_objects,
    managed_dirs,
    other_routers,
    teardown_files,
)

__all__ = [
    "MODES",
    "ConfirmationRefused",
    "Journal",
    "Mode",
    "NoPreviousRelease",
    "Rollback",
    "RollbackContext",
    "RollbackError",
    "RollbackPlan",
    "RollbackResult",
    "Row",
    "Step",
    "blocking_journal",
    "check_confirmation",
    "dns_names",
    "dns_teardown_plan",
    "is_monitoring_file",
    "kept_records",
    "mailu_objects",
    "make_plan",
    "managed_dirs",
    "now",
    "other_routers",
    "read_journal",
    "save_journal",
    "select_releases",
    "teardown_files",
]
