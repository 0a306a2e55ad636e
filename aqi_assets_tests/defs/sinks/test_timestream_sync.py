"""Timestream sync: boto3 over real HTTP against a local moto server, plus injected faults.

moto validates nothing (batch size, window, rejections), so those rules are checked here: a botocore
event hook counts records per call, HTTP-level fault injection exercises botocore's retries, and a
wrapper client plays the service's RejectedRecordsException contract.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.assets import influxdb_readings, timestream_readings
from aqi_assets.defs.sinks.resources import InfluxDBResource, SyncConfigError, TimestreamResource
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.sinks.sync_state import advance_watermarks, count_pending, load_pending
from aqi_assets.lib.sinks.timestream_records import (
    MEASURE_TYPES,
    RecordError,
    TableWindow,
    build_record,
    classify_time,
    epoch_ms,
    factor_common_attributes,
    merge_common_attributes,
)
from aqi_assets.lib.sinks.timestream_writer import TimestreamWriter, sync_to_timestream

try:  # pytest puts either the project root or this directory on sys.path, depending on __init__.py
    from aqi_assets_tests.support.moto_server import stored_timestream_records, threaded_moto_server
except ImportError:
    from moto_server import stored_timestream_records, threaded_moto_server

from aqi_assets_tests.support.samples import PROJECT_ROOT as REPO_ROOT


def utc_now() -> datetime:
    """The time when a test runs, never the import time: a long suite would age fixed readings out of the
    15-minute future limit and the memory-store window before reaching the tests that rely on them."""
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with threaded_moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def resource(moto_endpoint: str) -> TimestreamResource:
    return TimestreamResource(
        database=f"aqi_{uuid.uuid4().hex[:8]}",
        table="readings",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="not-a-real-secret-9f3k",
        create_if_missing=True,
        concurrency=4,
        chunk_rows=100,  # several DuckDB chunks per run in the asset tests
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "aqi.duckdb"


def fill(db_path: Path, rows: list[dict[str, Any]]) -> None:
    with readings_connection(db_path) as connection:
        insert_readings(connection, rows)


def connector(db_path: Path):
    return lambda: readings_connection(db_path)


class CallRecorder:
    """botocore hooks: the parameters of every WriteRecords call and every operation name called."""

    def __init__(self, client: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self.operations: list[str] = []
        client.meta.events.register("before-parameter-build.timestream-write.WriteRecords", self._write)
        client.meta.events.register("before-call.timestream-write", self._any)

    def _write(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(json.loads(json.dumps(params)))

    def _any(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)

    def merged_records(self) -> list[dict[str, Any]]:
        return [merge_common_attributes(c.get("CommonAttributes", {}), r) for c in self.calls for r in c["Records"]]


def record_key(record: dict[str, Any]) -> tuple[str, str, str]:
    dims = {d["Name"]: d["Value"] for d in record["Dimensions"]}
    return dims["period"], dims["sensor_id"], record["Time"]


def stored_key(record: dict[str, Any]) -> tuple[str, str]:
    """Identity of a record as moto stored it (without common attributes): time and the reading's
    measurement_id, which the synthetic readings make unique."""
    measures = {m["Name"]: m["Value"] for m in record["MeasureValues"]}
    return record.get("Time", ""), measures["measurement_id"]


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


def assert_record_matches(record: dict[str, Any], reading: dict[str, Any]) -> None:
    dims = {d["Name"]: d["Value"] for d in record["Dimensions"]}
    expected_dims = {
        "sensor_id": str(reading["sensor_id"]),
        "location_id": str(reading["location_id"]),
        "country": reading["country"],
        "sensor_type": reading["sensor_type"],
        "period": reading["period"],
        "indoor": "true" if reading["indoor"] else "false",
    }
    assert dims == {k: v for k, v in expected_dims.items() if v is not None}
    assert all(d["DimensionValueType"] == "VARCHAR" for d in record["Dimensions"])
    assert record["MeasureName"] == "air_quality"
    assert record["MeasureValueType"] == "MULTI"
    assert record["TimeUnit"] == "MILLISECONDS"
    assert int(record["Time"]) == epoch_ms(reading["timestamp"])
    assert record["Version"] == epoch_ms(reading["ingested_at"])
    measures = {m["Name"]: m for m in record["MeasureValues"]}
    expected = {c for c in MEASURE_TYPES if reading.get(c) is not None}
    assert set(measures) == expected
    for name, measure in measures.items():
        assert measure["Type"] == MEASURE_TYPES[name]
        value = reading[name]
        if measure["Type"] == "DOUBLE":
            assert float(measure["Value"]) == pytest.approx(value, rel=0, abs=0)
        elif measure["Type"] == "BIGINT":
            assert int(measure["Value"]) == value
        elif measure["Type"] == "BOOLEAN":
            assert measure["Value"] == ("true" if value else "false")
        else:
            assert measure["Value"] == value


def materialize(db_path: Path, timestream: TimestreamResource) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [timestream_readings],
        resources={"storage": AqiStorage(duckdb_path=str(db_path)), "timestream": timestream},
    )


def metadata_of(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    (event,) = result.asset_materializations_for_node(node)
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


# ---------------------------------------------------------------- pure logic


def test_build_record_types_and_nulls() -> None:
    now = utc_now()
    (reading,) = synthetic_readings(1, now=now)
    record = build_record(reading)
    assert_record_matches(record, reading)
    reading_nulls = {**reading, "country": None, "pm25": None}
    record = build_record(reading_nulls)
    assert "country" not in {d["Name"] for d in record["Dimensions"]}
    assert "pm25" not in {m["Name"] for m in record["MeasureValues"]}
    with pytest.raises(RecordError, match="not finite"):
        build_record({**reading, "pm10": float("nan")})
    empty = {k: (v if k in ("period", "sensor_id", "timestamp", "ingested_at") else None) for k, v in reading.items()}
    with pytest.raises(RecordError, match="no values"):
        build_record(empty)


def test_common_attributes_round_trip() -> None:
    now = utc_now()
    readings = synthetic_readings(7, now=now)
    readings[3]["country"] = None
    records = [build_record(r) for r in readings]
    common, slim = factor_common_attributes(records)
    assert common["MeasureName"] == "air_quality" and common["TimeUnit"] == "MILLISECONDS"
    assert {"Name": "period", "Value": "5min", "DimensionValueType": "VARCHAR"} in common["Dimensions"]
    for full, part in zip(records, slim, strict=True):
        merged = merge_common_attributes(common, part)
        assert sorted(merged["Dimensions"], key=lambda d: d["Name"]) == sorted(
            full["Dimensions"], key=lambda d: d["Name"]
        )
        assert {k: v for k, v in merged.items() if k != "Dimensions"} == {
            k: v for k, v in full.items() if k != "Dimensions"
        }


def test_time_window_classification() -> None:
    now = utc_now()
    memory_only = TableWindow(memory_store_hours=6, magnetic_store_writes=False)
    magnetic = TableWindow(memory_store_hours=6, magnetic_store_writes=True, magnetic_store_days=30)
    assert classify_time(now + timedelta(minutes=14), now, memory_only) is None
    assert "future" in classify_time(now + timedelta(minutes=16), now, memory_only)
    assert "memory-store" in classify_time(now - timedelta(hours=7), now, memory_only)
    assert classify_time(now - timedelta(hours=7), now, magnetic) is None
    assert "magnetic" in classify_time(now - timedelta(days=31), now, magnetic)
    naive_now = now.replace(tzinfo=None)
    assert classify_time(naive_now - timedelta(hours=5), naive_now, memory_only) is None


def test_watermark_stops_before_the_first_unfinished_reading() -> None:
    t = [datetime(2024, 1, 1, 0, m) for m in range(5)]
    keys = [
        ("5min", 1, 0, t[0]), ("5min", 1, 0, t[1]), ("5min", 1, 0, t[2]), ("5min", 2, 0, t[0]), ("5min", 3, 0, t[4])
    ]  # fmt: skip
    marks = advance_watermarks(keys, [True, False, True, True, False])
    assert marks == {("5min", 1): (0, t[0]), ("5min", 2): (0, t[0])}
    # Ingest order comes first: a late reading (older timestamp, later merge) sits after the newer ones.
    late = [("5min", 1, 1, t[3]), ("5min", 1, 2, t[0]), ("5min", 1, 3, t[4])]
    assert advance_watermarks(late, [True, True, False]) == {("5min", 1): (2, t[0])}
    assert advance_watermarks(late, [True, False, True]) == {("5min", 1): (1, t[3])}


# ---------------------------------------------------------------- against moto over HTTP


def test_sync_writes_readings_one_to_one_and_is_incremental(
    db_path: Path, resource: TimestreamResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utc_now()
    readings = synthetic_readings(437, now=now, per_sensor=4)
    readings[5]["country"] = None  # a missing dimension is left out, not sent empty
    readings[6]["period"] = "24h"
    fill(db_path, readings)

    recorders: list[CallRecorder] = []
    real_client = TimestreamResource.client

    def recording_client(self: TimestreamResource) -> Any:
        client = real_client(self)
        recorders.append(CallRecorder(client))
        return client

    monkeypatch.setattr(TimestreamResource, "client", recording_client)

    result = materialize(db_path, resource)
    assert result.success
    meta = metadata_of(result, "timestream_readings")
    assert meta["status"] == "synced"
    assert meta["records_sent"] == meta["records_accepted"] == len(readings)
    assert meta["records_rejected"] == meta["records_skipped"] == meta["records_failed"] == 0
    assert meta["requests"] == len(recorders[0].calls) >= 5  # ≥ 5 chunks of ≤ 100 readings
    assert "not-a-real-secret" not in repr(meta)

    recorder = recorders[0]
    assert all(1 <= len(call["Records"]) <= 100 for call in recorder.calls)
    # moto stored exactly what was sent (over HTTP), record for record.
    stored = stored_timestream_records(resource.database, resource.table)
    sent_slim = [r for c in recorder.calls for r in c["Records"]]
    assert Counter(map(canonical, stored)) == Counter(map(canonical, sent_slim))
    # ... and what was sent, with its common attributes, is the readings one to one.
    merged = {record_key(r): r for r in recorder.merged_records()}
    assert len(merged) == len(readings) == len(recorder.merged_records())
    for reading in readings:
        key = (reading["period"], str(reading["sensor_id"]), str(epoch_ms(reading["timestamp"])))
        assert_record_matches(merged[key], reading)
    # The IAM policy covers every call the writer made.
    policy = json.loads((REPO_ROOT / "deploy" / "iam-timestream-writer.json").read_text())
    allowed = {a for s in policy["Statement"] for a in s["Action"]}
    assert {f"timestream:{op}" for op in recorder.operations} <= allowed

    # Second run: nothing new, nothing sent.
    again = metadata_of(materialize(db_path, resource), "timestream_readings")
    assert again["records_sent"] == 0 and again["requests"] == 0
    assert len(stored_timestream_records(resource.database, resource.table)) == len(readings)

    # A later snapshot: only its rows go out.
    later = synthetic_readings(60, now=now + timedelta(minutes=5), per_sensor=1, seed=99)
    later = [r for r in later if (r["period"], r["sensor_id"]) not in {("5min", 1001)}]
    fill(db_path, later)
    third = metadata_of(materialize(db_path, resource), "timestream_readings")
    assert third["records_sent"] == len(later)
    new_records = recorders[-1].merged_records()
    assert {record_key(r) for r in new_records} == {
        (r["period"], str(r["sensor_id"]), str(epoch_ms(r["timestamp"]))) for r in later
    }
    assert len(stored_timestream_records(resource.database, resource.table)) == len(readings) + len(later)


def test_disabled_and_partial_configuration(db_path: Path) -> None:
    result = dg.materialize(
        [timestream_readings, influxdb_readings],
        resources={
            "storage": AqiStorage(duckdb_path=str(db_path)),
            "timestream": TimestreamResource(),
            "influxdb": InfluxDBResource(),
        },
    )
    assert result.success
    assert metadata_of(result, "timestream_readings")["status"] == "disabled"
    assert metadata_of(result, "influxdb_readings")["status"] == "disabled"
    assert not db_path.exists()  # a disabled sync does not even open DuckDB
    with pytest.raises(SyncConfigError, match="AQI_TIMESTREAM_TABLE"):
        TimestreamResource(database="only_db").check_config()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _fault_response(request: Any, status: int, code: str, extra: dict[str, Any] | None = None) -> AWSResponse:
    body = json.dumps({"__type": f"com.amazonaws.timestream.v20181101#{code}", "message": code, **(extra or {})})
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": uuid.uuid4().hex}
    return AWSResponse(request.url, status, headers, _Raw(body.encode()))


def test_throttling_and_5xx_are_retried_and_nothing_is_lost(db_path: Path, resource: TimestreamResource) -> None:
    now = utc_now()
    readings = synthetic_readings(250, now=now)
    fill(db_path, readings)
    client = resource.client()
    window = resource.table_window(client)
    faults = ["ThrottlingException", "InternalServerException", "ThrottlingException"]
    http_attempts: list[int] = []

    def inject(request: Any, **_: Any) -> AWSResponse | None:
        http_attempts.append(1)
        if faults:
            code = faults.pop(0)
            return _fault_response(request, 400 if code == "ThrottlingException" else 500, code)
        return None

    client.meta.events.register("before-send.timestream-write.WriteRecords", inject)
    summary = sync_to_timestream(
        connector(db_path), TimestreamWriter(client, resource.database, resource.table, 3), window
    )
    assert summary.failed == 0 and summary.accepted == len(readings)
    assert summary.retries == 3 and len(http_attempts) == summary.requests + 3
    assert len(stored_timestream_records(resource.database, resource.table)) == len(readings)
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "timestream") == 0


def test_rejected_records_are_recorded_and_the_rest_written(db_path: Path, resource: TimestreamResource) -> None:
    now = utc_now()
    readings = synthetic_readings(300, now=now, per_sensor=3)
    fill(db_path, readings)
    client = resource.client()
    window = resource.table_window(client)
    reject_sensors = {"1003", "1040", "1077"}

    class RejectingClient:
        """Plays the service: rejected records are named by index, the others of the call are ingested."""

        exceptions = client.exceptions

        def write_records(self, **request: Any) -> dict[str, Any]:
            common = request.get("CommonAttributes", {})
            keep, rejected = [], []
            for index, record in enumerate(request["Records"]):
                dims = {d["Name"]: d["Value"] for d in merge_common_attributes(common, record)["Dimensions"]}
                (rejected if dims["sensor_id"] in reject_sensors else keep).append((index, record))
            if keep:
                client.write_records(**{**request, "Records": [r for _, r in keep]})
            if rejected:
                raise ClientError(
                    {
                        "Error": {"Code": "RejectedRecordsException", "Message": "One or more records rejected"},
                        "RejectedRecords": [
                            {
                                "RecordIndex": i,
                                "Reason": "A record already exists with a higher version",
                                "ExistingVersion": 9,
                            }
                            for i, _ in rejected
                        ],
                    },
                    "WriteRecords",
                )
            return {"RecordsIngested": {"Total": len(keep)}}

    writer = TimestreamWriter(RejectingClient(), resource.database, resource.table, max_workers=4)
    summary = sync_to_timestream(connector(db_path), writer, window)
    expected_rejected = {r["sensor_id"] for r in readings if str(r["sensor_id"]) in reject_sensors}
    n_rejected = sum(1 for r in readings if str(r["sensor_id"]) in reject_sensors)
    assert summary.rejected == n_rejected == 9 and summary.failed == 0
    assert summary.accepted == len(readings) - n_rejected
    stored = stored_timestream_records(resource.database, resource.table)
    assert len(stored) == len(readings) - n_rejected
    with readings_connection(db_path) as connection:
        rows = connection.execute(
            "SELECT sensor_id, kind, reason, existing_version, version FROM timestream_rejected"
        ).fetchall()
        assert {r[0] for r in rows} == expected_rejected and len(rows) == n_rejected
        assert all(r[1] == "rejected" and "higher version" in r[2] and r[3] == 9 and r[4] for r in rows)
        # Rejected and recorded: the watermark moves past them, nothing stays pending.
        assert count_pending(connection, "timestream") == 0


def test_rejected_records_exception_is_parsed_from_the_wire(resource: TimestreamResource) -> None:
    now = utc_now()
    client = resource.client()
    resource.table_window(client)  # creates the table
    body = {"RejectedRecords": [{"RecordIndex": 1, "Reason": "Duplicate", "ExistingVersion": 5}]}
    client.meta.events.register(
        "before-send.timestream-write.WriteRecords",
        lambda request, **_: _fault_response(request, 419, "RejectedRecordsException", body),
    )
    records = [build_record(r) for r in synthetic_readings(3, now=now)]
    report = TimestreamWriter(client, resource.database, resource.table).write(records)
    assert [o.status for o in report.outcomes] == ["accepted", "rejected", "accepted"]
    assert report.outcomes[1].reason == "Duplicate" and report.outcomes[1].existing_version == 5


def test_window_and_future_readings_are_skipped_and_recorded(db_path: Path, resource: TimestreamResource) -> None:
    now = utc_now()
    readings = synthetic_readings(20, now=now, per_sensor=1)
    readings[0]["timestamp"] = now.replace(tzinfo=None) - timedelta(hours=8)
    readings[1]["timestamp"] = now.replace(tzinfo=None) + timedelta(minutes=30)
    fill(db_path, readings)
    client = resource.client()
    created = resource.table_window(client)
    assert created == TableWindow(memory_store_hours=24, magnetic_store_writes=True, magnetic_store_days=3650)
    # The window of a table without magnetic-store writes (Timestream's default memory store: 6 h).
    window = TableWindow(memory_store_hours=6, magnetic_store_writes=False)
    summary = sync_to_timestream(connector(db_path), resource.writer(client), window)
    assert summary.skipped == 2 and summary.sent == 18
    assert len(stored_timestream_records(resource.database, resource.table)) == 18
    with readings_connection(db_path) as connection:
        reasons = dict(
            connection.execute("SELECT sensor_id, reason FROM timestream_rejected WHERE kind='skipped'").fetchall()
        )
        assert "memory-store" in reasons[readings[0]["sensor_id"]]
        assert "future" in reasons[readings[1]["sensor_id"]]
        assert count_pending(connection, "timestream") == 0


def test_failed_batches_keep_the_watermark_and_are_resent(db_path: Path, resource: TimestreamResource) -> None:
    now = utc_now()
    readings = synthetic_readings(120, now=now, per_sensor=4)
    fill(db_path, readings)
    client = resource.client()
    window = resource.table_window(client)
    broken_sensor = str(readings[0]["sensor_id"])

    class FlakyClient:
        exceptions = client.exceptions

        def write_records(self, **request: Any) -> dict[str, Any]:
            common = request.get("CommonAttributes", {})
            for record in request["Records"]:
                dims = {d["Name"]: d["Value"] for d in merge_common_attributes(common, record)["Dimensions"]}
                if dims["sensor_id"] == broken_sensor:
                    raise ClientError({"Error": {"Code": "InternalServerException", "Message": "boom"}}, "WriteRecords")
            return client.write_records(**request)

    first = sync_to_timestream(
        connector(db_path), TimestreamWriter(FlakyClient(), resource.database, resource.table, 1, batch_size=10), window
    )
    assert first.failed >= 4
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "timestream") == first.failed
        state = connection.execute(
            "SELECT count(*) FROM timestream_sync_state WHERE sensor_id = ?", [int(broken_sensor)]
        ).fetchone()[0]
        assert state == 0
    second = sync_to_timestream(connector(db_path), resource.writer(client), window)
    assert second.sent == first.failed and second.failed == 0
    keys = {stored_key(r) for r in stored_timestream_records(resource.database, resource.table)}
    assert keys == {(str(epoch_ms(r["timestamp"])), str(r["measurement_id"])) for r in readings}


def test_crash_between_write_and_watermark_save_is_idempotent(
    db_path: Path, resource: TimestreamResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utc_now()
    readings = synthetic_readings(150, now=now)
    fill(db_path, readings)
    client = resource.client()
    window = resource.table_window(client)
    import aqi_assets.lib.sinks.sync_state as sync_state_module  # where the sync's end saves its outcome

    real_save = sync_state_module.save_sync_outcome

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("process killed after writing, before saving the watermark")

    monkeypatch.setattr(sync_state_module, "save_sync_outcome", crash)
    with pytest.raises(KeyboardInterrupt):
        sync_to_timestream(connector(db_path), resource.writer(client), window)
    first_copy = stored_timestream_records(resource.database, resource.table)
    assert len(first_copy) == len(readings)
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "timestream") == len(readings)

    monkeypatch.setattr(sync_state_module, "save_sync_outcome", real_save)
    rerun = sync_to_timestream(connector(db_path), resource.writer(client), window)
    assert rerun.sent == len(readings) and rerun.failed == 0
    stored = stored_timestream_records(resource.database, resource.table)
    # Every reading was sent twice with identical content (same Time, Version, values): for Timestream an
    # identical re-send is a no-op, so the table holds one version of each reading.
    by_key: dict[tuple[str, str], set[str]] = {}
    for record in stored:
        by_key.setdefault(stored_key(record), set()).add(canonical(record))
    assert len(by_key) == len(readings)
    assert all(len(versions) == 1 for versions in by_key.values())
    assert sync_to_timestream(connector(db_path), resource.writer(client), window).sent == 0


def test_a_late_reading_merged_after_a_sync_is_sent_by_the_next_one(
    db_path: Path, resource: TimestreamResource
) -> None:
    """The watermark follows ingest order: a reading with an older timestamp, merged after the sensor was
    synced (a replayed snapshot, a skewed clock), is still sent."""
    now = utc_now()
    readings = synthetic_readings(40, now=now, per_sensor=4, seed=21)
    for row in readings:
        row["ingest_seq"] = 1
    fill(db_path, readings)
    first = metadata_of(materialize(db_path, resource), "timestream_readings")
    assert first["records_sent"] == first["records_accepted"] == len(readings)

    sensor = readings[0]["sensor_id"]
    oldest = min(r["timestamp"] for r in readings if r["sensor_id"] == sensor)
    late = {**readings[0], "timestamp": oldest - timedelta(minutes=30), "measurement_id": 424242, "ingest_seq": 2}
    fill(db_path, [late])
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "timestream") == 1

    second = metadata_of(materialize(db_path, resource), "timestream_readings")
    assert second["records_sent"] == second["records_accepted"] == 1
    keys = {stored_key(r) for r in stored_timestream_records(resource.database, resource.table)}
    assert (str(epoch_ms(late["timestamp"])), "424242") in keys
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "timestream") == 0
        mark = connection.execute(
            "SELECT synced_seq, synced_through FROM timestream_sync_state WHERE sensor_id = ?", [sensor]
        ).fetchone()
    assert mark == (2, late["timestamp"])
    assert metadata_of(materialize(db_path, resource), "timestream_readings")["records_sent"] == 0


def test_a_state_table_from_before_ingest_order_keeps_its_watermarks(db_path: Path) -> None:
    """A file whose state table has no `synced_seq` yet: the column is added, old rows (no ingest_seq)
    stay synced, and rows merged since are pending whatever their timestamp."""
    now = utc_now()
    readings = synthetic_readings(8, now=now, per_sensor=4, seed=5)
    fill(db_path, readings)
    newest = max(r["timestamp"] for r in readings)
    with readings_connection(db_path) as connection:
        connection.execute(
            """CREATE TABLE timestream_sync_state (period VARCHAR NOT NULL, sensor_id BIGINT NOT NULL,
               synced_through TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, PRIMARY KEY (period, sensor_id))"""
        )
        connection.execute(
            "INSERT INTO timestream_sync_state SELECT DISTINCT period, sensor_id, ?, now() FROM aqi_readings", [newest]
        )
    late = {**readings[0], "timestamp": newest - timedelta(hours=1), "measurement_id": 77, "ingest_seq": 1}
    fill(db_path, [late])
    pending = load_pending(connector(db_path), "timestream")
    assert [(r["sensor_id"], r["timestamp"], r["ingest_seq"]) for r in pending] == [
        (late["sensor_id"], late["timestamp"], 1)
    ]
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "timestream") == 1
        columns = [row[0] for row in connection.execute("DESCRIBE timestream_sync_state").fetchall()]
    assert "synced_seq" in columns


def test_records_without_values_are_never_written_and_not_left_pending(
    db_path: Path, resource: TimestreamResource
) -> None:
    """A record with no measurement (empty `sensordatavalues`) is not a reading: it is not sent, not recorded
    as a refusal, and the sensor's watermark passes it."""
    readings = synthetic_readings(30, now=utc_now(), per_sensor=3, seed=41)
    kept = ("period", "sensor_id", "timestamp", "measurement_id", "location_id", "country", "latitude", "longitude",
            "altitude", "indoor", "sensor_type", "snapshot", "ingested_at")  # fmt: skip
    for index in (0, 4):  # the newest reading of one sensor, a middle one of another
        readings[index] = {k: (v if k in kept else None) for k, v in readings[index].items()}
    fill(db_path, readings)

    meta = metadata_of(materialize(db_path, resource), "timestream_readings")
    assert meta["records_sent"] == meta["records_accepted"] == len(readings) - 2
    assert meta["records_without_values"] == 2 and meta["records_skipped"] == 0
    stored = {stored_key(r) for r in stored_timestream_records(resource.database, resource.table)}
    assert stored == {
        (str(epoch_ms(r["timestamp"])), str(r["measurement_id"])) for i, r in enumerate(readings) if i not in (0, 4)
    }
    with readings_connection(db_path) as connection:
        assert count_pending(connection, "timestream") == 0
        mark = connection.execute(
            "SELECT synced_through FROM timestream_sync_state WHERE sensor_id = ?", [readings[0]["sensor_id"]]
        ).fetchone()
        assert mark == (readings[0]["timestamp"],)
        assert connection.execute("SELECT count(*) FROM timestream_rejected").fetchone() == (0,)
    assert metadata_of(materialize(db_path, resource), "timestream_readings")["records_sent"] == 0
