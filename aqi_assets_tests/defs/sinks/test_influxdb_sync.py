"""InfluxDB sync against a real influxd 1.6 (v1 API, read back with /query), and the v2 request format
against a local HTTP server."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.assets import influxdb_readings
from aqi_assets.defs.sinks.resources import InfluxDBResource
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.sinks.influx_writer import (
    FIELD_TYPES,
    TAG_COLUMNS,
    InfluxWriter,
    V1Sender,
    V2Sender,
    reading_to_line,
    sync_to_influxdb,
)
from aqi_assets.lib.sinks.line_protocol import to_epoch
from aqi_assets.lib.sinks.sync_state import count_pending
from aqi_assets_tests.support.http import free_port

try:  # pytest puts either the project root or this directory on sys.path, depending on __init__.py
    from aqi_assets_tests.support.influxdb_server import LocalInfluxd, start_influxd
except ImportError:
    from influxdb_server import LocalInfluxd, start_influxd

def utc_now() -> datetime:
    """The time when a test runs, never the import time: a long suite would age fixed readings out of the
    15-minute future limit and the memory-store window before reaching the tests that rely on them."""
    return datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxd]:
    yield from start_influxd(tmp_path_factory.mktemp("influxd"))


def fill(db_path: Path, rows: list[dict[str, Any]]) -> None:
    with readings_connection(db_path) as connection:
        insert_readings(connection, rows)


def materialize(db_path: Path, influxdb: InfluxDBResource) -> dict[str, Any]:
    result = dg.materialize(
        [influxdb_readings], resources={"storage": AqiStorage(duckdb_path=str(db_path)), "influxdb": influxdb}
    )
    assert result.success
    (event,) = result.asset_materializations_for_node("influxdb_readings")
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


def read_back(server: LocalInfluxd, database: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every point, keyed by (period, sensor_id, epoch ms), with tags and fields by name."""
    result = server.query(database, 'SELECT * FROM "air_quality"')["results"][0]
    points: dict[tuple[str, str, int], dict[str, Any]] = {}
    for series in result.get("series", []):
        columns = series["columns"]
        for values in series["values"]:
            row = {c: v for c, v in zip(columns, values, strict=True) if v is not None}
            points[(row.get("period", ""), row["sensor_id"], int(row["time"]))] = row
    return points


def expected_point(reading: dict[str, Any]) -> dict[str, Any]:
    point: dict[str, Any] = {"time": to_epoch(reading["timestamp"], "ms")}
    for tag in TAG_COLUMNS:
        value = reading.get(tag)
        if value is not None:
            point[tag] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    for name, kind in FIELD_TYPES.items():
        if reading.get(name) is not None:
            point[name] = kind(reading[name])
    return point


def tricky_readings() -> list[dict[str, Any]]:
    now = utc_now()
    rows = synthetic_readings(240, now=now, per_sensor=3)
    rows[0]["sensor_type"] = "Nova Fitness, SDS011=v2"  # space, comma, equals in a tag value
    rows[1]["country"] = None  # a missing tag is left out, not written empty
    rows[2]["daqi_band"] = 'Very "high" \\ band'  # quote and backslash in a string field
    rows[3]["pm25"] = 12.0  # an integral float stays a float
    return rows


@pytest.mark.influxdb
def test_v1_sync_round_trip_against_real_influxd(influxd: LocalInfluxd, tmp_path: Path) -> None:
    now = utc_now()
    db_path = tmp_path / "aqi.duckdb"
    readings = tricky_readings()
    fill(db_path, readings)
    resource = InfluxDBResource(
        url=influxd.url, api="v1", database="aqi_v1", create_database=True, batch_lines=50, chunk_rows=120
    )

    meta = materialize(db_path, resource)
    assert meta["status"] == "synced"
    assert meta["records_sent"] == meta["records_accepted"] == len(readings)
    assert meta["records_rejected"] == meta["records_failed"] == 0
    assert meta["requests"] == 6  # 2 DuckDB chunks of 120 readings, each in batches of ≤ 50 lines

    points = read_back(influxd, "aqi_v1")
    assert len(points) == len(readings)
    for reading in readings:
        key = (reading["period"], str(reading["sensor_id"]), to_epoch(reading["timestamp"], "ms"))
        got = points[key]
        want = expected_point(reading)
        assert set(got) == set(want), key
        for name, value in want.items():
            assert got[name] == value, (key, name)
            if FIELD_TYPES.get(name) is int:
                assert isinstance(got[name], int)  # integer fields come back as integers

    assert materialize(db_path, resource)["records_sent"] == 0

    later = synthetic_readings(30, now=now + timedelta(minutes=5), per_sensor=1, seed=5)
    fill(db_path, later)
    third = materialize(db_path, resource)
    assert third["records_sent"] == len(later)
    assert len(read_back(influxd, "aqi_v1")) == len(readings) + len(later)


