"""The tiers assets in Dagster: a daily partition exported and verified, then retention, with metadata."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from aqi_assets.defs.common.env import from_env
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.resources import InfluxDBResource, TimestreamResource
from aqi_assets.defs.tiers.assets import aqi_readings_parquet, aqi_tiers_retention
from aqi_assets.defs.tiers.definitions import defs as tier_defs
from aqi_assets.defs.tiers.resources import TIERS_ENV, TierStorage
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.tier_history import insert_history, per_day_counts

TODAY = datetime.now(timezone.utc).date()
DAYS = [TODAY - timedelta(days=n) for n in (40, 39, 2)]  # two days past the 30-day hot window, one inside


def _resources(storage: AqiStorage, parquet: Path) -> dict[str, object]:
    return {
        "storage": storage,
        "tiers": TierStorage(parquet_uri=str(parquet), hot_days=30),
        "timestream": TimestreamResource(),
        "influxdb": InfluxDBResource(),
    }


def test_export_partitions_then_retention(storage: AqiStorage, tmp_path: Path) -> None:
    with storage.connect() as connection:
        rows = insert_history(connection, DAYS, sensors=8, per_sensor=3)
    resources = _resources(storage, tmp_path / "parquet")
    for day in DAYS:
        result = dg.materialize([aqi_readings_parquet], partition_key=day.isoformat(), resources=resources)
        assert result.success
        metadata = result.asset_materializations_for_node("aqi_readings_parquet")[0].metadata
        assert metadata["dagster/row_count"].value == per_day_counts(rows)[day]
        assert metadata["verified"].value is True
        assert metadata["bytes_per_reading"].value > 0

    result = dg.materialize([aqi_tiers_retention], resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("aqi_tiers_retention")[0].metadata
    assert metadata["days_pruned"].value == [d.isoformat() for d in DAYS[:2]]
    assert metadata["rows_deleted"].value == per_day_counts(rows)[DAYS[0]] + per_day_counts(rows)[DAYS[1]]
    assert metadata["snapshots_removed"].value == 0
    with duckdb.connect(storage.duckdb_path, read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0] == per_day_counts(rows)[DAYS[2]]
        assert connection.execute("SELECT count(*) FROM aqi_readings_all").fetchone()[0] == len(rows)


def test_a_pruned_day_is_not_re_exported(storage: AqiStorage, tmp_path: Path) -> None:
    with storage.connect() as connection:
        insert_history(connection, DAYS[:1], sensors=4, per_sensor=2)
    resources = _resources(storage, tmp_path / "parquet")
    partition = DAYS[0].isoformat()
    assert dg.materialize([aqi_readings_parquet], partition_key=partition, resources=resources).success
    assert dg.materialize([aqi_tiers_retention], resources=resources).success
    result = dg.materialize(
        [aqi_readings_parquet], partition_key=partition, resources=resources, raise_on_error=False
    )
    assert not result.success
    failure = result.failure_data_for_node("aqi_readings_parquet")
    assert "only copy" in str(failure.error)


def test_enabled_sink_with_pending_readings_blocks_retention(storage: AqiStorage, tmp_path: Path) -> None:
    with readings_connection(storage.duckdb_path) as connection:
        insert_history(connection, DAYS[:1], sensors=4, per_sensor=2)
    resources = _resources(storage, tmp_path / "parquet")
    resources["influxdb"] = InfluxDBResource(url="http://127.0.0.1:9", database="aqi", api="v1")
    assert dg.materialize([aqi_readings_parquet], partition_key=DAYS[0].isoformat(), resources=resources).success
    result = dg.materialize([aqi_tiers_retention], resources=resources)
    metadata = result.asset_materializations_for_node("aqi_tiers_retention")[0].metadata
    assert metadata["days_pruned"].value == []
    assert metadata["sinks_guarded"].value == ["influxdb"]
    assert "not yet synced" in metadata["days_kept_hot"].value[DAYS[0].isoformat()]


def test_domain_definitions_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The shared resources come from the other domains when the code location merges them.
    shared = {"storage": AqiStorage(), "timestream": TimestreamResource(), "influxdb": InfluxDBResource()}
    defs = dg.Definitions.merge(tier_defs(), dg.Definitions(resources=shared))
    assert defs.resolve_job_def("aqi_readings_parquet_job").partitions_def is not None
    assert defs.resolve_job_def("aqi_tiers_retention_job").name == "aqi_tiers_retention_job"
    assert defs.resolve_schedule_def("aqi_tiers_retention_schedule").cron_schedule == "30 2 * * *"
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("aqi_readings_parquet")).automation_condition is not None
    monkeypatch.setenv("AQI_HOT_DAYS", "12")
    monkeypatch.setenv("AQI_PARQUET_URI", "s3://bucket/prefix")
    monkeypatch.delenv("AQI_RAW_RETENTION_DAYS", raising=False)
    configured = from_env(TierStorage, TIERS_ENV)

    @dg.asset
    def settings(tiers: TierStorage) -> dict:
        return {"hot": tiers.hot_days, "raw": tiers.raw_retention_days, "uri": tiers.parquet_uri}

    result = dg.materialize([settings], resources={"tiers": configured})
    assert result.output_for_node("settings") == {"hot": 12, "raw": 7, "uri": "s3://bucket/prefix"}
    assert TierStorage().parquet_uri == "data/parquet"


def test_whole_code_location_has_the_tier_objects() -> None:
    from aqi_assets.definitions import defs

    loaded = defs()
    keys = {k.to_user_string() for k in loaded.resolve_asset_graph().get_all_asset_keys()}
    assert {"aqi_readings_parquet", "aqi_tiers_retention"} <= keys
    assert loaded.resolve_job_def("aqi_tiers_retention_job").name == "aqi_tiers_retention_job"
