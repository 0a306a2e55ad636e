"""The monthly archive backfill in Dagster, against a local server shaped like archive.sensor.community: Spark Parquet
per type (columns in another order, numbers as text, an extra column), a type only in `csv_per_month/`, the same
readings as daily CSVs. A cold month reaches the tier without touching the DuckDB file, the official indices read
it from there exactly as they read the same readings merged from the daily CSVs, and a corrupt file fails the
month by name with nothing half-written."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from pathlib import Path

import boto3
import dagster as dg
import pyarrow as pa
import pytest

from aqi_assets.defs.archive.assets import build_archive_assets
from aqi_assets.defs.archive.monthly import build_monthly_archive_assets
from aqi_assets.defs.archive.resources import ArchiveSource
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.air_quality.aggregates import hourly_indices
from aqi_assets.lib.readings.history import HISTORY_VIEW, attach_history, backfilled
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.archive_month_server import local_month_archive
from aqi_assets_tests.support.moto_server import threaded_moto_server

MONTH = date(2016, 3, 1)
MONTHLY = build_monthly_archive_assets("2015-10-01")
DAILY = build_archive_assets("2015-10-01")
SENSORS, DAYS = 3, 2


def _resources(tmp_path: Path, url: str, sensors: str = "all") -> dict[str, object]:
    data = tmp_path / "data"
    return {
        "storage": AqiStorage(data_dir=str(data), duckdb_path=str(data / "aqi.duckdb")),
        "archive": ArchiveSource(url=url, sensors=sensors, retries=1, backoff_factor=0.01, concurrency=3),
        "tiers": TierStorage(parquet_uri=str(data / "parquet")),
    }


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def _file_state(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _hours(connection, location) -> pa.Table:
    """The official hourly indices of the month's first day, read through the history view."""
    start, end = datetime(2016, 3, 1, 12), datetime(2016, 3, 1, 18)
    attach_history(connection, location, window=(datetime(2016, 2, 29), datetime(2016, 3, 3)))
    return hourly_indices(connection, start, end).sort_by([("sensor_id", "ascending"), ("hour", "ascending")])


def test_a_cold_month_reaches_the_tier_without_the_duckdb_file_and_feeds_the_indices(tmp_path: Path) -> None:
    with local_month_archive(MONTH, SENSORS, DAYS) as archive:
        resources = _resources(tmp_path, archive.url)
        storage = resources["storage"]
        database = Path(storage.duckdb_path)
        with readings_connection(database):
            pass  # a history exists, as it would in production; the month must not touch it
        before = _file_state(database)
        result = dg.materialize(MONTHLY, partition_key=MONTH.isoformat(), resources=resources)
        assert result.success
        assert _file_state(database) == before
        raw = _metadata(result, "raw_archive_month")
        assert (raw["types_from_parquet"], raw["types_from_zip"]) == (["bme280", "sds011"], ["pms5003"])
        # The types with Parquet were never fetched as zips.
        assert not [p for p in archive.file_requests() if p.endswith(("_sds011.zip", "_bme280.zip"))]
        month = _metadata(result, "archive_month_readings")
        assert month["tier_days"] == DAYS and month["tier_rows"] == month["rows_new"] > 0
        assert _metadata(result, "archive_month_hot")["status"] == "no hot days"
        location = resources["tiers"].location()
        assert sorted(d.isoformat() for _, d in backfilled(location)) == ["2016-03-01", "2016-03-02"]

        # The same readings backfilled day by day from the daily CSVs into another history.
        daily = _resources(tmp_path / "daily", archive.url)
        for day in ("2016-03-01", "2016-03-02"):
            assert dg.materialize(DAILY, partition_key=day, resources=daily).success
    with readings_connection(Path(daily["storage"].duckdb_path)) as connection:
        from_csv = _hours(connection, daily["tiers"].location())
        csv_types = dict(connection.execute(
            "SELECT sensor_type, count(*) FROM aqi_readings GROUP BY 1 ORDER BY 1").fetchall())
    with readings_connection(database, read_only=True) as connection:
        from_tier = _hours(connection, location)
        tier_types = dict(connection.execute(
            f"SELECT sensor_type, count(*) FROM {HISTORY_VIEW} GROUP BY 1 ORDER BY 1").fetchall())
    assert tier_types == csv_types and set(tier_types) == {"SDS011", "BME280", "PMS5003"}
    assert from_tier.num_rows > 0 and from_tier.schema == from_csv.schema
    for name in from_tier.column_names:
        # Means may differ in the last bits (another summation order); every index and count is the same.
        expected = from_csv[name].to_pylist()
        if pa.types.is_floating(from_tier.schema.field(name).type):
            expected = [None if v is None else pytest.approx(v, rel=1e-12) for v in expected]
        assert from_tier[name].to_pylist() == expected, name


