"""Backup throughput against the raw pipeline, and the flow process's peak memory, on the lab.

For each size, a scratch volume of random data (incompressible, the worst case for memory) is
backed up twice in the same run:
  raw:  ssh host 'docker run ... tar -cf - .' | gpg --encrypt  (OpenSSH + the gpg CLI, no checks)
  ours: run_backup() in a fresh child process: paramiko, python-gnupg, the tar check, sha256,
        the staging directory and the manifest; its ru_maxrss is the peak memory.
Run: .venv/bin/python bench/backup_throughput.py [--sizes 50,200]   (the lab must be up)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _lab() -> dict[str, Any]:
    from lab.up import lab_status

    status: dict[str, Any] = lab_status()
    return status


def _config(dest: str) -> Any:
    from lab.endpoints import lab_dir
    from mailu_core.config import load_stack_config

    base = load_stack_config(lab_dir() / "stack.yaml")
    data = base.model_dump()
    data["backup"]["destination_dir"] = dest
    return type(base).model_validate(data)


def child(volume: str, dest: str) -> None:
    """One backup in this process; prints seconds and peak RSS as JSON."""
    from mailu_flows.backup import LocalDirectory, run_backup
    from mailu_flows.remote import RemoteHost
    from mailu_flows.tasks.backup import load_public_key, load_signing_key

    ssh = _lab()["ssh"]
    config = _config(dest)
    key = load_public_key(config)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pinned = " ".join(Path(ssh["known_hosts_file"]).read_text().split()[1:3])
    with RemoteHost(
        ssh["host"], ssh["port"], ssh["user"], Path(ssh["private_key_file"]).read_text(), pinned
    ) as host:
        start = time.monotonic()
        outcome = run_backup(
            host, config, LocalDirectory(dest, config.name), key, load_signing_key(config), volumes=[volume],
            include_stack_files=False,
        )  # fmt: skip
        seconds = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    archive = outcome.manifest.archives[0]
    print(
        json.dumps(
            {"seconds": seconds, "rss_kb": peak, "rss_before_kb": rss_before, "bytes": archive.plain_bytes}
        )
    )


def raw(volume: str, image: str, ssh: dict[str, Any], fingerprint: str, armored: str, out: str) -> float:
    """The bare pipeline: OpenSSH + docker tar piped into the gpg CLI."""
    home = tempfile.mkdtemp(prefix="mfb-", dir="/tmp")
    try:
        subprocess.run(["gpg", "--homedir", home, "--batch", "--import"], input=armored.encode(), check=True,
                       capture_output=True)  # fmt: skip
        remote = shlex.join(
            ["docker", "run", "--rm", "--network", "none", "--log-driver", "none", "-v", f"{volume}:/v:ro",
             "--entrypoint", "tar", image, "-C", "/v", "-cf", "-", "."]
        )  # fmt: skip
        ssh_cmd = shlex.join(
            ["ssh", "-p", str(ssh["port"]), "-i", ssh["private_key_file"], "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={ssh['known_hosts_file']}", f"{ssh['user']}@{ssh['host']}", remote]
        )  # fmt: skip
        gpg_cmd = shlex.join(
            ["gpg", "--homedir", home, "--batch", "--trust-model", "always", "--compress-algo", "none",
             "-r", fingerprint, "-o", out, "--encrypt"]
        )  # fmt: skip
        start = time.monotonic()
        subprocess.run(["bash", "-o", "pipefail", "-c", f"{ssh_cmd} | {gpg_cmd}"], check=True)
        return time.monotonic() - start
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50,200", help="volume sizes in MB, comma-separated")
    parser.add_argument("--child", nargs=2, metavar=("VOLUME", "DEST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from mailu_flows.tasks.backup import load_public_key

    lab = _lab()
    work = Path(tempfile.mkdtemp(prefix="mlt-bench-"))
    config = _config(str(work / "dest"))
    image = config.images.redis
    key = load_public_key(config)
    rows = []
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            volume = f"mlt-bench-{secrets.token_hex(3)}-{size}m"
            try:
                subprocess.run(["docker", "volume", "create", volume], check=True, capture_output=True)
                subprocess.run(
                    ["docker", "run", "--rm", "-v", f"{volume}:/v", "--entrypoint", "sh", image, "-c",
                     f"head -c {size * 1_000_000} /dev/urandom > /v/data"],
                    check=True, capture_output=True,
                )  # fmt: skip
                raw_s = raw(
                    volume, image, lab["ssh"], key.fingerprint, key.armored_public_key, str(work / "raw.gpg")
                )
                os.unlink(work / "raw.gpg")
                out = subprocess.run(
                    [sys.executable, __file__, "--child", volume, str(work / f"dest-{size}")],
                    check=True, capture_output=True, text=True,
                ).stdout  # fmt: skip
                ours = json.loads(out.strip().splitlines()[-1])
                mb = ours["bytes"] / 1e6
                rows.append(
                    (size, mb / raw_s, mb / ours["seconds"], raw_s / ours["seconds"],
                     ours["rss_before_kb"] / 1024, ours["rss_kb"] / 1024)
                )  # fmt: skip
            finally:
                subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = ("volume", "raw MB/s", "ours MB/s", "ratio", "RSS before", "peak RSS")
    print(" | ".join(f"{h:>10}" for h in head))
    print("-+-".join("-" * 10 for _ in head))
    for size, raw_rate, our_rate, ratio, before, peak in rows:
        cells = (
            f"{size} MB",
            f"{raw_rate:.0f}",
            f"{our_rate:.0f}",
            f"{ratio:.2f}",
            f"{before:.0f} MB",
            f"{peak:.0f} MB",
        )
        print(" | ".join(f"{c:>10}" for c in cells))


if __name__ == "__main__":
    main()
