"""The asset checks on `aqi_readings`: each catches its fault, and a blocking failure stops what is downstream."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from aqi_assets.defs.air_quality.assets import ingest_assets
from aqi_assets.defs.air_quality.checks import readings_asset_checks
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.ops.audit import aqi_history_audit_job
from aqi_assets.defs.sinks.assets import sync_assets
from aqi_assets.defs.sinks.resources import InfluxDBResource, TimestreamResource
from aqi_assets.lib.air_quality import checks
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.http import snapshot_source
from aqi_assets_tests.support.samples import fragment_records

BLOCKING = {
    "indices_match_concentrations", "indices_in_range", "overall_index_is_max_sub_index",
    "daqi_band_matches_index", "no_duplicate_readings",
}


@pytest.fixture
def ingested(tmp_path: Path, storage: AqiStorage, real_snapshot_body: bytes) -> AqiStorage:
    source = tmp_path / "data.json"
    source.write_bytes(real_snapshot_body)
    result = dg.materialize(
        ingest_assets, selection=["raw_snapshot_5min", "aqi_readings"],
        resources={"storage": storage, "snapshots": snapshot_source(source.as_uri())},
    )
    assert result.success
    return storage


def run_with_downstream(storage: AqiStorage) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ingest_assets, *readings_asset_checks, *sync_assets],
        selection=["aqi_readings", "timestream_readings", "influxdb_readings"],
        resources={
            "storage": storage, "snapshots": snapshot_source("http://127.0.0.1:9/unused"),
            "timestream": TimestreamResource(), "influxdb": InfluxDBResource(),
        },
        raise_on_error=False,
    )


def corrupt(storage: AqiStorage, sql: str) -> None:
    with duckdb.connect(storage.duckdb_path) as connection:
        connection.execute(sql)


def test_clean_history_passes_and_lets_the_sync_assets_run(ingested: AqiStorage) -> None:
    result = run_with_downstream(ingested)
    assert result.success
    assert {e.check_name for e in result.get_asset_check_evaluations() if e.passed} >= BLOCKING
    assert result.asset_materializations_for_node("timestream_readings")
    assert result.asset_materializations_for_node("influxdb_readings")


def test_a_corrupted_index_fails_the_blocking_check_and_stops_the_sync(ingested: AqiStorage) -> None:
    corrupt(ingested, "UPDATE aqi_readings SET daqi_pm25 = 3, daqi = 3, daqi_band = 'Low' WHERE sensor_id = 13554")
    result = run_with_downstream(ingested)
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = evaluations["indices_match_concentrations"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["failing_rows"].value == 1
    assert "13554" in failed.metadata["sample"].value
    assert evaluations["overall_index_is_max_sub_index"].passed is False  # 3 < the PM10 sub-index 10
    # Downstream of the failed blocking check nothing ran in this run.
    assert not result.asset_materializations_for_node("timestream_readings")
    assert not result.asset_materializations_for_node("influxdb_readings")
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert "aqi_readings" in started
    assert not started & {"timestream_readings", "influxdb_readings"}


@pytest.mark.parametrize(
    ("sql", "check"),
    [
        ("UPDATE aqi_readings SET aqi_us = 612, aqi_us_pm10 = 612 WHERE sensor_id = 13554", checks.indices_in_range),
        ("UPDATE aqi_readings SET daqi = 1 WHERE sensor_id = 13554", checks.overall_is_max_of_sub_indices),
        ("UPDATE aqi_readings SET daqi_band = 'Moderate' WHERE sensor_id = 13554", checks.daqi_band_matches_index),
        ("UPDATE aqi_readings SET aqi_us_category = 'Good' WHERE sensor_id = 13554",
         checks.indices_match_concentrations),
        ("UPDATE aqi_readings SET pm25 = 3.0 WHERE sensor_id = 13554", checks.indices_match_concentrations),
    ],
)
def test_each_blocking_check_catches_its_fault(ingested: AqiStorage, sql: str, check) -> None:
    with readings_connection(ingested.duckdb_path) as connection:
        assert check(connection).passed
        connection.execute(sql)
        outcome = check(connection)
    assert not outcome.passed and outcome.failing_rows == 1
    assert outcome.sample[0]["sensor_id"] == 13554


def test_duplicate_keys_are_caught(tmp_path: Path, ingested: AqiStorage) -> None:
    # The keyed table cannot hold duplicates; a copy without the key (e.g. restored from a dump) can.
    with duckdb.connect(str(tmp_path / "copy.duckdb")) as connection:
        connection.execute(f"ATTACH '{ingested.duckdb_path}' AS src (READ_ONLY)")
        connection.execute("CREATE TABLE aqi_readings AS SELECT * FROM src.aqi_readings")
        assert checks.no_duplicate_readings(connection).passed
        connection.execute("INSERT INTO aqi_readings SELECT * FROM src.aqi_readings WHERE sensor_id = 468")
        outcome = checks.no_duplicate_readings(connection)
    assert not outcome.passed and outcome.failing_rows == 2 and outcome.sample[0]["sensor_id"] == 468


def add_humid_climate_sensors(connection: duckdb.DuckDBPyConnection, stations: int) -> None:
    """A climate sensor reading 99.9 % humidity beside each of the first ``stations`` PM sensors without one."""
    connection.execute(
        """
        INSERT INTO aqi_readings (period, sensor_id, "timestamp", location_id, sensor_type, humidity, snapshot,
                                  ingested_at)
        SELECT period, sensor_id + 1000000, "timestamp", location_id, 'DHT22', 99.9, snapshot, ingested_at
        FROM aqi_readings p
        WHERE pm25 IS NOT NULL AND NOT EXISTS
            (SELECT 1 FROM aqi_readings h WHERE h.location_id = p.location_id AND h.humidity IS NOT NULL)
        ORDER BY sensor_id LIMIT $stations
        """,
        {"stations": stations},
    )


def test_warning_checks(ingested: AqiStorage) -> None:
    with readings_connection(ingested.duckdb_path) as connection:
        clean = checks.quarantine_share(connection, 0.05)
        assert clean.passed and clean.figures["quarantined_share/5min"] == 0.0
        # A snapshot in which 50 of 488 values broke a rule (as snapshot_log records it at merge time).
        connection.execute("UPDATE snapshot_log SET values_invalid = 50")
        outcome = checks.quarantine_share(connection, 0.05)
        (only,) = outcome.details["per_snapshot"].values()
        assert not outcome.passed and (only["quarantined"], only["values"]) == (50, 488)
        assert outcome.figures["quarantined_share/5min"] == round(50 / 488, 4)
        humid = checks.humid_pm_share(connection)
        # The sample as published: 10 of its 140 PM sensors stand beside a climate sensor reading above 70 %.
        assert humid.passed and humid.details["per_period"]["5min"] == {"pm_readings": 140, "humid": 10,
                                                                        "share": 10 / 140}
        # 63 of the 140 share their station with a climate sensor: make every one of those read humid air.
        connection.execute("UPDATE aqi_readings SET humidity = 99.9 WHERE humidity IS NOT NULL")
        humid = checks.humid_pm_share(connection)
        assert humid.details["per_period"]["5min"]["humid"] == 63
        assert humid.passed and humid.figures["humid_share/5min"] == round(63 / 140, 4)  # 0.45 ≤ 0.5
        assert not checks.humid_pm_share(connection, max_share=0.25).passed
        # Humid air at 7 more stations: exactly half of the PM sensors, still within the (inclusive) limit.
        add_humid_climate_sensors(connection, 7)
        humid = checks.humid_pm_share(connection)
        assert humid.details["per_period"]["5min"]["humid"] == 70 and humid.passed
        add_humid_climate_sensors(connection, 1)  # one more: 71 of 140 is above half
        humid = checks.humid_pm_share(connection)
        assert humid.details["per_period"]["5min"]["humid"] == 71 and not humid.passed
        stale = checks.readings_fresh(connection)
        assert not stale.passed and stale.details["5min"]["stale"]
        fresh_now = datetime(2019, 4, 16, 14, 40, tzinfo=timezone.utc)
        assert checks.readings_fresh(connection, now=fresh_now).passed
        assert not checks.readings_fresh(connection, now=fresh_now + timedelta(minutes=15)).passed
        newest_before = checks.readings_fresh(connection, now=fresh_now).details["5min"]["newest_reading"]
        # A later merge that added nothing (every reading already known): the period's newest reading is then
        # older than anything merged within its limit, and still found (stale, not "no readings yet").
        connection.execute(
            """INSERT INTO snapshot_log (snapshot, period, status, records, rows_inserted, rows_duplicate,
                   values_rejected, processed_at)
               SELECT 'replayed-later', '5min', 'merged', 0, 0, 0, 0, max(processed_at) + INTERVAL 2 DAY
               FROM snapshot_log"""
        )
        later = checks.readings_fresh(connection, now=fresh_now)
        assert later.passed and later.details["5min"]["newest_reading"] == newest_before


def test_checks_after_an_ingest_look_at_that_run_and_the_audit_job_at_everything(
    ingested: AqiStorage, tmp_path: Path
) -> None:
    # An old, already-checked reading gets corrupted; a new snapshot arrives.
    corrupt(ingested, "UPDATE aqi_readings SET daqi_band = 'High' WHERE sensor_id = 13554")
    later = tmp_path / "later.json"
    records = [{**r, "timestamp": "2019-04-16 14:27:52"} for r in fragment_records()]
    later.write_text(json.dumps(records))
    result = dg.materialize(
        [*ingest_assets, *readings_asset_checks], selection=["raw_snapshot_5min", "aqi_readings"],
        resources={"storage": ingested, "snapshots": snapshot_source(later.as_uri())}, raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    band = evaluations["daqi_band_matches_index"]
    assert band.passed and band.metadata["checked_rows"].value == 243  # this run's rows only
    # The daily audit runs the same checks over the whole history and finds the old corruption.
    audit = dg.Definitions(
        assets=ingest_assets, asset_checks=readings_asset_checks, jobs=[aqi_history_audit_job],
        resources={"storage": ingested, "snapshots": snapshot_source("http://127.0.0.1:9/unused")},
    ).resolve_job_def("aqi_history_audit_job").execute_in_process(raise_on_error=False)
    audited = {e.check_name: e for e in audit.get_asset_check_evaluations()}
    assert audited["daqi_band_matches_index"].passed is False
    assert audited["daqi_band_matches_index"].metadata["checked_rows"].value == 486
    assert audited["indices_match_concentrations"].metadata["failing_rows"].value == 1


def test_repeated_readings_are_not_quarantined_twice(storage: AqiStorage, tmp_path: Path) -> None:
    records = fragment_records()
    records[0]["sensordatavalues"][0]["value"] = "nan"
    body = json.dumps(records)
    for name in ("first", "second"):
        source = tmp_path / name / "data.json"
        source.parent.mkdir()
        source.write_text(body)
        assert dg.materialize(
            ingest_assets, selection=["raw_snapshot_5min", "aqi_readings"],
            resources={"storage": storage, "snapshots": snapshot_source(source.as_uri())},
        ).success
    with duckdb.connect(storage.duckdb_path, read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM rejected_values").fetchone() == (1,)
        log = connection.execute("SELECT values_invalid, rows_inserted FROM snapshot_log ORDER BY processed_at")
        assert log.fetchall() == [(1, 243), (1, 0)]  # each snapshot judged on its own content
        share = checks.quarantine_share(connection, 0.05)
    assert share.passed and share.figures["quarantined_share/5min"] == round(1 / 488, 4)


def test_pm25_above_pm10_is_a_warning_not_a_block(storage: AqiStorage, tmp_path: Path) -> None:
    # The real sample has no such reading; a saturated or faulty sensor gives PM2.5 far above its PM10.
    records = fragment_records()
    pm = [r for r in records if {v["value_type"] for v in r["sensordatavalues"]} == {"P1", "P2"}]
    faulty = next(r for r in pm if r["sensor"]["id"] == 13554)  # P1 665.53
    within_tolerance = next(r for r in pm if r["sensor"]["id"] != 13554)
    for entry, offset in ((faulty, 50.0), (within_tolerance, 0.5)):
        p1 = float(next(v["value"] for v in entry["sensordatavalues"] if v["value_type"] == "P1"))
        for value in entry["sensordatavalues"]:
            if value["value_type"] == "P2":
                value["value"] = f"{p1 + offset:.2f}"
    source = tmp_path / "data.json"
    source.write_text(json.dumps(records))
    result = dg.materialize(
        [*ingest_assets, *readings_asset_checks], selection=["raw_snapshot_5min", "aqi_readings"],
        resources={"storage": storage, "snapshots": snapshot_source(source.as_uri())}, raise_on_error=False,
    )
    assert result.success  # a warning stops nothing
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert all(evaluations[name].passed for name in BLOCKING)
    order = evaluations["pm25_not_above_pm10"]
    assert not order.passed and order.severity == dg.AssetCheckSeverity.WARN
    assert order.metadata["failing_rows"].value == 1 and order.metadata["checked_rows"].value == 243
    assert "| 13554 |" in order.metadata["sample"].value
