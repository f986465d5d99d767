"""The managed host of the lab: Docker Engine, a local registry, the host's networks, and sshd.

The host is this machine, reached over SSH on loopback as a deploy user with a light shell,
exactly as a flow reaches a production host.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab import endpoints as ep
from lab.procs import LabError, running_pid, start_daemon, stop_daemon, tcp_open


def run(
    argv: list[str], *, check: bool = True, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a local command and capture its output; raise LabError naming it when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, input=input_text, check=False)
    if check and proc.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


# --- Docker Engine ----------------------------------------------------------------------------


def docker_answers() -> bool:
    return run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False).returncode == 0


def ensure_dockerd() -> None:
    """Start dockerd unless an engine already answers (no systemd on these machines)."""
    if docker_answers():
        return
    if shutil.which("dockerd") is None:
        raise LabError("dockerd not found: run lab/bootstrap.sh (installs Debian's docker.io)")
    start_daemon("dockerd", ["dockerd"], ready=docker_answers, timeout=60)


# --- Local registry ---------------------------------------------------------------------------


def registry_config() -> Path:
    path = ep.lab_dir() / "registry" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    ep.REGISTRY_STORAGE.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {ep.REGISTRY_STORAGE}}}\n  delete: {{enabled: true}}\n"
        f"http:\n  addr: {ep.REGISTRY_HOST}\n"
    )
    return path


def registry_answers() -> bool:
    host, port = ep.REGISTRY_HOST.split(":")
    return tcp_open(host, int(port))


def ensure_registry() -> None:
    """Debian's docker-registry on loopback, so locally built images get digests to pin and pull by."""
    if registry_answers():
        return
    start_daemon("registry", ["docker-registry", "serve", str(registry_config())], ready=registry_answers)


# --- Networks the host already has ------------------------------------------------------------


def _dynamic_range(subnet: str) -> str:
    """Docker's own allocations stay in .64-.127, so the fixed addresses below .64 (Traefik's) and the
    test clients' addresses above .127 never collide with a container that happened to start first."""
    import ipaddress

    net = ipaddress.ip_network(subnet)
    return str(ipaddress.ip_network(f"{net.network_address + 64}/26"))


def ensure_networks() -> None:
    """The seed's networks: edge, mgmt, internal, socket-proxy (fixed subnets, see endpoints)."""
    for name, subnet in ep.NETWORKS.items():
        want = {"Subnet": subnet, "IPRange": _dynamic_range(subnet)}
        found = run(["docker", "network", "inspect", name], check=False)
        if found.returncode == 0:
            info = json.loads(found.stdout)[0]
            have = info["IPAM"]["Config"]
            if any(c.get("Subnet") == want["Subnet"] and c.get("IPRange") == want["IPRange"] for c in have):
                continue
            if info.get("Containers"):
                raise LabError(
                    f"docker network {name} exists with another subnet/range than {want}; "
                    "run `mailu-flows lab down` first"
                )
            run(["docker", "network", "rm", name])
        run(
            [
                "docker",
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                subnet,
                "--ip-range",
                want["IPRange"],
                "--label",
                "org.mailu-flows.lab=1",
                name,
            ]
        )


def remove_lab_containers() -> None:
    """Remove the lab's own containers and the stack deployed on the lab (its containers and
    networks, never its volumes)."""
    for label in ("org.mailu-flows.lab=1", f"com.docker.compose.project={ep.LAB_COMPOSE_PROJECT}"):
        ids = run(["docker", "ps", "-aq", "--filter", f"label={label}"], check=False).stdout.split()
        if ids:
            run(["docker", "rm", "-f", *ids], check=False)
    nets = run(
        [
            "docker",
            "network",
            "ls",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={ep.LAB_COMPOSE_PROJECT}",
        ],
        check=False,
    ).stdout.split()
    if nets:
        run(["docker", "network", "rm", *nets], check=False)


def claim_stack(lab_dir: Path, volumes: list[str]) -> list[str]:
    """Make the deployed stack this lab's own: remove its containers when another checkout's lab created
    them (their bind mounts point into that lab's directory, and Docker restarts them after a reboot), and
    on this lab's first `up` remove the stack's volumes left by another lab (Mailu's data there was made
    with another lab's secrets block: another admin password, another secret key). Returns what it did."""
    done: list[str] = []
    rows = run(
        ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={ep.LAB_COMPOSE_PROJECT}",
         "--format", '{{.ID}} {{.Label "com.docker.compose.project.config_files"}}'],
        check=False,
    ).stdout.splitlines()  # fmt: skip
    ours = str(lab_dir.resolve()) + "/"
    marker = lab_dir / "stack-volumes-claimed"
    first_up = not marker.exists()  # on this lab's first up, any stack container is another lab's
    parsed = (row.partition(" ") for row in rows)
    foreign = [cid for cid, _, files in parsed if first_up or not files.startswith(ours)]
    if foreign:
        run(["docker", "rm", "-f", *foreign], check=False)
        done.append(f"removed {len(foreign)} stack container(s) of another lab")
    if first_up:
        existing = set(run(["docker", "volume", "ls", "-q"], check=False).stdout.split())
        stale = sorted(v for v in volumes if v in existing)
        if stale:
            run(["docker", "volume", "rm", *stale])
            done.append(f"removed volumes of another lab: {', '.join(stale)}")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("the mailu-lab stack's volumes belong to this lab\n")
    return done


