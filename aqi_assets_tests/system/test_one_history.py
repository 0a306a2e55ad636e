"""One history through every capability, with the code location as users load it (settings from the
environment, the real assets, checks and resources): live 5-minute snapshots plus an archive day old enough to
leave the hot tier → aqi_hourly / aqi_daily → Parquet → retention → every row still readable through
`aqi_readings_all`; the indices recomputed after pruning equal those before; the site builds from it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from aqi_assets.definitions import defs as load_defs
from aqi_assets.lib.air_quality.generator import generate_snapshot
from aqi_assets.lib.readings.schema import column_names
from aqi_assets_tests.support.archive_server import ALL_GOOD_IDS, local_archive
from aqi_assets_tests.support.http import local_http_server

HOT_DAYS = 7


def _query(path: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql, params or []).fetchall()


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, key: str, partition: str | None = None):
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=[dg.AssetKey(key)],
        partition_key=partition,
        resources=defs.resources,
        instance=instance,
    )
    assert result.success, key
    assert all(check.passed for check in result.get_asset_check_evaluations()), key
    return result


def _aggregates(path: Path, table: str, column: str, first: datetime, end: datetime) -> list[tuple]:
    return _query(path, f"SELECT * FROM aggregates.{table} WHERE {column} >= ? AND {column} < ? ORDER BY ALL",
                  [first, end])


@pytest.mark.slow
def test_live_snapshots_and_an_old_archive_day_flow_through_every_capability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(timezone.utc)
    last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)  # a complete hour
    old_day = (now - timedelta(days=20)).date()
    database = tmp_path / "data" / "aqi.duckdb"
    site_dir = tmp_path / "site"
    start = (old_day - timedelta(days=1)).isoformat()
    for name, value in {
        "AQI_DATA_DIR": str(tmp_path / "data"), "AQI_DUCKDB_PATH": str(database),
        "AQI_PARQUET_URI": str(tmp_path / "parquet"), "AQI_HOT_DAYS": str(HOT_DAYS),
        "AQI_ARCHIVE_START": start, "AQI_PARTITIONS_START": start, "AQI_SITE_DIR": str(site_dir),
        "AQI_ARCHIVE_SENSORS": ",".join(map(str, ALL_GOOD_IDS)),
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.ephemeral()

    with local_http_server() as snapshots, local_archive([old_day]) as archive:
        monkeypatch.setenv("AQI_SNAPSHOT_5MIN_URL", snapshots.url_for("/data.json"))
        monkeypatch.setenv("AQI_ARCHIVE_URL", archive.url)
        defs = load_defs()
        graph = defs.resolve_asset_graph()
        parents = {key: {p.to_user_string() for p in graph.get(dg.AssetKey(key)).parent_keys}
                   for key in ("aqi_hourly", "aqi_daily", "aqi_readings_parquet", "public_site")}
        # The lineage shows every flow of data.
        assert {"aqi_readings", "archive_readings"} <= parents["aqi_hourly"] & parents["aqi_daily"]
        assert {"aqi_readings", "archive_readings"} <= parents["aqi_readings_parquet"]
        assert {"aqi_readings", "aqi_hourly"} <= parents["public_site"]

        # Live: the last two complete hours (a NowCast needs 2 of the 3 latest hours valid, an hour >= 9 of its
        # twelve 5-minute slots), each fetched as one body holding the sensors' readings of its 12 slots (a
        # backlog, as after an outage) and merged by the real ingest job.
        for hour in (last_hour - timedelta(hours=1), last_hour):
            body = json.dumps([
                record
                for slot in range(12)
                for record in json.loads(generate_snapshot(60, seed=7, at=hour + timedelta(minutes=5 * slot + 2)))
            ]).encode()
            snapshots.clear()
            snapshots.expect_request("/data.json").respond_with_data(body, content_type="application/json")
            result = defs.resolve_job_def("ingest_5min_job").execute_in_process(instance=instance)
            assert result.success
        # Backfill: the archive day, 20 days old.
        for key in ("raw_archive_day", "archive_readings"):
            _materialize(defs, instance, key, old_day.isoformat())

    periods = dict(_query(database, "SELECT period, count(*) FROM aqi_readings GROUP BY ALL"))
    assert periods["5min"] > 0 and periods["archive"] > 0
    columns = ", ".join(f'"{c}"' for c in column_names())
    everything = _query(database, f"SELECT {columns} FROM aqi_readings ORDER BY ALL")

    # The official indices, from both feeds.
    day_start = datetime.combine(old_day, datetime.min.time())
    old_hours = [day_start + timedelta(hours=h) for h in (0, 12, 23)]
    hourly_key = "%Y-%m-%d-%H:%M"
    _materialize(defs, instance, "aqi_daily", old_day.isoformat())
    live_hours = [last_hour.replace(tzinfo=None) - timedelta(hours=1), last_hour.replace(tzinfo=None)]
    for hour in (*old_hours, *live_hours):
        _materialize(defs, instance, "aqi_hourly", hour.strftime(hourly_key))
    before_daily = _aggregates(database, "aqi_daily", "day", day_start, day_start + timedelta(days=1))
    before_hourly = _aggregates(database, "aqi_hourly", "hour", day_start, day_start + timedelta(days=1))
    assert before_daily and {row[1] for row in before_hourly} >= set(old_hours)
    sources = _query(database, "SELECT DISTINCT pm25_source FROM aggregates.aqi_hourly WHERE pm25_source "
                               "IS NOT NULL ORDER BY 1")
    assert sources == [("5min",), ("archive",)]

    # The tier takes the archive day; retention moves it out of DuckDB.
    export = _materialize(defs, instance, "aqi_readings_parquet", old_day.isoformat())
    exported = export.asset_materializations_for_node("aqi_readings_parquet")[0].metadata["rows_per_period"].value
    assert exported["archive"] == periods["archive"]
    retention = _materialize(defs, instance, "aqi_tiers_retention")
    metadata = retention.asset_materializations_for_node("aqi_tiers_retention")[0].metadata
    assert metadata["days_pruned"].value == [old_day.isoformat()]
    assert metadata["rows_deleted"].value == periods["archive"]
    assert _query(database, "SELECT count(*) FROM aqi_readings WHERE period = 'archive'") == [(0,)]

    # Every row is still readable, hot or cold, through the one accessor.
    assert _query(database, f"SELECT {columns} FROM aqi_readings_all ORDER BY ALL") == everything

    # Recomputed after pruning, from the tier: the same rows.
    _materialize(defs, instance, "aqi_daily", old_day.isoformat())
    for hour in old_hours:
        _materialize(defs, instance, "aqi_hourly", hour.strftime(hourly_key))
    assert _aggregates(database, "aqi_daily", "day", day_start, day_start + timedelta(days=1)) == before_daily
    assert _aggregates(database, "aqi_hourly", "hour", day_start, day_start + timedelta(days=1)) == before_hourly

    # The site builds from the same history and the official hour.
    _materialize(defs, instance, "public_site")
    pointer = json.loads((site_dir / "current.json").read_text())
    assert pointer["indices_source"] == "aggregates.aqi_hourly"
    latest = json.loads((site_dir / pointer["latest"]).read_text())
    shown = {feature["properties"]["id"] for feature in latest["features"]}
    with_nowcast = {row[0] for row in _query(
        database, "SELECT sensor_id FROM aggregates.aqi_hourly WHERE hour = ? AND aqi_us_nowcast IS NOT NULL",
        [live_hours[1]],
    )}
    assert shown and with_nowcast & shown
    assert shown <= {row[0] for row in _query(database, "SELECT DISTINCT sensor_id FROM aqi_readings")}
    assert {f["properties"]["us_basis"] for f in latest["features"] if f["properties"]["id"] in with_nowcast} == {
        "nowcast"
    }
