"""The sinks take their columns from the readings contract and their periods from the registry: what the
contract and the registry say reaches Timestream records and InfluxDB lines with no other edit."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.lib.readings import schema
from aqi_assets.lib.readings.periods import PERIODS, Feed, Period
from aqi_assets.lib.readings.schema import READINGS_COLUMNS, Column, SinkRole, columns_where, readings_connection
from aqi_assets.lib.sinks.columns import SinkContractError, sink_columns
from aqi_assets.lib.sinks.influx_writer import FIELD_TYPES, TAG_COLUMNS, InfluxWriter, sync_to_influxdb
from aqi_assets.lib.sinks.sync_state import (
    READING_COLUMNS,
    RefusedReading,
    count_pending,
    pending_readings,
    save_sync_outcome,
)
from aqi_assets.lib.sinks.timestream_records import (
    DIMENSION_COLUMNS,
    MEASURE_TYPES,
    TableWindow,
    epoch_ms,
    merge_common_attributes,
)
from aqi_assets.lib.sinks.timestream_writer import TimestreamWriter, sync_to_timestream

OPEN_WINDOW = TableWindow(memory_store_hours=24, magnetic_store_writes=True)


class RecordingTimestream:
    """A Timestream client that ingests every record and keeps each one as the service would store it."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write_records(self, **request: Any) -> dict[str, Any]:
        common = request.get("CommonAttributes", {})
        self.records.extend(merge_common_attributes(common, record) for record in request["Records"])
        return {"RecordsIngested": {"Total": len(request["Records"])}, "ResponseMetadata": {"RetryAttempts": 0}}


