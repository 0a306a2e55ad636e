"""The archive assets in Dagster: a 3-day backfill over a local archive, run twice; disabled and failing days."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import pytest

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.defs.archive.assets import build_archive_assets
from aqi_assets.defs.archive.definitions import defs as archive_defs
from aqi_assets.defs.archive.resources import ArchiveSource
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.archive.selection import LOCATION_LOOKBACK
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers.parquet_tier import export_day
from aqi_assets.lib.tiers.retention import prune_hot_tier
from aqi_assets_tests.support.archive_server import ALL_GOOD_IDS, HTML_ERROR_ID, SDS011_ID, SPS30_ID, local_archive

DAYS = [date(2025, 10, 14), date(2025, 10, 15), date(2025, 10, 16)]
ASSETS = build_archive_assets("2025-10-01")


def _resources(tmp_path: Path, url: str, sensors: str) -> dict[str, object]:
    return {
        "storage": AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(tmp_path / "data" / "aqi.duckdb")),
        "archive": ArchiveSource(url=url, sensors=sensors, retries=1, backoff_factor=0.01, concurrency=3),
        "tiers": TierStorage(parquet_uri=str(tmp_path / "data" / "parquet")),
    }


def _backfill(resources: dict[str, object], days: list[date], run_config: dict | None = None) -> list:
    results = []
    for day in days:
        result = dg.materialize(ASSETS, partition_key=day.isoformat(), resources=resources, run_config=run_config)
        assert result.success
        results.append(result)
    return results


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def _dump(database: Path) -> dict[str, list]:
    with readings_connection(database, read_only=True) as connection:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in ("aqi_readings", "rejected_values", "archive_files", "archive_log")
        }


def test_a_three_day_backfill_fills_the_history_and_running_it_again_changes_nothing(tmp_path: Path) -> None:
    with local_archive(DAYS) as archive:
        resources = _resources(tmp_path, archive.url, ",".join(str(i) for i in ALL_GOOD_IDS))
        first = _backfill(resources, DAYS)
        for result in first:
            raw = _metadata(result, "raw_archive_day")
            assert (raw["status"], raw["files"], raw["files_fetched"], raw["sensors"]) == ("fetched", 6, 6, 6)
            merged = _metadata(result, "archive_readings")
            assert merged["status"] == "merged" and merged["files"] == 6 and merged["sensors"] == 6
            assert merged["measurements"] == merged["rows_inserted"] > 1300
        database = tmp_path / "data" / "aqi.duckdb"
        with readings_connection(database, read_only=True) as connection:
            per_day = connection.execute(
                """SELECT "timestamp"::DATE, count(DISTINCT sensor_id), count(*) FROM aqi_readings
                   WHERE period = 'archive' GROUP BY 1 ORDER BY 1"""
            ).fetchall()
        assert [(d, s) for d, s, _ in per_day] == [(day, 6) for day in DAYS]
        lake = sorted((tmp_path / "data" / "raw" / "archive").rglob("*.csv"))
        assert len(lake) == 18
        before, lake_bytes = _dump(database), {p: p.read_bytes() for p in lake}
        requests_before = len(archive.file_requests())

        second = _backfill(resources, DAYS)
        for result in second:
            assert _metadata(result, "raw_archive_day")["files_fetched"] == 0
            assert _metadata(result, "archive_readings")["status"] == "already merged"
        assert _dump(database) == before
        assert {p: p.read_bytes() for p in lake} == lake_bytes
        # Only the listed-but-missing sensor is asked again: it is not selected here, so nothing at all.
        assert archive.file_requests()[requests_before:] == []


def test_the_run_config_overrides_the_selection_and_an_unset_one_is_disabled(tmp_path: Path) -> None:
    with local_archive(DAYS[:1]) as archive:
        resources = _resources(tmp_path, archive.url, "")
        [disabled] = _backfill(resources, DAYS[:1])
        assert _metadata(disabled, "raw_archive_day")["status"] == "disabled"
        assert _metadata(disabled, "archive_readings")["status"] == "no files"
        config = {"ops": {"raw_archive_day": {"config": {"sensors": str(SDS011_ID)}}}}
        [chosen] = _backfill(resources, DAYS[:1], run_config=config)
        assert _metadata(chosen, "raw_archive_day")["files"] == 1
        assert _metadata(chosen, "archive_readings")["sensors"] == 1


def test_countries_resolve_from_the_recent_locations_even_pruned_to_the_tier(tmp_path: Path) -> None:
    """Locations come from the readings of the last LOCATION_LOOKBACK, hot or cold: a sensor the history knows
    only from a day already moved to Parquet (10 days ago) is found by its country; one last heard of before the
    lookback (40 days ago) is not, and its day's files are never opened (made unreadable here)."""
    resources = _resources(tmp_path, "http://127.0.0.1:9", "DE")
    today = naive_utc().date()
    recent, old = today - timedelta(days=10), today - LOCATION_LOOKBACK - timedelta(days=10)
    tiers = resources["tiers"]
    with readings_connection(resources["storage"].duckdb_path) as connection:
        seen = {recent: (SDS011_ID, 1, 2, 3), old: (SPS30_ID, 4, 5, 6)}  # the first of each day in DE
        for day, sensors in seen.items():
            rows = synthetic_readings(4, now=datetime.combine(day, time(12)), seed=5, per_sensor=1)
            for row, sensor in zip(rows, sensors, strict=True):
                row.update(sensor_id=sensor, country="DE" if sensor == sensors[0] else "FR", ingest_seq=1)
            insert_readings(connection, rows)
            export_day(connection, tiers.location(), day)
        assert prune_hot_tier(connection, tiers.location(), today=today, hot_days=7).days_pruned == [old, recent]
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchall() == [(0,)]
    old_files = list(Path(tiers.parquet_uri).glob(f"period=*/date={old.isoformat()}/*.parquet"))
    assert old_files
    for path in old_files:
        path.write_bytes(b"not a parquet file")
    with local_archive(DAYS[:1]) as archive:
        resources["archive"] = ArchiveSource(url=archive.url, sensors="DE", retries=1, backoff_factor=0.01)
        [result] = _backfill(resources, DAYS[:1])
        assert archive.file_requests() == [f"/{DAYS[0]}/{DAYS[0]}_sds011_sensor_{SDS011_ID}.csv"]
    raw = _metadata(result, "raw_archive_day")
    assert raw["selected_sensors"] == 1 and raw["status"] == "fetched" and raw["files"] == 1


