"""The raw lake's layout and its scan window: which snapshot files a merge looks at, on a real lake and DuckDB."""

from __future__ import annotations

import gzip
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest

from aqi_assets.lib.air_quality.generator import Quirks, generate_snapshot
from aqi_assets.lib.air_quality.lake import (
    day_directory,
    list_snapshots,
    mark_invalid,
    pending_snapshots,
    scan_start,
    snapshot_day,
    snapshot_name,
)
from aqi_assets.lib.air_quality.normalise import merge_snapshot, record_unreadable
from aqi_assets.lib.readings.schema import readings_connection

SHA = "0123456789abcdef" * 4


def fetched(day: int, hour: int = 12, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, 7, 123456, tzinfo=timezone.utc)


def put(raw_dir: Path, period: str, at: datetime, *, directory_day: date | None = None, records: int = 4) -> Path:
    """A snapshot file as the fetch writes it: gzip bytes under the day directory of the fetch."""
    directory = day_directory(raw_dir, period, directory_day or at.date())
    directory.mkdir(parents=True, exist_ok=True)
    body = generate_snapshot(records, seed=at.day * 100 + at.hour, at=at, quirks=Quirks.clean())
    path = directory / snapshot_name(period, f"{at:%d%H%M}" + SHA[6:], at)
    path.write_bytes(gzip.compress(body))
    return path


@pytest.fixture
def db(tmp_path: Path):
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        yield connection


def names(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


def test_names_carry_period_fetch_time_and_hash() -> None:
    at = fetched(27, 23, 59)
    name = snapshot_name("5min", SHA, at)
    assert name == "5min_20261127T235907123456Z_0123456789ab.json.gz"
    assert snapshot_day(name) == date(2026, 11, 27)
    assert snapshot_day(name + ".invalid") is None  # a kept unparseable body is not a snapshot
    assert snapshot_day("real.json.gz") is None
    assert day_directory(Path("/lake"), "24h", at.date()) == Path("/lake/24h/2026/11/27")
    for hostile in ("../5min", "5min/..", "1h"):
        with pytest.raises(ValueError, match="unknown period"):
            day_directory(Path("/lake"), hostile, at.date())
        with pytest.raises(ValueError, match="unknown period"):
            list_snapshots(Path("/lake"), hostile)


def test_the_scan_starts_the_day_before_the_newest_logged_snapshot() -> None:
    assert scan_start(None) is None  # nothing merged yet: every day
    assert scan_start(snapshot_name("5min", SHA, fetched(27, 0, 0))) == date(2026, 11, 26)
    assert scan_start(snapshot_name("24h", SHA, fetched(1, month=12))) == date(2026, 11, 30)  # across a month
    assert scan_start("restored-by-hand.json.gz") is None  # a name without a date: scan everything


def test_list_snapshots_in_fetch_order_from_a_day_on(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    assert list_snapshots(raw, "5min") == []  # no lake yet
    late = put(raw, "5min", fetched(27, 18))
    early = put(raw, "5min", fetched(27, 6))
    old = put(raw, "5min", fetched(20))
    previous_day = put(raw, "5min", fetched(26, 23, 59))
    put(raw, "24h", fetched(27, 9))  # another period
    kept = mark_invalid(put(raw, "5min", fetched(27, 9)))  # an unparseable body, renamed
    (kept.parent / ".tmp-download-123").write_bytes(b"partial")  # a download in progress
    (raw / "5min" / "2026" / "11" / "notes").mkdir()  # not a day directory

    assert list_snapshots(raw, "5min") == [old, previous_day, early, late]
    assert list_snapshots(raw, "5min", since=date(2026, 11, 26)) == [previous_day, early, late]
    assert list_snapshots(raw, "5min", since=date(2026, 11, 28)) == []
    assert names(list_snapshots(raw, "24h")) == [snapshot_name("24h", "270900" + SHA[6:], fetched(27, 9))]


def test_new_snapshots_in_the_window_are_pending_and_logged_ones_are_not(
    tmp_path: Path, db: duckdb.DuckDBPyConnection
) -> None:
    raw = tmp_path / "raw"
    first = put(raw, "5min", fetched(26, 10))
    assert pending_snapshots(db, raw, "5min") == [first]  # an empty log: everything
    merge_snapshot(db, first, "5min")
    assert pending_snapshots(db, raw, "5min") == []

    broken = put(raw, "5min", fetched(27, 8))
    record_unreadable(db, broken.name, "5min", "not a JSON array")  # found unreadable once: not retried
    late_yesterday = put(raw, "5min", fetched(26, 23, 58), directory_day=date(2026, 11, 26))
    # Fetched just before midnight, written just after it: the name says the 27th, the directory the 26th.
    across_midnight = put(raw, "5min", fetched(27, 0, 0), directory_day=date(2026, 11, 26))
    newest = put(raw, "5min", fetched(27, 9))
    other_period = put(raw, "24h", fetched(27, 9))

    assert pending_snapshots(db, raw, "5min") == [late_yesterday, across_midnight, newest]
    assert pending_snapshots(db, raw, "24h") == [other_period]  # the 5-minute log says nothing about 24h
    for path in (late_yesterday, across_midnight, newest):
        merge_snapshot(db, path, "5min")
    assert pending_snapshots(db, raw, "5min") == []
    assert pending_snapshots(db, raw, "5min", full_rescan=True) == []  # merged and unreadable stay skipped


def test_a_snapshot_restored_into_an_old_day_is_merged_only_by_a_full_rescan(
    tmp_path: Path, db: duckdb.DuckDBPyConnection
) -> None:
    raw = tmp_path / "raw"
    for path in (put(raw, "5min", fetched(20)), put(raw, "5min", fetched(27, 12))):
        merge_snapshot(db, path, "5min")
    restored = put(raw, "5min", fetched(21, 8))  # e.g. copied back from an archive
    two_days_ago = put(raw, "5min", fetched(25, 23, 59))  # older than the window's one day of slack

    assert pending_snapshots(db, raw, "5min") == []  # the scan starts on the 26th
    assert pending_snapshots(db, raw, "5min", full_rescan=True) == [restored, two_days_ago]
    merge_snapshot(db, restored, "5min")
    assert pending_snapshots(db, raw, "5min", full_rescan=True) == [two_days_ago]

