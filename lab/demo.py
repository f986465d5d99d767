"""`make demo`: the main job end to end on the lab, started through the deployments as the UI would.

deploy -> dkim-publish -> dns-propagation-wait -> backup -> backup-verify -> rollback (teardown,
volumes kept). Prints a summary table, the UI's URL and how to stop everything.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from lab import endpoints as ep

os.environ.setdefault("PREFECT_API_URL", ep.PREFECT_API_URL)


def main() -> int:
    from prefect.deployments import run_deployment

    from lab.serving import ensure_serving
    from mailu_core.config import load_stack_config

    config_path = ep.lab_dir() / "stack.yaml"
    cfg = load_stack_config(config_path)
    print("demo: serving every deployment (mailu-flows serve) ...", flush=True)
    ensure_serving(config_path, restart=True)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("deploy/deploy", {}),
        ("dkim-publish/dkim-publish", {}),
        ("dns-propagation-wait/dns-propagation-wait", {}),
        ("backup/backup", {}),
        ("backup-verify/backup-verify", {}),
        ("rollback/rollback", {"mode": "teardown", "confirm": cfg.hostname}),
    ]
    rows = []
    failed = False
    for name, params in steps:
        print(f"demo: running {name} ...", flush=True)
        start = time.monotonic()
        run: Any = run_deployment(name, parameters=params, timeout=1800, poll_interval=1)
        took = time.monotonic() - start
        state = run.state.name if run.state else "?"
        rows.append(
            (
                name.split("/")[0],
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
    print("The rollback (teardown) stopped the stack and kept its volumes; `make demo` again redeploys.")
    print("Stop everything: make lab-down")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