def remove_lab_images() -> None:
    """Remove the images pushed to the lab registry from the local engine (the registry keeps them)."""
    refs = run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", ep.REGISTRY_HOST + "/*/*"], check=False
    ).stdout.split()
    if refs:
        run(["docker", "rmi", "-f", *refs], check=False)


def remove_networks() -> None:
    """Remove the lab's networks, first removing containers still attached to them (stacks deployed on
    the lab host); their volumes stay."""
    for name in ep.NETWORKS:
        found = run(
            ["docker", "network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{end}}", name],
            check=False,
        )
        if found.returncode != 0:
            continue
        attached = found.stdout.split()
        if attached:
            run(["docker", "rm", "-f", *attached], check=False)
        run(["docker", "network", "rm", name], check=False)


# --- sshd and the deploy user -----------------------------------------------------------------


@dataclass(frozen=True)
class SshInfo:
    """How the flows reach the lab host; the private key stays in its 0600 file."""

    host: str
    port: int
    user: str
    private_key_file: Path
    host_public_key: str  # "ssh-ed25519 AAAA..."
    known_hosts_file: Path


def ssh_dir() -> Path:
    return ep.lab_dir() / "ssh"


def host_root() -> Path:
    """The managed host's stack root (what /home/comzis/apps is on the seed's host)."""
    return ep.lab_dir() / "host" / "apps"


def _ensure_user() -> None:
    try:
        pwd.getpwnam(ep.SSH_USER)
    except KeyError:
        run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", ep.SSH_USER])
    try:
        grp.getgrnam("docker")
    except KeyError:
        run(["groupadd", "--system", "docker"])
    # "*" = no password, but not locked: sshd refuses locked ("!") accounts even for key logins.
    run(["usermod", "-p", "*", "-aG", "docker", ep.SSH_USER])
    home = Path(pwd.getpwnam(ep.SSH_USER).pw_dir)
    for rc in (".bashrc", ".profile"):
        (home / rc).unlink(missing_ok=True)  # a light shell: nothing sourced per command


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    path.chmod(0o600)


def ensure_sshd() -> SshInfo:
    """sshd on 127.0.0.1:2222 with a pinned ed25519 host key and key-only login for the deploy user."""
    _ensure_user()
    d = ssh_dir()
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    host_key, client_key = d / "host_ed25519", d / "client_ed25519"
    _keygen(host_key, "mailu-lab-host")
    _keygen(client_key, "mailu-flows-lab")
    # The deploy user's own ~/.ssh/authorized_keys, as on a real host.
    user = pwd.getpwnam(ep.SSH_USER)
    user_ssh = Path(user.pw_dir) / ".ssh"
    user_ssh.mkdir(mode=0o700, exist_ok=True)
    authorized = user_ssh / "authorized_keys"
    authorized.write_text((d / "client_ed25519.pub").read_text())
    authorized.chmod(0o600)
    for p in (user_ssh, authorized):
        os.chown(p, user.pw_uid, user.pw_gid)
    host_pub = " ".join((d / "host_ed25519.pub").read_text().split()[:2])
    known = d / "known_hosts"
    known.write_text(f"[{ep.SSH_HOST}]:{ep.SSH_PORT} {host_pub}\n")
    config = d / "sshd_config"
    wanted = (
        f"Port {ep.SSH_PORT}\nListenAddress {ep.SSH_HOST}\nHostKey {host_key}\nPidFile {d / 'sshd.pid'}\n"
        "AuthorizedKeysFile .ssh/authorized_keys\n"
        f"AllowUsers {ep.SSH_USER}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin no\nSubsystem sftp internal-sftp\n"
        "ClientAliveInterval 15\nMaxSessions 64\nMaxStartups 64:30:128\nLogLevel VERBOSE\n"
    )
    if not config.exists() or config.read_text() != wanted:
        config.write_text(wanted)
        stop_daemon("sshd")  # sshd reads its config only at start
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run(["/usr/sbin/sshd", "-t", "-f", str(config)])
    # The deploy user writes the stack root; the path to it must be traversable.
    root = host_root()
    root.mkdir(parents=True, exist_ok=True)
    for parent in [root, *root.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    shutil.chown(root, ep.SSH_USER, ep.SSH_USER)
    start_daemon(
        "sshd",
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        ready=lambda: tcp_open(ep.SSH_HOST, ep.SSH_PORT),
    )
    return SshInfo(ep.SSH_HOST, ep.SSH_PORT, ep.SSH_USER, client_key, host_pub, known)


def ssh_argv(info: SshInfo, *command: str) -> list[str]:
    """OpenSSH client argv for running `command` on the lab host with the pinned key (for tests/tools)."""
    return [
        "ssh",
        "-i",
        str(info.private_key_file),
        "-p",
        str(info.port),
        "-o",
        f"UserKnownHostsFile={info.known_hosts_file}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        f"{info.user}@{info.host}",
        *command,
    ]


def sshd_running() -> bool:
    return running_pid("sshd") is not None


def stop_host_daemons() -> list[str]:
    """Stop what `ensure_*` started here (by pid file). dockerd last: containers go first."""
    stopped = [name for name in ("sshd", "registry") if stop_daemon(name)]
    if stop_daemon("dockerd", timeout=30):
        stopped.append("dockerd")
    return stopped


def env_without_secrets() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_KEY", "CLOUDFLARE"))}
