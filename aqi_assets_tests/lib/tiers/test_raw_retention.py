"""The raw lake keeps every snapshot that is not safely merged; the others are removed or archived."""

from __future__ import annotations

import gzip
import hashlib
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from aqi_assets.lib.air_quality.lake import day_directory, snapshot_name
from aqi_assets.lib.common.location import open_location
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers.parquet_tier import export_day, verify_day
from aqi_assets.lib.tiers.retention import prune_raw_lake
from aqi_assets_tests.support.tier_history import insert_history

DAYS = [date(2026, 10, 1) + timedelta(days=i) for i in range(12)]
TODAY = DAYS[-1] + timedelta(days=1)


def _snapshot(raw: Path, period: str, fetched_at: datetime, body: bytes) -> Path:
    directory = day_directory(raw, period, fetched_at.date())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / snapshot_name(period, hashlib.sha256(body).hexdigest(), fetched_at)
    path.write_bytes(gzip.compress(body))
    return path


def _log(connection, path: Path, period: str, status: str) -> None:
    connection.execute(
        "INSERT INTO snapshot_log (snapshot, period, status, processed_at) VALUES (?, ?, ?, now())",
        [path.name, period, status],
    )


@pytest.mark.parametrize("archive", [False, True])
def test_only_merged_snapshots_of_verified_days_leave_the_lake(tmp_path: Path, archive: bool) -> None:
    raw = tmp_path / "raw"
    location = open_location(str(tmp_path / "parquet"))
    archive_location = open_location(str(tmp_path / "archive")) if archive else None
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        insert_history(connection, DAYS, sensors=5, per_sensor=2)
        removable, kept = [], []
        for index, day in enumerate(DAYS):
            fetched = datetime.combine(day, datetime.min.time()) + timedelta(hours=12)
            for period in ("5min", "24h"):
                merged = _snapshot(raw, period, fetched, f"[{index}, {period!r}]".encode())
                _log(connection, merged, period, "merged")
                (removable if day < TODAY - timedelta(days=7) else kept).append(merged)
        old = datetime.combine(DAYS[1], datetime.min.time()) + timedelta(hours=13)
        never_merged = _snapshot(raw, "5min", old, b"[1, 2]")
        unreadable = _snapshot(raw, "5min", old + timedelta(minutes=5), b"not json")
        _log(connection, unreadable, "5min", "unreadable")
        invalid = unreadable.with_name(unreadable.name.replace(".json.gz", "_x.json.gz.invalid"))
        invalid.write_bytes(b"<html>")
        kept += [never_merged, unreadable, invalid]

        # Only days 0..3 are exported and verified: the snapshots of days 4.. (and of day 0, whose previous
        # day is not verified) stay although they are merged and old.
        for day in DAYS[:4]:
            export_day(connection, location, day)
            assert verify_day(connection, location, day).ok
        not_verified = [p for p in removable if p.parent.name not in ("02", "03", "04")]
        removable = [p for p in removable if p not in not_verified]
        kept += not_verified
        sizes = sum(p.stat().st_size for p in removable)

        report = prune_raw_lake(connection, raw, today=TODAY, raw_days=7, archive=archive_location)

    assert report.removed == len(removable) == 6
    assert report.bytes_freed == sizes
    assert never_merged.name in report.kept_unmerged and unreadable.name in report.kept_unmerged
    assert all(not p.exists() for p in removable)
    assert all(p.exists() for p in kept)
    if archive:
        assert report.archived == len(removable)
        for path in removable:
            copy = tmp_path / "archive" / path.relative_to(raw)
            assert gzip.decompress(copy.read_bytes()).startswith(b"[")
    else:
        assert report.archived == 0 and not (tmp_path / "archive").exists()
    # Emptied day directories are gone; a kept file's directory stays.
    assert not day_directory(raw, "24h", DAYS[2]).exists()
    assert day_directory(raw, "5min", DAYS[1]).exists()
