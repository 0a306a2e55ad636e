"""Helpers of `test_reliability_sync_and_security.py`: a moto Timestream that applies `CommonAttributes` the
way the service does, independent expectations of what a sink must hold for a history row, and a scan of
everything a Dagster run wrote (event log, metadata, failures) for leaked secrets."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

# Columns of aqi_readings that become Timestream dimensions / InfluxDB tags, and the typed measures/fields.
DIMENSIONS = ("sensor_id", "location_id", "country", "sensor_type", "period", "indoor")
DOUBLE_COLUMNS = (
    "pm1", "pm25", "pm4", "pm10", "temperature", "humidity", "pressure", "pressure_at_sealevel",
    "latitude", "longitude", "altitude",
)  # fmt: skip
INTEGER_COLUMNS = ("measurement_id", "daqi_pm25", "daqi_pm10", "daqi", "aqi_us_pm25", "aqi_us_pm10", "aqi_us")
TEXT_COLUMNS = ("daqi_band", "aqi_us_category")
BOOLEAN_COLUMNS = ("aqi_us_beyond",)


def apply_common_attributes(common: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """What Timestream stores for `record` sent with `common`: record-level attributes win, dimensions are
    merged by name. Written here, not imported from the project, so the check does not grade itself."""
    stored = {k: v for k, v in common.items() if k != "Dimensions"}
    stored.update({k: v for k, v in record.items() if k != "Dimensions"})
    dimensions = {d["Name"]: d for d in common.get("Dimensions", [])}
    dimensions.update({d["Name"]: d for d in record.get("Dimensions", [])})
    stored["Dimensions"] = sorted(dimensions.values(), key=lambda d: d["Name"])
    return stored


def store_records_with_common_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto keeps `Records` as sent and drops `CommonAttributes`; make the in-process server store each
    record with its common attributes applied, so a test can compare whole records with the history."""
    from moto.timestreamwrite.responses import TimestreamWriteResponse

    def write_records(self: Any) -> str:
        common = self._get_param("CommonAttributes") or {}
        records = [apply_common_attributes(common, r) for r in self._get_param("Records")]
        self.timestreamwrite_backend.write_records(
            self._get_param("DatabaseName"), self._get_param("TableName"), records
        )
        return json.dumps({"RecordsIngested": {"Total": len(records), "MemoryStore": len(records), "MagneticStore": 0}})

    monkeypatch.setattr(TimestreamWriteResponse, "write_records", write_records)


def history_rows(db_path: Path) -> list[dict[str, Any]]:
    with duckdb.connect(str(db_path), read_only=True) as connection:
        cursor = connection.execute("SELECT * FROM aqi_readings")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def watermarks(db_path: Path, state_table: str) -> dict[tuple[str, int], datetime]:
    with duckdb.connect(str(db_path), read_only=True) as connection:
        rows = connection.execute(f"SELECT period, sensor_id, synced_through FROM {state_table}").fetchall()
    return {(period, sensor): through for period, sensor, through in rows}


def newest_reading_per_sensor(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, int], datetime]:
    newest: dict[tuple[str, int], datetime] = {}
    for row in rows:
        key = (row["period"], row["sensor_id"])
        newest[key] = max(newest.get(key, row["timestamp"]), row["timestamp"])
    return newest


EPOCH = datetime(1970, 1, 1)


def epoch_ms(timestamp: datetime) -> int:
    """Whole milliseconds since the epoch of a naive UTC timestamp (exact integer arithmetic, floored)."""
    return (timestamp.replace(tzinfo=None) - EPOCH) // timedelta(milliseconds=1)


def tag_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expected_timestream_record(row: dict[str, Any]) -> dict[str, Any]:
    """The record a history row must be stored as: dimensions, time, version and typed measure values."""
    dimensions = {c: tag_text(row[c]) for c in DIMENSIONS if tag_text(row[c]) is not None}
    measures: dict[str, tuple[str, Any]] = {}
    for column in DOUBLE_COLUMNS:
        if row[column] is not None:
            measures[column] = ("DOUBLE", float(row[column]))
    for column in INTEGER_COLUMNS:
        if row[column] is not None:
            measures[column] = ("BIGINT", int(row[column]))
    for column in TEXT_COLUMNS:
        if row[column] is not None:
            measures[column] = ("VARCHAR", row[column])
    for column in BOOLEAN_COLUMNS:
        if row[column] is not None:
            measures[column] = ("BOOLEAN", "true" if row[column] else "false")
    return {
        "dimensions": dimensions,
        "time": epoch_ms(row["timestamp"]),
        "version": epoch_ms(row["ingested_at"]),
        "measures": measures,
    }


def decode_stored_record(record: dict[str, Any]) -> dict[str, Any]:
    """A stored Timestream record in the same shape as `expected_timestream_record`."""
    assert record["MeasureName"] == "air_quality" and record["MeasureValueType"] == "MULTI"
    assert record["TimeUnit"] == "MILLISECONDS"
    casts = {"DOUBLE": float, "BIGINT": int, "VARCHAR": str, "BOOLEAN": str}
    return {
        "dimensions": {d["Name"]: d["Value"] for d in record["Dimensions"]},
        "time": int(record["Time"]),
        "version": int(record["Version"]),
        "measures": {m["Name"]: (m["Type"], casts[m["Type"]](m["Value"])) for m in record["MeasureValues"]},
    }


def identity(decoded: dict[str, Any]) -> tuple[frozenset, int]:
    """Timestream's identity of a record: its dimensions and its time (the version decides overwrites)."""
    return frozenset(decoded["dimensions"].items()), decoded["time"]


def run_texts(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    """Everything the run left in the instance, as text: every event log entry (user log lines, Dagster
    events with their metadata, failure descriptions and stack traces) and the run record."""
    texts = [str(entry) for entry in instance.all_logs(result.run_id)]
    texts += [entry.user_message for entry in instance.all_logs(result.run_id)]
    texts.append(str(instance.get_run_by_id(result.run_id)))
    for event in result.all_events:
        texts.append(str(event))
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            texts.append(str(data.error))
            if data.user_failure_data is not None:
                texts.append(str(data.user_failure_data.description))
                texts.append(repr(data.user_failure_data.metadata))
    for node in {e.step_key for e in result.all_events if e.step_key}:
        for materialization in result.asset_materializations_for_node(node):
            texts += [f"{k}={getattr(v, 'value', v)!r}" for k, v in materialization.metadata.items()]
    return texts


def client_side_log(caplog: pytest.LogCaptureFixture, *also_skip: str) -> str:
    """Every captured log line except the test HTTP server's own access log (werkzeug: it plays the remote
    side, which of course sees the request it received) and the loggers named in `also_skip`."""
    skipped = ("werkzeug", *also_skip)
    return "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith(skipped))


def assert_no_secret(texts: Iterable[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret {secret!r} leaked into: {text[:300]!r}"
