"""No-op deploy cost against the raw compose command, measured in the same run.

    .venv/bin/python bench/deploy_noop.py [--config .lab/stack.yaml] [--runs 5]

Prints the median wall time of:
- raw:         `ssh host docker compose -p P -f F up -d --wait` (what a shell script would run),
- deploy:      a whole no-op deploy flow run (facts, plan, preflight, checks through Traefik and the
               probes, Prometheus, DNS in place) on the Prefect server, as the caller waits for it: what
               a served deployment's runner spends on the run (its polling interval comes on top, on its
               own line),
- cli:         `mailu-flows deploy --local --config ...` as a whole process (imports, the flow run in-process,
               the log and event flush at exit), as an operator waits for it,
- cli-import:  that process's Python start and imports alone,
- prefect:     an empty flow run on the same server (Prefect's own per-run cost, shown separately),
- cli-floor:   a fresh Python process that imports Prefect and runs an empty flow (Prefect's own cost
               of a CLI run, the floor under `cli`),
- *-inflow:    the same runs from the server's start to end time (the flow's body and its task runs,
               without the client's set-up and teardown),
then the two ratios the targets are on: deploy/raw <= 1.3 and cli/raw <= 2.5. Prefect's flow-run
heartbeat thread sleeps in whole seconds and is joined at the end of every run, so a run's total is
rounded up towards the next second: compare the in-flow figures for the work itself. The in-process
runs' resident memory is printed after the warm-up and after the last run (it should stay flat).
Needs the lab up and a first deploy done (`make demo`, or tests/lab/test_deploy.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEPLOY_TARGET = 1.3
CLI_TARGET = 2.5


def rss_mib() -> float:
    """This process's resident memory now (not its peak)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=".lab/stack.yaml")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    from mailu_core.config import load_stack_config
    from mailu_flows.blocks import SshHost, load_block
    from mailu_flows.deploy.engine import compose_args
    from mailu_flows.flows.deploy import deploy

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
    cli = str(Path(sys.executable).parent / "mailu-flows")

    @flow(name="bench-empty")
    def empty() -> None:
        return None

    def inflow(state: Any) -> float:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(state.state_details.flow_run_id)
        assert run.start_time is not None and run.end_time is not None
        seconds: float = (run.end_time - run.start_time).total_seconds()
        return seconds

    def raw() -> None:
        subprocess.run(ssh, check=True, capture_output=True)

    def noop() -> Any:
        state = deploy(config=cfg, return_state=True)
        result = state.result()
        assert result["summary"] == "no changes", result
        return state

    def cli_run() -> None:
        out = subprocess.run(
            [cli, "deploy", "--local", "--config", args.config], capture_output=True, text=True
        )
        assert out.returncode == 0 and "deploy: no changes" in out.stdout, (out.stdout, out.stderr[-2000:])

    def cli_import() -> None:
        code = "import mailu_flows.cli, mailu_flows.commands.deploy, flows.deploy"  # what `deploy` imports
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

    def empty_run() -> Any:
        return empty(return_state=True)

    floor_code = "from prefect import flow\nflow(name='bench-empty')(lambda: None)()\n"

    def cli_floor() -> None:
        subprocess.run([sys.executable, "-c", floor_code], check=True, capture_output=True)

    noop()  # warm up (imports, first connection)
    cli_run()
    rss_start = rss_mib()
    names = ("raw", "deploy", "cli", "cli-import", "cli-floor", "prefect", "deploy-inflow", "prefect-inflow")
    samples: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(args.runs):  # interleaved, so drift hits all of them alike
        samples["raw"].append(timed(raw)[0])
        took, state = timed(noop)
        samples["deploy"].append(took)
        samples["deploy-inflow"].append(inflow(state))
        samples["cli"].append(timed(cli_run)[0])
        samples["cli-import"].append(timed(cli_import)[0])
        samples["cli-floor"].append(timed(cli_floor)[0])
        took, state = timed(empty_run)
        samples["prefect"].append(took)
        samples["prefect-inflow"].append(inflow(state))
    rss_end = rss_mib()
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"{'what':<16}{'median s':>10}{'min s':>10}{'max s':>10}")
    for k, v in samples.items():
        print(f"{k:<16}{med[k]:>10.3f}{min(v):>10.3f}{max(v):>10.3f}")
    deploy_ratio, cli_ratio = med["deploy"] / med["raw"], med["cli"] / med["raw"]
    print(f"deploy/raw = {deploy_ratio:.2f}  {_verdict(deploy_ratio, DEPLOY_TARGET)}")
    print(f"cli/raw    = {cli_ratio:.2f}  {_verdict(cli_ratio, CLI_TARGET)}")
    print(
        f"Prefect's floors: an empty flow run {med['prefect'] / med['raw']:.2f}x raw in-process, "
        f"{med['cli-floor'] / med['raw']:.2f}x as a fresh process"
    )
    own = med["deploy-inflow"] - med["prefect-inflow"]
    print(f"(deploy-inflow - prefect-inflow)/raw = {own / med['raw']:.2f}  (our own work)")
    poll = get_current_settings().runner.poll_frequency
    print(f"a run handed to a served deployment adds the runner's polling: up to {poll} s")
    print(f"memory of this process: {rss_start:.0f} MiB after the warm-up, {rss_end:.0f} MiB after the runs")


def _verdict(ratio: float, target: float) -> str:
    return f"(target <= {target}: {'met' if ratio <= target else 'NOT met'})"


if __name__ == "__main__":
    main()
