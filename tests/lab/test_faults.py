"""Faults on the lab, one test each: after every fault a plain re-run converges and nothing is lost
(volumes and their data survive, the host lock is free, no paused containers, helper containers,
decrypted scratch volumes or half-written temp files are left).

Fault -> test that covers it (this file unless named):

- SSH connection cut mid-backup: test_backup.py::
  test_connection_cut_mid_backup_leaves_no_backup_and_next_run_succeeds
- deploy killed while it holds the host lock: test_deploy.py::test_a_killed_deploy_does_not_keep_the_host_lock
- Cloudflare 429 and 5xx: test_dns_providers.py::test_cloudflare_retries_429_and_5xx_then_succeeds
- Cloudflare refusing a write mid-apply: test_dns_providers.py::
  test_cloudflare_partial_apply_is_reported_and_the_next_run_converges
- a command past its deadline; the lock holder killed: test_remote.py::
  test_a_command_past_its_deadline_is_stopped_on_the_host,
  test_host_lock_is_exclusive_and_frees_itself_when_the_holder_dies
- a wrong value told apart from an unreachable server: test_propagation.py::
  test_wrong_value_and_unreachable_are_told_apart
1. SSH cut during a file upload: test_ssh_cut_during_a_file_upload_keeps_the_live_file_and_a_rerun_converges
2. SSH cut during `compose up`: test_ssh_cut_during_compose_up_is_converged_by_a_rerun
3. SSH cut during a restore: test_ssh_cut_during_a_restore_is_finished_by_a_rerun_with_the_backups_bytes
4. dockerd frozen (SIGSTOP): test_a_frozen_docker_daemon_fails_the_deploy_by_its_deadline_and_frees_the_lock
5. dockerd stopped: test_zz_a_stopped_docker_daemon_fails_the_deploy_clearly_and_a_rerun_converges (last:
   every container of the lab stops with it; the lab is brought back with `lab up` and a deploy)
6. disk full under the stack root: test_a_full_stack_root_fails_naming_the_write_and_keeps_the_previous_file
7. disk full for the backup destination: test_a_full_backup_destination_leaves_no_partial_and_keeps_backups
8. Cloudflare times out after applying a write:
   test_cloudflare_write_applied_then_timed_out_leaves_no_duplicate_and_the_next_run_converges
9. an authoritative nameserver down during the wait:
   test_a_nameserver_down_during_the_wait_is_unreachable_not_ok_and_the_wait_completes_after_its_restart
10. two mutating flows at once: test_a_deploy_during_a_backup_is_refused_naming_the_backup_then_waits_for_it
11. flow killed mid-backup: test_a_backup_killed_mid_stream_leaves_nothing_paused_and_a_rerun_succeeds
12. flow killed mid-rollback: test_a_rollback_killed_during_compose_up_is_finished_by_a_rerun
13. Prefect server restarted during a run: test_a_prefect_server_restart_during_a_backup_ends_clearly
14. a corrupt release record:
    test_a_corrupt_release_record_is_named_by_deploy_and_rollback_and_nothing_is_lost
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import endpoints as ep
from mailu_core.config import StackConfig, load_stack_config
from mailu_flows.remote import TMP_SUFFIX, HostLock, RemoteHost
from tests.lab.fixtures.deploying import exception_text

pytestmark = pytest.mark.lab


# --- helpers -------------------------------------------------------------------------------------


def _flow(name: str, **kw: Any) -> Any:
    """A flow's final state (never raised), waiting for the host lock as long as other tests need."""
    kw.setdefault("lock_wait_s", 900)
    if name == "deploy":
        from mailu_flows.flows.deploy import deploy

        return deploy(return_state=True, **kw)
    if name == "backup":
        from mailu_flows.flows.backup import backup

        return backup(return_state=True, **kw)
    from mailu_flows.flows.rollback import rollback

    return rollback(return_state=True, **kw)


def _text(state: Any) -> str:
    return exception_text(state)


def _ok(state: Any) -> Any:
    assert state.is_completed(), _text(state)
    return state.result()


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _changed(cfg: StackConfig, **sections: dict[str, Any]) -> StackConfig:
    data = cfg.model_dump(mode="json")
    for section, values in sections.items():
        data[section].update(values)
    return StackConfig.model_validate(data)


def _bigger_messages(cfg: StackConfig) -> StackConfig:
    """A change that rewrites some env files and recreates the services reading them (healthy again)."""
    return _changed(cfg, mailu={"message_size_limit": cfg.mailu.message_size_limit + 1_000_000})


