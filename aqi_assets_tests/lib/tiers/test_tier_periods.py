"""Every period reaches the Parquet tier: archive days (recent and from 2016) next to the snapshot periods are
exported, verified and pruned exactly per (day, period), read back through the history accessor unchanged, and
a period registered in the contract flows through export, verification and retention with no other edit."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from aqi_assets.bench.archive import write_day
from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.lib.archive.merge import ArchiveDayPrunedError, merge_archive_day
from aqi_assets.lib.common.location import TierLocation, open_location
from aqi_assets.lib.readings.history import attach_history, day_path, pruned
from aqi_assets.lib.readings.periods import PERIODS, Feed, Period
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers import retention
from aqi_assets.lib.tiers.parquet_tier import DayPrunedError, export_day, parquet_stats, verify_day
from aqi_assets.lib.tiers.retention import pending_on_day, prune_hot_tier
from aqi_assets_tests.support.tier_history import insert_history, merge_archive, per_period_counts, readings

TODAY = datetime.now(timezone.utc).date()
RECENT = TODAY - timedelta(days=3)  # the archive's measurements must not lie in the future
OLD = date(2016, 3, 1)  # a backfilled day of the archive's first year


def _log(connection: duckdb.DuckDBPyConnection, day: date) -> dict[str, tuple[int, bool, bool]]:
    """period → (rows, verified, pruned) of the tier log for `day`."""
    return {
        period: (rows, verified, was_pruned)
        for period, rows, verified, was_pruned in connection.execute(
            "SELECT period, rows, verified_at IS NOT NULL, pruned_at IS NOT NULL FROM parquet_tier_log WHERE day = ?",
            [day],
        ).fetchall()
    }


@pytest.fixture
def location(tmp_path: Path) -> TierLocation:
    return open_location(str(tmp_path / "parquet"))


def test_archive_days_recent_and_2016_go_through_the_tier_and_read_back_unchanged(
    tmp_path: Path, location: TierLocation
) -> None:
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        insert_history(connection, [RECENT], sensors=6, per_sensor=4)
        archived = {day: merge_archive(connection, tmp_path / "archive", day) for day in (RECENT, OLD)}
        before = readings(connection)
        counts = {day: per_period_counts(connection, day) for day in (RECENT, OLD)}
        assert counts[RECENT] == {"5min": 24, "24h": 6, "archive": archived[RECENT]}
        assert counts[OLD] == {"archive": archived[OLD]} and archived[OLD] > 0

        exports = {day: export_day(connection, location, day, row_group_rows=64) for day in (RECENT, OLD)}
        for day, export in exports.items():
            assert {p: n for p, n in export.rows.items() if n} == counts[day]
            assert location.files_under(day_path(location, "archive", day))
            assert verify_day(connection, location, day).ok
        assert exports[OLD].rows["5min"] == 0 and not location.exists(day_path(location, "5min", OLD))

        report = prune_hot_tier(connection, location, today=TODAY, hot_days=0)
        assert report.days_pruned == [OLD, RECENT]
        assert report.rows_deleted_per_period == {
            "5min": 24, "24h": 6, "archive": archived[RECENT] + archived[OLD]
        }  # fmt: skip
        assert report.rows_deleted == len(before)
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0] == 0
        # Pruned: exactly the (day, period) pairs that had rows; an empty period stays open for late rows.
        assert pruned(connection) == {"5min": [RECENT], "24h": [RECENT], "archive": [OLD, RECENT]}
        assert _log(connection, OLD)["5min"] == (0, True, False)

        attach_history(connection, location)
        assert readings(connection, "aqi_readings_all") == before  # every column of every row, identical


def test_a_day_of_all_three_periods_is_pruned_exactly_per_period(tmp_path: Path, location: TierLocation) -> None:
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        insert_history(connection, [RECENT, RECENT + timedelta(days=1)], sensors=5, per_sensor=3)
        merge_archive(connection, tmp_path / "archive", RECENT, sensors=4, rows=30)
        expected = per_period_counts(connection, RECENT)
        later_day = per_period_counts(connection, RECENT + timedelta(days=1))
        for day in (RECENT, RECENT + timedelta(days=1)):
            export_day(connection, location, day)
        report = prune_hot_tier(connection, location, today=RECENT + timedelta(days=1), hot_days=0)
        assert report.days_pruned == [RECENT]
        assert report.rows_deleted_per_period == expected == {"5min": 15, "24h": 5, "archive": 120}
        assert {p: rows for p, (rows, _, _) in _log(connection, RECENT).items()} == expected
        assert all(verified and was_pruned for _, verified, was_pruned in _log(connection, RECENT).values())
        assert per_period_counts(connection, RECENT) == {}
        assert per_period_counts(connection, RECENT + timedelta(days=1)) == later_day  # the next day untouched
        attach_history(connection, location)
        assert per_period_counts(connection, RECENT, "aqi_readings_all") == expected


def test_an_archive_day_merged_after_its_day_was_pruned_is_refused_loudly(
    tmp_path: Path, location: TierLocation
) -> None:
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        first = merge_archive(connection, tmp_path / "archive", OLD)
        export_day(connection, location, OLD)
        assert prune_hot_tier(connection, location, today=TODAY, hot_days=0).days_pruned == [OLD]
        files_before = parquet_stats(location, "archive", OLD)

        # Re-exporting a pruned day with nothing new leaves its files alone (they are the only copy).
        again = export_day(connection, location, OLD)
        assert again.kept_pruned == ["archive"] and "archive" not in again.rows
        assert verify_day(connection, location, OLD).ok

        # The day re-published: the archive merge refuses it before touching DuckDB ...
        with pytest.raises(ArchiveDayPrunedError, match=f"its {first} archive rows were pruned"):
            merge_archive(connection, tmp_path / "archive", OLD, seed=1)
        assert per_period_counts(connection, OLD) == {}
        # ... and should archive rows reach DuckDB by another way (a hand-written INSERT), the export refuses too.
        late_rows = synthetic_readings(5, now=datetime.combine(OLD, datetime.min.time()) + timedelta(hours=12),
                                       seed=7, per_sensor=1)
        for row in late_rows:
            row["period"] = "archive"
        insert_readings(connection, late_rows)
        late = len(late_rows)
        with pytest.raises(DayPrunedError) as refused:
            export_day(connection, location, OLD)
        assert f"{late} 'archive' rows" in str(refused.value) and "only copy" in str(refused.value)
        assert parquet_stats(location, "archive", OLD) == files_before  # nothing overwritten
        verification = verify_day(connection, location, OLD)
        assert not verification.ok
        assert verification.problems == [
            f"archive: {late} rows in DuckDB although this (day, period) was pruned (merged after pruning)"
        ]
        # Retention does not touch the day either: the late rows stay hot, the pruned ones stay in Parquet.
        report = prune_hot_tier(connection, location, today=TODAY, hot_days=0)
        assert report.days_pruned == [] and "merged after pruning" in report.skipped[OLD.isoformat()]
        assert per_period_counts(connection, OLD) == {"archive": late}
        assert _log(connection, OLD)["archive"] == (first, False, True)


def test_archive_rows_of_a_day_pruned_without_them_are_exported_then_pruned(
    tmp_path: Path, location: TierLocation
) -> None:
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        snapshots = insert_history(connection, [RECENT], sensors=4, per_sensor=2)
        export_day(connection, location, RECENT)
        assert prune_hot_tier(connection, location, today=TODAY, hot_days=0).days_pruned == [RECENT]
        assert _log(connection, RECENT)["archive"] == (0, True, False)

        archived = merge_archive(connection, tmp_path / "archive", RECENT)  # the archive's day arrives later
        export = export_day(connection, location, RECENT)
        assert export.rows == {"archive": archived} and export.kept_pruned == ["24h", "5min"]
        report = prune_hot_tier(connection, location, today=TODAY, hot_days=0)
        assert report.rows_deleted_per_period == {"archive": archived}
        attach_history(connection, location)
        assert per_period_counts(connection, RECENT, "aqi_readings_all") == {
            "5min": len([r for r in snapshots if r["period"] == "5min"]), "24h": 4, "archive": archived
        }  # fmt: skip


def test_a_row_added_between_verification_and_delete_rolls_the_day_back(
    tmp_path: Path, location: TierLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        insert_history(connection, [RECENT], sensors=4, per_sensor=3)
        archived = merge_archive(connection, tmp_path / "archive", RECENT, sensors=3, rows=20)
        export_day(connection, location, RECENT)
        expected = per_period_counts(connection, RECENT)
        real_verify = retention.verify_day

        def verify_then_add_a_reading(*args, **kwargs):
            outcome = real_verify(*args, **kwargs)
            # An archive reading lands after verification; the 5min and 24h deletes run before archive's.
            connection.execute(
                """INSERT INTO aqi_readings (period, sensor_id, "timestamp", snapshot, ingested_at)
                   VALUES ('archive', 99, ?, 'late.csv', now())""",
                [datetime.combine(RECENT, datetime.min.time()) + timedelta(hours=3)],
            )
            return outcome

        monkeypatch.setattr(retention, "verify_day", verify_then_add_a_reading)
        report = prune_hot_tier(connection, location, today=TODAY, hot_days=0)
        assert report.days_pruned == [] and report.rows_deleted == 0
        assert report.skipped[RECENT.isoformat()] == (
            f"{RECENT}: would delete {archived + 1} 'archive' rows but {archived} were verified; the day stays hot"
        )
        # Rolled back as a whole: the 5min and 24h rows deleted before the mismatch are back, nothing is pruned.
        assert per_period_counts(connection, RECENT) == {**expected, "archive": archived + 1}
        assert not any(was_pruned for _, _, was_pruned in _log(connection, RECENT).values())


def test_a_registered_period_flows_through_the_tier(
    tmp_path: Path, location: TierLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        PERIODS, "1h", Period(name="1h", source="a test", averaging="1 hour", feeds=frozenset({Feed.TIER}))
    )
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        insert_history(connection, [RECENT], sensors=4, per_sensor=2)
        connection.execute(
            """INSERT INTO aqi_readings BY NAME
               SELECT * REPLACE ('1h' AS period) FROM aqi_readings WHERE period = '5min'"""
        )
        hourly = per_period_counts(connection, RECENT)["1h"]
        # Not a sink period: an unsynced '1h' reading does not hold the day hot.
        assert pending_on_day(connection, "timestream", RECENT) == 8 + 4
        export = export_day(connection, location, RECENT)
        assert export.rows["1h"] == hourly
        assert location.files_under(day_path(location, "1h", RECENT))
        assert verify_day(connection, location, RECENT).ok
        report = prune_hot_tier(connection, location, today=TODAY, hot_days=0)
        assert report.rows_deleted_per_period == {"5min": 8, "24h": 4, "1h": hourly}
        attach_history(connection, location)
        assert per_period_counts(connection, RECENT, "aqi_readings_all") == {"5min": 8, "24h": 4, "1h": hourly}


def test_days_exported_before_a_period_was_registered(
    tmp_path: Path, location: TierLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    days = [RECENT, RECENT + timedelta(days=1)]
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        insert_history(connection, days, sensors=3, per_sensor=2)
        for day in days:
            export_day(connection, location, day)
        monkeypatch.setitem(
            PERIODS, "1h", Period(name="1h", source="a test", averaging="1 hour", feeds=frozenset({Feed.TIER}))
        )
        # The first day has no '1h' rows and no files: complete without an export. The second gets some.
        connection.execute(
            """INSERT INTO aqi_readings BY NAME SELECT * REPLACE ('1h' AS period) FROM aqi_readings
               WHERE period = '5min' AND CAST("timestamp" AS DATE) = ?""",
            [days[1]],
        )
        report = prune_hot_tier(connection, location, today=TODAY, hot_days=0)
        assert report.days_pruned == [days[0]]
        assert report.skipped == {days[1].isoformat(): "1h: never exported (6 rows in DuckDB)"}
        export_day(connection, location, days[1])
        assert prune_hot_tier(connection, location, today=TODAY, hot_days=0).rows_deleted_per_period == {
            "5min": 6, "24h": 3, "1h": 6
        }  # fmt: skip


def test_a_file_of_the_next_day_holding_rows_of_a_pruned_day_is_refused(tmp_path: Path, location: TierLocation) -> None:
    """The archive merge checks every day its rows fall on, not only the partition's day."""
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        merge_archive(connection, tmp_path / "archive", OLD)
        export_day(connection, location, OLD)
        assert prune_hot_tier(connection, location, today=TODAY, hot_days=0).days_pruned == [OLD]
        # A file filed under the next day whose rows are stamped on OLD (a re-published, misfiled file).
        misfiled = write_day(tmp_path / "misfiled", OLD, 1, 10, seed=3)
        with pytest.raises(ArchiveDayPrunedError, match=f"{OLD} \\(\\d+ rows\\)"):
            merge_archive_day(connection, OLD + timedelta(days=1), misfiled)
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchall() == [(0,)]
        assert connection.execute("SELECT count(*) FROM archive_files").fetchall() == [(1 * 6,)]
