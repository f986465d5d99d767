"""The one root of every error mailu-flows raises on purpose, so a caller can catch "ours" in one clause.

`MailuFlowsError` lives in the pure core because the core raises too (a bad config, an unsafe DNS plan)
and the core imports nothing above it. Each class keeps the standard base it had (`ValueError`,
`RuntimeError`, `TimeoutError`, ...), so `except ValueError` still catches a bad field. The tree
(`tests/core/test_errors.py` checks that every exception class of the project derives from the root
and is named here):

    MailuFlowsError
    ├── the pure core (mailu_core): ConfigError (ValueError), UnsafePlan → TooMuchChange,
    │   PropagationTimeout (TimeoutError), AdoptionRefused, OpenPgpError, TooManyDeletes
    ├── RemoteError (RuntimeError, mailu_flows.host): the managed host
    │   ├── CommandFailed, CommandTimedOut, HostKeyMismatch, HostBusy
    │   ├── UnexpectedCommand (FakeHost: a command no answer was scripted for)
    │   └── UnreadableRelease, DkimKeyError
    ├── UnsafeDockerArgument (ValueError, mailu_flows.dockercmd): an operand a docker argv refuses
    ├── DnsError (mailu_flows.dns.provider): a DNS provider or nameserver
    │   ├── ZoneNotFoundError, DnsAuthError, DnsConnectionError, PlanOutdatedError
    │   ├── RecordOutsideZoneError (ValueError), UnsupportedRecord (ValueError)
    │   └── UnknownProvider (LookupError, the registry), DnsConflicts (tasks.dns)
    ├── the engines' own: DeployError → PreflightFailed, CertificateNotIssued, RollbackError →
    │   ConfirmationRefused (ValueError) / NoPreviousRelease, BackupError, GpgError, RestoreRefused,
    │   RestoreFailed, BackupNotAuthentic, DestinationBusy, UnsafeName (ValueError), AccountsApiError,
    │   PasswordUnavailable, UnresolvedConflicts, RegistryError, UpgradeRefused, UpgradeFailed
    └── the Prefect layer's: BlockInputError, BlockNotFound, FlattenedKeyError (ValueError),
        DnsStepFailed, DkimMismatch, BackupVerificationFailed, CanaryFailed, CanaryNotConfigured,
        AccountsStepFailed, DeployCanaryFailed

`tree()` prints the live tree of the classes imported so far (the error test imports every module).
"""

from __future__ import annotations

__all__ = ["MailuFlowsError", "tree"]


class MailuFlowsError(Exception):
    """Something mailu-flows refuses or could not do; the message names the input or the host and the fix."""


def tree(root: type[BaseException] = MailuFlowsError) -> str:
    """The subclasses of `root` that are imported now, as an indented tree (for docs and debugging)."""
    lines: list[str] = []

    def walk(cls: type[BaseException], depth: int) -> None:
        for sub in sorted(cls.__subclasses__(), key=lambda c: (c.__module__, c.__qualname__)):
            lines.append(f"{'  ' * depth}{sub.__module__}.{sub.__qualname__}")
            walk(sub, depth + 1)

    lines.append(f"{root.__module__}.{root.__qualname__}")
    walk(root, 1)
    return "\n".join(lines)
