"""The tiers assets in Dagster: a daily partition exported and verified, then retention, with metadata; the
partitions start with the history; the lineage and the automation that exports archive days as they arrive."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.defs.archive.definitions import defs as archive_defs
from aqi_assets.defs.common.env import from_env
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.resources import InfluxDBResource, TimestreamResource
from aqi_assets.defs.tiers.assets import build_tier_assets
from aqi_assets.defs.tiers.definitions import defs as tier_defs
from aqi_assets.defs.tiers.resources import TIERS_ENV, TierStorage
from aqi_assets.lib.archive.merge import ArchiveDayPrunedError
from aqi_assets.lib.readings.periods import ARCHIVE, DEFAULT_HISTORY_START, HISTORY_START_ENV
from aqi_assets_tests.support.tier_history import insert_history, merge_archive, per_day_counts

TODAY = datetime.now(timezone.utc).date()
DAYS = [TODAY - timedelta(days=n) for n in (40, 39, 2)]  # two days past the 30-day hot window, one inside
PARQUET, RETENTION = build_tier_assets(DEFAULT_HISTORY_START)
PARQUET_KEY = dg.AssetKey("aqi_readings_parquet")


def _resources(storage: AqiStorage, parquet: Path) -> dict[str, object]:
    return {
        "storage": storage,
        "tiers": TierStorage(parquet_uri=str(parquet), hot_days=30),
        "timestream": TimestreamResource(),
        "influxdb": InfluxDBResource(),
    }


def _shared() -> dg.Definitions:
    # The shared resources come from the other domains when the code location merges them.
    return dg.Definitions(
        resources={"storage": AqiStorage(), "timestream": TimestreamResource(), "influxdb": InfluxDBResource()}
    )


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, object]:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_export_partitions_then_retention(storage: AqiStorage, tmp_path: Path) -> None:
    with storage.readings() as connection:
        rows = insert_history(connection, DAYS, sensors=8, per_sensor=3)
        archived = merge_archive(connection, tmp_path / "archive", DAYS[0], sensors=3, rows=20)
    counts = per_day_counts(rows)
    counts[DAYS[0]] += archived
    resources = _resources(storage, tmp_path / "parquet")
    for day in DAYS:
        result = dg.materialize([PARQUET], partition_key=day.isoformat(), resources=resources)
        assert result.success
        metadata = _metadata(result, "aqi_readings_parquet")
        assert metadata["dagster/row_count"] == counts[day]
        assert metadata["rows_per_period"]["archive"] == (archived if day == DAYS[0] else 0)
        assert metadata["verified"] is True
        assert metadata["bytes_per_reading"] > 0

    result = dg.materialize([RETENTION], resources=resources)
    assert result.success
    metadata = _metadata(result, "aqi_tiers_retention")
    assert metadata["days_pruned"] == [d.isoformat() for d in DAYS[:2]]
    assert metadata["rows_deleted"] == counts[DAYS[0]] + counts[DAYS[1]]
    assert metadata["rows_deleted_per_period"] == {"5min": 2 * 24, "24h": 2 * 8, "archive": archived}
    assert metadata["snapshots_removed"] == 0
    with duckdb.connect(storage.duckdb_path, read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0] == counts[DAYS[2]]
        # The view stored in the file by retention (local tier) spans both tiers.
        assert connection.execute("SELECT count(*) FROM aqi_readings_all").fetchone()[0] == sum(counts.values())


def test_a_pruned_day_is_left_as_it_is_and_refused_when_its_rows_come_back(
    storage: AqiStorage, tmp_path: Path
) -> None:
    with storage.readings() as connection:
        insert_history(connection, DAYS[:1], sensors=4, per_sensor=2)
        merge_archive(connection, tmp_path / "archive", DAYS[0], sensors=2, rows=10)
    resources = _resources(storage, tmp_path / "parquet")
    partition = DAYS[0].isoformat()
    assert dg.materialize([PARQUET], partition_key=partition, resources=resources).success
    assert dg.materialize([RETENTION], resources=resources).success
    again = dg.materialize([PARQUET], partition_key=partition, resources=resources)
    assert _metadata(again, "aqi_readings_parquet")["periods_already_pruned"] == ["24h", "5min", "archive"]

    with storage.readings() as connection:
        # The archive merge refuses the re-published day outright ...
        with pytest.raises(ArchiveDayPrunedError):
            merge_archive(connection, tmp_path / "archive", DAYS[0], sensors=2, rows=10, seed=1)
        # ... and rows of it arriving another way (a hand-written INSERT) make the export fail loudly.
        late_rows = [{**row, "period": ARCHIVE} for row in synthetic_readings(
            3, now=datetime.combine(DAYS[0], datetime.min.time()) + timedelta(hours=12), seed=9, per_sensor=1)]
        insert_readings(connection, late_rows)
        late = len(late_rows)
    result = dg.materialize([PARQUET], partition_key=partition, resources=resources, raise_on_error=False)
    assert not result.success
    failure = str(result.failure_data_for_node("aqi_readings_parquet").error)
    assert f"{late} 'archive' rows" in failure and "only copy" in failure


def test_enabled_sink_with_pending_readings_blocks_retention(storage: AqiStorage, tmp_path: Path) -> None:
    with storage.readings() as connection:
        insert_history(connection, DAYS[:1], sensors=4, per_sensor=2)
    resources = _resources(storage, tmp_path / "parquet")
    resources["influxdb"] = InfluxDBResource(url="http://127.0.0.1:9", database="aqi", api="v1")
    assert dg.materialize([PARQUET], partition_key=DAYS[0].isoformat(), resources=resources).success
    result = dg.materialize([RETENTION], resources=resources)
    metadata = _metadata(result, "aqi_tiers_retention")
    assert metadata["days_pruned"] == []
    assert metadata["sinks_guarded"] == ["influxdb"]
    assert "not yet synced" in metadata["days_kept_hot"][DAYS[0].isoformat()]


def test_domain_definitions_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    defs = dg.Definitions.merge(tier_defs(), _shared())
    assert defs.resolve_job_def("aqi_readings_parquet_job").partitions_def is not None
    assert defs.resolve_job_def("aqi_tiers_retention_job").name == "aqi_tiers_retention_job"
    assert defs.resolve_schedule_def("aqi_tiers_retention_schedule").cron_schedule == "30 2 * * *"
    graph = defs.resolve_asset_graph()
    assert graph.get(PARQUET_KEY).automation_condition is not None
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


@pytest.mark.parametrize("start", [None, "2020-06-01"], ids=["default", "AQI_ARCHIVE_START"])
def test_the_tier_partitions_start_with_the_history_and_follow_the_archive(
    monkeypatch: pytest.MonkeyPatch, start: str | None
) -> None:
    if start is None:
        monkeypatch.delenv(HISTORY_START_ENV, raising=False)
    else:
        monkeypatch.setenv(HISTORY_START_ENV, start)
    graph = dg.Definitions.merge(tier_defs(), archive_defs(), _shared()).resolve_asset_graph()
    parquet = graph.get(PARQUET_KEY)
    expected = start or "2015-10-01"  # the archive's first day
    assert parquet.partitions_def.start.date() == date.fromisoformat(expected)
    assert parquet.partitions_def.get_first_partition_key() == expected
    # Declared lineage: the tier reads the history and each archive day, partition for partition.
    assert {k.to_user_string() for k in parquet.parent_keys} == {"aqi_readings", "archive_readings"}
    archive = graph.get(dg.AssetKey("archive_readings"))
    assert archive.partitions_def == parquet.partitions_def
    mapping = graph.get_partition_mapping(PARQUET_KEY, dg.AssetKey("archive_readings"))
    some_day = (date.fromisoformat(expected) + timedelta(days=152)).isoformat()
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        parquet.partitions_def.subset_with_partition_keys([some_day]),
        parquet.partitions_def,
        archive.partitions_def,
    ).partitions_subset
    assert set(upstream.get_partition_keys()) == {some_day}


def test_automation_exports_yesterday_nightly_and_any_archive_day_once_merged() -> None:
    @dg.asset(name="aqi_readings")
    def readings_stand_in() -> None:
        """Stands in for the ingest chain's asset: only its key and materialisations matter here."""

    defs = dg.Definitions.merge(tier_defs(), archive_defs(), _shared(), dg.Definitions(assets=[readings_stand_in]))
    now = datetime.now(timezone.utc)
    last_tick = datetime.combine(now.date(), time(0, 30), tzinfo=timezone.utc)
    if last_tick > now:
        last_tick -= timedelta(days=1)
    yesterday = (now.date() - timedelta(days=1)).isoformat()
    selection = dg.AssetSelection.assets(PARQUET_KEY)

    def evaluate(at: datetime, cursor=None) -> dg.EvaluateAutomationConditionsResult:
        return dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, evaluation_time=at, cursor=cursor
        )

    with dg.instance_for_test() as instance:
        quiet = evaluate(last_tick - timedelta(minutes=10))
        assert quiet.total_requested == 0
        # The history updated after the 00:30 tick; yesterday's archive has not arrived (not waited for); a
        # day of 2016 is backfilled from the archive.
        instance.report_runless_asset_event(dg.AssetMaterialization("aqi_readings"))
        instance.report_runless_asset_event(dg.AssetMaterialization("archive_readings", partition="2016-03-01"))
        tick = evaluate(now + timedelta(seconds=1), quiet.cursor)
        assert tick.get_requested_partitions(PARQUET_KEY) == {yesterday, "2016-03-01"}
        # Requested once: the next tick asks for nothing until something new arrives.
        calm = evaluate(now + timedelta(seconds=31), tick.cursor)
        assert calm.total_requested == 0
        instance.report_runless_asset_event(dg.AssetMaterialization("archive_readings", partition="2016-03-02"))
        later = evaluate(now + timedelta(seconds=61), calm.cursor)
        assert later.get_requested_partitions(PARQUET_KEY) == {"2016-03-02"}


def test_whole_code_location_has_the_tier_objects() -> None:
    from aqi_assets.definitions import defs

    loaded = defs()
    keys = {k.to_user_string() for k in loaded.resolve_asset_graph().get_all_asset_keys()}
    assert {"aqi_readings_parquet", "aqi_tiers_retention"} <= keys
    assert loaded.resolve_job_def("aqi_tiers_retention_job").name == "aqi_tiers_retention_job"