def _connect(cfg: StackConfig) -> RemoteHost:
    from mailu_flows.tasks.host import connect_host

    return connect_host(cfg)


def _assert_lock_free(cfg: StackConfig) -> None:
    """The stack's host lock can be taken (a dead holder's lock frees itself within moments)."""
    host = _connect(cfg)
    try:
        lock = HostLock(host, cfg.paths.lock_file, "test_faults: is the lock free?")
        lock.acquire(wait_s=15, poll_s=0.2)
        lock.release()
    finally:
        host.close()


def _leftovers(cfg: StackConfig) -> list[str]:
    """What a run cut short may leave behind: paused containers, backup/verify/restore helper
    containers, decrypted scratch volumes, write_file's temp files under the stack root."""
    found = [f"paused {c}" for c in _sh("docker", "ps", "-q", "--filter", "status=paused").split()]
    helpers = _sh(
        "docker", "ps", "-a", "--format", "{{.Names}}", "--filter", "name=^mailu-(backup|verify|restore)-"
    )
    found += [f"helper {c}" for c in helpers.split()]
    scratch = _sh("docker", "volume", "ls", "-q", "--filter", "label=mailu-flows.scratch")
    found += [f"scratch volume {v}" for v in scratch.split()]
    found += [f"temp file {p}" for p in Path(cfg.host.stack_root).rglob(f"*{TMP_SUFFIX}")]
    return found


def _project_containers(project: str) -> dict[str, str]:
    """container name -> state, for every container of the compose project."""
    out = _sh("docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
              "--format", "{{.Names}} {{.State}}")  # fmt: skip
    return dict(line.split(" ", 1) for line in out.splitlines())


