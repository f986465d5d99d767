"""What a rollback refuses or fails at; every message says why and what to do."""

from __future__ import annotations

from mailu_core.errors import MailuFlowsError

__all__ = ["ConfirmationRefused", "NoPreviousRelease", "RollbackError"]


class RollbackError(MailuFlowsError, RuntimeError):
    """The rollback cannot start or did not finish; the message says why and what to do."""


class ConfirmationRefused(RollbackError, ValueError):
    """The type-to-confirm parameter does not name the stack's mail hostname: nothing was touched."""


class NoPreviousRelease(RollbackError):
    """previous-release: there is no good release to go back to."""