@pytest.mark.influxdb
def test_a_line_the_server_refuses_is_isolated_and_recorded(influxd: LocalInfluxd, tmp_path: Path) -> None:
    now = utc_now()
    db_path = tmp_path / "aqi.duckdb"
    readings = synthetic_readings(40, now=now, per_sensor=2, seed=11)
    readings[7]["pm1"] = 3.5  # the only reading with pm1, which the server already holds as a string
    fill(db_path, readings)
    influxd.create_database("aqi_conflict")
    body = f'air_quality,sensor_id=1 pm1="text" {to_epoch(readings[7]["timestamp"], "ms")}'.encode()
    request = urllib.request.Request(f"{influxd.url}/write?db=aqi_conflict&precision=ms", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204

    resource = InfluxDBResource(url=influxd.url, api="v1", database="aqi_conflict", batch_lines=16)
    meta = materialize(db_path, resource)
    assert meta["records_rejected"] == 1 and meta["records_accepted"] == len(readings) - 1
    assert meta["records_failed"] == 0
    points = read_back(influxd, "aqi_conflict")
    assert len([k for k in points if k[1] != "1"]) == len(readings) - 1
    with readings_connection(db_path) as connection:
        rows = connection.execute("SELECT sensor_id, kind, reason FROM influxdb_rejected").fetchall()
        assert len(rows) == 1
        sensor_id, kind, reason = rows[0]
        assert (sensor_id, kind) == (readings[7]["sensor_id"], "rejected")
        # The server's own reason, naming the field whose type conflicts.
        assert "field type conflict" in reason and "pm1" in reason
        assert count_pending(connection, "influxdb") == 0


def test_unreachable_server_keeps_everything_pending(tmp_path: Path) -> None:
    now = utc_now()
    db_path = tmp_path / "aqi.duckdb"
    fill(db_path, synthetic_readings(10, now=now))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # Short retries: the point is the outcome, not the backoff.
    summary = sync_to_influxdb(lambda: readings_connection(db_path), InfluxWriter(V1Sender(url, "x", retries=1)))
    assert summary.failed == 10 and summary.accepted == 0
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "influxdb") == 10

    result = dg.materialize(
        [influxdb_readings],
        resources={
            "storage": AqiStorage(duckdb_path=str(db_path)),
            "influxdb": InfluxDBResource(url=url, api="v1", database="x", retries=1),
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "10 readings were not written" in failure.event_specific_data.error.message
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "influxdb") == 10


def test_v2_request_format(httpserver: HTTPServer, tmp_path: Path) -> None:
    db_path = tmp_path / "aqi.duckdb"
    readings = tricky_readings()[:12]
    fill(db_path, readings)
    httpserver.expect_request(
        "/api/v2/write",
        method="POST",
        query_string={"org": "my org", "bucket": "air", "precision": "ms"},
        headers={"Authorization": "Token s3cr3t-token"},
    ).respond_with_data("", status=204)
    resource = InfluxDBResource(
        url=httpserver.url_for("/").rstrip("/"), api="v2", token="s3cr3t-token", org="my org", bucket="air"
    )
    meta = materialize(db_path, resource)
    assert meta["records_accepted"] == len(readings) and meta["requests"] == 1
    assert "s3cr3t" not in repr(meta)
    httpserver.check_assertions()
    (request, _response) = httpserver.log[0]
    assert request.headers["Content-Type"].startswith("text/plain")
    body = request.get_data().decode()
    assert sorted(body.split("\n")) == sorted(reading_to_line(r, "ms") for r in readings)
    parsed = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
    assert parsed == {"org": ["my org"], "bucket": ["air"], "precision": ["ms"]}


@pytest.mark.influxdb
def test_a_late_reading_merged_after_a_sync_is_sent_by_the_next_one(influxd: LocalInfluxd, tmp_path: Path) -> None:
    """The watermark follows ingest order: a reading with an older timestamp, merged after its sensor was
    synced, is written by the next sync."""
    now = utc_now()
    db_path = tmp_path / "aqi.duckdb"
    readings = synthetic_readings(20, now=now, per_sensor=4, seed=23)
    for row in readings:
        row["ingest_seq"] = 7
    fill(db_path, readings)
    resource = InfluxDBResource(url=influxd.url, api="v1", database="aqi_late", create_database=True)
    assert materialize(db_path, resource)["records_accepted"] == len(readings)

    sensor = readings[0]["sensor_id"]
    oldest = min(r["timestamp"] for r in readings if r["sensor_id"] == sensor)
    late = {**readings[0], "timestamp": oldest - timedelta(minutes=45), "pm25": 33.25, "ingest_seq": 8}
    fill(db_path, [late])
    second = materialize(db_path, resource)
    assert second["records_sent"] == second["records_accepted"] == 1
    points = read_back(influxd, "aqi_late")
    assert len(points) == len(readings) + 1
    assert points[("5min", str(sensor), to_epoch(late["timestamp"], "ms"))]["pm25"] == 33.25
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "influxdb") == 0
    assert materialize(db_path, resource)["records_sent"] == 0


