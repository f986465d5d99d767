"""The `mail-canary` flow (every 15 minutes by default): prove that mail really flows through the
stack, not just that its ports answer.

A round trip from the canary mailbox through Traefik (submission, IMAPS, DKIM against the published
key, alignment, rspamd's verdict; optionally port 25 as an outside server), a table artifact of
every step with its latency, and, on the host's node-exporter textfile collector, the time of the
last good run and the delivery latency (the MailuCanaryNoSuccess and MailuCanarySlow alerts).
"""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.blocks.system import Secret

from mailu_core.canary import CANARY_LAST_SUCCESS_METRIC, CANARY_LATENCY_METRIC
from mailu_core.config import StackConfig
from mailu_core.errors import MailuFlowsError
from mailu_core.render.monitoring import textfile_metric
from mailu_flows import redact
from mailu_flows.blocks import StackParameter, load_block
from mailu_flows.canary import CanaryReport, run_canary
from mailu_flows.flows.naming import artifact_key, flow_name, run_namer
from mailu_flows.tasks.host import host_session, textfile_dir, write_textfile_metric


class CanaryFailed(MailuFlowsError, RuntimeError):
    """A step of the round trip failed; the message lists each failed step."""


class CanaryNotConfigured(MailuFlowsError, ValueError):
    """The config names no canary password block."""


def canary_password(config: StackConfig) -> str:
    """The canary mailbox's password from its Secret block (registered for redaction)."""
    name = config.blocks.canary_password
    if name is None:
        raise CanaryNotConfigured(
            "blocks.canary_password is not set: create a Secret block with the canary mailbox's password "
            "(declare the mailbox in accounts) and name it there"
        )
    block = load_block(Secret, name)
    password = str(block.get())
    redact.register_secret(password)
    return password


def canary_metrics(config: StackConfig, report: CanaryReport, now: float) -> str:
    """Textfile-collector text: the last good run (only written when this run is good) and latencies."""
    stack = (("stack", config.name),)
    text = textfile_metric(
        CANARY_LAST_SUCCESS_METRIC,
        "Unix time of the last mail-canary run whose every step passed.",
        {stack: now},
    )
    text += textfile_metric(
        CANARY_LATENCY_METRIC,
        "Seconds from submission to arrival in the canary mailbox, per direction, of the last good run.",
        {(*stack, ("direction", way)): seconds for way, seconds in sorted(report.latency_s.items())},
    )
    return text


@task(retries=1, retry_delay_seconds=5, timeout_seconds=120)
def publish_canary_metrics(config: StackConfig, report: CanaryReport) -> str | None:
    """Write `<textfile_dir>/mailu_canary_<stack>.prom` on the host (atomically, 0644: nothing secret)."""
    directory = textfile_dir(config)
    if directory is None:
        return None
    with host_session(config, "mail-canary", 0, lock=False) as host:  # one metrics file, no stack state
        text = canary_metrics(config, report, time.time())
        return write_textfile_metric(host, directory, f"mailu_canary_{config.name}", text)


@flow(name=flow_name("mail-canary"), flow_run_name=run_namer("mail-canary"))
def mail_canary(config: StackParameter) -> CanaryReport:
    """Send, receive and judge one probe each way; fail (and notify) if any step fails.

    Args:
        config: The stack (its stack block): its canary section and blocks.canary_password.
    """
    redact.install()
    report = run_canary(config, canary_password(config))
    create_table_artifact(
        [step.row() for step in report.steps],
        key=artifact_key("mail-canary", config.name),
        description=f"mail canary of {config.name}: " + ("every step passed" if report.ok else "FAILED"),
    )
    if not report.ok:
        raise CanaryFailed(f"mail canary of {config.name} failed: " + " | ".join(report.failures()))
    publish_canary_metrics(config, report)
    return report
