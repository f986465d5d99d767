"""What the setup-guide test (tests/lab/test_setup_guide.py) needs from the lab: the guide's shell
blocks, read from docs/setup.md with their markers, and an sshd of its own for the guide's deploy user.

The lab's own sshd admits only the lab's deploy user; the guide creates another one, as an operator
would, so it gets a second sshd (same host key, another port) that admits exactly that user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab import endpoints as ep
from lab.host import run, ssh_dir
from lab.procs import start_daemon, stop_daemon, tcp_open

GUIDE_SSH_PORT = 2223
GUIDE_SSHD = "sshd-guide"
MARKER = re.compile(r"<!--\s*guide-test:\s*(?P<kind>[\w-]+)\s*(?:\((?P<reason>[^)]*)\))?\s*-->")
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)\s*$")


@dataclass(frozen=True)
class GuideBlock:
    """One fenced block of the guide: its language, text, the section it sits in, and its marker."""

    lang: str
    text: str
    section: str
    line: int
    marker: str | None = None  # "skip", "variables", "traefik-static", "prometheus-scrape", ...
    reason: str = ""


def guide_blocks(path: Path) -> list[GuideBlock]:
    """Every fenced block in order; a marker is the last non-blank line before a block's fence."""
    lines = path.read_text().splitlines()
    blocks: list[GuideBlock] = []
    section, last_text, i = "", "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        fence = FENCE.match(line)
        if fence is None:
            if line.strip():
                last_text = line.strip()
            i += 1
            continue
        indent, start = len(fence["indent"]), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(r"^[ ]*```\s*$", lines[i]):
            body.append(lines[i][indent:])
            i += 1
        marker = MARKER.fullmatch(last_text)
        blocks.append(
            GuideBlock(
                fence["lang"],
                "\n".join(body) + "\n",
                section,
                start + 1,
                marker["kind"] if marker else None,
                (marker["reason"] or "").strip() if marker else "",
            )
        )
        last_text, i = "", i + 1
    return blocks


def _sshd_config(user: str) -> Path:
    d = ssh_dir()
    config = d / "sshd_guide_config"
    config.write_text(
        f"Port {GUIDE_SSH_PORT}\nListenAddress {ep.SSH_HOST}\nHostKey {d / 'host_ed25519'}\n"
        f"PidFile {d / 'sshd-guide.pid'}\nAuthorizedKeysFile .ssh/authorized_keys\nAllowUsers {user}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes yes\nPermitRootLogin no\nSubsystem sftp internal-sftp\n"
        "MaxSessions 64\nMaxStartups 64:30:128\nLogLevel VERBOSE\n"
    )
    return config


def start_guide_sshd(user: str) -> int:
    """An sshd on GUIDE_SSH_PORT admitting only `user` (StrictModes on, as a distribution's default);
    returns its port."""
    stop_daemon(GUIDE_SSHD)  # its config names the user: start afresh
    config = _sshd_config(user)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run(["/usr/sbin/sshd", "-t", "-f", str(config)])
    start_daemon(
        GUIDE_SSHD,
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        ready=lambda: tcp_open(ep.SSH_HOST, GUIDE_SSH_PORT),
    )
    return GUIDE_SSH_PORT


def stop_guide_sshd() -> None:
    stop_daemon(GUIDE_SSHD)
