"""Pure backup rules: manifest round trip, listing digest, retention, verify-sample rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailu_core.backup import (
    ArchiveEntry,
    BackupInfo,
    ListingDigest,
    Manifest,
    archive_file_name,
    backup_id_for,
    choose_sample,
    parse_backup_id,
    select_retention,
)

T0 = datetime(2025, 3, 14, 3, 0, tzinfo=UTC)  # a Friday


def _manifest() -> Manifest:
    entry = ArchiveEntry(
        name="mailu_mail_data", kind="volume", file=archive_file_name("mailu_mail_data", "volume"),
        plain_bytes=10240, entries=3, file_count=2, listing_sha256="ab" * 32, cipher_bytes=10391,
        cipher_sha256="cd" * 32,
    )  # fmt: skip
    return Manifest(
        backup_id=backup_id_for("lab", T0), stack="lab", created=T0, finished=T0 + timedelta(seconds=5),
        mailu_version="2024.06", images={"admin": "ghcr.io/mailu/admin@sha256:" + "0" * 64},
        key_fingerprint="A" * 40, archives=[entry],
    )  # fmt: skip


def test_manifest_round_trips_and_finds_archives() -> None:
    manifest = _manifest()
    again = Manifest.model_validate_json(manifest.model_dump_json())
    assert again == manifest
    assert again.volumes == ["mailu_mail_data"]
    assert again.archive("mailu_mail_data") is not None and again.archive("nope") is None
    assert again.archives[0].file == "mailu_mail_data.tar.gpg"
    assert archive_file_name("postgres-dump", "pg-dump") == "postgres-dump.dump.gpg"


def test_manifest_rejects_unknown_fields() -> None:
    data = _manifest().model_dump(mode="json")
    data["archives"][0]["extra"] = 1
    with pytest.raises(ValueError, match="extra"):
        Manifest.model_validate(data)


def test_backup_ids_sort_by_time_and_parse_back() -> None:
    assert backup_id_for("lab", T0) == "lab-20250314T030000Z"
    assert backup_id_for("lab", T0, "safety") == "lab-20250314T030000Z-safety"
    assert parse_backup_id("lab-20250314T030000Z-safety") == T0
    assert parse_backup_id(".partial-lab-20250314T030000Z") is None
    assert parse_backup_id("lab-2025") is None


def test_listing_digest_depends_on_every_field_and_order() -> None:
    def digest(*rows: tuple[str, str, int]) -> str:
        listing = ListingDigest()
        for name, kind, uid in rows:
            listing.add(name, kind, 0o640, uid, 12, 5 if kind == "file" else 0, 1700000000)
        return listing.hexdigest()

    base = digest((".", "dir", 0), ("./a", "file", 8))
    assert base == digest((".", "dir", 0), ("./a", "file", 8))
    assert base != digest((".", "dir", 0), ("./a", "file", 9))  # owner lost
    assert base != digest(("./a", "file", 8), (".", "dir", 0))  # order
    listing = ListingDigest()
    listing.add(".", "dir", 0o755, 0, 0, 0, 0)
    listing.add("./a", "file", 0o640, 8, 12, 5, 0)
    assert (listing.entries, listing.file_count) == (2, 1)


def _daily(days: int, start: datetime = T0) -> list[BackupInfo]:
    return [
        BackupInfo(backup_id_for("lab", start - timedelta(days=d)), start - timedelta(days=d))
        for d in range(days)
    ]


def test_retention_keeps_last_n_daily_and_m_weekly() -> None:
    backups = _daily(30)
    plan = select_retention(backups, daily=7, weekly=4)
    kept = sorted(plan.keep, reverse=True)
    daily_ids = [b.backup_id for b in backups[:7]]
    assert set(daily_ids) <= set(kept)
    # weekly: newest of each of the 4 newest ISO weeks (Fri 14th's week, then the Sundays before it)
    weekly = {b for b, reasons in plan.keep.items() if any(r.startswith("weekly") for r in reasons)}
    assert len(weekly) == 4
    assert backup_id_for("lab", T0 - timedelta(days=5)) in weekly  # Sunday 9 March ends week 10
    assert len(plan.keep) + len(plan.delete) == 30
    assert len(plan.keep) == 7 + 2  # two weeks' newest fall outside the last 7 days


def test_retention_keeps_only_the_newest_of_a_day() -> None:
    same_day = [
        BackupInfo(backup_id_for("lab", T0 + timedelta(hours=h)), T0 + timedelta(hours=h)) for h in range(3)
    ]
    plan = select_retention(same_day, daily=7, weekly=0)
    assert list(plan.keep) == [same_day[-1].backup_id]
    assert sorted(plan.delete) == sorted(b.backup_id for b in same_day[:-1])


def test_retention_never_deletes_the_newest_verified_backup() -> None:
    backups = _daily(10)
    verified_old = BackupInfo(backups[8].backup_id, backups[8].created, verified_ok=True)
    failed_new = BackupInfo(backups[0].backup_id, backups[0].created, verified_ok=False)
    infos = [failed_new, *backups[1:8], verified_old, backups[9]]
    plan = select_retention(infos, daily=2, weekly=0)
    assert "newest verified" in plan.keep[verified_old.backup_id]
    assert "newest" in plan.keep[failed_new.backup_id]
    assert backups[9].backup_id in plan.delete
    assert select_retention([], 3, 1).keep == {}


def test_sample_reads_everything_within_budget() -> None:
    archives = [("mail", 100), ("dkim", 1), ("admin", 10)]
    sample = choose_sample(archives, budget_bytes=None, cursor=5)
    assert sample.selected == ["mail", "dkim", "admin"] and sample.skipped == [] and sample.next_cursor == 5
    assert choose_sample(archives, budget_bytes=1000, cursor=0).skipped == []


def test_sample_rotates_until_everything_was_read() -> None:
    archives = [("mail", 100), ("dkim", 1), ("admin", 60), ("rspamd", 50), ("webmail", 40)]
    seen: set[str] = set()
    cursor = 0
    rounds = []
    for _ in range(4):
        sample = choose_sample(archives, budget_bytes=100, cursor=cursor, pinned=["dkim"])
        assert "dkim" in sample.selected  # pinned: always read, not counted
        rounds.append(sample.selected)
        seen |= set(sample.selected)
        cursor = sample.next_cursor
    assert rounds[0] == ["mail", "dkim"]
    assert rounds[1] == ["dkim", "admin"]
    assert rounds[2] == ["dkim", "rspamd", "webmail"]
    assert rounds[3] == ["mail", "dkim"]  # wrapped around
    assert seen == {name for name, _ in archives}


def test_sample_takes_one_archive_even_if_it_exceeds_the_budget() -> None:
    sample = choose_sample([("mail", 500), ("admin", 10)], budget_bytes=100, cursor=0)
    assert sample.selected == ["mail"] and sample.skipped == ["admin"] and sample.next_cursor == 1