def without_values(reading: dict[str, Any]) -> dict[str, Any]:
    """The row a record with empty `sensordatavalues` leaves: its place and ids, no measurement, no index."""
    kept = ("period", "sensor_id", "timestamp", "measurement_id", "location_id", "country", "latitude", "longitude",
            "altitude", "indoor", "sensor_type", "snapshot", "ingested_at")  # fmt: skip
    return {k: (v if k in kept else None) for k, v in reading.items()}


def v2_resource(server: HTTPServer, **overrides: Any) -> InfluxDBResource:
    return InfluxDBResource(
        url=server.url_for("/").rstrip("/"), api="v2", token="t0ken", org="org", bucket="air", **overrides
    )


def test_records_without_values_are_never_written_and_not_left_pending(httpserver: HTTPServer, tmp_path: Path) -> None:
    db_path = tmp_path / "aqi.duckdb"
    readings = synthetic_readings(30, now=utc_now(), per_sensor=3, seed=41)
    readings[0] = without_values(readings[0])  # the newest reading of its sensor
    readings[4] = without_values(readings[4])  # a middle one
    fill(db_path, readings)
    httpserver.expect_request("/api/v2/write", method="POST").respond_with_data("", status=204)

    meta = materialize(db_path, v2_resource(httpserver))
    assert meta["records_sent"] == meta["records_accepted"] == len(readings) - 2
    assert meta["records_without_values"] == 2 and meta["records_skipped"] == 0
    written = [line for request, _ in httpserver.log for line in request.get_data().decode().split("\n")]
    assert sorted(written) == sorted(reading_to_line(r) for i, r in enumerate(readings) if i not in (0, 4))
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "influxdb") == 0
        # The watermark passed the record without values, although nothing was sent for it.
        mark = connection.execute(
            "SELECT synced_through FROM influxdb_sync_state WHERE sensor_id = ?", [readings[0]["sensor_id"]]
        ).fetchone()
        assert mark == (readings[0]["timestamp"],)
        assert connection.execute("SELECT count(*) FROM influxdb_rejected").fetchone() == (0,)
    assert materialize(db_path, v2_resource(httpserver))["records_sent"] == 0


