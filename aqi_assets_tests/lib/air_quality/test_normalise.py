"""Parsing, quarantine and merging of snapshots into a real DuckDB file."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from aqi_assets.lib.air_quality.generator import Quirks, generate_records, generate_snapshot
from aqi_assets.lib.air_quality.normalise import SnapshotFormatError, merge_snapshot
from aqi_assets.lib.readings.schema import readings_connection

NOW = datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc)


def write_snapshot(directory: Path, name: str, body: bytes | str | list) -> Path:
    if isinstance(body, list):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    path = directory / name
    path.write_bytes(gzip.compress(body))
    return path


def record(sensor_id: int, timestamp: str, values: list[tuple[str, object]], **extra: object) -> dict:
    entry = {
        "id": extra.pop("measurement_id", sensor_id * 10),
        "sampling_rate": None,
        "timestamp": timestamp,
        "location": extra.pop("location", {"id": 7, "latitude": "48.1", "longitude": "11.5", "altitude": "",
                                           "country": "DE"}),
        "sensor": {"id": sensor_id, "pin": "1", "sensor_type": {"id": 14, "name": "SDS011", "manufacturer": "Nova"}},
        "sensordatavalues": [{"id": i, "value": v, "value_type": t} for i, (t, v) in enumerate(values)],
    }
    entry.update(extra)
    return entry


@pytest.fixture
def db(tmp_path: Path):
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        yield connection


def rows(connection: duckdb.DuckDBPyConnection, sql: str, *params: object) -> list[tuple]:
    return connection.execute(sql, list(params)).fetchall()


def test_real_fragment_exact_values(db, tmp_path, real_records) -> None:
    path = write_snapshot(tmp_path, "real.json.gz", real_records)
    stats = merge_snapshot(db, path, "5min", now=NOW)
    assert (stats.records, stats.readings, stats.rows_inserted, stats.values_rejected) == (243, 243, 243, 0)
    assert rows(db, "SELECT count(*), count(pm10), count(pm25), count(humidity) FROM aqi_readings") == [
        (243, 140, 140, 101)
    ]
    # The SDS011 with P1 665.53 / P2 234.67: P1 is PM10, P2 is PM2.5.
    assert rows(
        db,
        'SELECT "timestamp", location_id, country, latitude, longitude, indoor, sensor_type, pm10, pm25, '
        "daqi_pm25, daqi_pm10, daqi, daqi_band, aqi_us_pm25, aqi_us_pm10, aqi_us, aqi_us_category, aqi_us_beyond "
        "FROM aqi_readings WHERE sensor_id = 13554",
    ) == [(datetime(2019, 4, 16, 14, 22, 53), 6848, "DE", 47.656, 9.464, False, "SDS011", 665.53, 234.67,
           10, 10, 10, "Very High", 319, 500, 500,  # PM2.5 234.67 → 234.6 → 301 + 199·9.1/99.9 = 319.1
           "Hazardous", True)]
    # A DHT22: humidity and temperature, no PM, so no index.
    assert rows(db, "SELECT humidity, temperature, pm10, daqi, aqi_us FROM aqi_readings WHERE sensor_id = 468") == [
        (64.2, 21.7, None, None, None)
    ]
    # pressure_at_sealevel arrives as a JSON number without an id.
    assert rows(db, "SELECT pressure, pressure_at_sealevel FROM aqi_readings WHERE sensor_id = 19933") == [
        (100129.73, 102204.66)
    ]
    assert rows(db, "SELECT status, records, rows_inserted FROM snapshot_log") == [("merged", 243, 243)]


def test_bad_values_are_quarantined_with_a_reason_and_the_rest_kept(db, tmp_path) -> None:
    records = [
        record(1, "2026-11-27 12:00:00", [("P1", "1999.90"), ("P2", "12.30")]),
        record(2, "2026-11-27 12:00:00", [("P1", "nan"), ("P2", "")]),
        record(3, "2026-11-27 12:00:00", [("P1", "-3.0"), ("P2", "999.9"), ("P0", "inf")]),
        record(4, "2026-11-27 12:00:00", [("P1", "1e400"), ("P2", None), ("humidity", "120")]),
        record(5, "2026-11-27 12:00:00", [("temperature", "-12.5"), ("pressure", "20000"), ("noise_LAeq", "41.2")]),
        record(6, "2026-11-27 12:00:00", [("P1", "x" * 2000)]),
    ]
    stats = merge_snapshot(db, write_snapshot(tmp_path, "s.json.gz", records), "5min", now=NOW)
    assert stats.readings == 2 and stats.records_without_values == 4  # records 2, 3, 4, 6 kept no value
    rejected = rows(
        db, "SELECT sensor_id, value_type, raw_value, reason FROM rejected_values ORDER BY sensor_id, value_type"
    )
    assert rejected == [
        (1, "P1", "1999.90", "out of range: P1 ≥ 1900"),
        (2, "P1", "nan", "NaN"),
        (2, "P2", "", "non-numeric"),
        (3, "P0", "inf", "infinite"),
        (3, "P1", "-3.0", "negative"),
        (3, "P2", "999.9", "at the sensor's measuring limit"),  # the SDS011's full scale
        (4, "P1", "1e400", "infinite"),
        (4, "P2", None, "missing value"),
        (4, "humidity", "120", "out of range: humidity ≥ 100"),
        (5, "pressure", "20000", "out of range: pressure < 30000"),  # station pressure: 20 kPa is above 11 km
        (6, "P1", "x" * 500 + "…", "value too long"),
    ]
    assert rows(db, "SELECT sensor_id, pm10, pm25, daqi, aqi_us FROM aqi_readings ORDER BY sensor_id") == [
        (1, None, 12.3, 2, 57), (5, None, None, None, None)
    ]
    # Negative temperatures are real; unknown value types are kept as text.
    assert rows(db, "SELECT temperature, pressure, other_values FROM aqi_readings WHERE sensor_id = 5") == [
        (-12.5, None, {"noise_LAeq": "41.2"})
    ]


def test_record_level_problems_never_abort_the_snapshot(db, tmp_path) -> None:
    good = record(10, "2026-11-27 12:00:00", [("P1", "10"), ("P2", "5")])
    records = [
        good,
        record(11, "2026-11-27 12:00:00", [("P1", "10")], sensor={}),  # no sensor id
        record(12, "16.04.2019 14:22", [("P1", "10")]),  # unknown timestamp format
        record(13, "2026-11-27 13:00:00", [("P1", "10")]),  # 55 minutes in the future
        record(14, "2026-11-27T12:00:00Z", [("P1", "20")]),  # ISO form: accepted
        record(15, "2026-11-27 12:00:00", [("P2", "3")], location={"id": 9, "latitude": "123.0", "longitude": "11"}),
        {"id": 99, "sensordatavalues": [{"value": "1", "value_type": "P1"}]},  # no sensor, no timestamp
    ]
    stats = merge_snapshot(db, write_snapshot(tmp_path, "s.json.gz", records), "5min", now=NOW)
    assert stats.readings == 3
    assert rows(db, "SELECT sensor_id FROM aqi_readings ORDER BY 1") == [(10,), (14,), (15,)]
    assert rows(db, "SELECT sensor_id, value_type, reason FROM rejected_values WHERE sensor_id IS NOT NULL "
                "ORDER BY sensor_id") == [
        (12, "P1", "missing or invalid timestamp"),
        (13, "P1", "timestamp in the future"),
        (15, "location", "coordinates out of range"),
    ]
    reasons = sorted(r[0] for r in rows(db, "SELECT reason FROM rejected_values"))
    assert reasons == sorted([
        "missing or invalid sensor id", "missing or invalid sensor id", "missing or invalid timestamp",
        "timestamp in the future", "coordinates out of range",
    ])
    assert rows(db, "SELECT latitude, longitude FROM aqi_readings WHERE sensor_id = 15") == [(None, None)]


def test_malformed_record_shapes_take_the_lenient_path_and_are_quarantined(db, tmp_path) -> None:
    records = [
        record(20, "2026-11-27 12:00:00", [("P1", "10"), ("P2", "5")]),
        {**record(21, "2026-11-27 12:00:00", []), "sensordatavalues": "oops"},
        "not an object",
        {**record(22, "2026-11-27 12:00:00", [("P2", 7.5)]), "location": 5},
    ]
    stats = merge_snapshot(db, write_snapshot(tmp_path, "s.json.gz", records), "5min", now=NOW)
    assert stats.lenient_parse
    assert rows(db, "SELECT sensor_id, pm25 FROM aqi_readings ORDER BY 1") == [(20, 5.0)]
    assert sorted(rows(db, "SELECT reason, raw_value FROM rejected_values")) == [
        ("location is not an object", "7.5"),  # the value of that record is kept too
        ("location is not an object", "location is not an object: 5"),
        ("record is not an object", 'record is not an object: "not an object"'),
        ("sensordatavalues is not an array", 'sensordatavalues is not an array: "oops"'),
    ]


def test_duplicate_records_highest_measurement_id_wins(db, tmp_path) -> None:
    first = record(30, "2026-11-27 12:00:00", [("P2", "10")], measurement_id=100)
    later = record(30, "2026-11-27 12:00:00", [("P2", "40")], measurement_id=101)
    stats = merge_snapshot(db, write_snapshot(tmp_path, "s.json.gz", [later, first]), "5min", now=NOW)
    assert stats.readings == 1
    assert rows(db, "SELECT measurement_id, pm25 FROM aqi_readings") == [(101, 40.0)]
    assert rows(db, "SELECT raw_value, reason FROM rejected_values") == [
        ("10", "duplicate record: superseded by the one with the highest measurement id")
    ]


def test_rerun_adds_nothing_and_a_later_snapshot_appends(db, tmp_path) -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
    body = generate_snapshot(500, seed=3, at=at)
    first = write_snapshot(tmp_path, "a.json.gz", body)
    stats = merge_snapshot(db, first, "5min", now=NOW)
    assert stats.rows_inserted == stats.readings > 400
    again = merge_snapshot(db, first, "5min", now=NOW)  # the same file: skipped through snapshot_log
    assert (again.records, again.rows_inserted) == (0, 0)
    copy = merge_snapshot(db, write_snapshot(tmp_path, "a-copy.json.gz", body), "5min", now=NOW)
    assert copy.rows_inserted == 0 and copy.rows_duplicate == stats.readings  # same readings, other file
    later = generate_records(500, seed=3, at=datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc))
    after = merge_snapshot(db, write_snapshot(tmp_path, "b.json.gz", later), "5min", now=NOW)
    assert after.rows_inserted == after.readings
    total = rows(db, "SELECT count(*) FROM aqi_readings")[0][0]
    assert total == stats.readings + after.readings
    assert rows(db, 'SELECT count(*) FROM (SELECT DISTINCT period, sensor_id, "timestamp" FROM aqi_readings)') == [
        (total,)
    ]


def test_empty_array_completes_with_zero_rows(db, tmp_path) -> None:
    stats = merge_snapshot(db, write_snapshot(tmp_path, "e.json.gz", "[]"), "24h", now=NOW)
    assert (stats.records, stats.readings, stats.rows_inserted) == (0, 0, 0)
    assert rows(db, "SELECT period, status, records FROM snapshot_log") == [("24h", "merged", 0)]


@pytest.mark.parametrize(
    "body",
    ["", "[{\"id\": 1, \"sensor\": ", "<html><body>502 Bad Gateway</body></html>", "[{\"id\": 1}] trailing",
     "{\"not\": \"an array\"}"],
    ids=["empty", "truncated", "html", "trailing-garbage", "object"],
)
def test_unparseable_bodies_raise_and_write_nothing(db, tmp_path, body: str) -> None:
    merge_snapshot(db, write_snapshot(tmp_path, "ok.json.gz", generate_snapshot(50, seed=1)), "5min", now=NOW)
    before = rows(db, "SELECT count(*) FROM aqi_readings")
    path = tmp_path / "bad.json.gz"
    path.write_bytes(gzip.compress(body.encode()) if body else b"")
    with pytest.raises(SnapshotFormatError, match=r"bad\.json\.gz"):
        merge_snapshot(db, path, "5min", now=NOW)
    assert rows(db, "SELECT count(*) FROM aqi_readings") == before
    assert rows(db, "SELECT count(*) FROM snapshot_log") == [(1,)]


def test_24h_values_as_json_numbers(db, tmp_path) -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
    records = generate_records(200, seed=5, at=at, quirks=Quirks(numeric_values=1.0, sentinel=0, negative=0,
                                                                 non_numeric=0, empty_values=0, duplicate=0))
    stats = merge_snapshot(db, write_snapshot(tmp_path, "d.json.gz", records), "24h", now=NOW)
    assert stats.readings == 200 and stats.values_rejected == 0
    pm = [r for r in records if r["sensordatavalues"] and r["sensordatavalues"][0]["value_type"] == "P1"]
    expected = {r["sensor"]["id"]: r["sensordatavalues"][0]["value"] for r in pm}
    stored = dict(rows(db, "SELECT sensor_id, pm10 FROM aqi_readings WHERE pm10 IS NOT NULL"))
    assert stored == expected


def test_unknown_period_is_refused(db, tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown period"):
        merge_snapshot(db, write_snapshot(tmp_path, "x.json.gz", "[]"), "5min'; DROP TABLE aqi_readings; --")
    assert rows(db, "SELECT count(*) FROM aqi_readings") == [(0,)]


def test_a_well_formed_duplicate_beats_a_malformed_one(db, tmp_path) -> None:
    good = record(40, "2026-11-27 12:00:00", [("P2", "10")], measurement_id=100)
    broken = {**record(40, "2026-11-27 12:00:00", [("P2", "99")], measurement_id=200), "location": "nowhere"}
    merge_snapshot(db, write_snapshot(tmp_path, "s.json.gz", [good, broken]), "5min", now=NOW)
    assert rows(db, "SELECT measurement_id, pm25 FROM aqi_readings") == [(100, 10.0)]
    assert sorted(rows(db, "SELECT scope, reason FROM rejected_values")) == [
        ("record", "location is not an object"),
        ("value", "location is not an object"),
    ]
