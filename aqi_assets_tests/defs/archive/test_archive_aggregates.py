"""Archived history feeds the official indices: a 3-day archive backfill, then `aqi_daily` for those days; per
sensor-hour and pollutant the feed covering more 5-minute slots makes the hour (never both), and `pm25_source` /
`archive_hours` say which. A
merged archive day re-materialises the partitions it changes (`aqi_late_data_sensor`), and once retention moved
the days to the Parquet tier the assets recompute them from there, to the same rows."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from aqi_assets.defs.air_quality.aggregates import build_aggregate_assets, build_aggregate_checks, late_data_targets
from aqi_assets.defs.air_quality.aggregates_io import IO_MANAGER_KEY, AggregatesDuckDBIOManager
from aqi_assets.defs.air_quality.late_data import RANGE_END_TAG, RANGE_START_TAG, build_late_data_sensor
from aqi_assets.defs.archive.assets import build_archive_assets
from aqi_assets.defs.archive.resources import ArchiveSource
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.air_quality.aggregates import AGGREGATES_SCHEMA
from aqi_assets.lib.readings.history import HistoryError
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers.parquet_tier import export_day, verify_day
from aqi_assets.lib.tiers.retention import prune_hot_tier
from aqi_assets_tests.support.archive_server import ALL_GOOD_IDS, SDS011_ID, local_archive

DAYS = [date(2025, 10, 14), date(2025, 10, 15), date(2025, 10, 16)]
ARCHIVE_ASSETS = build_archive_assets("2025-10-01")
AQI_HOURLY, AQI_DAILY = build_aggregate_assets(datetime(2025, 10, 1))
CHECKS = build_aggregate_checks(AQI_HOURLY, AQI_DAILY)
HOURLY_TABLE = f"{AGGREGATES_SCHEMA}.{AQI_HOURLY.key.to_user_string()}"
DAILY_TABLE = f"{AGGREGATES_SCHEMA}.{AQI_DAILY.key.to_user_string()}"


def _tiers(storage: AqiStorage, folder: str = "parquet") -> TierStorage:
    return TierStorage(parquet_uri=str(Path(storage.data_dir) / folder))


def _materialize(storage: AqiStorage, asset: dg.AssetsDefinition, partition_key: str | None,
                 instance: dg.DagsterInstance, tags: dict[str, str] | None = None,
                 tiers: TierStorage | None = None) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [AQI_HOURLY, AQI_DAILY, *CHECKS],
        selection=[asset.key],
        partition_key=partition_key,
        tags=tags,
        instance=instance,
        resources={"storage": storage, "tiers": tiers or _tiers(storage),
                   IO_MANAGER_KEY: AggregatesDuckDBIOManager(storage=storage)},
        raise_on_error=False,
    )
    if tiers is None:
        assert result.success
        assert all(check.passed for check in result.get_asset_check_evaluations())
    return result


def _query(storage: AqiStorage, sql: str) -> list[tuple]:
    with duckdb.connect(storage.duckdb_path, read_only=True) as connection:
        return connection.execute(sql).fetchall()


def _approx_rows(rows: list[tuple]) -> list[tuple]:
    """Rows with floats compared to 1e-12: a mean read back from Parquet may sum its values in another order."""
    return [tuple(pytest.approx(v, rel=1e-12) if isinstance(v, float) else v for v in row) for row in rows]


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.mark.slow
def test_an_archive_backfill_fills_the_daily_indices_and_wins_over_5_minute_readings(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    storage = AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(tmp_path / "data" / "aqi.duckdb"))
    sensor = build_late_data_sensor(late_data_targets(AQI_HOURLY, AQI_DAILY))
    with local_archive(DAYS) as archive:
        resources = {
            "storage": storage,
            "tiers": _tiers(storage),
            "archive": ArchiveSource(url=archive.url, sensors=",".join(map(str, ALL_GOOD_IDS)), retries=1,
                                     backoff_factor=0.01),
        }

        def merge_archive_day(day: date) -> None:
            assert dg.materialize(ARCHIVE_ASSETS, partition_key=day.isoformat(), resources=resources,
                                  instance=instance).success

        for day in DAYS:
            merge_archive_day(day)
        # Nothing of the indices is materialised yet: the merged days change no partition.
        first = sensor(dg.build_sensor_context(instance=instance))
        assert first.run_requests == []

        for day in DAYS:
            _materialize(storage, AQI_DAILY, day.isoformat(), instance)
        _materialize(storage, AQI_HOURLY, "2025-10-15-12:00", instance)
        # The first day merged again (a re-run adds nothing, but it is a new materialisation): the local days its
        # hours and the 23 after them fall in (UTC-12 reaches into the 16th) and the materialised hours within 23
        # hours of it are requested again, one run per contiguous range.
        merge_archive_day(DAYS[0])
        late = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        requested = sorted(
            (r.asset_selection[0].to_user_string(),
             r.partition_key or f"{r.tags[RANGE_START_TAG]}...{r.tags[RANGE_END_TAG]}")
            for r in late.run_requests
        )
        assert requested == [("aqi_daily", "2025-10-14...2025-10-16"), ("aqi_hourly", "2025-10-15-12:00")]
    daily = _query(
        storage,
        f"SELECT day, count(*), min(hours), bool_and(hours = archive_hours), min(utc_offset_hours), "
        f"max(utc_offset_hours) FROM {DAILY_TABLE} GROUP BY day ORDER BY day",
    )
    # Every day of the backfill has its PM sensors (SDS011, SPS30, PMS: not the climate sensors), each valid hour
    # of them from the archive. Their local days (European zones, ahead of UTC) start before UTC midnight: the
    # middle day lies wholly inside the backfilled days, the first one misses the hours before them.
    assert [row[0] for row in daily] == DAYS
    for day, sensors, hours, all_archived, lowest_offset, highest_offset in daily:
        assert sensors == 3 and all_archived and 1 <= lowest_offset <= highest_offset <= 3
        assert hours == (24 - highest_offset if day == DAYS[0] else 24), day
    expected = _query(
        storage,
        f"""SELECT avg(pm25) FROM aqi_readings WHERE period = 'archive' AND sensor_id = {SDS011_ID}
            AND "timestamp"::DATE = DATE '2025-10-15'""",
    )[0][0]
    [(stored,)] = _query(
        storage, f"SELECT pm25_mean FROM {DAILY_TABLE} WHERE sensor_id = {SDS011_ID} AND day = '2025-10-15'"
    )
    # The daily mean is the mean of hourly means; with ~2.5-minute archive cadence it is close to the plain mean.
    assert abs(stored - expected) < 0.05 * max(expected, 1.0)

    # Half an hour of 5-minute readings inside an archived hour loses to the archive, which covers more of its
    # slots; a whole hour of them where the archive has nothing makes that hour.
    covered, uncovered = datetime(2025, 10, 15, 12), datetime(2025, 10, 17, 0)
    with readings_connection(storage.duckdb_path) as connection:
        for hour, slots in ((covered, 6), (uncovered, 12)):
            for slot in range(slots):
                connection.execute(
                    """INSERT INTO aqi_readings (period, sensor_id, "timestamp", sensor_type, pm25, pm10, snapshot,
                                                ingested_at, ingest_seq)
                       VALUES ('5min', ?, ?, 'SDS011', 500.0, 600.0, 'a-late-snapshot', now()::TIMESTAMP,
                               nextval('aqi_ingest_seq'))""",
                    [SDS011_ID, hour + timedelta(minutes=5 * slot + 2)],
                )
    _materialize(storage, AQI_HOURLY, "2025-10-15-12:00", instance)
    _materialize(storage, AQI_HOURLY, "2025-10-17-00:00", instance)
    rows = dict(
        (hour, (source, pm25))
        for hour, source, pm25 in _query(
            storage,
            f"SELECT hour, pm25_source, pm25_mean FROM {HOURLY_TABLE} WHERE sensor_id = {SDS011_ID} ORDER BY hour",
        )
    )
    archived_hour = rows[datetime(2025, 10, 15, 12)]
    assert archived_hour[0] == "archive" and archived_hour[1] < 500.0
    assert rows[datetime(2025, 10, 17, 0)] == ("5min", 500.0)
    assert datetime(2025, 10, 15, 12) + timedelta(hours=1) not in rows  # only the materialised partitions

    # Retention moves the first two days (archive and 5-minute rows) to the Parquet tier; the assets read them
    # from there and write the same rows.
    daily_sql = f"SELECT * FROM {DAILY_TABLE} WHERE day <= '2025-10-16' ORDER BY day, sensor_id"
    hourly_sql = f"SELECT * FROM {HOURLY_TABLE} ORDER BY hour, sensor_id"
    daily_before, hourly_before = _query(storage, daily_sql), _query(storage, hourly_sql)
    location = _tiers(storage).location()
    with readings_connection(storage.duckdb_path) as connection:
        for day in DAYS[:2]:
            export_day(connection, location, day)
            assert verify_day(connection, location, day).ok
        assert prune_hot_tier(connection, location, today=DAYS[2], hot_days=0).days_pruned == DAYS[:2]
    assert _query(storage, "SELECT count(*) FROM aqi_readings WHERE \"timestamp\" < '2025-10-16'") == [(0,)]
    for day in DAYS:
        _materialize(storage, AQI_DAILY, day.isoformat(), instance)
    _materialize(storage, AQI_HOURLY, "2025-10-15-12:00", instance)
    assert _query(storage, daily_sql) == _approx_rows(daily_before)
    assert _query(storage, hourly_sql) == _approx_rows(hourly_before)

    # A tier location that does not hold the pruned days fails the step, never computes from DuckDB alone.
    elsewhere = _materialize(storage, AQI_DAILY, DAYS[1].isoformat(), instance, tiers=_tiers(storage, "elsewhere"))
    assert not elsewhere.success
    [failure] = [event for event in elsewhere.all_events if event.is_step_failure]
    assert HistoryError.__name__ in str(failure.step_failure_data.error)
    assert _query(storage, daily_sql) == _approx_rows(daily_before)  # the stored partition is untouched
