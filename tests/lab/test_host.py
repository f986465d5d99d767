"""The lab's managed host, for real: SSH with the pinned host key, Docker and Compose v2 over SSH."""

from __future__ import annotations

import base64
import socket
from pathlib import Path
from typing import Any

import paramiko
import pytest

pytestmark = pytest.mark.lab


def _client(lab: dict[str, Any], host_key_line: str) -> paramiko.SSHClient:
    ssh = lab["ssh"]
    client = paramiko.SSHClient()
    key_type, b64 = host_key_line.split()[:2]
    client.get_host_keys().add(
        f"[{ssh['host']}]:{ssh['port']}",
        key_type,
        paramiko.PKey.from_type_string(key_type, base64.b64decode(b64)),
    )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        ssh["host"],
        port=ssh["port"],
        username=ssh["user"],
        pkey=paramiko.Ed25519Key.from_private_key_file(ssh["private_key_file"]),
        look_for_keys=False,
        allow_agent=False,
        timeout=30,  # generous: the test before may have restarted dockerd, and the stack with it
        banner_timeout=30,
        auth_timeout=30,
    )
    return client


def _pinned_host_key(lab: dict[str, Any]) -> str:
    line = Path(lab["ssh"]["known_hosts_file"]).read_text().split("\n")[0]
    return " ".join(line.split()[1:3])


def _run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, stderr = client.exec_command(command, timeout=30)
    out = stdout.read().decode()
    rc = stdout.channel.recv_exit_status()
    return rc, out + stderr.read().decode()


def test_command_over_ssh_with_pinned_host_key(lab: dict[str, Any]) -> None:
    client = _client(lab, _pinned_host_key(lab))
    try:
        rc, out = _run(client, "id -un")
        assert rc == 0
        assert out.strip() == lab["ssh"]["user"]
    finally:
        client.close()


def test_wrong_host_key_is_refused(lab: dict[str, Any], tmp_path: Path) -> None:
    other = paramiko.Ed25519Key.from_private_key_file(lab["ssh"]["private_key_file"])  # not the host's key
    wrong_line = f"{other.get_name()} {other.get_base64()}"
    with pytest.raises(paramiko.BadHostKeyException):
        _client(lab, wrong_line)


def test_unknown_host_is_refused(lab: dict[str, Any]) -> None:
    ssh = lab["ssh"]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(
            ssh["host"],
            port=ssh["port"],
            username=ssh["user"],
            key_filename=ssh["private_key_file"],
            look_for_keys=False,
            allow_agent=False,
            timeout=5,
        )


def test_password_login_is_refused(lab: dict[str, Any]) -> None:
    ssh = lab["ssh"]
    transport = paramiko.Transport(socket.create_connection((ssh["host"], ssh["port"]), timeout=5))
    try:
        transport.start_client(timeout=5)
        with pytest.raises(paramiko.BadAuthenticationType) as info:
            transport.auth_password(ssh["user"], "guess")
        assert info.value.allowed_types == ["publickey"]
    finally:
        transport.close()


def test_docker_and_compose_v2_over_ssh(lab: dict[str, Any]) -> None:
    client = _client(lab, _pinned_host_key(lab))
    try:
        rc, out = _run(client, "docker compose version --short && docker info --format '{{.ServerVersion}}'")
        assert rc == 0, out
        compose_version, engine_version = out.split()[:2]
        assert int(compose_version.lstrip("v").split(".")[0]) >= 2
        assert engine_version
        rc, out = _run(client, "docker network ls --format '{{.Name}}'")
        assert {"edge", "mgmt", "internal", "socket-proxy"} <= set(out.split())
    finally:
        client.close()


def test_deploy_user_owns_the_stack_root(lab: dict[str, Any]) -> None:
    client = _client(lab, _pinned_host_key(lab))
    try:
        root = lab["stack_root"]
        rc, out = _run(client, f"touch {root}/.probe && rm {root}/.probe && echo writable")
        assert rc == 0 and "writable" in out
    finally:
        client.close()