def test_countries_need_a_history_that_knows_them(tmp_path: Path) -> None:
    with local_archive(DAYS[:1]) as archive:
        [result] = _backfill(_resources(tmp_path, archive.url, "DE, bbox:5,45,15,55"), DAYS[:1])
        raw = _metadata(result, "raw_archive_day")
        assert raw["status"] == "no sensors"
        assert f"holds no readings of the last {LOCATION_LOOKBACK.days} days" in raw["selection_notes"]


@pytest.mark.slow
def test_an_html_error_page_fails_the_day_naming_the_url(tmp_path: Path) -> None:
    with local_archive(DAYS[:1]) as archive:
        resources = _resources(tmp_path, archive.url, f"{SDS011_ID},{HTML_ERROR_ID}")
        result = dg.materialize(
            ASSETS, partition_key=DAYS[0].isoformat(), resources=resources, raise_on_error=False
        )
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
        assert f"/{DAYS[0]}/{DAYS[0]}_sds011_sensor_{HTML_ERROR_ID}.csv" in message
        assert "HTML page instead of CSV" in message


def test_partitions_start_at_aqi_archive_start_and_backfill_one_day_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQI_ARCHIVE_START", "2020-01-01")
    loaded = dg.Definitions.merge(
        dg.Definitions(resources={"storage": AqiStorage(), "tiers": TierStorage()}), archive_defs()
    )
    graph = loaded.resolve_asset_graph()
    for name in ("raw_archive_day", "archive_readings"):
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def.get_first_partition_key() == "2020-01-01"
        assert node.backfill_policy.max_partitions_per_run == 1


def test_the_selection_reads_the_history_as_declared_lineage_without_automation() -> None:
    from aqi_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    raw = graph.get(dg.AssetKey("raw_archive_day"))
    assert set(raw.parent_keys) == {dg.AssetKey("aqi_readings")}, "countries and boxes resolve from the history"
    assert raw.automation_condition is None, "a new reading never fetches archive days"
