"""Issue 8, the parts the other suites do not cover: a process SIGKILLed while sync batches are in flight
(Timestream on a moto server, InfluxDB on a real influxd), secrets through whole Dagster runs, hostile
names and values against every SQL/InfluxQL builder, bad URLs and bodies through the ingest assets, and the
IAM policy of the Timestream writer."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from pytest_httpserver import HTTPServer

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.defs.air_quality.assets import FETCH_RETRY, ingest_assets, raw_snapshot_5min
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.assets import influxdb_readings, timestream_readings
from aqi_assets.defs.sinks.resources import InfluxDBResource, TimestreamResource
from aqi_assets.lib.air_quality import lake
from aqi_assets.lib.air_quality.generator import generate_snapshot
from aqi_assets.lib.air_quality.normalise import merge_snapshot, record_unreadable
from aqi_assets.lib.common.fetch import FetchError, build_session, download
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.sinks import sync_state
from aqi_assets.lib.sinks.influx_writer import InfluxWriteError, InfluxWriter, V1Sender, sync_to_influxdb
from aqi_assets.lib.sinks.sync_state import count_pending
from aqi_assets_tests.support.http import free_port, snapshot_source
from aqi_assets_tests.support.influxdb_server import LocalInfluxd, start_influxd
from aqi_assets_tests.support.moto_server import stored_timestream_records, threaded_moto_server
from aqi_assets_tests.support.reliability_helpers import (
    assert_no_secret,
    client_side_log,
    decode_stored_record,
    expected_timestream_record,
    history_rows,
    identity,
    newest_reading_per_sensor,
    run_texts,
    store_records_with_common_attributes,
    watermarks,
)
from aqi_assets_tests.support.samples import PROJECT_ROOT

NOW = datetime.now(timezone.utc)
HOSTILE = "x'); DROP TABLE aqi_readings; --"


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with threaded_moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxd]:
    yield from start_influxd(tmp_path_factory.mktemp("influxd"))


@pytest.fixture
def fast_fetch_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetch asset's Dagster retries (3, exponential from 5 s) without the waiting, so a failing fetch
    test takes a second instead of a minute; the number of attempts stays the production one."""
    monkeypatch.setattr(raw_snapshot_5min.op, "_retry_policy", dg.RetryPolicy(max_retries=FETCH_RETRY.max_retries))


def fill(db_path: Path, rows: list[dict[str, Any]]) -> None:
    with readings_connection(db_path) as connection:
        insert_readings(connection, rows)


def pending(db_path: Path, target: str) -> int:
    with readings_connection(db_path) as connection:
        sync_state.ensure_sync_tables(connection, target)
        return count_pending(connection, target)


def run_child(script: str, config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter (TMPDIR inside tmp_path: a killed Dagster leaves its temp files
    there, not in /tmp)."""
    child_tmp = tmp_path / "child-tmp"
    child_tmp.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), "TMPDIR": str(child_tmp), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", script, json.dumps(config)], env=env, capture_output=True, text=True, timeout=120
    )


# --------------------------------------------------------------- SIGKILL while sync batches are in flight

KILL_DURING_TIMESTREAM_SYNC = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    import dagster as dg
    from aqi_assets.defs.sinks.assets import timestream_readings
    from aqi_assets.defs.common.storage import AqiStorage
    from aqi_assets.defs.sinks.resources import TimestreamResource

    config = json.loads(sys.argv[1])
    kill_after, db_path = config.pop("kill_after_writes"), config.pop("duckdb_path")
    lock, completed = threading.Lock(), [0]
    real_client = TimestreamResource.client

    def client_that_dies(self):
        client = real_client(self)
        def after_write(**_):
            # The N-th WriteRecords answer arrived; the other workers' calls are still in flight.
            with lock:
                completed[0] += 1
                if completed[0] == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
        client.meta.events.register("after-call.timestream-write.WriteRecords", after_write)
        return client

    TimestreamResource.client = client_that_dies
    dg.materialize([timestream_readings], resources={
        "storage": AqiStorage(duckdb_path=db_path), "timestream": TimestreamResource(**config)})
    sys.exit("the sync finished: the kill hook never fired")
    """
)


