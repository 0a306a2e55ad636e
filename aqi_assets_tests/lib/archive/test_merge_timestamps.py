"""Archive timestamps with a zone: every one lands on its UTC time, whatever the session's TimeZone.

The archive writes `2016-07-14 11:02:46` (UTC) or ISO with an offset, `2016-07-14T13:02:46+02:00` (the same
instant). DuckDB's cast to TIMESTAMP drops the offset, so the merge must not use it alone.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest

from aqi_assets.lib.archive.merge import (
    DUPLICATE_ROW_REASON,
    ArchiveDayPrunedError,
    ArchiveMergeStats,
    merge_archive_day,
)
from aqi_assets.lib.readings.periods import ARCHIVE
from aqi_assets.lib.readings.schema import readings_connection

DAY = date(2016, 7, 14)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
SDS_HEADER = "sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2"


def _day_file(directory: Path, rows: list[tuple[int, str]], name: str = "2016-07-14_sds011_sensor_1.csv") -> Path:
    """One archive file of DAY: a row (sensor, timestamp text) each, with P1 = the row's number."""
    lines = [SDS_HEADER] + [
        f"{sensor};SDS011;10;50.5;8.25;{stamp};{number};;;1.5;;" for number, (sensor, stamp) in enumerate(rows, 1)
    ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _merge(tmp_path: Path, rows: list[tuple[int, str]], time_zone: str | None = None) -> tuple[ArchiveMergeStats, list]:
    """Merge one file of `rows` (with the session's TimeZone set to `time_zone`, if given): the stats and the
    readings as (sensor, UTC timestamp, P1)."""
    with readings_connection(tmp_path / "h.duckdb") as connection:
        if time_zone:
            connection.execute(f"SET TimeZone = '{time_zone}'")
        stats = merge_archive_day(connection, DAY, [_day_file(tmp_path / "lake", rows)], now=NOW)
        readings = connection.execute(
            'SELECT sensor_id, "timestamp", pm10 FROM aqi_readings ORDER BY sensor_id, "timestamp"'
        ).fetchall()
    return stats, readings


def test_an_offset_is_applied_not_dropped(tmp_path: Path) -> None:
    # DuckDB's TIMESTAMP cast alone gives 13:02:46: the +02:00 is dropped.
    _, readings = _merge(tmp_path, [(1, "2016-07-14T13:02:46+02:00")])
    assert readings == [(1, datetime(2016, 7, 14, 11, 2, 46), 1.0)]


@pytest.mark.parametrize(
    ("stamp", "utc"),
    [
        ("2016-07-14T13:02:46+02:00", datetime(2016, 7, 14, 11, 2, 46)),
        ("2016-07-14T06:02:46-05:00", datetime(2016, 7, 14, 11, 2, 46)),
        ("2016-07-14T13:02:46+0200", datetime(2016, 7, 14, 11, 2, 46)),
        ("2016-07-14T16:32:46+05:30", datetime(2016, 7, 14, 11, 2, 46)),
        ("2016-07-14T11:02:46Z", datetime(2016, 7, 14, 11, 2, 46)),
        ("2016-07-14T11:02:46+00:00", datetime(2016, 7, 14, 11, 2, 46)),
        ("2016-07-14T13:02:46.250+02:00", datetime(2016, 7, 14, 11, 2, 46, 250000)),
        ("2016-07-14T06:02:46.5-05:00", datetime(2016, 7, 14, 11, 2, 46, 500000)),
        ("2016-07-14T11:02:46.123456Z", datetime(2016, 7, 14, 11, 2, 46, 123456)),
        ("2016-07-14 11:02:46", datetime(2016, 7, 14, 11, 2, 46)),  # no zone: UTC, as written
        ("2016-07-14T11:02:46", datetime(2016, 7, 14, 11, 2, 46)),
        ("2016-07-14T11:02:46.75", datetime(2016, 7, 14, 11, 2, 46, 750000)),
    ],
)
def test_each_timestamp_form_lands_on_its_utc_time(tmp_path: Path, stamp: str, utc: datetime) -> None:
    stats, readings = _merge(tmp_path, [(1, stamp)])
    assert readings == [(1, utc, 1.0)]
    assert stats.records_quarantined == 0


MIXED_DAY = [
    (1, "2016-07-14 11:02:46"),  # the space format: UTC
    (1, "2016-07-14T13:07:46+02:00"),  # 11:07:46
    (1, "2016-07-14T06:12:46-05:00"),  # 11:12:46
    (1, "2016-07-14 11:17:46"),
    (1, "2016-07-14T11:22:46Z"),
    (2, "2016-07-14T13:02:46.5+0200"),  # 11:02:46.5
    (2, "2016-07-14 11:07:46"),
]
MIXED_DAY_UTC = [
    (1, datetime(2016, 7, 14, 11, 2, 46), 1.0),
    (1, datetime(2016, 7, 14, 11, 7, 46), 2.0),
    (1, datetime(2016, 7, 14, 11, 12, 46), 3.0),
    (1, datetime(2016, 7, 14, 11, 17, 46), 4.0),
    (1, datetime(2016, 7, 14, 11, 22, 46), 5.0),
    (2, datetime(2016, 7, 14, 11, 2, 46, 500000), 6.0),
    (2, datetime(2016, 7, 14, 11, 7, 46), 7.0),
]


def test_a_file_mixing_both_formats_lands_every_row_on_utc_and_counts_them(tmp_path: Path) -> None:
    stats, readings = _merge(tmp_path, MIXED_DAY)
    assert readings == MIXED_DAY_UTC
    assert stats.measurements == 7 and stats.records_quarantined == 0
    assert stats.details["rows_with_space_timestamps"] == 3  # the other four are ISO (with a `T`)
    assert stats.details["invalid_timestamps"] == 0


def test_the_session_time_zone_changes_nothing(tmp_path: Path) -> None:
    # A connection may carry any TimeZone (DuckDB's default is the machine's zone): neither the zoned rows nor
    # the zoneless ones (UTC) may move with it.
    stats, readings = _merge(tmp_path, MIXED_DAY, time_zone="America/New_York")
    assert readings == MIXED_DAY_UTC
    assert stats.details["rows_with_space_timestamps"] == 3


def test_one_reading_in_both_formats_is_a_duplicate(tmp_path: Path) -> None:
    # The same instant written twice: once in UTC, once with an offset. One reading; the later row is quarantined.
    with readings_connection(tmp_path / "h.duckdb") as connection:
        path = _day_file(tmp_path / "lake", [(1, "2016-07-14 11:02:46"), (1, "2016-07-14T13:02:46+02:00")])
        stats = merge_archive_day(connection, DAY, [path], now=NOW)
        assert stats.details["duplicate_rows"] == 1 and stats.measurements == 1
        assert connection.execute('SELECT "timestamp", pm10 FROM aqi_readings').fetchall() == [
            (datetime(2016, 7, 14, 11, 2, 46), 1.0)
        ]
        assert connection.execute('SELECT "timestamp", raw_value, reason FROM rejected_values').fetchall() == [
            (datetime(2016, 7, 14, 11, 2, 46), "2016-07-14T13:02:46+02:00", DUPLICATE_ROW_REASON)
        ]


def test_an_unreadable_zone_is_rejected_not_dropped(tmp_path: Path) -> None:
    # DuckDB's TIMESTAMP cast reads these as 13:02:46, dropping what follows; no UTC time is known for them.
    stats, readings = _merge(
        tmp_path,
        [(1, "2016-07-14 13:02:46 CEST"), (2, "2016-07-14 01:02:46 PM"), (3, "2016-07-14T13:02:46+02:00")],
    )
    assert readings == [(3, datetime(2016, 7, 14, 11, 2, 46), 3.0)]
    assert stats.details["invalid_timestamps"] == 2


def test_an_offset_moving_a_row_to_a_neighbouring_utc_day_keeps_it_there(tmp_path: Path) -> None:
    """The merge keeps a row whose time falls outside the file's day on its own day (a file may hold rows of
    neighbouring days): a row the offset moves across midnight is such a row, judged by its UTC day."""
    stats, readings = _merge(
        tmp_path,
        [
            (1, "2016-07-14T00:30:00+02:00"),  # 2016-07-13 22:30 UTC
            (1, "2016-07-14T12:00:00+02:00"),
            (1, "2016-07-14T23:30:00-05:00"),  # 2016-07-15 04:30 UTC
        ],
    )
    assert readings == [
        (1, datetime(2016, 7, 13, 22, 30), 1.0),
        (1, datetime(2016, 7, 14, 10, 0), 2.0),
        (1, datetime(2016, 7, 15, 4, 30), 3.0),
    ]
    assert stats.measurements == 3 and stats.records_quarantined == 0


def _mark_pruned(connection: duckdb.DuckDBPyConnection, day: date) -> None:
    """Record `day`'s archive rows as exported to the Parquet tier and pruned from DuckDB (as retention does)."""
    connection.execute(
        "INSERT INTO parquet_tier_log (day, period, uri, rows, key_checksum, parquet_bytes, exported_at, "
        "verified_at, pruned_at) VALUES (?, ?, 'file:///tier', 5, 0, 100, ?, ?, ?)",
        [day, ARCHIVE, datetime(2025, 1, 1), datetime(2025, 1, 1), datetime(2025, 1, 2)],
    )


def test_a_row_moved_onto_a_pruned_utc_day_is_refused_like_any_row_of_that_day(tmp_path: Path) -> None:
    with readings_connection(tmp_path / "h.duckdb") as connection:
        _mark_pruned(connection, date(2016, 7, 13))
        # 00:30 at +02:00 is 2016-07-13 22:30 UTC: on the pruned day, though the text says the 14th.
        path = _day_file(tmp_path / "lake", [(1, "2016-07-14T00:30:00+02:00"), (1, "2016-07-14 12:00:00")])
        with pytest.raises(ArchiveDayPrunedError, match=r"2016-07-13 \(5 rows\)"):
            merge_archive_day(connection, DAY, [path], now=NOW)
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0] == 0
        assert connection.execute("SELECT count(*) FROM archive_files").fetchone()[0] == 0
        # The same clock time at -05:00 stays on the 14th (05:30 UTC): nothing of the pruned day, merged.
        later = _day_file(tmp_path / "lake", [(1, "2016-07-14T00:30:00-05:00")])
        assert merge_archive_day(connection, DAY, [later], now=NOW).rows_inserted == 1
