"""The second way to run the deployments: the generated prefect.yaml, deployed for real with
`prefect deploy --all` onto a process work pool (on a throwaway Prefect server, so the lab's served
deployments are left alone), registers every deployment with its schedule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import yaml

from mailu_core.config import load_stack_config
from mailu_flows.deployments.definitions import deployments_for, prefect_yaml

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")


def test_prefect_deploy_all_registers_every_deployment(tmp_path: Path, prefect_server: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from mailu_flows.blocks import MailuStack, push_stack_config

    cfg = load_stack_config(REPO / "examples" / "inlock.ai.yaml")
    pushed = push_stack_config(cfg)
    assert pushed.saved and not push_stack_config(cfg).saved  # a second push changes nothing
    prefect_file = tmp_path / "prefect.yaml"
    doc = prefect_yaml(cfg, work_pool="mailu-process")
    prefect_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "MAILU_FLOWS_DIR": str(REPO)}
    # the pool as `prefect work-pool create --type process` makes it (in-process: one CLI start less)
    with get_client(sync_client=True) as client:
        template = ProcessWorker.get_default_base_job_template()
        pool = WorkPoolCreate(name="mailu-process", type="process", base_job_template=template)
        client.create_work_pool(pool)
    deployed = subprocess.run(
        [PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
    with get_client(sync_client=True) as client:
        for spec in deployments_for(cfg):
            dep = client.read_deployment_by_name(f"{spec.flow_name}/{spec.name}")
            assert dep.work_pool_name == "mailu-process"
            assert [getattr(s.schedule, "cron", None) for s in dep.schedules] == (
                [spec.cron_for(cfg)] if spec.cron_for(cfg) else []
            )
            assert dep.enforce_parameter_schema
            # the config is read from the stack's block when a run starts: no copy in the defaults
            # (`prefect deploy` would have copied the block's data in place of an id reference)
            assert dep.parameters["config"] == {"$ref": {"block_document_slug": f"mailu-stack/{cfg.name}"}}
    assert cast(Any, MailuStack.load(cfg.name)).config == cfg
