"""The upgrade engine's decisions on a FakeHost (no machine): what it refuses before anything, the order
backup -> verify -> deploy -> canary, and the return after a failure: admin stopped and its data
restored from the pre-upgrade backup before the previous config is deployed again, or admin left
stopped when that restore fails (older code never runs on a newer schema)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict
from typing import Any

import pytest

from lab.stack_config import lab_stack_config
from mailu_core.config import StackConfig, stack_config_from_mapping
from mailu_core.upgrade import UpgradePlan, mailu_images, plan_upgrade, repository_of
from mailu_flows.deploy.engine import DeployError, DeployPlan, DeployResult, PreflightFailed
from mailu_flows.deploy.preflight import Check
from mailu_flows.deploy.releases import Release
from mailu_flows.fake_host import Answer, Call, FakeHost
from mailu_flows.upgrade import (
    ConfirmationRefused,
    Upgrade,
    UpgradeFailed,
    UpgradeRefused,
    UpgradeSteps,
    admin_data_volumes,
    check_confirmation,
    services_mounting,
)
from tests.core.render.test_render import lab_images

TAG = "2024.06.10"
MAILU = ["resolver", "front", "admin", "imap", "smtp", "antispam", "webmail"]
NEW = {name: "sha256:" + f"{i:x}" * 64 for i, name in enumerate(MAILU, start=1)}
BACKUP = "lab-20261201T030000Z-preupgrade"


def base_config(**kw: Any) -> StackConfig:
    return lab_stack_config(lab_images(), "/srv/apps", **kw)


def release(cfg: StackConfig, rid: str, status: str = "good") -> Release:
    images = {s: str(getattr(cfg.images, s)) for s in ("redis", *MAILU)}
    return Release(rid, "2026-12-01T03:00:00+00:00", "x", images, {}, status)  # type: ignore[arg-type]


def record(host: FakeHost, cfg: StackConfig, rel: Release) -> None:
    host.files[f"{cfg.paths.releases_dir}/{rel.id}/release.json"] = json.dumps(asdict(rel)).encode()


def read_record(host: FakeHost, cfg: StackConfig, rid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(host.files[f"{cfg.paths.releases_dir}/{rid}/release.json"])
    return data


def fake_host(cfg: StackConfig, *releases: Release) -> FakeHost:
    """A host with `releases` recorded; the release listing reads them back from its files."""
    host = FakeHost()
    for rel in releases:
        record(host, cfg, rel)

    def listing(_call: Call) -> Answer:
        lines = [
            f"{path} {base64.b64encode(data).decode()}"
            for path, data in sorted(host.files.items())
            if path.startswith(cfg.paths.releases_dir) and path.endswith("/release.json")
        ]
        return Answer("\n".join(lines).encode() + b"\n")

    host.on(re.compile(r"^for f in .*release\.json"), listing)
    host.on(re.compile(r"docker compose .* stop "), stdout=b"")
    return host


class Steps:
    """Fake backup/verify/deploy/restore/canary, recording what ran, in order."""

    def __init__(self, host: FakeHost, cfg: StackConfig, fail: dict[str, Any] | None = None) -> None:
        self.host, self.cfg, self.fail = host, cfg, fail or {}
        self.events: list[str] = []
        self.stopped_before_restore: list[str] = []

    def backup(self) -> str:
        self.events.append("backup")
        return BACKUP

    def verify(self, backup_id: str) -> list[str]:
        self.events.append(f"verify {backup_id}")
        return list(self.fail.get("verify", []))

    def deploy(self, cfg: StackConfig) -> DeployResult:
        which = "new" if cfg.images.admin != self.cfg.images.admin or cfg.images != self.cfg.images else "old"
        self.events.append(f"deploy {which}")
        error = self.fail.get(f"deploy {which}")
        if error is not None:
            raise error
        rid = f"2026120103000{len(self.events)}000000Z"
        rel = release(cfg, rid)
        record(self.host, self.cfg, rel)
        return DeployResult(True, rid, "written", DeployPlan(), [Check("container admin", True, "ok")])

    def restore(self, backup_id: str, volumes: list[str]) -> str:
        self.events.append(f"restore {backup_id} {','.join(volumes)}")
        self.stopped_before_restore = [c for c in self.host.commands() if " stop " in c]
        error = self.fail.get("restore")
        if error is not None:
            raise error
        return f"restored {', '.join(volumes)} from {backup_id}"

    def canary(self, cfg: StackConfig) -> list[str]:
        self.events.append("canary")
        return list(self.fail.get("canary", []))

    def wired(self, canary: bool = True) -> UpgradeSteps:
        return UpgradeSteps(
            self.backup, self.verify, self.deploy, self.restore, self.canary if canary else None
        )


def setup(
    cfg: StackConfig | None = None,
    digests: dict[str, str] | None = None,
    *,
    fail: dict[str, Any] | None = None,
) -> tuple[StackConfig, UpgradePlan, FakeHost, Steps]:
    cfg = cfg or base_config()
    plan = plan_upgrade(cfg, TAG, digests or NEW)
    host = fake_host(cfg, release(cfg, "20261130T020000000000Z"))
    return cfg, plan, host, Steps(host, cfg, fail)


def stops(host: FakeHost) -> list[str]:
    return [c for c in host.commands() if " stop " in c]


def test_a_good_upgrade_backs_up_verifies_deploys_the_new_pins_and_runs_the_canary() -> None:
    cfg, plan, host, steps = setup()
    result = Upgrade(cfg, plan, TAG, host, steps.wired()).run()
    assert steps.events == ["backup", f"verify {BACKUP}", "deploy new", "canary"]
    assert result.changed and result.backup_id == BACKUP and result.release_id
    assert stops(host) == []
    assert [r.step for r in result.rows] == [
        "preconditions", "backup", "verify backup", "deploy", "post-deploy checks", "mail canary",
    ]  # fmt: skip


def test_the_deploy_gets_the_config_pinned_to_the_new_digests_not_the_file() -> None:
    cfg, plan, host, steps = setup()
    deployed: list[StackConfig] = []

    def deploy(config: StackConfig) -> DeployResult:
        deployed.append(config)
        return steps.deploy(config)

    wired = steps.wired(canary=False)
    Upgrade(cfg, plan, TAG, host, UpgradeSteps(wired.backup, wired.verify, deploy, wired.restore)).run()
    assert deployed[0].images.admin == f"{repository_of(cfg.images.admin)}@{NEW['admin']}"
    assert deployed[0].images.redis == cfg.images.redis  # not one of Mailu's images
    assert cfg.images.admin != deployed[0].images.admin  # the caller's config is untouched


def test_nothing_to_do_when_the_config_already_pins_the_release() -> None:
    _, plan, host, steps = setup()
    again = plan_upgrade(plan.config, TAG, NEW)
    result = Upgrade(plan.config, again, TAG, host, steps.wired()).run()
    assert not result.changed and steps.events == [] and host.commands() == []
    assert "already runs" in result.summary()


def test_no_release_on_the_host_is_refused_before_any_backup() -> None:
    cfg = base_config()
    plan = plan_upgrade(cfg, TAG, NEW)
    host = fake_host(cfg)
    steps = Steps(host, cfg)
    with pytest.raises(UpgradeRefused, match="no good release"):
        Upgrade(cfg, plan, TAG, host, steps.wired()).run()
    assert steps.events == []


def test_a_host_running_other_images_than_the_config_is_refused_before_any_backup() -> None:
    cfg = base_config()
    running = release(cfg, "20261130T020000000000Z")
    running.images["front"] = "127.0.0.1:5000/mailu/front@sha256:" + "9" * 64
    host = fake_host(cfg, running, release(cfg, "20261130T030000000000Z", "rolled-back"))
    steps = Steps(host, cfg)
    with pytest.raises(UpgradeRefused, match="images of front are not the config's; deploy the config first"):
        Upgrade(cfg, plan_upgrade(cfg, TAG, NEW), TAG, host, steps.wired()).run()
    assert steps.events == []


def test_a_backup_that_fails_verification_stops_before_the_deploy() -> None:
    cfg, plan, host, steps = setup(fail={"verify": ["sha256 of mail.tar.gpg: mismatch"]})
    with pytest.raises(UpgradeRefused, match=r"failed verification: sha256 of mail\.tar\.gpg"):
        Upgrade(cfg, plan, TAG, host, steps.wired()).run()
    assert steps.events == ["backup", f"verify {BACKUP}"]


def test_a_refused_preflight_changes_nothing_and_restores_nothing() -> None:
    cfg, plan, host, steps = setup(fail={"deploy new": PreflightFailed("preflight failed: disk")})
    with pytest.raises(UpgradeRefused, match="preflight refused it, nothing on the stack changed"):
        Upgrade(cfg, plan, TAG, host, steps.wired()).run()
    assert steps.events == ["backup", f"verify {BACKUP}", "deploy new"]
    assert stops(host) == []


def test_a_failed_deploy_stops_admin_restores_its_volume_then_deploys_the_previous_config() -> None:
    cfg, plan, host, steps = setup(
        fail={"deploy new": DeployError("post-deploy checks failed: admin unhealthy")}
    )
    with pytest.raises(UpgradeFailed) as failed:
        Upgrade(cfg, plan, TAG, host, steps.wired()).run()
    assert steps.events == [
        "backup", f"verify {BACKUP}", "deploy new", f"restore {BACKUP} mailu_admin_data", "deploy old",
    ]  # fmt: skip
    assert len(steps.stopped_before_restore) == 1  # admin was stopped before its volume was restored
    assert re.search(r"compose .* stop -t 30 admin$", steps.stopped_before_restore[0])
    text = str(failed.value)
    assert "admin unhealthy" in text and "back on the previous release" in text and "restored" in text


def test_when_admins_image_does_not_change_nothing_is_stopped_or_restored() -> None:
    cfg = base_config()
    same_admin = {**NEW, "admin": cfg.images.admin.split("@")[1]}
    cfg, plan, host, steps = setup(cfg, same_admin, fail={"deploy new": DeployError("front unhealthy")})
    assert not plan.admin_changes
    with pytest.raises(UpgradeFailed, match="admin's image did not change: no data restored"):
        Upgrade(cfg, plan, TAG, host, steps.wired()).run()
    assert steps.events == ["backup", f"verify {BACKUP}", "deploy new", "deploy old"]
    assert stops(host) == []


def test_a_failed_canary_returns_and_marks_the_upgrade_release_rolled_back() -> None:
    cfg, plan, host, steps = setup(fail={"canary": ["submit: 451 4.7.1 try again later"]})
    with pytest.raises(UpgradeFailed, match="the mail canary failed: submit: 451"):
        Upgrade(cfg, plan, TAG, host, steps.wired()).run()
    assert steps.events == [
        "backup", f"verify {BACKUP}", "deploy new", "canary", f"restore {BACKUP} mailu_admin_data",
        "deploy old",
    ]  # fmt: skip
    upgraded = "20261201030003000000Z"  # the fake deploy's id for the third event
    assert read_record(host, cfg, upgraded)["status"] == "rolled-back"
    assert "canary" in read_record(host, cfg, upgraded)["note"]


def test_a_failed_restore_leaves_admin_stopped_and_never_starts_the_old_images() -> None:
    cfg, plan, host, steps = setup(
        fail={"deploy new": DeployError("admin unhealthy"), "restore": RuntimeError("gpg: decryption failed")}
    )
    with pytest.raises(UpgradeFailed) as failed:
        Upgrade(cfg, plan, TAG, host, steps.wired()).run()
    assert "deploy old" not in steps.events
    text = str(failed.value)
    assert "decryption failed" in text and "admin stays stopped" in text and BACKUP in text


def test_a_failed_return_names_both_failures() -> None:
    cfg, plan, host, steps = setup(
        fail={"deploy new": DeployError("admin unhealthy"), "deploy old": DeployError("front unhealthy")}
    )
    also = r"admin unhealthy.*returning to the previous release ALSO failed: front unhealthy"
    with pytest.raises(UpgradeFailed, match=also):
        Upgrade(cfg, plan, TAG, host, steps.wired()).run()


def test_without_a_canary_the_upgrade_says_so() -> None:
    cfg, plan, host, steps = setup()
    result = Upgrade(cfg, plan, TAG, host, steps.wired(canary=False)).run()
    assert "canary" not in steps.events
    assert ("mail canary", "skipped") in [(r.step, r.result) for r in result.rows]


def _postgres(managed: bool, backed_up: bool = True) -> StackConfig:
    data = base_config(database="postgresql").model_dump(mode="json")
    data["database"]["managed"] = managed
    if not managed:
        data["images"].pop("postgres", None)
        data["database"]["host"] = "db.internal"
    if not backed_up:
        data["backup"]["volumes"].remove(data["volumes"]["postgres"])
    return stack_config_from_mapping(data, source="test")


def test_admins_data_is_its_volume_and_a_managed_postgresqls_and_a_shared_one_is_refused() -> None:
    assert admin_data_volumes(base_config()) == (["mailu_admin_data"], None)
    managed = _postgres(True)
    assert admin_data_volumes(managed) == (["mailu_admin_data", managed.volumes.postgres], None)
    assert services_mounting(managed, admin_data_volumes(managed)[0]) == ["admin", "postgres"]
    volumes, why = admin_data_volumes(_postgres(True, backed_up=False))
    assert volumes == [] and why is not None and "backup.volumes lacks" in why
    shared = _postgres(False)
    volumes, why = admin_data_volumes(shared)
    assert volumes == [] and why is not None and "shared PostgreSQL" in why
    host = fake_host(shared, release(shared, "20261130T020000000000Z"))
    steps = Steps(host, shared)
    with pytest.raises(UpgradeRefused, match="shared PostgreSQL"):
        Upgrade(shared, plan_upgrade(shared, TAG, NEW), TAG, host, steps.wired()).run()
    assert steps.events == [] and host.commands() == []


def test_the_confirmation_must_name_the_mail_hostname() -> None:
    cfg = base_config()
    check_confirmation(cfg, cfg.hostname.upper() + ".", TAG)
    for wrong in ("", "yes", "webmail.inlock.test"):
        with pytest.raises(ConfirmationRefused, match=f"type the mail hostname '{cfg.hostname}'"):
            check_confirmation(cfg, wrong, TAG)
    assert set(mailu_images(cfg)) == set(MAILU)


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("to", "2024.06.10; rm -rf /"),
        ("to", "../../latest"),
        ("to", "a" * 200),
        ("to", ""),
        ("confirm", "mail.inlock.test\n"),
        ("confirm", ""),
        ("verify_time_budget_s", 86_401),
        ("verify_time_budget_s", float("nan")),
        ("lock_wait_s", 3601),
        ("canary", "maybe"),
        ("verify_drill", "sometimes"),
        ("config", {"host": {"stack_root": "relative"}}),
    ],
)
def test_hostile_upgrade_parameters_are_refused_naming_them(parameter: str, value: Any) -> None:
    """As the run validates them (the server checks the same schema when a run is created)."""
    from prefect.exceptions import ParameterTypeError

    from mailu_flows.flows.upgrade import upgrade

    cfg = base_config()
    params: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "to": TAG, "confirm": cfg.hostname}
    if parameter == "config":
        params["config"]["host"].update(value["host"])
    else:
        params[parameter] = value
    with pytest.raises(ParameterTypeError) as caught:
        upgrade.validate_parameters(params)
    named = [line.removeprefix(" - ").split(":", 1)[0] for line in str(caught.value).splitlines()[1:]]
    assert named and all(loc.startswith(parameter) for loc in named), caught.value
    valid = upgrade.validate_parameters({"config": cfg.model_dump(mode="json"), "to": "2024.06.10-lab",
                                         "confirm": cfg.hostname, "verify_time_budget_s": None})  # fmt: skip
    assert valid["to"] == "2024.06.10-lab" and valid["canary"] is True


def test_the_upgrade_command_runs_the_flow_and_prints_the_pins_to_put_into_the_config(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mailu_core.config import dump_stack_config
    from mailu_flows.cli import main
    from mailu_flows.flows import upgrade as upgrade_module

    path = tmp_path / "stack.yaml"
    path.write_text(dump_stack_config(base_config()))
    asked: list[dict[str, Any]] = []
    pins = {"admin": "127.0.0.1:5000/mailu/admin@" + NEW["admin"]}

    class Done:
        name = "Completed"

        def is_completed(self) -> bool:
            return True

        def result(self) -> dict[str, Any]:
            row = {"step": "deploy", "result": "done", "detail": "release R"}
            return {"summary": f"upgraded to {TAG}", "rows": [row], "images": pins}

    def run(**params: Any) -> Done:
        asked.append(params)
        return Done()

    monkeypatch.setattr(upgrade_module, "upgrade", run)
    assert (
        main(
            [
                "upgrade",
                "--config",
                str(path),
                "--local",
                "--to",
                TAG,
                "--confirm",
                "mail.inlock.test",
                "--no-drill",
            ]
        )
        == 0
    )
    assert {k: asked[0][k] for k in ("to", "confirm", "verify_drill", "canary")} == {
        "to": TAG, "confirm": "mail.inlock.test", "verify_drill": False, "canary": True,
    }  # fmt: skip
    out = capsys.readouterr().out
    assert f"upgraded to {TAG}" in out and f"admin: {pins['admin']}" in out and "put the new pins" in out
