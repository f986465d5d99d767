"""Capture the fact batch's real output from a host into a data file for the parser tests.

    .venv/bin/python -m tests.core.deploy.facts.capture NAME PROJECT TRAEFIK_API [PATH...] [--image REF...]

It runs `fact_script(deploy_facts(...))` with the local `sh` (the lab's host is this machine) and writes
`tests/core/deploy/facts/NAME.txt`. Containers' `Config.Env` is emptied first: a container's
environment is not ours to keep in the repository, and no parser reads it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from mailu_flows.deploy.hoststate import FACTS_SECTION, deploy_facts, fact_script, split_sections

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("project")
    parser.add_argument("traefik_api")
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--image", action="append", default=[])
    args = parser.parse_args()
    script = fact_script(deploy_facts(args.paths, args.project, args.traefik_api, args.image))
    out = subprocess.run(["sh", "-c", script], check=True, capture_output=True, text=True).stdout
    sections = split_sections(out)
    containers = json.loads(sections["containers"] or "[]")
    for item in containers:
        item["Config"]["Env"] = []
    sections["containers"] = json.dumps(containers, indent=1)
    text = "".join(f"{FACTS_SECTION} {name}\n{body}\n" for name, body in sections.items())
    (HERE / f"{args.name}.txt").write_text(text)


if __name__ == "__main__":
    main()