def test_max_records_per_run_caps_each_run_and_the_next_run_continues(httpserver: HTTPServer, tmp_path: Path) -> None:
    db_path = tmp_path / "aqi.duckdb"
    readings = synthetic_readings(25, now=utc_now(), per_sensor=5, seed=43)
    fill(db_path, readings)
    httpserver.expect_request("/api/v2/write", method="POST").respond_with_data("", status=204)
    resource = v2_resource(httpserver, max_records_per_run=10, chunk_rows=4)

    sent = []
    for expected_pending in (15, 5, 0):
        meta = materialize(db_path, resource)
        sent.append(meta["records_sent"])
        assert meta["requests"] == -(-meta["records_sent"] // 4)  # chunks of ≤ 4 readings (one request each)
        with readings_connection(db_path) as connection:
            assert count_pending(connection, "influxdb") == expected_pending
    assert sent == [10, 10, 5]
    assert materialize(db_path, resource)["records_sent"] == 0
    written = [line for request, _ in httpserver.log for line in request.get_data().decode().split("\n")]
    assert sorted(written) == sorted(reading_to_line(r) for r in readings)  # each reading once


def test_v2_writes_are_retried_on_429_and_5xx(httpserver: HTTPServer) -> None:
    body = 'air_quality,sensor_id=1 pm25=4.5 1700000000000'
    for status, headers in ((429, {"Retry-After": "0"}), (503, {"Retry-After": "0"}), (500, {})):
        httpserver.expect_ordered_request("/api/v2/write", method="POST").respond_with_data(
            '{"code":"unavailable","message":"try again"}', status=status, headers=headers
        )
    httpserver.expect_ordered_request("/api/v2/write", method="POST").respond_with_data("", status=204)
    sender = V2Sender(httpserver.url_for("/").rstrip("/"), "t0ken", "org", "air", retries=3)
    try:
        sender(body)  # no error: the fourth attempt was accepted
    finally:
        sender.close()
    httpserver.check_assertions()
    assert [request.get_data().decode() for request, _ in httpserver.log] == [body] * 4

    httpserver.clear()
    httpserver.expect_request("/api/v2/write", method="POST").respond_with_data("", status=503)
    sender = V2Sender(httpserver.url_for("/").rstrip("/"), "t0ken", "org", "air", retries=1)
    try:
        report = InfluxWriter(sender).write([body])
    finally:
        sender.close()
    assert len(httpserver.log) == 2  # the first try and one retry, then the batch is reported as failed
    assert [o.status for o in report.outcomes] == ["failed"] and "503" in report.outcomes[0].reason


def test_v2_a_refused_body_is_split_until_the_refused_line_is_isolated(httpserver: HTTPServer, tmp_path: Path) -> None:
    db_path = tmp_path / "aqi.duckdb"
    readings = synthetic_readings(12, now=utc_now(), per_sensor=1, seed=47)
    readings[5]["sensor_type"] = "UNWRITABLE"
    fill(db_path, readings)
    written: list[str] = []

    def server(request: Request) -> Response:
        lines = request.get_data().decode().split("\n")
        if len(lines) > 4:
            return Response('{"code":"request too large"}', status=413)
        if any("sensor_type=UNWRITABLE" in line for line in lines):
            return Response('{"code":"unprocessable entity","message":"schema rejected the point"}', status=422)
        written.extend(lines)
        return Response("", status=204)

    httpserver.expect_request("/api/v2/write", method="POST").respond_with_handler(server)
    sender = V2Sender(httpserver.url_for("/").rstrip("/"), "t0ken", "org", "air", retries=0)
    try:
        summary = sync_to_influxdb(lambda: readings_connection(db_path), InfluxWriter(sender, batch_lines=12))
    finally:
        sender.close()
    assert summary.accepted == 11 and summary.rejected == 1 and summary.failed == 0
    assert sorted(written) == sorted(reading_to_line(r) for i, r in enumerate(readings) if i != 5)
    # 12 → 413; 6+6 → 413; 3+3+3+3 → one 422; the refused 3 → 1+2 → the line of reading 5 alone → 422.
    assert [response.status_code for _, response in httpserver.log].count(413) == 3
    with readings_connection(db_path) as connection:
        rows = connection.execute("SELECT sensor_id, kind, reason FROM influxdb_rejected").fetchall()
        assert count_pending(connection, "influxdb") == 0
    assert len(rows) == 1
    assert rows[0][:2] == (readings[5]["sensor_id"], "rejected") and "422" in rows[0][2]
