"""The ingest assets through Dagster, against a local HTTP server and a temporary DuckDB file."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from pytest_httpserver import HTTPServer

from aqi_assets.defs.air_quality.assets import AqiReadingsConfig, ingest_assets
from aqi_assets.defs.air_quality.checks import readings_asset_checks
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.lib.air_quality.generator import Quirks, generate_snapshot
from aqi_assets.lib.air_quality.lake import day_directory, snapshot_name
from aqi_assets_tests.support.http import snapshot_source

LAST_MODIFIED = "Fri, 27 Nov 2026 12:00:00 GMT"


def run_ingest(storage: AqiStorage, url: str, period: str = "5min", **source: object) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ingest_assets, *readings_asset_checks],
        selection=[f"raw_snapshot_{period}", "aqi_readings"],
        resources={"storage": storage, "snapshots": snapshot_source(url, url, **source)},
        raise_on_error=False,
    )


def history(storage: AqiStorage, sql: str) -> list[tuple]:
    with duckdb.connect(storage.duckdb_path, read_only=True) as connection:
        return connection.execute(sql).fetchall()


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def test_real_sample_served_over_http(httpserver: HTTPServer, storage: AqiStorage, real_snapshot_body: bytes) -> None:
    httpserver.expect_request("/static/v2/data.json").respond_with_data(
        real_snapshot_body, content_type="application/json", headers={"Last-Modified": LAST_MODIFIED}
    )
    result = run_ingest(storage, httpserver.url_for("/static/v2/data.json"))
    assert result.success
    raw = materialization_metadata(result, "raw_snapshot_5min")
    assert raw["records"] == 243 and raw["bytes"] == len(real_snapshot_body)
    assert raw["last_modified"] == LAST_MODIFIED
    kept = Path(raw["path"])
    assert gzip.decompress(kept.read_bytes()) == real_snapshot_body  # exact bytes kept
    assert kept.name.startswith("5min_") and raw["sha256"][:12] in kept.name
    readings = materialization_metadata(result, "aqi_readings")
    assert readings["dagster/row_count"] == 243 and readings["rows_inserted"] == 243
    assert history(storage, "SELECT count(*), count(pm10) FROM aqi_readings") == [(243, 140)]
    # The current picture per period: each outdoor PM sensor once, with its latest reading (the 140 SDS011s).
    bands = dict(history(storage, "SELECT coalesce(daqi_band, 'no index'), count(*) FROM aqi_readings "
                                  "WHERE pm25 IS NOT NULL OR pm10 IS NOT NULL GROUP BY 1"))
    assert sum(bands.values()) == 140
    assert {k: v for k, v in readings["daqi_band_counts"]["5min"].items() if v} == bands
    assert not any(readings["daqi_band_counts"]["24h"].values())
    assert {key.split("/", 2)[2]: v for key, v in readings.items() if key.startswith("daqi_band/5min/") and v} == bands
    assert readings["records_without_values"] == 0 and readings["readings_differing"] == 0
    assert "| 5min | 13554 |" in readings["worst_outdoor_sensors"]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert all(checks[name] for name in (
        "indices_match_concentrations", "indices_in_range", "overall_index_is_max_sub_index",
        "daqi_band_matches_index", "no_duplicate_readings",
    ))
    assert checks["readings_fresh"] is False  # the sample is from 2019: a warning, not a failure
    request = httpserver.log[0][0]
    assert request.headers["User-Agent"].startswith("aqi_assets/")


def test_rerun_same_snapshot_adds_nothing_and_new_snapshot_appends(
    httpserver: HTTPServer, storage: AqiStorage
) -> None:
    first = generate_snapshot(300, seed=11)
    httpserver.expect_ordered_request("/data.json").respond_with_data(first)
    httpserver.expect_ordered_request("/data.json").respond_with_data(first)
    from datetime import datetime, timezone

    later = generate_snapshot(300, seed=11, at=datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc))
    httpserver.expect_ordered_request("/data.json").respond_with_data(later)
    url = httpserver.url_for("/data.json")
    one = run_ingest(storage, url)
    rows_after_first = materialization_metadata(one, "aqi_readings")["dagster/row_count"]
    two = run_ingest(storage, url)
    assert materialization_metadata(two, "aqi_readings")["rows_inserted"] == 0
    assert materialization_metadata(two, "aqi_readings")["dagster/row_count"] == rows_after_first
    three = run_ingest(storage, url)
    meta = materialization_metadata(three, "aqi_readings")
    assert meta["rows_inserted"] > 250 and meta["dagster/row_count"] == rows_after_first + meta["rows_inserted"]
    assert history(storage, "SELECT count(*), count(DISTINCT snapshot) FROM snapshot_log") == [(3, 3)]


def test_empty_array_snapshot_completes_with_zero_rows(httpserver: HTTPServer, storage: AqiStorage) -> None:
    httpserver.expect_request("/data.24h.json").respond_with_data("[]")
    result = run_ingest(storage, httpserver.url_for("/data.24h.json"), period="24h")
    assert result.success
    assert materialization_metadata(result, "raw_snapshot_24h")["records"] == 0
    meta = materialization_metadata(result, "aqi_readings")
    assert meta["rows_inserted"] == 0 and meta["dagster/row_count"] == 0 and meta["snapshots_merged"] == 1
    assert all(e.passed for e in result.get_asset_check_evaluations() if e.severity == dg.AssetCheckSeverity.ERROR)


@pytest.mark.parametrize(
    "body", [b"[{\"id\": 1, \"sensor\": {\"id\": 3", b"<html>Service Unavailable</html>", b""],
    ids=["truncated", "html-with-200", "empty-body"],
)
def test_broken_body_fails_naming_the_kept_file_and_leaves_history(
    httpserver: HTTPServer, storage: AqiStorage, body: bytes
) -> None:
    good = generate_snapshot(100, seed=2)
    httpserver.expect_ordered_request("/data.json").respond_with_data(good)
    httpserver.expect_ordered_request("/data.json").respond_with_data(body, content_type="text/html")
    url = httpserver.url_for("/data.json")
    assert run_ingest(storage, url).success
    before = history(storage, "SELECT count(*) FROM aqi_readings")
    result = run_ingest(storage, url)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    kept = Path(message.split("kept in ")[1].split(";")[0])
    assert kept.name.endswith(".json.gz.invalid") and gzip.decompress(kept.read_bytes()) == body
    assert history(storage, "SELECT count(*) FROM aqi_readings") == before
    # The next good snapshot still goes through: the broken one is never taken for a snapshot.
    httpserver.expect_request("/next.json").respond_with_data(json.dumps([]))
    assert run_ingest(storage, httpserver.url_for("/next.json")).success


def test_file_url_snapshot(tmp_path: Path, storage: AqiStorage, real_snapshot_body: bytes) -> None:
    source = tmp_path / "incoming" / "data.json"
    source.parent.mkdir()
    source.write_bytes(real_snapshot_body)
    result = run_ingest(storage, source.as_uri())
    assert result.success
    assert history(storage, "SELECT count(*) FROM aqi_readings") == [(243,)]


def test_aqi_readings_replays_the_lake_into_a_new_history(
    httpserver: HTTPServer, storage: AqiStorage, tmp_path: Path
) -> None:
    httpserver.expect_request("/data.json").respond_with_data(generate_snapshot(200, seed=4))
    assert run_ingest(storage, httpserver.url_for("/data.json")).success
    original = history(storage, 'SELECT * EXCLUDE (ingested_at) FROM aqi_readings ORDER BY sensor_id, "timestamp"')
    rebuilt = AqiStorage(data_dir=storage.data_dir, duckdb_path=str(tmp_path / "rebuilt.duckdb"))
    result = dg.materialize(
        [*ingest_assets], selection=["aqi_readings"],
        resources={"storage": rebuilt, "snapshots": snapshot_source("http://127.0.0.1:9/unused")},
    )
    assert result.success
    assert history(
        rebuilt, 'SELECT * EXCLUDE (ingested_at) FROM aqi_readings ORDER BY sensor_id, "timestamp"'
    ) == original


def test_full_rescan_merges_a_snapshot_restored_into_an_old_day(storage: AqiStorage) -> None:
    def put(day: int, first_sensor_id: int, records: int) -> Path:
        at = datetime(2026, 11, day, 12, 0, tzinfo=timezone.utc)
        directory = day_directory(storage.raw_dir, "5min", at.date())
        directory.mkdir(parents=True, exist_ok=True)
        body = generate_snapshot(records, seed=day, at=at, first_sensor_id=first_sensor_id, quirks=Quirks.clean())
        path = directory / snapshot_name("5min", f"{day:012x}", at)
        path.write_bytes(gzip.compress(body))
        return path

    def merge(config: AqiReadingsConfig | None = None) -> dict:
        result = dg.materialize(
            [*ingest_assets], selection=["aqi_readings"],
            resources={"storage": storage, "snapshots": snapshot_source("http://127.0.0.1:9/unused")},
            run_config=dg.RunConfig(ops={"aqi_readings": config}) if config else None,
        )
        assert result.success
        return materialization_metadata(result, "aqi_readings")

    put(27, first_sensor_id=10_000, records=40)
    assert (merge()["snapshots_merged"], merge()["snapshots_merged"]) == (1, 0)
    restored = put(20, first_sensor_id=20_000, records=30)  # copied back from an archive into its old day
    unchanged = merge()
    assert unchanged["snapshots_merged"] == 0 and unchanged["dagster/row_count"] == 40  # outside the scan window
    rescanned = merge(AqiReadingsConfig(full_rescan=True))
    assert rescanned["snapshots_merged"] == 1 and rescanned["rows_inserted"] == 30
    assert rescanned["dagster/row_count"] == 70
    assert history(storage, "SELECT count(*) FROM aqi_readings WHERE sensor_id >= 20000") == [(30,)]
    assert history(storage, "SELECT snapshot FROM snapshot_log ORDER BY snapshot") == [
        (restored.name,), (snapshot_name("5min", f"{27:012x}", datetime(2026, 11, 27, 12, tzinfo=timezone.utc)),)
    ]
    assert merge(AqiReadingsConfig(full_rescan=True))["snapshots_merged"] == 0  # still merged exactly once
