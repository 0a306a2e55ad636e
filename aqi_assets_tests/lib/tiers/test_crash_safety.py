"""A crash (SIGKILL) anywhere between export and delete loses no reading, and a re-run finishes the job."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from aqi_assets.lib.common.location import open_location
from aqi_assets.lib.readings.history import attach_history
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers.parquet_tier import export_day
from aqi_assets.lib.tiers.retention import prune_hot_tier
from aqi_assets_tests.support.tier_history import insert_history, per_day_counts

DAYS = [date(2026, 10, 1) + timedelta(days=i) for i in range(4)]
TODAY = DAYS[-1] + timedelta(days=1)
HOT_DAYS = 1


def _readings_across_tiers(db: Path, parquet: Path) -> dict[date, int]:
    with readings_connection(db) as connection:
        attach_history(connection, open_location(str(parquet)))
        return dict(
            connection.execute(
                'SELECT CAST("timestamp" AS DATE), count(*) FROM aqi_readings_all GROUP BY ALL'
            ).fetchall()
        )


@pytest.mark.parametrize("point", ["mid_export", "after_swap", "before_delete", "mid_delete"])
def test_sigkill_between_export_and_delete_loses_nothing(tmp_path: Path, point: str) -> None:
    db, parquet = tmp_path / "aqi.duckdb", tmp_path / "parquet"
    with readings_connection(db) as connection:
        rows = insert_history(connection, DAYS, sensors=10, per_sensor=3)
        if point == "after_swap":  # a re-export: the day already has files to replace
            for day in DAYS:
                export_day(connection, open_location(str(parquet)), day)
    expected = per_day_counts(rows)

    child = subprocess.run(
        [sys.executable, "-m", "aqi_assets_tests.support.tiers_crash", str(db), str(parquet), TODAY.isoformat(),
         str(HOT_DAYS), point],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == -9, child.stderr  # it really was killed at that point

    # Nothing lost: every reading is hot, or in a verified Parquet day the log marks as pruned.
    assert _readings_across_tiers(db, parquet) == expected
    with duckdb.connect(str(db)) as connection:
        pruned = connection.execute("SELECT count(*) FROM parquet_tier_log WHERE pruned_at IS NOT NULL").fetchone()[0]
        hot = connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0]
    assert pruned == 0 and hot == len(rows)  # every kill came before a delete committed

    # A normal re-run completes the job from whatever state the crash left.
    location = open_location(str(parquet))
    with readings_connection(db) as connection:
        for day in DAYS:
            export_day(connection, location, day)
        report = prune_hot_tier(connection, location, today=TODAY, hot_days=HOT_DAYS)
    assert report.days_pruned == DAYS[:3]
    assert _readings_across_tiers(db, parquet) == expected
    assert location.files_under(location.path("_staging")) == []


def test_a_run_to_the_end_prunes_every_old_day(tmp_path: Path) -> None:
    db, parquet = tmp_path / "aqi.duckdb", tmp_path / "parquet"
    with readings_connection(db) as connection:
        rows = insert_history(connection, DAYS, sensors=10, per_sensor=3)
    child = subprocess.run(
        [sys.executable, "-m", "aqi_assets_tests.support.tiers_crash", str(db), str(parquet), TODAY.isoformat(),
         str(HOT_DAYS), "never"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    with duckdb.connect(str(db)) as connection:
        hot_days = _hot_days(connection)
    assert hot_days == {DAYS[-1]}
    assert _readings_across_tiers(db, parquet) == per_day_counts(rows)


def _hot_days(connection: duckdb.DuckDBPyConnection) -> set[date]:
    return {r[0] for r in connection.execute('SELECT DISTINCT CAST("timestamp" AS DATE) FROM aqi_readings').fetchall()}
