"""`aqi_hourly` / `aqi_daily` through Dagster: snapshots ingested from the local lake, partitions materialised,
re-runs, single-run ranges, late data re-materialising partitions through `aqi_late_data_sensor`, and the CLI."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from aqi_assets.defs.air_quality.aggregates import (
    aggregate_job,
    aggregate_job_name,
    build_aggregate_assets,
    build_aggregate_checks,
    late_data_targets,
)
from aqi_assets.defs.air_quality.aggregates_io import IO_MANAGER_KEY, AggregatesDuckDBIOManager
from aqi_assets.defs.air_quality.assets import ingest_assets
from aqi_assets.defs.air_quality.late_data import (
    ARCHIVE_MONTH_KEYS,
    ARCHIVE_READINGS_KEY,
    PARQUET_TIER_KEY,
    RANGE_END_TAG,
    RANGE_START_TAG,
    build_late_data_sensor,
)
from aqi_assets.defs.air_quality.resources import SnapshotSource
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.air_quality.aggregates import AGGREGATES_SCHEMA
from aqi_assets.lib.air_quality.generator import Quirks, generate_snapshot
from aqi_assets.lib.air_quality.lake import day_directory, snapshot_name

REPOSITORY = Path(__file__).resolve().parents[3]
DAY = datetime(2026, 11, 27)
AQI_HOURLY, AQI_DAILY = build_aggregate_assets(datetime(2026, 11, 1))
CHECKS = build_aggregate_checks(AQI_HOURLY, AQI_DAILY)
HOURLY_TABLE = f"{AGGREGATES_SCHEMA}.{AQI_HOURLY.key.to_user_string()}"
DAILY_TABLE = f"{AGGREGATES_SCHEMA}.{AQI_DAILY.key.to_user_string()}"


def write_snapshot(storage: AqiStorage, at: datetime, seed: int, *, fetched_at: datetime | None = None,
                   records: int = 40, first_sensor_id: int = 10_000) -> Path:
    """A generated 5-minute snapshot in the raw lake, as the fetch asset would have stored it."""
    body = generate_snapshot(records, seed=seed, at=at, quirks=Quirks.clean(), first_sensor_id=first_sensor_id)
    fetched_at = fetched_at or at + timedelta(minutes=1)
    folder = day_directory(storage.raw_dir, "5min", fetched_at.date())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / snapshot_name("5min", hashlib.sha256(body).hexdigest(), fetched_at)
    path.write_bytes(gzip.compress(body))
    return path


def history(storage: AqiStorage, hours: int = 3, every_minutes: int = 5) -> None:
    """Snapshots every 5 minutes: each sensor fills the twelve slots of an hour (a valid hour)."""
    for minute in range(0, hours * 60, every_minutes):
        write_snapshot(storage, DAY + timedelta(minutes=minute + 5), seed=minute)


def resources(storage: AqiStorage, db_schema: str = AGGREGATES_SCHEMA) -> dict:
    tiers = TierStorage(parquet_uri=str(Path(storage.data_dir) / "parquet"))
    return {"storage": storage, "tiers": tiers,
            IO_MANAGER_KEY: AggregatesDuckDBIOManager(storage=storage, db_schema=db_schema)}


def ingest(storage: AqiStorage, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    # Only the merge runs: the snapshots are already in the lake (the fetch asset is not selected).
    return dg.materialize(ingest_assets, selection=["aqi_readings"], instance=instance,
                          resources={"storage": storage, "snapshots": SnapshotSource()})


def materialize(storage: AqiStorage, instance: dg.DagsterInstance, asset: dg.AssetsDefinition,
                partition_key: str | None = None, tags: dict | None = None,
                db_schema: str = AGGREGATES_SCHEMA) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [AQI_HOURLY, AQI_DAILY, *CHECKS],
        selection=[asset.key],
        partition_key=partition_key,
        tags=tags,
        resources=resources(storage, db_schema),
        instance=instance,
    )


def run_hourly_checks(storage: AqiStorage, instance: dg.DagsterInstance, partition_key: str,
                      db_schema: str) -> dg.ExecuteInProcessResult:
    """Only the checks of one `aqi_hourly` partition (the asset itself is not recomputed)."""
    checks_only = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(AQI_HOURLY),
                                      partitions_def=AQI_HOURLY.partitions_def)
    defs = dg.Definitions(assets=[AQI_HOURLY, AQI_DAILY], asset_checks=CHECKS, jobs=[checks_only],
                          resources=resources(storage, db_schema))
    # The partition goes in as the run tag: `partition_key=` looks for a selected asset to validate it against.
    return defs.resolve_job_def(checks_only.name).execute_in_process(
        tags={"dagster/partition": partition_key}, instance=instance, raise_on_error=False
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def query(storage: AqiStorage, sql: str) -> list[tuple]:
    with duckdb.connect(storage.duckdb_path, read_only=True) as connection:
        return connection.execute(sql).fetchall()


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_partitions_from_ingested_snapshots(storage: AqiStorage, instance: dg.DagsterInstance) -> None:
    history(storage)
    assert ingest(storage, instance).success
    result = materialize(storage, instance, AQI_HOURLY, "2026-11-27-02:00")
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"indices_match_concentrations": True, "nowcast_within_hourly_range": True,
                      "completeness_rules": True, "means_match_history": True}
    expected = query(storage, """
        SELECT count(DISTINCT sensor_id) FROM aqi_readings
        WHERE period = '5min' AND "timestamp" >= '2026-11-27 02:00' AND "timestamp" < '2026-11-27 03:00'
          AND upper(sensor_type) IN ('SDS011', 'SPS30', 'PMS7003') AND (pm25 IS NOT NULL OR pm10 IS NOT NULL)
    """)[0][0]
    assert expected > 10
    rows = query(storage, "SELECT count(*), count(pm25_nowcast), count(pm25_24h), min(hour), max(hour) "
                          f"FROM {HOURLY_TABLE}")
    # 3 hours of history: NowCast exists (>= 2 of the last 3 hours), 24-hour means do not (< 18 hours).
    assert rows == [(expected, expected, 0, DAY + timedelta(hours=2), DAY + timedelta(hours=2))]
    metadata = result.asset_materializations_for_node("aqi_hourly")[0].metadata
    assert metadata["dagster/row_count"].value == expected
    assert metadata["dagster/table_name"].value == HOURLY_TABLE
    assert metadata["distribution"].value.startswith("![aqi_hourly 2026-11-27 02:00 UTC](data:image/png;base64,")
    assert sum(metadata["aqi_us_category_counts"].value.values()) == expected
    assert metadata["daqi_band_counts"].value["no index"] == expected
    assert "| sensor_id | hour |" in metadata["worst_sensors"].value

    # A re-run replaces the partition (no duplicates); a single-run range writes every hour of it.
    assert materialize(storage, instance, AQI_HOURLY, "2026-11-27-02:00").success
    assert query(storage, f"SELECT count(*) FROM {HOURLY_TABLE}")[0][0] == expected
    ranged = materialize(storage, instance, AQI_HOURLY,
                         tags={RANGE_START_TAG: "2026-11-27-00:00", RANGE_END_TAG: "2026-11-27-02:00"})
    assert ranged.success
    per_hour = query(storage, f"SELECT hour, count(*) FROM {HOURLY_TABLE} GROUP BY hour ORDER BY hour")
    assert [hour for hour, _ in per_hour] == [DAY, DAY + timedelta(hours=1), DAY + timedelta(hours=2)]
    assert per_hour[2][1] == expected
    assert instance.get_materialized_partitions(AQI_HOURLY.key) >= {
        "2026-11-27-00:00", "2026-11-27-01:00", "2026-11-27-02:00"
    }

    daily = materialize(storage, instance, AQI_DAILY, "2026-11-27")
    assert daily.success and all(e.passed for e in daily.get_asset_check_evaluations())
    day_rows = query(storage, "SELECT count(*), max(hours), count(pm25_mean), count(aqi_us_daily) "
                              f"FROM {DAILY_TABLE}")
    assert day_rows[0][0] >= expected and day_rows[0][1] == 3 and day_rows[0][2:] == (0, 0)  # 3 of 18 hours


def test_the_checks_read_the_table_the_io_manager_writes(storage: AqiStorage, instance) -> None:
    """With the IO manager's db_schema "official", the checks read official.aqi_hourly: not a table left in the
    default schema, and a missing table fails the check step instead of passing on zero rows."""
    history(storage)
    assert ingest(storage, instance).success
    hour = "2026-11-27-02:00"
    # An older table in the default schema, with wrong indices: the checks of the official one must not read it.
    assert materialize(storage, instance, AQI_HOURLY, hour).success
    with duckdb.connect(storage.duckdb_path) as connection:
        connection.execute(f"UPDATE {HOURLY_TABLE} SET aqi_us_nowcast = aqi_us_nowcast + 7")
    stale = evaluations(run_hourly_checks(storage, instance, hour, AGGREGATES_SCHEMA))
    assert not stale["indices_match_concentrations"].passed

    official = materialize(storage, instance, AQI_HOURLY, hour, db_schema="official")
    assert official.success
    [stored] = query(storage, "SELECT count(*) FROM official.aqi_hourly")[0]
    assert stored > 10
    assert official.asset_materializations_for_node("aqi_hourly")[0].metadata["dagster/table_name"].value == (
        "official.aqi_hourly"
    )
    passed = evaluations(official)
    assert all(e.passed for e in passed.values()) and len(passed) == 4
    assert passed["indices_match_concentrations"].metadata["checked_rows"].value == stored

    # One stored row of official.aqi_hourly tampered with: the checks, run alone, catch exactly it.
    with duckdb.connect(storage.duckdb_path) as connection:
        connection.execute("UPDATE official.aqi_hourly SET aqi_us_nowcast = aqi_us_nowcast + 7 "
                           "WHERE sensor_id = (SELECT min(sensor_id) FROM official.aqi_hourly)")
    tampered = evaluations(run_hourly_checks(storage, instance, hour, "official"))
    assert not tampered["indices_match_concentrations"].passed
    assert tampered["indices_match_concentrations"].metadata["failing_rows"].value == 1
    assert tampered["indices_match_concentrations"].metadata["checked_rows"].value == stored

    # A schema without the table: the check step fails with what to do, and no check reports a pass.
    missing = run_hourly_checks(storage, instance, hour, "nowhere")
    assert not missing.success and missing.get_asset_check_evaluations() == []
    [failure] = missing.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert "nowhere.aqi_hourly does not exist" in message and "materialise aqi_hourly" in message


def test_late_data_rematerialises_the_partitions_it_changes(storage: AqiStorage, instance) -> None:
    history(storage)
    assert ingest(storage, instance).success
    sensor = build_late_data_sensor(late_data_targets(AQI_HOURLY, AQI_DAILY))
    first = sensor(dg.build_sensor_context(instance=instance))
    assert first.run_requests == []  # the merge touched hours that are not materialised: nothing to redo
    cursor = first.cursor
    assert materialize(storage, instance, AQI_HOURLY,
                       tags={RANGE_START_TAG: "2026-11-27-00:00", RANGE_END_TAG: "2026-11-27-02:00"}).success
    assert materialize(storage, instance, AQI_DAILY, "2026-11-27").success

    # Readings of new sensors for 01:00, fetched much later (a replay, a late snapshot).
    write_snapshot(storage, DAY + timedelta(hours=1, minutes=30), seed=99, first_sensor_id=90_000,
                   fetched_at=DAY + timedelta(hours=5))
    readings = ingest(storage, instance)
    touched = readings.asset_materializations_for_node("aqi_readings")[0].metadata["hours_touched"].value
    assert touched == [["2026-11-27T01:00:00", "2026-11-27T02:00:00"]]
    late = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    requested = sorted(
        (r.asset_selection[0].to_user_string(),
         r.partition_key or f"{r.tags[RANGE_START_TAG]}...{r.tags[RANGE_END_TAG]}")
        for r in late.run_requests
    )
    # 01:00 and every later materialised hour (their NowCast includes 01:00), and the day.
    assert requested == [("aqi_daily", "2026-11-27"), ("aqi_hourly", "2026-11-27-01:00...2026-11-27-02:00")]
    before = query(storage, f"SELECT count(*) FROM {HOURLY_TABLE} WHERE sensor_id >= 90000")[0][0]
    assert before == 0
    for request in late.run_requests:
        asset = AQI_HOURLY if request.asset_selection == [AQI_HOURLY.key] else AQI_DAILY
        assert materialize(storage, instance, asset, request.partition_key, dict(request.tags)).success
    late_rows = query(storage, f"SELECT hour, count(*) FROM {HOURLY_TABLE} WHERE sensor_id >= 90000 "
                               "GROUP BY hour ORDER BY hour")
    assert late_rows and late_rows[0][0] == DAY + timedelta(hours=1)
    assert query(storage, f"SELECT count(*) FROM {DAILY_TABLE} WHERE sensor_id >= 90000")[0][0] > 0
    # Idempotent: the same events give no new requests once the cursor moved past them.
    again = sensor(dg.build_sensor_context(instance=instance, cursor=late.cursor))
    assert isinstance(again, dg.SkipReason) or not again.run_requests


def test_a_backfilled_month_is_late_data_for_the_partitions_it_covers(storage: AqiStorage, instance) -> None:
    """The monthly archive backfill reports the hours it brought readings to: the materialised partitions of those
    hours are requested again, whichever of its two assets (tier days, hot days) reported them."""
    history(storage)
    assert ingest(storage, instance).success
    sensor = build_late_data_sensor(late_data_targets(AQI_HOURLY, AQI_DAILY))
    cursor = sensor(dg.build_sensor_context(instance=instance)).cursor
    assert materialize(storage, instance, AQI_DAILY, "2026-11-27").success
    month = [[f"{DAY:%Y-%m}-01T00:00:00", "2026-12-01T00:00:00"]]
    for key in ARCHIVE_MONTH_KEYS:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=key, partition="2026-11-01", metadata={"hours_touched": dg.MetadataValue.json(month)}))
        late = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
        assert [(r.asset_selection[0].to_user_string(), r.partition_key) for r in late.run_requests] == [
            ("aqi_daily", "2026-11-27")], key
        cursor = late.cursor
    assert isinstance(sensor(dg.build_sensor_context(instance=instance, cursor=cursor)), dg.SkipReason)


def test_late_data_leaves_partitions_to_runs_that_will_read_it(storage: AqiStorage, instance) -> None:
    """A partition whose run is queued (or started after the late data) reads the late data itself: not
    requested again. One whose run started before the late data landed is."""
    history(storage)
    assert ingest(storage, instance).success
    sensor = build_late_data_sensor(late_data_targets(AQI_HOURLY, AQI_DAILY))
    cursor = sensor(dg.build_sensor_context(instance=instance)).cursor
    assert materialize(storage, instance, AQI_HOURLY,
                       tags={RANGE_START_TAG: "2026-11-27-00:00", RANGE_END_TAG: "2026-11-27-02:00"}).success
    job = dg.Definitions(assets=[AQI_HOURLY], jobs=[aggregate_job(AQI_HOURLY)], resources=resources(storage)
                         ).resolve_job_def(aggregate_job_name(AQI_HOURLY))
    instance.create_run_for_job(job, tags={"dagster/partition": "2026-11-27-01:00"})  # queued
    started = instance.create_run_for_job(job, tags={"dagster/partition": "2026-11-27-02:00"})
    instance.handle_run_event(
        started.run_id, dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name=job.name)
    )
    time.sleep(0.01)  # the late data lands after the started run's start

    write_snapshot(storage, DAY + timedelta(hours=1, minutes=30), seed=99, first_sensor_id=90_000,
                   fetched_at=DAY + timedelta(hours=5))
    assert ingest(storage, instance).success
    late = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    hourly = sorted(r.partition_key or f"{r.tags[RANGE_START_TAG]}...{r.tags[RANGE_END_TAG]}"
                    for r in late.run_requests if r.asset_selection == [AQI_HOURLY.key])
    # 01:00 is left to its queued run; 02:00's run started before the late data, so it is redone.
    assert hourly == ["2026-11-27-02:00"]


@pytest.mark.slow
def test_cli_materialises_an_hourly_partition(tmp_path: Path) -> None:
    storage = AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(tmp_path / "data" / "aqi.duckdb"))
    history(storage, hours=2)
    with dg.instance_for_test() as test_instance:
        assert ingest(storage, test_instance).success
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPOSITORY / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "AQI_DATA_DIR": storage.data_dir,
        "AQI_DUCKDB_PATH": storage.duckdb_path,
        "AQI_PARTITIONS_START": "2026-11-01",
    }
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "aqi_assets.definitions",
         "--select", "aqi_hourly", "--partition", "2026-11-27-01:00"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = query(storage, f"SELECT min(hour), max(hour), count(*), count(aqi_us_nowcast) FROM {HOURLY_TABLE}")
    assert rows[0][0] == rows[0][1] == DAY + timedelta(hours=1)
    assert rows[0][2] > 10 and rows[0][3] == rows[0][2]


@dg.asset(name="aqi_readings")
def readings_stub() -> None:
    """Stands for the snapshot merge (unpartitioned)."""


HISTORY_DAYS = dg.DailyPartitionsDefinition("2015-10-01", timezone="UTC")


@dg.asset(name=ARCHIVE_READINGS_KEY, partitions_def=HISTORY_DAYS)
def archive_stub() -> None:
    """Stands for the archive merge (daily from the archive's first day)."""


@dg.asset(name=PARQUET_TIER_KEY, partitions_def=HISTORY_DAYS)
def tier_stub() -> None:
    """Stands for the Parquet tier's export (daily from the history's first day)."""


HISTORY_MONTHS = dg.MonthlyPartitionsDefinition("2015-10-01", timezone="UTC")
month_stubs = [
    dg.AssetSpec(key, partitions_def=HISTORY_MONTHS, description="Stands for the monthly archive backfill.")
    for key in ARCHIVE_MONTH_KEYS
]


def test_every_source_of_the_history_is_a_declared_input_of_the_indices(storage: AqiStorage) -> None:
    """The snapshot merges, the archive days and months and the tier's days: an hour or a day maps to its day (and
    its month) upstream."""
    graph = dg.Definitions(assets=[readings_stub, archive_stub, *month_stubs, tier_stub, AQI_HOURLY, AQI_DAILY],
                           resources=resources(storage)).resolve_asset_graph()
    for asset, key, day in ((AQI_HOURLY, "2026-11-27-23:00", "2026-11-27"), (AQI_DAILY, "2026-11-27", "2026-11-27")):
        node = graph.get(asset.key)
        assert {k.to_user_string() for k in node.parent_keys} == {"aqi_readings", "archive_readings",
                                                                    "aqi_readings_parquet", *ARCHIVE_MONTH_KEYS}
        upstreams = [(ARCHIVE_READINGS_KEY, HISTORY_DAYS, day), (PARQUET_TIER_KEY, HISTORY_DAYS, day),
                     *((k, HISTORY_MONTHS, "2026-11-01") for k in ARCHIVE_MONTH_KEYS)]
        for upstream, upstream_partitions, expected in upstreams:
            mapping = graph.get_partition_mapping(asset.key, dg.AssetKey(upstream))
            mapped = mapping.get_upstream_mapped_partitions_result_for_partitions(
                node.partitions_def.subset_with_partition_keys([key]), node.partitions_def, upstream_partitions
            ).partitions_subset
            assert set(mapped.get_partition_keys()) == {expected}


def cron_requests(storage: AqiStorage, hourly: dg.AssetsDefinition) -> dict[str, set[str]]:
    """Partitions the automation requests at 03:12 UTC after an `aqi_readings` merge landed past the 03:10 tick
    (neither the archive nor the tier ever materialised)."""
    defs = dg.Definitions(assets=[readings_stub, archive_stub, *month_stubs, tier_stub, hourly, AQI_DAILY],
                          resources=resources(storage))

    def at(minute: int) -> datetime:
        return datetime(2026, 11, 27, 3, minute, tzinfo=timezone.utc)

    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=at(5))
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=at(11),
                                                   cursor=result.cursor)
        assert result.total_requested == 0  # the tick passed, the merge had not landed yet
        assert dg.materialize([readings_stub], instance=instance).success
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=at(12),
                                                   cursor=result.cursor)
        return {
            asset.key.to_user_string(): set(result.get_requested_partitions(asset.key))
            for asset in (hourly, AQI_DAILY)
        }


def test_the_hourly_tick_waits_for_the_snapshot_merge_but_not_for_the_archive_or_tier(storage: AqiStorage) -> None:
    assert cron_requests(storage, AQI_HOURLY) == {"aqi_hourly": {"2026-11-27-02:00"}, "aqi_daily": set()}

    def with_condition(condition: dg.AutomationCondition) -> dg.AssetsDefinition:
        return AQI_HOURLY.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=condition))

    # A plain on_cron would wait for an archive day that may never be backfilled, and ignoring the archive alone
    # would wait for the tier, which exports the day after it ends.
    plain = dg.AutomationCondition.on_cron("10 * * * *")
    archive_only = plain.ignore(dg.AssetSelection.assets(ARCHIVE_READINGS_KEY))
    for waiting in (plain, archive_only):
        assert cron_requests(storage, with_condition(waiting)) == {"aqi_hourly": set(), "aqi_daily": set()}