def _wait_for(what: str, check: Callable[[], bool], timeout: float, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(poll)


def _compose_up_running(project: str) -> bool:
    """A `docker compose -p <project> ... up` runs on the host (the lab's host is this machine)."""
    proc = subprocess.run(["pgrep", "-f", f"compose -p {project} -f .* up --detach"], capture_output=True)
    return proc.returncode == 0


_RUNNER = """
import json, sys
from mailu_core.config import StackConfig
name, config_file, kw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfg = StackConfig.model_validate_json(open(config_file).read())
if name == "backup":
    from mailu_flows.flows.backup import backup as flow
elif name == "rollback":
    from mailu_flows.flows.rollback import rollback as flow
else:
    from mailu_flows.flows.deploy import deploy as flow
print("started", flush=True)
state = flow(config=cfg, return_state=True, **kw)
try:
    state.result()
    print("COMPLETED", flush=True)
except Exception as exc:
    print(f"FAILED {type(exc).__name__}: {exc}", flush=True)
    sys.exit(3)
"""


def _flow_process(name: str, cfg: StackConfig, tmp: Path, **kw: Any) -> subprocess.Popen[str]:
    """The flow in a process of its own (which a test may kill); its config travels in a 0600 file
    (block names only, no secret values)."""
    config_file = tmp / f"{name}-config.json"
    config_file.write_text(cfg.model_dump_json())
    config_file.chmod(0o600)
    return subprocess.Popen(
        [sys.executable, "-c", _RUNNER, name, str(config_file), json.dumps(kw)],
        cwd=ep.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cfg(lab: dict[str, Any]) -> StackConfig:
    return load_stack_config(Path(lab["stack_config"]))


@pytest.fixture(scope="module")
def deployed(cfg: StackConfig) -> Iterator[None]:
    """The lab stack deployed before, and again after the tests here (the tests after them need it)."""
    _ok(_flow("deploy", config=cfg, publish_dns=False))
    try:
        yield
    finally:
        assert _ok(_flow("deploy", config=cfg))["failed_checks"] == []


@dataclass
class Volumes:
    """Volumes of this module's own (`ft-bk-<random>-*`): a marker, a DKIM key, an admin db and a big
    random file, so that a backup streams long enough to be cut or killed midway."""

    base: StackConfig
    names: dict[str, str]
    marker: bytes

    def config(self, dest: Path, big: bool = True) -> StackConfig:
        data = self.base.model_dump(mode="json")
        own = {k: v for k, v in self.names.items() if k != "big"} | {"rspamd": self.names["big"]}
        data["volumes"] = {**data["volumes"], **own}  # the big one stands in for rspamd's
        chosen = ["mail", "dkim", "admin"] + (["big"] if big else [])
        data["backup"]["volumes"] = [self.names[k] for k in chosen]
        data["backup"]["destination_dir"] = str(dest)
        return StackConfig.model_validate(data)

    def read(self, key: str, path: str) -> bytes:
        return subprocess.run(
            ["docker", "run", "--rm", "-v", f"{self.names[key]}:/v:ro", "--entrypoint", "cat",
             self.base.images.redis, f"/v/{path}"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip

    def sha256(self, key: str, path: str) -> str:
        return subprocess.run(
            ["docker", "run", "--rm", "-v", f"{self.names[key]}:/v:ro", "--entrypoint", "sha256sum",
             self.base.images.redis, f"/v/{path}"],
            check=True, capture_output=True, text=True,
        ).stdout.split()[0]  # fmt: skip


def _fill(image: str, volume: str, script: str, stdin: bytes = b"") -> None:
    subprocess.run(["docker", "volume", "create", volume], check=True, capture_output=True)
    subprocess.run(
        ["docker", "run", "--rm", "-i", "-v", f"{volume}:/v", "--entrypoint", "sh", image, "-c", script],
        input=stdin, check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def volumes(cfg: StackConfig) -> Iterator[Volumes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    prefix = f"ft-bk-{secrets.token_hex(3)}"
    names = {k: f"{prefix}-{k}" for k in ("mail", "dkim", "admin", "big")}
    marker = b"fault marker " + secrets.token_bytes(32)
    image = cfg.images.redis
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        _fill(image, names["mail"], "mkdir -p /v/u/cur && cat > /v/u/cur/marker.eml", marker)
        _fill(image, names["dkim"], f"cat > /v/{cfg.mailu.domain}.{cfg.dns.dkim.selector}.key", pem)
        _fill(image, names["admin"], "printf 'SQLite format 3\\000' > /v/main.db")
        _fill(image, names["big"], "head -c 300000000 /dev/urandom > /v/big")
        yield Volumes(cfg, names, marker)
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", *names.values()], capture_output=True, check=False)


@pytest.fixture
def backup_dest(tmp_path: Path) -> Path:
    dest = tmp_path / "backups"
    dest.mkdir(mode=0o700)
    return dest


def _staging_bytes(dest: Path) -> int:
    """Bytes in the staging directories of backups being made under `dest` (0 before one starts)."""
    total = 0
    for staging in dest.rglob(".partial-*"):
        try:
            total += sum(file.stat().st_size for file in staging.iterdir())
        except OSError:  # the run renamed or removed it meanwhile
            continue
    return total


def _dest(config: StackConfig) -> Any:
    """The flow's own destination for `config` (its stack's directory under backup.destination_dir)."""
    from mailu_flows.tasks.backup import default_destination

    return default_destination(config)


# --- 14. a corrupt release record ----------------------------------------------------------------


def test_a_corrupt_release_record_is_named_by_deploy_and_rollback_and_nothing_is_lost(
    deployed: None, cfg: StackConfig
) -> None:
    from mailu_flows.deploy.releases import list_releases

    host = _connect(cfg)
    try:
        ids = [r.id for r in list_releases(host, cfg.paths)]
    finally:
        host.close()
    assert ids, "the deploy left no release record"
    records = Path(cfg.paths.releases_dir)
    victim = records / ids[0] / "release.json"
    original = victim.read_bytes()
    before = _digest_tree(records)
    victim.write_bytes(b"\x00\xff{not json\n" + secrets.token_bytes(64))
    try:
        deploy = _flow("deploy", config=cfg, publish_dns=False, lock_wait_s=60)
        assert deploy.is_failed()
        assert str(victim) in _text(deploy) and "Traceback" not in _text(deploy)
        rollback = _flow(
            "rollback", config=cfg, mode="previous-release", confirm=cfg.hostname, lock_wait_s=60
        )
        assert rollback.is_failed()
        assert str(victim) in _text(rollback)
        after = _digest_tree(records)
        del after[str(victim.relative_to(records))], before[str(victim.relative_to(records))]
        assert after == before  # every other record untouched
    finally:
        victim.write_bytes(original)
    assert _ok(_flow("deploy", config=cfg, publish_dns=False))["summary"] == "no changes"
    _assert_lock_free(cfg)


# --- 8. Cloudflare: a write applied, then the answer never comes in time --------------------------


def test_cloudflare_write_applied_then_timed_out_leaves_no_duplicate_and_the_next_run_converges(
    cf_base_url: str,
    cf_token: str,
    cf_faults: Callable[..., None],
    cf_requests: Callable[[], list[dict[str, object]]],
) -> None:
    from mailu_core.dns import Record
    from mailu_flows.dns.cloudflare import CloudflareProvider
    from mailu_flows.dns.provider import DnsError, plan_for

    from .test_dns_providers import cleanup, primary_records

    label, ZONE = f"ft-{secrets.token_hex(4)}", ep.ZONE
    try:
        provider = CloudflareProvider(ZONE, cf_token, cf_base_url, owner=label, timeout_s=1.0)
        recs = [Record(f"r{i}.{label}.{ZONE}", "A", 60, (f"192.0.2.{i}",)) for i in range(2)]
        plan, _ = plan_for(provider, recs)
        cf_faults(stall_s=2.5, count=1, method="POST")  # applied, then answered after the client gave up
        try:
            provider.apply(plan)
            outcome = "completed"
        except DnsError as exc:
            outcome = str(exc)
        posts = [r for r in cf_requests() if r["method"] == "POST"]
        assert posts and posts[0].get("stalled_s"), posts
        assert outcome == "completed" or f"r0.{label}.{ZONE}" in outcome, outcome
        again, _ = plan_for(provider, recs)
        assert [c.record.name for c in again.creates] == ([] if outcome == "completed" else [recs[1].name])
        provider.apply(again)
        assert plan_for(provider, recs)[0].empty
        listed = [p.record for p in provider.list_records() if p.record.name.endswith(f".{label}.{ZONE}")]
        # one value each, not proxied (Cloudflare's own option): no duplicate was created
        not_proxied = [r.with_options("cloudflare", proxied=False) for r in recs]
        assert sorted(listed, key=lambda r: r.name) == not_proxied
        assert primary_records(f"{label}.{ZONE}") == {Record(r.name, "A", 60, r.values) for r in recs}
    finally:
        time.sleep(2.5)  # let the stalled answer finish before the zone is cleaned
        cleanup(label)


# --- 9. one authoritative nameserver down during the propagation wait ----------------------------


def test_a_nameserver_down_during_the_wait_is_unreachable_not_ok_and_the_wait_completes_after_its_restart(
    lab_dns: Any,
) -> None:
    from lab.dns import SECONDARY, ensure_dns
    from lab.procs import stop_daemon
    from mailu_core.dns import PropagationTimeout, Record, Status
    from mailu_flows.dns.propagation import discover_nameservers, wait_for_propagation
    from mailu_flows.dns.provider import plan_for

    from .test_dns_providers import cleanup, make_rfc2136

    servers = discover_nameservers(ep.ZONE, bootstrap=ep.DNS_PRIMARY, port=ep.DNS_PORT)
    primary, secondary = servers
    assert secondary.address == ep.DNS_SECONDARY
    label = f"ft-{secrets.token_hex(4)}"
    rec = Record(f"mail.{label}.{ep.ZONE}", "A", 60, ("192.0.2.7",))
    try:
        stop_daemon(SECONDARY)
        try:
            provider = make_rfc2136(label)
            provider.apply(plan_for(provider, [rec])[0])
            with pytest.raises(PropagationTimeout) as err:
                wait_for_propagation(
                    [rec], servers, deadline_s=1.5, interval_s=0.2, zone=ep.ZONE, timeout_s=0.3
                )
            table = err.value.table
            assert table.status(rec, primary) is Status.OK
            assert table.status(rec, secondary) is Status.UNREACHABLE
            assert f"{secondary.label}: unreachable" in str(err.value)
        finally:
            ensure_dns()
        final = wait_for_propagation([rec], servers, deadline_s=20, interval_s=0.2, zone=ep.ZONE)
        assert final.ok and final.status(rec, secondary) is Status.OK
    finally:
        cleanup(label)


# --- 7. the backup destination's disk is full ----------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs (the backup destination): unmounted afterwards, whatever happened."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "ft-small", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_backup_destination_leaves_no_partial_and_keeps_backups(
    volumes: Volumes, small_fs: Path
) -> None:
    small = volumes.config(small_fs, big=False)
    dest = _dest(small)
    good = _ok(_flow("backup", config=small)).backup_id
    kept = _digest_tree(dest.root / good)
    state = _flow("backup", config=volumes.config(small_fs))  # 300 MB of random data into 24 MiB
    assert state.is_failed()
    assert "No space left on device" in _text(state), _text(state)
    assert dest.list_backups() == [good]
    assert [p.name for p in dest.root.iterdir() if p.name != ".lock"] == [good]  # no partial left
    assert _digest_tree(dest.root / good) == kept  # the existing backup is intact

    subprocess.run(["mount", "-o", "remount,size=400m", str(small_fs)], check=True)
    again = _ok(_flow("backup", config=volumes.config(small_fs)))
    # retention (one a day) may delete the older one now that a newer exists: by design, and said
    assert dest.list_backups() == sorted({good, again.backup_id} - set(again.deleted))
    assert good in again.deleted or _digest_tree(dest.root / good) == kept
    assert _leftovers(volumes.base) == []


# --- 10. two mutating flows at once --------------------------------------------------------------


def test_a_deploy_during_a_backup_is_refused_naming_the_backup_then_waits_for_it(
    deployed: None, cfg: StackConfig, volumes: Volumes, backup_dest: Path, tmp_path: Path
) -> None:
    holder = Path(f"{cfg.paths.lock_file}.holder")
    proc = _flow_process("backup", volumes.config(backup_dest), tmp_path, lock_wait_s=600)
    try:
        _wait_for("the backup streaming", lambda: _staging_bytes(backup_dest) > 1_000_000, 120)
        assert "backup flow run" in holder.read_text()
        busy = _flow("deploy", config=cfg, publish_dns=False, lock_wait_s=0)
        assert busy.is_failed()
        assert "is busy: backup flow run" in _text(busy), _text(busy)
        assert proc.poll() is None  # the refused deploy did not disturb the backup
        waited = _flow("deploy", config=cfg, publish_dns=False, lock_wait_s=300)
        # it could take the lock only after the backup released it, i.e. after the backup was committed
        # (the backup process itself lives on a little: retention, artifacts)
        assert _dest(volumes.config(backup_dest)).list_backups()
        assert _ok(waited)["failed_checks"] == []
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "COMPLETED" in out, out + err[-2000:]
    finally:
        _kill(proc)
    dest = _dest(volumes.config(backup_dest))
    (only,) = dest.list_backups()
    assert dest.read_manifest(only).archive(volumes.names["big"]) is not None
    _assert_lock_free(cfg)


# --- 11. the flow process killed mid-backup ------------------------------------------------------


def test_a_backup_killed_mid_stream_leaves_nothing_paused_and_a_rerun_succeeds(
    deployed: None, cfg: StackConfig, volumes: Volumes, backup_dest: Path, tmp_path: Path
) -> None:
    config = volumes.config(backup_dest)
    project = cfg.mailu.compose_project
    proc = _flow_process("backup", config, tmp_path, pause_services=["webmail"])
    try:
        _wait_for("the backup streaming", lambda: _staging_bytes(backup_dest) > 5_000_000, 120)
        paused = _sh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                     "--filter", "status=paused")  # fmt: skip
        assert paused.split(), "webmail was not paused while the volumes were read"
        _kill(proc)
        _assert_lock_free(cfg)
        report = _ok(_flow("backup", config=config))
        assert report.removed_partials, "the killed run's staging directory was not found"
        assert _dest(config).list_backups() == [report.backup_id]
        assert [p.name for p in _dest(config).root.iterdir() if p.name.startswith(".partial")] == []
        assert _leftovers(cfg) == []
        assert set(_project_containers(project).values()) == {"running"}
    finally:
        _kill(proc)
        for c in _sh("docker", "ps", "-q", "--filter", "status=paused").split():  # the lab, whatever happened
            subprocess.run(["docker", "unpause", c], capture_output=True, check=False)


# --- 13. the Prefect server restarted during a run -----------------------------------------------


def test_a_prefect_server_restart_during_a_backup_ends_clearly_and_a_rerun_succeeds(
    volumes: Volumes, backup_dest: Path, tmp_path: Path
) -> None:
    from lab.procs import stop_daemon
    from lab.services import ensure_prefect, prefect_healthy

    config = volumes.config(backup_dest)
    proc = _flow_process("backup", config, tmp_path)
    try:
        _wait_for("the backup streaming", lambda: _staging_bytes(backup_dest) > 1_000_000, 120)
        stop_daemon("prefect-server", timeout=30)
        ensure_prefect()
        out, err = proc.communicate(timeout=600)
    finally:
        _kill(proc)
        if not prefect_healthy():
            ensure_prefect()
    last = (out.strip().splitlines() or [""])[-1]
    assert (proc.returncode == 0 and last == "COMPLETED") or last.startswith("FAILED "), out + err[-3000:]
    dest = _dest(config)
    done = dest.list_backups()
    for backup_id in done:  # whatever the run's end, what is listed is a whole backup
        assert dest.read_manifest(backup_id).archive(volumes.names["big"]) is not None
    report = _ok(_flow("backup", config=config))
    assert dest.list_backups() == sorted({*done, report.backup_id} - set(report.deleted))  # retention
    assert _leftovers(volumes.base) == []
    _assert_lock_free(volumes.base)


# --- 3. SSH cut during a restore -----------------------------------------------------------------


def test_ssh_cut_during_a_restore_is_finished_by_a_rerun_with_the_backups_bytes(
    volumes: Volumes, backup_dest: Path
) -> None:
    from mailu_flows.flows.backup import backup
    from mailu_flows.tasks.backup import restore_backup_task

    config = volumes.config(backup_dest)
    backup_id = backup(config=config).backup_id
    big_sha = volumes.sha256("big", "big")
    _fill(config.images.redis, volumes.names["big"], "head -c 1000 /dev/urandom > /v/big")  # damaged
    dest = _dest(config)
    host = _connect(config)
    cut = threading.Event()

    def cutter() -> None:  # close the transport once a restore container streams into the volume
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _sh("docker", "ps", "-q", "--filter", "name=^mailu-restore-").split():
                time.sleep(0.3)
                host.client.get_transport().close()  # type: ignore[union-attr]
                cut.set()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=cutter)
    thread.start()
    try:
        with pytest.raises(Exception):  # noqa: B017 - the cut surfaces as whatever the stream hit first
            restore_backup_task.fn(host, config, backup_id, "test_faults restore (cut)",
                                   volumes=[volumes.names["big"]])  # fmt: skip
    finally:
        thread.join()
        host.close()
    assert cut.is_set(), "the restore finished before the cut"
    _assert_lock_free(config)
    with _connect(config) as again:
        result = restore_backup_task.fn(again, config, backup_id, "test_faults restore (rerun)",
                                        volumes=[volumes.names["big"]])  # fmt: skip
    assert all(row.ok for row in result.checks)
    assert volumes.sha256("big", "big") == big_sha
    assert volumes.read("mail", "u/cur/marker.eml") == volumes.marker  # not a target: untouched
    assert backup_id in dest.list_backups()
    _wait_for("no helper containers", lambda: _leftovers(config) == [], 30, poll=0.5)


# --- 4. the Docker daemon frozen -----------------------------------------------------------------


def test_a_frozen_docker_daemon_fails_the_deploy_by_its_deadline_and_frees_the_lock(
    deployed: None, cfg: StackConfig
) -> None:
    """The deploy engine over a connection whose commands may take at most 4 s (RemoteHost's
    max_command_s, instead of the 600-900 s a deploy's commands allow themselves), with the lock taken
    as the flow takes it. dockerd is SIGSTOPped for the run and always SIGCONTed."""
    from lab.procs import running_pid
    from mailu_flows.deploy.engine import run_deploy
    from mailu_flows.flows.deploy import BlockSecretsStore
    from mailu_flows.remote import CommandTimedOut

    pid = running_pid("dockerd")
    assert pid is not None
    host = _connect(cfg)
    host.max_command_s = 4
    store = BlockSecretsStore(cfg.blocks.mailu_secrets)
    lock = HostLock(host, cfg.paths.lock_file, "test_faults deploy (docker frozen)")
    lock.acquire(wait_s=600)
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(CommandTimedOut) as err:
                run_deploy(cfg, host, store)
            assert time.monotonic() - started < 30  # 4 s, and the host's KILL 10 s after its TERM
        finally:
            os.kill(pid, signal.SIGCONT)
        lock.release()
    finally:
        os.kill(pid, signal.SIGCONT)
        host.close()
    assert "did not finish within 4 s; stopped on the host" in str(err.value)
    assert "sh -c" in str(err.value)  # the command, as it was run
    _assert_lock_free(cfg)
    assert _ok(_flow("deploy", config=cfg, publish_dns=False))["summary"] == "no changes"


# --- 1. SSH cut during a file upload ---------------------------------------------------------------


class _CutInUpload(RemoteHost):
    """The product's RemoteHost whose SSH transport is closed right after the temp file of the first
    upload to a live file (not a release record) was opened on the host: the cut lands inside
    write_file, between creating the temp file and renaming it over the live one."""

    target: str | None = None

    @property
    def sftp(self) -> Any:
        real = super().sftp
        outer = self

        class CuttingSftp:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def open(self, path: str, mode: str = "r", *args: Any, **kw: Any) -> Any:
                handle = real.open(path, mode, *args, **kw)
                if "w" in mode and "/.mailu-flows/" not in path and outer.target is None:
                    outer.target = path.removesuffix(TMP_SUFFIX)
                    outer.client.get_transport().close()  # type: ignore[union-attr]
                return handle

        return CuttingSftp()


def test_ssh_cut_during_a_file_upload_keeps_the_live_file_and_a_rerun_converges(
    deployed: None, cfg: StackConfig
) -> None:
    from mailu_flows.blocks import SshHost, load_block
    from mailu_flows.deploy.engine import run_deploy
    from mailu_flows.flows.deploy import BlockSecretsStore

    changed = _bigger_messages(cfg)
    block = load_block(SshHost, cfg.blocks.ssh_host)
    host = _CutInUpload(
        str(block.address), block.port, block.user, block.private_key.get_secret_value(), block.host_keys
    )
    host.connect()
    lock = HostLock(host, cfg.paths.lock_file, "test_faults deploy (cut mid-upload)")
    lock.acquire(wait_s=600)
    root = Path(cfg.host.stack_root)
    before = {k: v for k, v in _digest_tree(root / "compose").items() if not k.endswith(TMP_SUFFIX)}
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the dead connection raised first
            run_deploy(changed, host, BlockSecretsStore(cfg.blocks.mailu_secrets))
    finally:
        host.close()
    assert host.target is not None, "no live file was uploaded"
    live = Path(host.target)
    assert Path(f"{live}{TMP_SUFFIX}").exists()  # the cut came mid-upload
    live_files = {k: v for k, v in _digest_tree(root / "compose").items() if not k.endswith(TMP_SUFFIX)}
    assert live_files == before  # nothing half-written is live
    _assert_lock_free(cfg)
    try:
        again = _ok(_flow("deploy", config=changed, publish_dns=False))
        assert again["changed"] and again["failed_checks"] == []
        assert _leftovers(cfg) == []  # the temp file was renamed away by the rerun's write of that file
    finally:
        assert _ok(_flow("deploy", config=cfg, publish_dns=False))["failed_checks"] == []


# --- 2. SSH cut during `compose up` --------------------------------------------------------------


def test_ssh_cut_during_compose_up_is_converged_by_a_rerun(deployed: None, cfg: StackConfig) -> None:
    from mailu_flows.deploy.engine import run_deploy
    from mailu_flows.flows.deploy import BlockSecretsStore

    project = cfg.mailu.compose_project
    changed = _bigger_messages(cfg)
    host = _connect(cfg)
    lock = HostLock(host, cfg.paths.lock_file, "test_faults deploy (cut in compose up)")
    lock.acquire(wait_s=600)
    cut = threading.Event()

    def cutter() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if _compose_up_running(project):
                time.sleep(1.0)  # well inside: containers are being recreated
                host.client.get_transport().close()  # type: ignore[union-attr]
                cut.set()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=cutter)
    thread.start()
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the dead connection raised first
            run_deploy(changed, host, BlockSecretsStore(cfg.blocks.mailu_secrets))
    finally:
        thread.join()
        host.close()
    assert cut.is_set(), "the deploy never reached compose up"
    _assert_lock_free(cfg)
    try:
        again = _ok(_flow("deploy", config=changed, publish_dns=False))
        assert again["failed_checks"] == []
        assert _ok(_flow("deploy", config=changed, publish_dns=False))["summary"] == "no changes"
        containers = _project_containers(project)
        assert all(name.startswith(f"{project}-") and name.endswith("-1") for name in containers), containers
        assert set(containers.values()) == {"running"}
        assert _leftovers(cfg) == []
    finally:
        assert _ok(_flow("deploy", config=cfg, publish_dns=False))["failed_checks"] == []


# --- 12. the flow process killed mid-rollback ----------------------------------------------------


def test_a_rollback_killed_during_compose_up_is_finished_by_a_rerun(
    deployed: None, cfg: StackConfig, tmp_path: Path
) -> None:
    project = cfg.mailu.compose_project
    first = _ok(_flow("deploy", config=cfg, publish_dns=False))
    second = _ok(_flow("deploy", config=_bigger_messages(cfg), publish_dns=False))
    assert second["changed"]
    proc = _flow_process("rollback", cfg, tmp_path, mode="previous-release", confirm=cfg.hostname)
    try:
        _wait_for("the rollback's compose up", lambda: _compose_up_running(project), 300)
        time.sleep(1.0)
        _kill(proc)
        _assert_lock_free(cfg)
        result = _ok(_flow("rollback", config=cfg, mode="previous-release", confirm=cfg.hostname))
        assert result["from_release"] == second["release"]
        assert result["to_release"] == first["release"]
        assert result["failed_checks"] == []
        assert set(_project_containers(project).values()) == {"running"}
        assert _leftovers(cfg) == []
    finally:
        _kill(proc)
        assert _ok(_flow("deploy", config=cfg, publish_dns=False))["failed_checks"] == []


# --- 6. the stack root's disk is full ------------------------------------------------------------


def test_a_full_stack_root_fails_naming_the_write_and_keeps_the_previous_file(
    deployed: None, cfg: StackConfig
) -> None:
    """A first deploy (own volumes) onto a stack root that is a 1 MiB tmpfs holding a compose file from
    before, filled up: the deploy fails naming what it could not write, the file from before is intact,
    and once there is space the same deploy converges. Its compose project is the lab's (one Traefik),
    so the lab's stack is deployed again at the end."""
    from tests.lab.fixtures.deploying import empty_volumes, fresh_stack_root, own_stack_config

    prefix = "ft-disk-"
    root = fresh_stack_root("ft-disk-root")
    user = pwd.getpwnam(ep.SSH_USER)
    opts = f"size=1m,mode=0755,uid={user.pw_uid},gid={user.pw_gid}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "ft-disk", str(root)], check=True)
    own = own_stack_config(cfg, root, prefix)
    try:
        compose = root / own.host.compose_file
        compose.parent.mkdir(parents=True)
        previous = b"# the compose file that was here before mailu-flows\n"
        compose.write_bytes(previous)
        shutil.chown(compose.parent, user.pw_uid, user.pw_gid)
        shutil.chown(compose, user.pw_uid, user.pw_gid)
        certs = own.host.certs_dir  # the mail flavor reads its certificates from the stack root
        assert certs is not None
        shutil.copytree(Path(cfg.host.resolve(certs)), root / certs)
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(root / certs)], check=True)
        filler = root / "filler"
        subprocess.run(["sh", "-c", f"head -c 2000000 /dev/zero > {filler}"], check=False)  # stops when full
        state = _flow("deploy", config=own, publish_dns=False, lock_wait_s=600)
        assert state.is_failed()
        text = _text(state)
        assert str(root) in text and ("No space left" in text or "cannot write" in text), text
        assert compose.read_bytes() == previous
        assert list(root.rglob(f"*{TMP_SUFFIX}")) == []
        filler.unlink()
        _ok(_flow("deploy", config=own, publish_dns=False))
        assert compose.read_bytes() != previous
    finally:
        try:
            # The lab's deploy compares images and states, not which compose file the containers came
            # from (see the report): stop the own stack's containers so that it recreates the lab's.
            own_compose = root / own.host.compose_file
            if own_compose.exists():
                argv = ["docker", "compose", "-p", own.mailu.compose_project, "-f", str(own_compose), "stop"]
                subprocess.run(argv, capture_output=True, check=False)
            assert _ok(_flow("deploy", config=cfg, publish_dns=False))["failed_checks"] == []
        finally:
            subprocess.run(["umount", "-l", str(root)], check=False)
            empty_volumes(own, prefix)


# --- 5. the Docker daemon stopped (last: every container of the lab stops with it) ----------------


def test_zz_a_stopped_docker_daemon_fails_the_deploy_clearly_and_a_rerun_converges(
    deployed: None, cfg: StackConfig
) -> None:
    from lab.host import docker_answers
    from lab.procs import stop_daemon
    from lab.up import lab_status, lab_up

    assert stop_daemon("dockerd", timeout=90)
    try:
        assert not docker_answers()
        state = _flow("deploy", config=cfg, publish_dns=False, lock_wait_s=60)
        assert state.is_failed()
        text = _text(state)
        assert "preflight failed, nothing was changed" in text
        assert "the Docker daemon does not answer on the host" in text, text
        _assert_lock_free(cfg)
    finally:
        lab_up()  # dockerd as the lab starts it, then Traefik and the rest, as `mailu-flows lab up` does
    assert lab_status()["up"]
    again = _ok(_flow("deploy", config=cfg))
    assert again["failed_checks"] == []
    assert set(_project_containers(cfg.mailu.compose_project).values()) == {"running"}