class RecordingInflux:
    """An InfluxDB that takes every line and keeps it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, body: str) -> None:
        self.lines.extend(body.split("\n"))


def opener(db_path: Path) -> Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]:
    return lambda: readings_connection(db_path)


def sync_both(db_path: Path) -> tuple[RecordingTimestream, RecordingInflux]:
    timestream, influx = RecordingTimestream(), RecordingInflux()
    ts_summary = sync_to_timestream(opener(db_path), TimestreamWriter(timestream, "db", "table"), OPEN_WINDOW)
    influx_summary = sync_to_influxdb(opener(db_path), InfluxWriter(influx))
    assert ts_summary.failed == ts_summary.skipped == influx_summary.failed == influx_summary.skipped == 0
    return timestream, influx


def dimensions(record: dict[str, Any]) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in record["Dimensions"]}


def measures(record: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {m["Name"]: (m["Value"], m["Type"]) for m in record["MeasureValues"]}


def tags_of(line: str) -> dict[str, str]:
    head = line.split(" ", 1)[0]
    return dict(part.split("=", 1) for part in head.split(",")[1:])


def fields_of(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split(" ")[1].split(","))


# ------------------------------------------------------------------------- columns


def test_the_sinks_columns_are_what_the_contract_says() -> None:
    columns = sink_columns()
    assert columns.dimensions == columns_where(SinkRole.DIMENSION)
    assert columns.dimensions == ("period", "sensor_id", "location_id", "country", "indoor", "sensor_type")
    assert DIMENSION_COLUMNS == TAG_COLUMNS == columns.dimensions
    assert tuple(columns.measures) == columns_where(SinkRole.MEASURE)
    # Every integer type becomes BIGINT; doubles, text and booleans keep their type.
    timestream_type = {"DOUBLE": "DOUBLE", "TINYINT": "BIGINT", "SMALLINT": "BIGINT", "BIGINT": "BIGINT",
                       "VARCHAR": "VARCHAR", "BOOLEAN": "BOOLEAN"}  # fmt: skip
    assert columns.measures == {
        c.name: timestream_type[c.sql_type] for c in READINGS_COLUMNS if c.sink is SinkRole.MEASURE
    }
    assert {name: MEASURE_TYPES[name] for name in ("pm25", "measurement_id", "daqi", "aqi_us", "daqi_band")} == {
        "pm25": "DOUBLE", "measurement_id": "BIGINT", "daqi": "BIGINT", "aqi_us": "BIGINT", "daqi_band": "VARCHAR"
    }  # fmt: skip
    assert MEASURE_TYPES["aqi_us_beyond"] == "BOOLEAN"
    field_type = {"DOUBLE": float, "BIGINT": int, "VARCHAR": str, "BOOLEAN": bool}
    assert dict(FIELD_TYPES) == {name: field_type[kind] for name, kind in MEASURE_TYPES.items()}
    # Carried: every column with a sink role, in table order; free-form and bookkeeping columns stay behind.
    assert READING_COLUMNS == columns.carried == columns_where(*SinkRole)
    assert not {"other_values", "ingest_seq", "no_index_reason"} & set(columns.carried)
    assert (columns.time, columns.version) == ("timestamp", "ingested_at")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (Column("spectrum", "DOUBLE[]", "a list", SinkRole.MEASURE), r"'spectrum' \(measure\) has SQL type 'DOUBLE\["),
        (Column("logged_at", "TIMESTAMP", "when", SinkRole.DIMENSION), r"'logged_at' \(dimension\) has SQL type"),
        (Column("ts_raw", "DOUBLE", "reserved prefix", SinkRole.MEASURE), "'ts_raw' .* not a valid Timestream"),
        (Column("time", "VARCHAR", "reserved name", SinkRole.DIMENSION), "'time' .* not a valid Timestream"),
    ],
)
def test_a_column_the_sinks_cannot_carry_is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch, extra: Column, message: str
) -> None:
    monkeypatch.setattr(schema, "READINGS_COLUMNS", (*READINGS_COLUMNS, extra))
    with pytest.raises(SinkContractError, match=message):
        sink_columns()


def test_a_column_the_sinks_cannot_carry_fails_the_import() -> None:
    """Loud when the code location loads, not at the first sync."""
    program = (
        "from aqi_assets.lib.readings import schema\n"
        "schema.READINGS_COLUMNS = (*schema.READINGS_COLUMNS,"
        " schema.Column('spectrum', 'DOUBLE[]', 'a list', schema.SinkRole.MEASURE))\n"
        "import aqi_assets.lib.sinks.influx_writer\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SinkContractError" in result.stderr and "'spectrum' (measure) has SQL type 'DOUBLE[]'" in result.stderr


def test_a_column_added_to_the_contract_reaches_both_sinks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    extended = (
        *READINGS_COLUMNS,
        Column("pm25_corrected", "DOUBLE", "PM2.5 after humidity correction", SinkRole.MEASURE),
        Column("site_kind", "VARCHAR", "urban, rural, traffic", SinkRole.DIMENSION),
        Column("calibration_note", "VARCHAR", "free text, stays in DuckDB"),
    )
    monkeypatch.setattr(schema, "READINGS_COLUMNS", extended)
    db_path = tmp_path / "aqi.duckdb"
    readings = synthetic_readings(6, now=datetime.now(timezone.utc), per_sensor=2)
    for index, reading in enumerate(readings):
        reading.update(pm25_corrected=10.5 + index, site_kind="urban")
    with readings_connection(db_path) as connection:
        # The one edit was the contract: the table has the new columns with no migration written by hand.
        names = {row[0] for row in connection.execute("DESCRIBE aqi_readings").fetchall()}
        assert {"pm25_corrected", "site_kind", "calibration_note"} <= names
        insert_readings(connection, readings)
        connection.execute("UPDATE aqi_readings SET calibration_note = 'checked'")

    timestream, influx = sync_both(db_path)
    assert len(timestream.records) == len(influx.lines) == len(readings)
    by_measurement = {int(measures(r)["measurement_id"][0]): r for r in timestream.records}
    for reading in readings:
        record = by_measurement[reading["measurement_id"]]
        assert measures(record)["pm25_corrected"] == (repr(reading["pm25_corrected"]), "DOUBLE")
        assert dimensions(record)["site_kind"] == "urban"
        assert "calibration_note" not in measures(record) | dimensions(record)
    for line in influx.lines:
        assert tags_of(line)["site_kind"] == "urban"
        assert float(fields_of(line)["pm25_corrected"]) in {r["pm25_corrected"] for r in readings}
        assert "calibration_note" not in line


# ------------------------------------------------------------------------- periods


def test_a_period_registered_for_the_sinks_is_synced_and_one_without_is_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db_path = tmp_path / "aqi.duckdb"
    now = datetime.now(timezone.utc)
    five_min = synthetic_readings(4, now=now, per_sensor=2, seed=1)
    test_rows = [{**r, "period": "test"} for r in synthetic_readings(6, now=now, per_sensor=3, seed=2)]
    tier_only = [{**r, "period": "tieronly"} for r in synthetic_readings(4, now=now, per_sensor=2, seed=3)]
    with readings_connection(db_path) as connection:
        insert_readings(connection, five_min + test_rows + tier_only)
        # The registry is read at each scan: before 'test' is registered, its rows are not the sinks'.
        assert count_pending(connection, "influxdb") == len(five_min)

    monkeypatch.setitem(
        PERIODS, "test", Period(name="test", source="test", averaging="test", feeds=frozenset({Feed.SINKS, Feed.TIER}))
    )
    monkeypatch.setitem(
        PERIODS, "tieronly", Period(name="tieronly", source="test", averaging="test", feeds=frozenset({Feed.TIER}))
    )
    with readings_connection(db_path) as connection:
        for target in ("influxdb", "timestream"):
            assert count_pending(connection, target) == len(five_min) + len(test_rows)
            assert {r["period"] for r in pending_readings(connection, target)} == {"5min", "test"}

    timestream, influx = sync_both(db_path)
    sent_periods = [dimensions(r)["period"] for r in timestream.records]
    assert sorted(sent_periods) == sorted(r["period"] for r in five_min + test_rows)
    test_records = [
        (dimensions(r)["sensor_id"], r["Time"]) for r in timestream.records if dimensions(r)["period"] == "test"
    ]
    assert sorted(test_records) == sorted((str(r["sensor_id"]), str(epoch_ms(r["timestamp"]))) for r in test_rows)
    assert sorted(tags_of(line)["period"] for line in influx.lines) == sorted(sent_periods)
    assert not [line for line in influx.lines if "period=tieronly" in line]
    with readings_connection(db_path) as connection:
        for target in ("influxdb", "timestream"):
            assert count_pending(connection, target) == 0
            marks = connection.execute(f"SELECT DISTINCT period FROM {target}_sync_state ORDER BY 1").fetchall()
            assert marks == [("5min",), ("test",)]
        # Not the sinks' rows: left alone, not marked as synced.
        assert connection.execute("SELECT count(*) FROM aqi_readings WHERE period = 'tieronly'").fetchall() == [
            (len(tier_only),)
        ]


# ------------------------------------------------------------------------- pending counts and transactions


def test_pending_counts_by_time_range_add_up_and_need_no_earlier_sync(tmp_path: Path) -> None:
    """Retention asks per day: the days add up to the whole count, also on a file never synced (no state
    table yet) opened read-only, and after a partial sync."""
    db_path = tmp_path / "aqi.duckdb"
    t0 = datetime(2026, 3, 1, 22, 0)
    rows = synthetic_readings(24, now=t0, per_sensor=12, step_minutes=30)  # 6 hours back from 21:59, 2 sensors
    rows += synthetic_readings(6, now=t0 + timedelta(hours=3), per_sensor=6, step_minutes=30, seed=9)
    for seq, row in enumerate(rows, start=1):
        row["ingest_seq"] = seq
    with readings_connection(db_path) as connection:
        insert_readings(connection, rows)
    days = sorted({r["timestamp"].date() for r in rows})
    assert len(days) == 2

    def by_day(connection: duckdb.DuckDBPyConnection, target: str) -> list[int]:
        bounds = [datetime.combine(day, datetime.min.time()) for day in (*days, days[-1] + timedelta(days=1))]
        return [count_pending(connection, target, since=a, until=b) for a, b in itertools.pairwise(bounds)]

    with readings_connection(db_path, read_only=True) as connection:
        assert by_day(connection, "influxdb") == [sum(r["timestamp"].date() == d for r in rows) for d in days]
        assert sum(by_day(connection, "influxdb")) == count_pending(connection, "influxdb") == len(rows)

    sync_to_influxdb(opener(db_path), InfluxWriter(RecordingInflux()), limit=10)
    with readings_connection(db_path, read_only=True) as connection:
        assert count_pending(connection, "influxdb") == len(rows) - 10
        assert sum(by_day(connection, "influxdb")) == len(rows) - 10


def test_a_failed_outcome_save_leaves_nothing_half_written(tmp_path: Path) -> None:
    """Refusals, watermarks and the scan start commit together: a failure after the refusals were written
    rolls them back too, and the error reaches the caller."""
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        refused = RefusedReading(("5min", 1, datetime(2026, 3, 1)), "rejected", "type conflict")
        broken_watermark = {("5min", 1): (3, None)}  # synced_through is NOT NULL: fails after the refusal insert
        with pytest.raises(duckdb.ConstraintException):
            save_sync_outcome(connection, "influxdb", broken_watermark, [refused], finished_below=4)  # type: ignore[arg-type]
        assert connection.execute("SELECT count(*) FROM influxdb_rejected").fetchall() == [(0,)]
        assert connection.execute("SELECT count(*) FROM influxdb_sync_state").fetchall() == [(0,)]
        assert connection.execute("SELECT count(*) FROM sync_progress").fetchall() == [(0,)]
        save_sync_outcome(connection, "influxdb", {("5min", 1): (3, datetime(2026, 3, 1))}, [refused], finished_below=4)
        assert connection.execute("SELECT count(*) FROM influxdb_rejected").fetchall() == [(1,)]
