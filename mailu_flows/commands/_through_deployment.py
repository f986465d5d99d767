"""A flow command without `--local`: the run is handed to the stack's deployment and watched.

The run happens on the flow runner, with the deployed config (the stack's block). Before anything
starts, the command checks that the block says what the given file says, and that the stack has the
deployment on this server; each refusal names the fix. Then it creates the run (the server checks
the parameters), prints the run's logs as they arrive, and ends with the run's state and address.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any
from uuid import UUID

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
POLL_S = 1.0


def run_through_deployment(args: argparse.Namespace, deployment: str, config: Any, **params: Any) -> int:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from pydantic_core import to_jsonable_python

    from mailu_core.config import differing_fields
    from mailu_flows.blocks.registry import BlockNotFound, load_block, prefect_server
    from mailu_flows.blocks.stack import MailuStack, block_slug, settle_hint
    from mailu_flows.deployments.definitions import SPECS_BY_NAME

    command = f"mailu-flows {args.command}"
    try:
        block = load_block(MailuStack, config.name)
    except BlockNotFound as exc:
        return _refuse(command, f"{exc}; or run the file here with --local")
    differing = differing_fields(config.model_dump(mode="json"), block.config.model_dump(mode="json"))
    if differing:
        return _refuse(
            command,
            f"the stack's block {block_slug(config.name)} on {prefect_server()} differs from {args.config} "
            f"in {', '.join(differing)}; the deployment runs with the block; "
            f"{settle_hint(config.name, str(args.config))}; or run the file here with --local",
        )
    spec = SPECS_BY_NAME[deployment]
    with get_client(sync_client=True) as client:
        found = _stack_deployment(client, spec, config)
        if found is None:
            return _refuse(
                command,
                f"no {spec.flow_name} deployment of stack {config.name} on {prefect_server()}: serve the "
                f"stack's deployments (`mailu-flows serve --config {args.config}`) or deploy its "
                "prefect.yaml (docs/setup.md, 'Serve the deployments'); or run the file here with --local",
            )
        dep_id, name = found
        try:
            run = client.create_flow_run_from_deployment(dep_id, parameters=to_jsonable_python(params))
        except PrefectHTTPStatusError as exc:  # the server's parameter check
            return _refuse(command, f"the server refused the run's parameters: {exc.response.text[:2000]}")
        url = _run_url(run.id)
        print(f"{command}: flow run {run.name} of {name} on the flow runner: {url}", file=sys.stderr)
        try:
            run = _watch(client, run.id)  # as it ended: its state, and the name it took when it started
        except KeyboardInterrupt:
            print(f"\n{command}: stopped watching; the run goes on: {url}", file=sys.stderr)
            return 130
        state = run.state
        reports = [] if args.json or not state.is_completed() else _markdown_reports(client, run.id)
    if args.json:
        out = {"state": state.name, "message": state.message, "flow_run_id": str(run.id), "url": url}
        print(json.dumps({**out, "flow_run_name": run.name, "deployment": name}, indent=2))
    elif state.is_completed():
        for report in reports:  # what the run published: plans, tables, results
            print(report)
        print(f"{state.name}: {run.name} ({url})", file=sys.stderr)
    else:
        print(f"{state.name}: {state.message or 'see the run'} ({url})", file=sys.stderr)
    return EXIT_OK if state.is_completed() else EXIT_FAILED


def _markdown_reports(client: Any, run_id: UUID) -> list[str]:
    """The run's markdown artifacts, oldest first (a `plan > plan.md` gets the plan)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import ArtifactSort

    found = client.read_artifacts(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), sort=ArtifactSort.CREATED_DESC
    )
    return [str(a.data) for a in reversed(found) if a.type == "markdown" and a.data]


def _refuse(command: str, message: str) -> int:
    print(f"{command}: {message}", file=sys.stderr)
    return EXIT_REFUSED


def _stack_deployment(client: Any, spec: Any, config: Any) -> tuple[UUID, str] | None:
    """The stack's deployment of `spec`: named after the stack (a shared server), or plain when it
    carries the stack's tag. None when the server has neither."""
    from prefect.exceptions import ObjectNotFound

    from mailu_flows.deployments.definitions import deployment_id, stack_tag

    for candidate in (deployment_id(spec, config.name), deployment_id(spec)):
        try:
            dep = client.read_deployment_by_name(candidate)
        except ObjectNotFound:
            continue
        if stack_tag(config) in (dep.tags or []):
            return dep.id, candidate
    return None


def _run_url(run_id: UUID) -> str:
    from prefect.utilities.urls import url_for

    return url_for("flow-run", obj_id=run_id) or f"flow run {run_id}"


def _watch(client: Any, run_id: UUID, not_started_hint_s: float = 30.0) -> Any:
    """Print the run's log lines as they arrive; return the run once its state is final (the lines
    sent just after it are read too). A run nobody picks up is said once (the runner may be down);
    the wait goes on."""
    cursor = LogCursor()
    started = time.monotonic()
    hinted = False
    while True:
        run = client.read_flow_run(run_id)
        for line in cursor.new_lines(client, run_id):
            print(line, file=sys.stderr)
        state = run.state
        if state is not None and state.is_final():
            time.sleep(POLL_S)  # the runner sends its last lines in a batch after the state
            for line in cursor.new_lines(client, run_id):
                print(line, file=sys.stderr)
            return run
        waiting = state is None or state.is_scheduled() or state.is_pending()
        if waiting and not hinted and time.monotonic() - started > not_started_hint_s:
            name = state.name if state is not None else "not started"
            print(
                f"the run is still {name} after {not_started_hint_s:.0f} s: is `mailu-flows serve` (or a "
                "worker of the deployment's pool) running? Waiting on; Ctrl-C stops watching, not the run.",
                file=sys.stderr,
            )
            hinted = True
        time.sleep(POLL_S)


class LogCursor:
    """Reads a run's logs page by page from the last timestamp seen (the server returns at most a page
    per call), each line once."""

    PAGE = 200

    def __init__(self) -> None:
        self.seen: set[UUID] = set()
        self.after: Any = None

    def new_lines(self, client: Any, run_id: UUID) -> list[str]:
        import logging

        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp
        from prefect.client.schemas.sorting import LogSort

        lines: list[str] = []
        while True:
            log_filter = LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[run_id]), timestamp=LogFilterTimestamp(after_=self.after)
            )
            page = client.read_logs(log_filter=log_filter, limit=self.PAGE, sort=LogSort.TIMESTAMP_ASC)
            fresh = [log for log in page if log.id not in self.seen]
            for log in fresh:
                self.seen.add(log.id)
                lines.append(
                    f"{log.timestamp:%H:%M:%S} | {logging.getLevelName(log.level):<7} | {log.message}"
                )
            if page:
                self.after = page[-1].timestamp  # at or after: the last one comes again, and is skipped
            if len(page) < self.PAGE or not fresh:
                return lines