def test_sigkill_during_a_timestream_sync_then_rerun_holds_each_reading_once(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_records_with_common_attributes(monkeypatch)
    db_path = tmp_path / "aqi.duckdb"
    fill(db_path, synthetic_readings(1200, now=NOW, per_sensor=4, seed=31))
    target = {
        "database": f"aqi_{uuid.uuid4().hex[:8]}", "table": "readings", "endpoint_url": moto_endpoint,
        "region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret",
        "create_if_missing": True, "concurrency": 4, "chunk_rows": 400,
    }  # fmt: skip
    # 3 DuckDB chunks of 400 readings, each 4 WriteRecords calls of 100 on 4 threads; killed after the 6th answer.
    child = run_child(KILL_DURING_TIMESTREAM_SYNC, {**target, "kill_after_writes": 6, "duckdb_path": str(db_path)},
                      tmp_path)
    assert child.returncode == -9, child.stderr[-3000:]

    # The first chunk was saved; the second was part-written and its watermarks never saved.
    assert pending(db_path, "timestream") == 800
    written_before_rerun = len(stored_timestream_records(target["database"], "readings"))
    assert 600 <= written_before_rerun <= 800

    resource = TimestreamResource(**target)
    rerun = dg.materialize([timestream_readings], resources={"storage": AqiStorage(duckdb_path=str(db_path)),
                                                             "timestream": resource})
    assert rerun.success
    (event,) = rerun.asset_materializations_for_node("timestream_readings")
    assert event.metadata["records_sent"].value == 800 and event.metadata["records_failed"].value == 0

    history = history_rows(db_path)
    stored = [decode_stored_record(r) for r in stored_timestream_records(target["database"], "readings")]
    assert len(stored) == written_before_rerun + 800
    by_identity: dict[tuple, list[dict[str, Any]]] = {}
    for record in stored:
        by_identity.setdefault(identity(record), []).append(record)
    # Each reading is in the table once: duplicates are the re-sends of the killed chunk, identical to the
    # first copy (same dimensions, time, version and values), which Timestream treats as a no-op.
    assert len(by_identity) == len(history)
    resent = [copies for copies in by_identity.values() if len(copies) > 1]
    assert len(resent) == written_before_rerun - 400 >= 200
    assert all(len(copies) == 2 and copies[0] == copies[1] for copies in resent)
    for row in history:
        expected = expected_timestream_record(row)
        (first, *_) = by_identity[identity(expected)]
        assert first == expected
    assert watermarks(db_path, "timestream_sync_state") == newest_reading_per_sensor(history)
    again = dg.materialize([timestream_readings], resources={"storage": AqiStorage(duckdb_path=str(db_path)),
                                                             "timestream": resource})
    assert again.asset_materializations_for_node("timestream_readings")[0].metadata["records_sent"].value == 0


KILL_DURING_INFLUXDB_SYNC = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    import dagster as dg
    from aqi_assets.defs.sinks.assets import influxdb_readings
    from aqi_assets.lib.sinks.influx_writer import V1Sender
    from aqi_assets.defs.common.storage import AqiStorage
    from aqi_assets.defs.sinks.resources import InfluxDBResource

    config = json.loads(sys.argv[1])
    kill_after, db_path = config.pop("kill_after_writes"), config.pop("duckdb_path")
    lock, completed = threading.Lock(), [0]
    real_send = V1Sender.__call__

    def send_then_maybe_die(self, body):
        real_send(self, body)
        with lock:  # the N-th write was answered; the other workers' writes are still in flight
            completed[0] += 1
            if completed[0] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    V1Sender.__call__ = send_then_maybe_die
    dg.materialize([influxdb_readings], resources={
        "storage": AqiStorage(duckdb_path=db_path), "influxdb": InfluxDBResource(**config)})
    sys.exit("the sync finished: the kill hook never fired")
    """
)


def influx_rows(server: LocalInfluxd, database: str) -> list[dict[str, Any]]:
    result = server.query(database, 'SELECT * FROM "air_quality"')["results"][0]
    rows = []
    for series in result.get("series", []):
        for values in series["values"]:
            rows.append({c: v for c, v in zip(series["columns"], values, strict=True) if v is not None})
    return rows


def expected_influx_point(row: dict[str, Any]) -> dict[str, Any]:
    expected = expected_timestream_record(row)
    point: dict[str, Any] = {"time": expected["time"], **expected["dimensions"]}
    for name, (kind, value) in expected["measures"].items():
        point[name] = value == "true" if kind == "BOOLEAN" else value
    return point


@pytest.mark.influxdb
def test_sigkill_during_an_influxdb_sync_then_rerun_holds_each_reading_once(
    influxd: LocalInfluxd, tmp_path: Path
) -> None:
    db_path = tmp_path / "aqi.duckdb"
    fill(db_path, synthetic_readings(600, now=NOW, per_sensor=3, seed=32))
    database = f"aqi_kill_{uuid.uuid4().hex[:6]}"
    target = {"url": influxd.url, "api": "v1", "database": database, "create_database": True,
              "batch_lines": 50, "concurrency": 4, "chunk_rows": 200}
    # 3 DuckDB chunks of 200 readings, each 4 writes of 50 lines on 4 threads; killed after the 6th answer.
    child = run_child(KILL_DURING_INFLUXDB_SYNC, {**target, "kill_after_writes": 6, "duckdb_path": str(db_path)},
                      tmp_path)
    assert child.returncode == -9, child.stderr[-3000:]
    assert pending(db_path, "influxdb") == 400
    assert 300 <= len(influx_rows(influxd, database)) <= 400

    rerun = dg.materialize([influxdb_readings], resources={"storage": AqiStorage(duckdb_path=str(db_path)),
                                                           "influxdb": InfluxDBResource(**target)})
    assert rerun.success
    (event,) = rerun.asset_materializations_for_node("influxdb_readings")
    assert event.metadata["records_sent"].value == 400 and event.metadata["records_failed"].value == 0

    history = history_rows(db_path)
    points = influx_rows(influxd, database)
    # Same series and time = the same point: the re-sent lines overwrote themselves, nothing doubled.
    assert len(points) == len(history)
    by_key = {(p["period"], p["sensor_id"], p["time"]): p for p in points}
    assert len(by_key) == len(history)
    for row in history:
        expected = expected_influx_point(row)
        assert by_key[(row["period"], str(row["sensor_id"]), expected["time"])] == expected
    assert watermarks(db_path, "influxdb_sync_state") == newest_reading_per_sensor(history)


# ------------------------------------------------------------------------------- secrets through whole runs

FEED_PASSWORD = "feed-pw-7Hq2x"
FEED_TOKEN = "feed-token-Zr81"


def feed_url(server: HTTPServer, path: str = "/static/v2/data.json") -> str:
    return f"http://feeduser:{FEED_PASSWORD}@127.0.0.1:{server.port}{path}?token={FEED_TOKEN}"


def run_ingest_capturing(storage: AqiStorage, url: str) -> tuple[dg.DagsterInstance, dg.ExecuteInProcessResult]:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        ingest_assets, selection=["raw_snapshot_5min", "aqi_readings"], instance=instance,
        resources={"storage": storage, "snapshots": snapshot_source(url)}, raise_on_error=False,
    )
    return instance, result


def lake_names(storage: AqiStorage) -> list[str]:
    return [str(p) for p in Path(storage.data_dir).rglob("*")]


def test_feed_credentials_never_reach_logs_metadata_or_file_names(
    httpserver: HTTPServer, storage: AqiStorage, caplog: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/static/v2/data.json", query_string={"token": FEED_TOKEN}).respond_with_data(
        generate_snapshot(60, seed=3), content_type="application/json"
    )
    caplog.set_level(logging.INFO)
    instance, result = run_ingest_capturing(storage, feed_url(httpserver))
    assert result.success
    # The credentials really were used (basic auth from the user info, the token in the query) ...
    (request, _response) = httpserver.log[0]
    basic = base64.b64encode(f"feeduser:{FEED_PASSWORD}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {basic}"
    # ... and the URL is reported, redacted.
    url_meta = result.asset_materializations_for_node("raw_snapshot_5min")[0].metadata["url"].value
    assert url_meta == f"http://***@127.0.0.1:{httpserver.port}/static/v2/data.json?token=***"
    texts = run_texts(instance, result) + lake_names(storage) + [client_side_log(caplog)]
    assert any("***@127.0.0.1" in t for t in texts)
    assert_no_secret(texts, FEED_PASSWORD, FEED_TOKEN)


@pytest.mark.parametrize("fault", ["html-200", "http-503", "connection-refused"])
def test_failed_fetches_never_reveal_feed_credentials(
    httpserver: HTTPServer, storage: AqiStorage, caplog: pytest.LogCaptureFixture, fast_fetch_retries: None,
    fault: str,
) -> None:
    if fault == "html-200":
        httpserver.expect_request("/static/v2/data.json").respond_with_data("<html>maintenance</html>")
        url = feed_url(httpserver)
    elif fault == "http-503":
        httpserver.expect_request("/static/v2/data.json").respond_with_data("busy", status=503)
        url = feed_url(httpserver)
    else:
        url = f"http://feeduser:{FEED_PASSWORD}@127.0.0.1:{free_port()}/static/v2/data.json?token={FEED_TOKEN}"
    caplog.set_level(logging.INFO)
    instance, result = run_ingest_capturing(storage, url)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "raw_snapshot_5min"
    description = failure.step_failure_data.user_failure_data.description
    assert "***@127.0.0.1" in description  # the failure names the (redacted) feed
    # urllib3's own retry warnings are checked apart (test_http_retry_warnings_do_not_log_the_query_token).
    texts = [*run_texts(instance, result), *lake_names(storage), client_side_log(caplog, "urllib3.connectionpool")]
    assert_no_secret(texts, FEED_PASSWORD, FEED_TOKEN)


def test_http_retry_warnings_do_not_log_the_query_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    url = f"http://feeduser:{FEED_PASSWORD}@127.0.0.1:{free_port()}/static/v2/data.json?token={FEED_TOKEN}"
    with pytest.raises(FetchError):
        download(url, tmp_path, lambda sha, at: lake.snapshot_name("5min", sha, at),
                 session=build_session(retries=1, backoff_factor=0.01))
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # the retry was logged ...
    assert_no_secret([client_side_log(caplog)], FEED_PASSWORD, FEED_TOKEN)  # ... without the secret


AWS_SECRET = "aws-secret-Kk93nQ"
INFLUX_TOKEN = "influx-token-P0o1"
INFLUX_PASSWORD = "influx-pw-L5m"


def test_timestream_secret_key_stays_out_of_runs_that_succeed_and_fail(
    moto_endpoint: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_path = tmp_path / "aqi.duckdb"
    fill(db_path, synthetic_readings(30, now=NOW, seed=33))
    caplog.set_level(logging.INFO)
    texts: list[str] = []
    for endpoint, should_succeed in ((moto_endpoint, True), (f"http://127.0.0.1:{free_port()}", False)):
        resource = TimestreamResource(
            database=f"aqi_{uuid.uuid4().hex[:8]}", table="readings", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key=AWS_SECRET, create_if_missing=True,
            max_attempts=1,
        )
        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize([timestream_readings], instance=instance, raise_on_error=False,
                                resources={"storage": AqiStorage(duckdb_path=str(db_path)), "timestream": resource})
        assert result.success is should_succeed
        texts += run_texts(instance, result)
    assert any("Could not connect to the endpoint URL" in t for t in texts)  # the failure is in what we scan
    assert_no_secret([*texts, client_side_log(caplog)], AWS_SECRET)


def test_influxdb_token_and_password_stay_out_of_runs_that_succeed_and_fail(
    httpserver: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_path = tmp_path / "aqi.duckdb"
    fill(db_path, synthetic_readings(20, now=NOW, seed=34))
    httpserver.expect_ordered_request("/write", method="POST").respond_with_data(
        '{"error":"authorization failed"}', status=401
    )
    httpserver.expect_ordered_request("/write", method="POST").respond_with_data("", status=204)
    caplog.set_level(logging.INFO)
    port, nobody = httpserver.port, free_port()
    runs = [  # (resource, new readings first, should succeed)
        (InfluxDBResource(url=f"http://127.0.0.1:{port}", api="v1", database="air", token=INFLUX_TOKEN, retries=0),
         False),
        (InfluxDBResource(url=f"http://admin:{INFLUX_PASSWORD}@127.0.0.1:{port}", api="v1", database="air",
                          username="admin", password=INFLUX_PASSWORD, retries=0), True),
        (InfluxDBResource(url=f"http://admin:{INFLUX_PASSWORD}@127.0.0.1:{nobody}", api="v1", database="air",
                          token=INFLUX_TOKEN, retries=0), False),
    ]
    texts: list[str] = []
    for index, (resource, should_succeed) in enumerate(runs):
        if index == 2:  # the second run synced everything: give the failing third run something to send
            fill(db_path, synthetic_readings(5, now=NOW + timedelta(minutes=30), seed=37))
        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize([influxdb_readings], instance=instance, raise_on_error=False,
                                resources={"storage": AqiStorage(duckdb_path=str(db_path)), "influxdb": resource})
        assert result.success is should_succeed
        texts += run_texts(instance, result)
    # The credentials really were sent (token, then basic auth) ...
    assert [r.headers["Authorization"] for r, _ in httpserver.log] == [
        f"Token {INFLUX_TOKEN}", "Basic " + base64.b64encode(f"admin:{INFLUX_PASSWORD}".encode()).decode()
    ]
    # ... the failures are in what was scanned, and the URL with user info is reported redacted.
    assert any("authorization failed" in t for t in texts) and any("***@127.0.0.1" in t for t in texts)
    assert any("readings were not written" in t for t in texts)
    assert_no_secret([*texts, client_side_log(caplog)], INFLUX_TOKEN, INFLUX_PASSWORD)


def test_the_code_location_snapshot_holds_variable_names_not_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the UI shows of the resources (the repository snapshot) names the variables, never their values."""
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    from aqi_assets.definitions import defs

    secrets = {
        "AQI_SNAPSHOT_5MIN_URL": f"https://u:{FEED_PASSWORD}@feed.example/data.json?token={FEED_TOKEN}",
        "AQI_INFLUX_URL": "https://influx.example", "AQI_INFLUX_TOKEN": INFLUX_TOKEN,
        "AQI_INFLUX_PASSWORD": INFLUX_PASSWORD, "AQI_ALERT_WEBHOOK_URL": "https://hooks.example/T0/B0/hook-secret-9",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    }  # fmt: skip
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    snapshot = serialize_value(RepositorySnap.from_def(defs().get_repository_def()))
    # The variables are named (so the scan below looks at the right place) ...
    assert all(name in snapshot for name in ("AQI_INFLUX_TOKEN", "AQI_INFLUX_PASSWORD", "AQI_SNAPSHOT_5MIN_URL"))
    assert_no_secret([snapshot], FEED_PASSWORD, FEED_TOKEN, INFLUX_TOKEN, INFLUX_PASSWORD, AWS_SECRET, "hook-secret-9")


# --------------------------------------------------------------------- hostile names and values vs. SQL


def table_names(connection: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def test_sync_functions_refuse_a_target_name_carrying_sql(tmp_path: Path) -> None:
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        insert_readings(connection, synthetic_readings(5, now=NOW))
        sync_state.ensure_sync_tables(connection, "influxdb")
        before = table_names(connection)
        hostile_target = "influxdb_sync_state s ON true; DROP TABLE aqi_readings; --"
        calls = [
            lambda: sync_state.ensure_sync_tables(connection, hostile_target),
            lambda: sync_state.pending_readings(connection, hostile_target),
            lambda: sync_state.count_pending(connection, hostile_target),
            lambda: sync_state.save_sync_outcome(connection, hostile_target, {}, []),
        ]
        for call in calls:
            with pytest.raises(ValueError, match="unknown sync target"):
                call()
        assert table_names(connection) == before
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchone() == (5,)
    with pytest.raises(ValueError, match="unknown period"):
        lake.snapshot_name("5min'; DROP TABLE aqi_readings; --", "0" * 64, NOW)


def test_hostile_strings_in_names_and_data_are_stored_verbatim(tmp_path: Path) -> None:
    record = {
        "id": 1, "timestamp": "2026-11-27 12:00:00",
        "location": {"id": 2, "latitude": "48.1", "longitude": "11.5", "country": HOSTILE},
        "sensor": {"id": 3, "sensor_type": {"name": 'SDS011"; DROP TABLE snapshot_log; --'}},
        "sensordatavalues": [{"value": HOSTILE, "value_type": "P2"}, {"value": "1", "value_type": HOSTILE},
                             {"value": HOSTILE, "value_type": "temperature"}],
    }  # fmt: skip
    path = tmp_path / f"{HOSTILE}.json.gz"
    path.write_bytes(gzip.compress(json.dumps([record]).encode()))
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        before = table_names(connection)
        merge_snapshot(connection, path, "5min", now=datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc))
        record_unreadable(connection, f"{HOSTILE}.bad", "24h", HOSTILE)
        assert table_names(connection) == before
        stored = connection.execute("SELECT country, sensor_type, other_values, snapshot FROM aqi_readings")
        # Not a mass-concentration sensor type, so its P2 is kept as text too (no index).
        assert stored.fetchall() == [
            (HOSTILE, 'SDS011"; DROP TABLE snapshot_log; --', {"P2": HOSTILE, HOSTILE: "1"}, path.name)
        ]
        assert connection.execute("SELECT raw_value, reason FROM rejected_values").fetchall() == [
            (HOSTILE, "non-numeric")
        ]
        assert sorted(connection.execute("SELECT snapshot, status, error FROM snapshot_log").fetchall()) == sorted(
            [(path.name, "merged", None), (f"{HOSTILE}.bad", "unreadable", HOSTILE)]
        )


@pytest.mark.influxdb
def test_an_influxql_database_name_cannot_inject_a_statement(influxd: LocalInfluxd) -> None:
    influxd.create_database("victim")
    hostile = 'aqi"; DROP DATABASE "victim'
    sender = V1Sender(influxd.url, hostile, retries=0)
    sender.create_database()
    sender(f"air_quality,sensor_id=1 pm25=1.5 {int(NOW.timestamp() * 1000)}")
    names = {row[0] for row in influxd.query("victim", "SHOW DATABASES")["results"][0]["series"][0]["values"]}
    assert {"victim", hostile} <= names
    assert influx_rows(influxd, hostile)[0]["pm25"] == 1.5


@pytest.mark.influxdb
def test_a_refused_create_database_is_an_error(influxd: LocalInfluxd) -> None:
    with pytest.raises(InfluxWriteError, match="invalid name"):
        V1Sender(influxd.url, "back\\slash", retries=0).create_database()


@pytest.mark.influxdb
def test_a_tag_value_cannot_inject_extra_influxdb_points(influxd: LocalInfluxd, tmp_path: Path) -> None:
    db_path = tmp_path / "aqi.duckdb"
    readings = synthetic_readings(4, now=NOW, per_sensor=1, seed=35)
    injected_ms = int(NOW.timestamp() * 1000)
    readings[0]["sensor_type"] = f"SDS011\nair_quality,sensor_id=666 pm25=999 {injected_ms}"
    fill(db_path, readings)
    database = f"aqi_inject_{uuid.uuid4().hex[:6]}"
    influxd.create_database(database)
    summary = sync_to_influxdb(lambda: readings_connection(db_path), InfluxWriter(V1Sender(influxd.url, database)))
    assert (summary.skipped, summary.accepted, summary.failed) == (1, 3, 0)
    assert sorted(p["sensor_id"] for p in influx_rows(influxd, database)) == sorted(
        str(r["sensor_id"]) for r in readings[1:]
    )
    with readings_connection(db_path) as connection:
        assert connection.execute("SELECT sensor_id, kind FROM influxdb_rejected").fetchall() == [
            (readings[0]["sensor_id"], "skipped")
        ]


# ----------------------------------------------------------------- bad URLs and bodies through the assets


def lake_files(storage: AqiStorage) -> list[Path]:
    return sorted(p for p in Path(storage.data_dir, "raw").rglob("*") if p.is_file())


def merged_snapshots(storage: AqiStorage) -> int:
    with readings_connection(storage.duckdb_path) as connection:
        return connection.execute("SELECT count(*) FROM snapshot_log").fetchone()[0]


def failure_description(result: dg.ExecuteInProcessResult, step: str) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == step
    return failure.step_failure_data.user_failure_data.description


def test_gzip_content_encoding_mismatch_through_the_asset_merges_nothing(
    httpserver: HTTPServer, storage: AqiStorage, fast_fetch_retries: None
) -> None:
    wire = json.dumps([]).encode() + b" plain JSON, not gzip"
    httpserver.expect_request("/data.json").respond_with_data(wire, headers={"Content-Encoding": "gzip"})
    source = snapshot_source(httpserver.url_for("/data.json"))
    result = dg.materialize(ingest_assets, selection=["raw_snapshot_5min", "aqi_readings"], raise_on_error=False,
                            resources={"storage": storage, "snapshots": source})
    assert not result.success
    assert "not valid gzip although Content-Encoding says so" in failure_description(result, "raw_snapshot_5min")
    files = lake_files(storage)
    assert files and all(f.name.startswith("undecodable_") and f.read_bytes() == wire for f in files)
    replay = dg.materialize(ingest_assets, selection=["aqi_readings"],
                            resources={"storage": storage, "snapshots": snapshot_source("http://127.0.0.1:9/")})
    assert replay.success and merged_snapshots(storage) == 0


@pytest.mark.parametrize(
    "body", [b'[{"id": 1, "sensor": {"id": 2}}] <html>trailing</html>', b'{"error": "not an array"}'],
    ids=["trailing-garbage", "non-array-json"],
)
def test_bodies_that_are_not_one_json_array_fail_through_the_asset_and_merge_nothing(
    tmp_path: Path, storage: AqiStorage, body: bytes
) -> None:
    source = tmp_path / "incoming" / "data.json"
    source.parent.mkdir()
    source.write_bytes(body)
    result = dg.materialize(ingest_assets, selection=["raw_snapshot_5min", "aqi_readings"], raise_on_error=False,
                            resources={"storage": storage, "snapshots": snapshot_source(source.as_uri())})
    assert not result.success
    assert "is not a JSON array" in failure_description(result, "raw_snapshot_5min")
    (kept,) = lake_files(storage)
    assert kept.name.endswith(".json.gz.invalid") and gzip.decompress(kept.read_bytes()) == body
    replay = dg.materialize(ingest_assets, selection=["aqi_readings"],
                            resources={"storage": storage, "snapshots": snapshot_source(source.as_uri())})
    assert replay.success and merged_snapshots(storage) == 0


@pytest.mark.parametrize("escape", ["sibling", "dot-dot", "symlink", "other-scheme"])
def test_snapshot_urls_outside_what_the_operator_allowed_fail_through_the_asset(
    tmp_path: Path, storage: AqiStorage, fast_fetch_retries: None, escape: str
) -> None:
    allowed = tmp_path / "incoming"
    allowed.mkdir()
    secret = tmp_path / "private" / "data.json"
    secret.parent.mkdir()
    secret.write_text("[]")
    (allowed / "link.json").symlink_to(secret)
    url = {
        "sibling": secret.as_uri(),
        "dot-dot": f"file://{allowed}/../private/data.json",
        "symlink": (allowed / "link.json").as_uri(),
        "other-scheme": "ftp://127.0.0.1/data.json",
    }[escape]
    result = dg.materialize(
        ingest_assets, selection=["raw_snapshot_5min", "aqi_readings"], raise_on_error=False,
        resources={"storage": storage, "snapshots": snapshot_source(url, allowed_file_roots=str(allowed))},
    )
    assert not result.success
    expected = "unsupported URL scheme" if escape == "other-scheme" else "outside the allowed roots"
    assert expected in failure_description(result, "raw_snapshot_5min")
    assert lake_files(storage) == []


def test_a_partial_download_left_by_a_crash_is_never_taken_for_a_snapshot(storage: AqiStorage) -> None:
    day = lake.day_directory(storage.raw_dir, "5min", NOW.date())
    day.mkdir(parents=True)
    (day / ".partial-k1ll3d.gz").write_bytes(gzip.compress(generate_snapshot(20, seed=5)))
    result = dg.materialize(ingest_assets, selection=["aqi_readings"],
                            resources={"storage": storage, "snapshots": snapshot_source("http://127.0.0.1:9/")})
    assert result.success and merged_snapshots(storage) == 0


# ---------------------------------------------------------------------------------- the IAM policy

POLICY = PROJECT_ROOT / "deploy" / "iam-timestream-writer.json"


def policy_actions() -> dict[str, list[str]]:
    statements = json.loads(POLICY.read_text())["Statement"]
    assert all(s["Effect"] == "Allow" for s in statements)
    return {action: [s["Resource"]] for s in statements for action in s["Action"]}


def writer_operations(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Counter:
    """The API operations a sync makes on a fresh account (table created) and on the next run, plus the
    one botocore's endpoint discovery makes in front of them against the real service."""
    db_path = tmp_path / "aqi.duckdb"
    fill(db_path, synthetic_readings(150, now=NOW, seed=36))
    operations: Counter = Counter()
    real_client = TimestreamResource.client

    def recording_client(self: TimestreamResource) -> Any:
        client = real_client(self)
        client.meta.events.register("before-call.timestream-write", lambda model, **_: operations.update([model.name]))
        # Against AWS (no endpoint_url) botocore first calls the discovery operation: WriteRecords requires it.
        model = client.meta.service_model
        if (model.operation_model("WriteRecords").endpoint_discovery or {}).get("required"):
            operations.update([model.endpoint_discovery_operation.name])
        return client

    monkeypatch.setattr(TimestreamResource, "client", recording_client)
    resource = TimestreamResource(
        database=f"aqi_{uuid.uuid4().hex[:8]}", table="readings", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing", create_if_missing=True,
    )
    for _ in range(2):
        result = dg.materialize([timestream_readings],
                                resources={"storage": AqiStorage(duckdb_path=str(db_path)), "timestream": resource})
        assert result.success
    return operations


def test_the_iam_policy_covers_every_call_and_scopes_it(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions = policy_actions()
    used = {f"timestream:{op}" for op in writer_operations(moto_endpoint, tmp_path, monkeypatch)}
    assert used >= {"timestream:DescribeEndpoints", "timestream:DescribeTable", "timestream:CreateDatabase",
                    "timestream:CreateTable", "timestream:WriteRecords"}
    assert used <= set(actions)
    # Only endpoint discovery (which has no resource) is granted on "*"; writes are scoped to the table.
    assert [a for a, resources in actions.items() if "*" in resources] == ["timestream:DescribeEndpoints"]
    assert all(r.endswith(":database/aqi/table/readings") for r in actions["timestream:WriteRecords"])


def test_the_iam_policy_grants_nothing_the_writer_does_not_call(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = {f"timestream:{op}" for op in writer_operations(moto_endpoint, tmp_path, monkeypatch)}
    assert set(policy_actions()) == used