def test_the_daily_path_refuses_a_day_the_month_wrote_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    with local_month_archive(MONTH, SENSORS, DAYS) as archive:
        resources = _resources(tmp_path, archive.url, sensors="type:sds011")
        assert dg.materialize(MONTHLY, partition_key=MONTH.isoformat(), resources=resources).success
        location = resources["tiers"].location()
        files = sorted((info.path, info.mtime_ns) for info in location.files_under(location.path("period=archive")))
        requests = len(archive.file_requests())
        again = dg.materialize(MONTHLY, partition_key=MONTH.isoformat(), resources=resources)
        assert _metadata(again, "raw_archive_month")["files_fetched"] == 0
        assert len(archive.file_requests()) == requests  # everything was in the lake
        assert _metadata(again, "archive_month_readings")["rows_new"] == 0
        assert len(location.files_under(location.path("period=archive"))) == len(files) == DAYS
        refused = dg.materialize(DAILY, partition_key="2016-03-01", resources=resources, raise_on_error=False)
        assert not refused.success
        [failure] = [e for e in refused.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert "pruned to the Parquet tier" in str(failure.step_failure_data.error)


def test_a_corrupt_part_fails_the_month_by_name_and_writes_nothing(tmp_path: Path) -> None:
    with local_month_archive(MONTH, SENSORS, DAYS, corrupt=True) as archive:
        resources = _resources(tmp_path, archive.url)
        result = dg.materialize(MONTHLY, partition_key=MONTH.isoformat(), resources=resources, raise_on_error=False)
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert failure.step_key == "archive_month_readings"
        assert archive.corrupt_path.rsplit("/", 1)[-1] in str(failure.step_failure_data.error)
        location = resources["tiers"].location()
        assert not location.files_under(location.path("period=archive"))
        assert not backfilled(location)
        assert not Path(resources["storage"].duckdb_path).exists()


@pytest.mark.parametrize("sensors", ["", "de"])
def test_a_month_without_a_selection_or_sensors_fetches_nothing(tmp_path: Path, sensors: str) -> None:
    with local_month_archive(MONTH, 1, 1) as archive:
        resources = _resources(tmp_path, archive.url, sensors=sensors)
        result = dg.materialize(MONTHLY, partition_key=MONTH.isoformat(), resources=resources)
        assert _metadata(result, "raw_archive_month")["status"] == ("disabled" if not sensors else "no sensors")
        assert _metadata(result, "archive_month_readings")["status"] == "no files"
        assert archive.file_requests() == []
        location = resources["tiers"].location()
        assert not location.files_under(location.root) and not Path(resources["storage"].duckdb_path).exists()


def test_a_month_goes_to_an_s3_tier_and_the_glue_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same month on an s3:// tier (boto3 and pyarrow over HTTP against a local moto server): verified,
    catalogued in Glue per day, and read back through the history view."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with threaded_moto_server() as endpoint, local_month_archive(MONTH, 2, DAYS) as archive:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="tier")
        resources = _resources(tmp_path, archive.url, sensors="type:sds011")
        resources["tiers"] = TierStorage(parquet_uri="s3://tier/aqi", s3_endpoint_url=endpoint,
                                         glue_database="aqi_months", glue_table="readings")
        result = dg.materialize(MONTHLY, partition_key=MONTH.isoformat(), resources=resources)
        month = _metadata(result, "archive_month_readings")
        assert month["glue_partitions_created"] == DAYS and month["tier_rows"] > 0
        glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1")
        # A database of this test's own: moto's backends live as long as the test process.
        partitions = glue.get_partitions(DatabaseName="aqi_months", TableName="readings")["Partitions"]
        assert sorted(p["Values"][1] for p in partitions) == ["2016-03-01", "2016-03-02"]
        location = resources["tiers"].location()
        with readings_connection(tmp_path / "reader.duckdb") as connection:
            attach_history(connection, location, window=(datetime(2016, 3, 1), datetime(2016, 3, 3)))
            assert connection.execute(f"SELECT count(*) FROM {HISTORY_VIEW}").fetchone()[0] == month["tier_rows"]
        assert not Path(resources["storage"].duckdb_path).exists()
