"""No-op deploy cost against the raw compose command, measured in the same run.

    .venv/bin/python bench/deploy_noop.py [--config .lab/stack.yaml] [--runs 5]

Prints the median wall time of:
- raw:      `ssh host docker compose -p P -f F up -d --wait` (what a shell script would run),
- deploy:   a whole no-op deploy flow run (plan, preflight, checks through Traefik, DNS in place) on the
            Prefect server, as the caller waits for it,
- prefect:  an empty flow run on the same server (Prefect's own per-run cost, shown separately),
- *-inflow: the same two runs from the server's start to end time (the flow's body and its task runs,
            without the client's set-up and teardown),
and the ratios. The target is deploy/raw <= 2.5 (the Ansible role is about 5x). Prefect's flow-run
heartbeat thread sleeps in whole seconds and is joined at the end of every run, so a run's total is
rounded up towards the next second: compare the in-flow figures for the work itself.
Needs the lab up and a first deploy done (`make demo`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import time
from pathlib import Path

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=".lab/stack.yaml")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from prefect import flow

    from blocks import SshHost, load_block
    from flows.deploy import deploy
    from mailu_core.config import load_stack_config
    from mailu_flows.deploy.engine import compose_args

    cfg = load_stack_config(Path(args.config))
    block = load_block(SshHost, cfg.blocks.ssh_host)
    lab = Path(os.environ.get("MAILU_LAB_DIR", ".lab"))
    ssh = [
        "ssh",
        "-i",
        str(lab / "ssh" / "client_ed25519"),
        "-p",
        str(block.port),
        "-o",
        f"UserKnownHostsFile={lab / 'ssh' / 'known_hosts'}",
        "-o",
        "BatchMode=yes",
        f"{block.user}@{block.address}",
        shlex.join([*compose_args(cfg), "up", "-d", "--wait"]),
    ]

    @flow(name="bench-empty")
    def empty() -> None:
        return None

    from prefect.client.orchestration import get_client

    def timed(fn: object) -> tuple[float, object]:
        start = time.perf_counter()
        out = fn()  # type: ignore[operator]
        return time.perf_counter() - start, out

    def inflow(state: object) -> float:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(state.state_details.flow_run_id)  # type: ignore[attr-defined]
        assert run.start_time is not None and run.end_time is not None
        seconds: float = (run.end_time - run.start_time).total_seconds()
        return seconds

    def raw() -> None:
        subprocess.run(ssh, check=True, capture_output=True)

    def noop() -> object:
        state = deploy(config=cfg, return_state=True)
        result = state.result()
        assert result["summary"] == "no changes", result
        return state

    def empty_run() -> object:
        return empty(return_state=True)

    noop()  # warm up (imports, first connection)
    samples: dict[str, list[float]] = {
        k: [] for k in ("raw", "deploy", "prefect", "deploy-inflow", "prefect-inflow")
    }
    for _ in range(args.runs):  # interleaved, so drift hits all of them alike
        samples["raw"].append(timed(raw)[0])
        took, state = timed(noop)
        samples["deploy"].append(took)
        samples["deploy-inflow"].append(inflow(state))
        took, state = timed(empty_run)
        samples["prefect"].append(took)
        samples["prefect-inflow"].append(inflow(state))
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"{'what':<16}{'median s':>10}{'min s':>10}{'max s':>10}")
    for k, v in samples.items():
        print(f"{k:<16}{med[k]:>10.3f}{min(v):>10.3f}{max(v):>10.3f}")
    print(f"deploy/raw                           = {med['deploy'] / med['raw']:.2f}  (target <= 2.5)")
    print(f"(deploy-prefect)/raw                 = {(med['deploy'] - med['prefect']) / med['raw']:.2f}")
    own = med["deploy-inflow"] - med["prefect-inflow"]
    print(f"(deploy-inflow - prefect-inflow)/raw = {own / med['raw']:.2f}  (our own work)")


if __name__ == "__main__":
    main()
