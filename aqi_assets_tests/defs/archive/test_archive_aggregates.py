"""Archived history feeds the official indices: a 3-day archive backfill, then `aqi_daily` for those days; per
sensor-hour the archive wins over 5-minute readings (never both), and `source` / `archive_hours` say which."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from aqi_assets.defs.air_quality.aggregates import (
    IO_MANAGER_KEY,
    AggregatesDuckDBIOManager,
    build_aggregate_assets,
    build_aggregate_checks,
)
from aqi_assets.defs.archive.assets import build_archive_assets
from aqi_assets.defs.archive.resources import ArchiveSource
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.archive_server import ALL_GOOD_IDS, SDS011_ID, local_archive

DAYS = [date(2025, 10, 14), date(2025, 10, 15), date(2025, 10, 16)]
ARCHIVE_ASSETS = build_archive_assets("2025-10-01")
AQI_HOURLY, AQI_DAILY = build_aggregate_assets(datetime(2025, 10, 1))
CHECKS = build_aggregate_checks(AQI_HOURLY, AQI_DAILY)


def _materialize(storage: AqiStorage, asset: dg.AssetsDefinition, partition_key: str) -> None:
    result = dg.materialize(
        [AQI_HOURLY, AQI_DAILY, *CHECKS],
        selection=[asset.key],
        partition_key=partition_key,
        resources={"storage": storage, IO_MANAGER_KEY: AggregatesDuckDBIOManager(storage=storage)},
    )
    assert result.success
    assert all(check.passed for check in result.get_asset_check_evaluations())


def _query(storage: AqiStorage, sql: str) -> list[tuple]:
    with duckdb.connect(storage.duckdb_path, read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_an_archive_backfill_fills_the_daily_indices_and_wins_over_5_minute_readings(tmp_path: Path) -> None:
    storage = AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(tmp_path / "data" / "aqi.duckdb"))
    with local_archive(DAYS) as archive:
        resources = {
            "storage": storage,
            "archive": ArchiveSource(url=archive.url, sensors=",".join(map(str, ALL_GOOD_IDS)), retries=1,
                                     backoff_factor=0.01),
        }
        for day in DAYS:
            assert dg.materialize(ARCHIVE_ASSETS, partition_key=day.isoformat(), resources=resources).success

    for day in DAYS:
        _materialize(storage, AQI_DAILY, day.isoformat())
    daily = _query(
        storage,
        "SELECT day, count(*), min(hours), min(archive_hours) FROM aggregates.aqi_daily GROUP BY day ORDER BY day",
    )
    # Every day of the backfill has its PM sensors (SDS011, SPS30, PMS: not the climate sensors), each hour of
    # them from the archive.
    assert [row[0] for row in daily] == DAYS
    for _day, sensors, hours, archive_hours in daily:
        assert sensors == 3 and hours == archive_hours == 24
    expected = _query(
        storage,
        f"""SELECT avg(pm25) FROM aqi_readings WHERE period = 'archive' AND sensor_id = {SDS011_ID}
            AND "timestamp"::DATE = DATE '2025-10-15'""",
    )[0][0]
    [(stored,)] = _query(
        storage, f"SELECT pm25_mean FROM aggregates.aqi_daily WHERE sensor_id = {SDS011_ID} AND day = '2025-10-15'"
    )
    # The daily mean is the mean of hourly means; with ~2.5-minute archive cadence it is close to the plain mean.
    assert abs(stored - expected) < 0.05 * max(expected, 1.0)

    # A 5-minute reading inside an archived hour is ignored; one in an hour the archive does not cover is used.
    covered, uncovered = datetime(2025, 10, 15, 12, 30), datetime(2025, 10, 17, 0, 30)
    with readings_connection(storage.duckdb_path) as connection:
        for moment in (covered, uncovered):
            connection.execute(
                """INSERT INTO aqi_readings (period, sensor_id, "timestamp", sensor_type, pm25, pm10, snapshot,
                                            ingested_at, ingest_seq)
                   VALUES ('5min', ?, ?, 'SDS011', 500.0, 600.0, 'a-late-snapshot', now()::TIMESTAMP,
                           nextval('aqi_ingest_seq'))""",
                [SDS011_ID, moment],
            )
    _materialize(storage, AQI_HOURLY, "2025-10-15-12:00")
    _materialize(storage, AQI_HOURLY, "2025-10-17-00:00")
    rows = dict(
        (hour, (source, pm25))
        for hour, source, pm25 in _query(
            storage,
            f"SELECT hour, source, pm25_mean FROM aggregates.aqi_hourly WHERE sensor_id = {SDS011_ID} ORDER BY hour",
        )
    )
    archived_hour = rows[datetime(2025, 10, 15, 12)]
    assert archived_hour[0] == "archive" and archived_hour[1] < 500.0
    assert rows[datetime(2025, 10, 17, 0)] == ("5min", 500.0)
    assert datetime(2025, 10, 15, 12) + timedelta(hours=1) not in rows  # only the materialised partitions
