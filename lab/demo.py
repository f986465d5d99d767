"""`make demo`: the main job end to end on the lab, started through the deployments as the UI would.

deploy -> accounts -> dkim-publish -> dns-propagation-wait -> mail-canary -> backup -> backup-verify
(started by the backup's completion) -> upgrade (to the lab's newer Mailu release: backup, verify,
deploy, checks, canary) -> rollback (teardown, volumes kept). Prints a summary table, the
UI's URL and how to stop everything.

The demo serves `.lab/demo-stack.yaml`: the lab's config with the mail canary on (its mailbox declared
in accounts, its password in the lab's block), unscheduled so that no probe runs after the teardown.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lab import endpoints as ep

if TYPE_CHECKING:
    from mailu_core.config import StackConfig

os.environ.setdefault("PREFECT_API_URL", ep.PREFECT_API_URL)


def triggered_run(deployment: str, after: datetime, timeout_s: float) -> Any:
    """The run of `deployment` an event trigger started after `after`, once it is final (None when no
    run was started within a minute). Runs the scheduler made for later are not due yet: left out.
    The demo waits for it rather than starting one: this is how `make test` shows the trigger works."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )

    deadline = time.monotonic() + timeout_s
    appear_by = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(deployment)
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                flow_run_filter=FlowRunFilter(
                    expected_start_time=FlowRunFilterExpectedStartTime(
                        after_=after, before_=datetime.now(UTC)
                    )
                ),
            )
            if runs and all(r.state is not None and r.state.is_final() for r in runs):
                return runs[0]
            if not runs and time.monotonic() > appear_by:
                return None
            time.sleep(1)
    return None


def _block_pins(cfg: StackConfig) -> str:
    """Which release the stack's block pins now (a good upgrade saves its pins there)."""
    from mailu_core.upgrade import mailu_images
    from mailu_flows.blocks import MailuStack, load_block
    from mailu_flows.blocks.stack import block_slug

    block = load_block(MailuStack, cfg.name).config
    same = mailu_images(block) == mailu_images(cfg)
    return f"the stack block {block_slug(cfg.name)} pins {'the previous' if same else 'its'} images"


def main() -> int:
    from prefect.deployments import run_deployment

    from lab.serving import ensure_serving
    from lab.stack_config import with_canary
    from lab.upgrade_images import UPGRADE_TAG, ensure_upgrade_images
    from mailu_core.config import dump_stack_config, load_stack_config
    from mailu_core.upgrade import mailu_images
    from mailu_flows.deployments.definitions import DEPLOYMENTS, deployment_id

    config_path = ep.lab_dir() / "demo-stack.yaml"
    cfg = with_canary(load_stack_config(ep.lab_dir() / "stack.yaml"))
    config_path.write_text(dump_stack_config(cfg))
    print("demo: serving every deployment (mailu-flows serve) ...", flush=True)
    ensure_serving(config_path, restart=True)
    print(f"demo: the lab's newer Mailu release {UPGRADE_TAG} (built from the pinned images) ...", flush=True)
    ensure_upgrade_images(mailu_images(cfg))
    ids = {spec.name: deployment_id(spec) for spec in DEPLOYMENTS}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("deploy", {}),
        ("accounts", {}),  # deploy applied them already: this run plans no change
        ("dkim-publish", {}),
        ("dns-propagation-wait", {}),
        ("mail-canary", {}),  # a probe each way, judged (DKIM, alignment, rspamd's verdict)
        ("backup", {}),
        ("backup-verify", {}),  # started by the backup's completion (event trigger): waited for
        ("upgrade", {"to": UPGRADE_TAG, "confirm": cfg.hostname}),
        ("rollback", {"mode": "teardown", "confirm": cfg.hostname}),
    ]
    rows = []
    failed = False
    backup_started = datetime.now(UTC)
    for name, params in steps:
        start = time.monotonic()
        run: Any = None
        if name == "backup-verify":
            print(f"demo: waiting for the {name} run the backup's completion started ...", flush=True)
            run = triggered_run(ids[name], backup_started, timeout_s=1800)
            if run is None:
                failed = True
                print(f"demo: no {name} run followed the backup (its event trigger)", file=sys.stderr)
                rows.append((name, "-", "not triggered", "-", "-"))
                break
        else:
            print(f"demo: running {name} ...", flush=True)
            if name == "backup":
                backup_started = datetime.now(UTC)
            run = run_deployment(ids[name], parameters=params, timeout=1800, poll_interval=1)
        took = time.monotonic() - start
        state = run.state.name if run.state else "?"
        rows.append(
            (
                name,
                run.name,
                state,
                f"{took:.1f}s",
                f"http://127.0.0.1:{ep.PREFECT_PORT}/runs/flow-run/{run.id}",
            )
        )
        if not (run.state and run.state.is_completed()):
            failed = True
            print(f"demo: {name} ended {state}: {run.state.message if run.state else ''}", file=sys.stderr)
            break
    widths = [
        max(len(str(r[i])) for r in [("flow", "run", "state", "time", "link"), *rows]) for i in range(5)
    ]
    print()
    for row in [("flow", "run", "state", "time", "link"), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    print()
    print(f"Prefect UI: http://127.0.0.1:{ep.PREFECT_PORT}  (deployments, runs, artifacts)")
    print(f"Stack config: {config_path}; lab endpoints: .venv/bin/mailu-flows lab status")
    if any(name == "upgrade" for name, *_ in rows):
        print(f"The upgrade to {UPGRADE_TAG}: {_block_pins(cfg)}; {config_path.name} still pins the "
              "previous images (`make demo` pushes it again).")  # fmt: skip
    print("The rollback (teardown) stopped the stack and kept its volumes; `make demo` again redeploys.")
    print("Stop everything: make lab-down")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
