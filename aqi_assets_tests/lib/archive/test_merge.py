"""Merging archive days: real files, every kind of bad CSV, exactly once, and the snapshots' quarantine rules."""

from __future__ import annotations

import gzip
import json
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest

from aqi_assets.lib.air_quality.normalise import merge_snapshot
from aqi_assets.lib.archive import merge as archive_merge
from aqi_assets.lib.archive.merge import DUPLICATE_ROW_REASON, MALFORMED_ROW_REASON, merge_archive_day
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.archive_server import REAL_BME280, REAL_SDS011, day_files
from aqi_assets_tests.support.samples import sample_bytes

DAY = date(2025, 10, 15)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
SDS_HEADER = "sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2"


def _write(directory: Path, files: dict[str, bytes | str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, body in files.items():
        path = directory / name
        path.write_bytes(body.encode() if isinstance(body, str) else body)
        paths.append(path)
    return paths


def _tables(connection: duckdb.DuckDBPyConnection) -> tuple[list, list, list]:
    readings = connection.execute('SELECT * FROM aqi_readings ORDER BY sensor_id, "timestamp"').fetchall()
    rejected = connection.execute("SELECT * FROM rejected_values ORDER BY ALL").fetchall()
    logged = connection.execute("SELECT file, sha256, day FROM archive_files ORDER BY file").fetchall()
    return readings, rejected, logged


def test_the_real_archive_files_become_readings_with_indices(tmp_path: Path) -> None:
    paths = _write(tmp_path / "lake", {
        "2025-10-15_sds011_sensor_82312.csv": sample_bytes(REAL_SDS011),
        "2025-10-15_bme280_sensor_82313.csv": sample_bytes(REAL_BME280),
    })
    with readings_connection(tmp_path / "h.duckdb") as connection:
        stats = merge_archive_day(connection, DAY, paths, now=NOW, run_id="r1")
        # 582 and 583 lines, one header each; every row of these real files is valid.
        assert (stats.files, stats.measurements, stats.rows_inserted, stats.sensors) == (2, 581 + 582, 1163, 2)
        assert stats.values_quarantined == 0 and stats.records_quarantined == 0
        first = connection.execute(
            "SELECT period, sensor_type, location_id, latitude, pm10, pm25, daqi, aqi_us, snapshot, indoor "
            "FROM aqi_readings WHERE sensor_id = 82312 ORDER BY \"timestamp\" LIMIT 1"
        ).fetchone()
        assert first[:6] == ("archive", "SDS011", 88882, 67.5550352, 45.83, 5.55)
        assert first[6] is not None and first[7] is not None  # indices from the same module as the snapshots
        assert first[8:] == ("2025-10-15_sds011_sensor_82312.csv", False)
        climate = connection.execute(
            "SELECT pressure, pressure_at_sealevel, temperature, humidity, pm25 FROM aqi_readings "
            "WHERE sensor_id = 82313 ORDER BY \"timestamp\" LIMIT 1"
        ).fetchone()
        assert climate == (98610.97, None, 4.34, 100.0, None)
        assert connection.execute("SELECT count(*) FROM archive_log WHERE run_id = 'r1'").fetchone()[0] == 1


def test_every_kind_of_bad_csv_is_handled_and_counted_without_aborting_the_day(tmp_path: Path) -> None:
    files = {
        # malformed row (more fields than the header), a second header in the middle, both timestamp
        # formats, decimal commas, a non-numeric and a negative value, a duplicate row, a blank line
        "2025-10-15_sds011_sensor_1.csv": "\r\n".join([
            SDS_HEADER,
            "1;SDS011;10;50,5;8,25;2025-10-15T00:00:21;12,5;;;7,25;;",
            "1;SDS011;10;50.5;8.25;2025-10-15 00:05:21;13.5;;;8.0;;",
            "1;SDS011;10;50.5;8.25;2025-10-15T00:10:21;13.5;;;8.0;;;;;;;99;extra",
            SDS_HEADER,
            "1;SDS011;10;50.5;8.25;2025-10-15T00:15:21;abc;;;-3;;",
            "",
            "1;SDS011;10;50.5;8.25;2025-10-15T00:05:21;99;;;99;;",
            "1;SDS011;10;50.5;8.25;not a time;1;;;1;;",
        ]) + "\r\n",
        # a missing column: no P2
        "2025-10-15_sds011_sensor_2.csv": "sensor_id;sensor_type;location;lat;lon;timestamp;P1\n"
                                          "2;SDS011;20;51;9;2025-10-15T01:00:00;20\n",
        "2025-10-15_sds011_sensor_3.csv": "",  # empty file
        "2025-10-15_sds011_sensor_4.csv": SDS_HEADER + "\n",  # header only
        "2025-10-15_dht22_sensor_5.csv.gz": gzip.compress(
            b"sensor_id;sensor_type;location;lat;lon;timestamp;temperature;humidity\n"
            b"5;DHT22;50;52;10;2025-10-15T02:00:00;21.5;150\n"
        ),
        "2025-10-15_sds011_sensor_6.csv": b"6;SDS011;60;1;1;2025-10-15T03:00:00;5;;;5;;\n",  # no header at all
        "2025-10-15_sds011_sensor_7.csv": SDS_HEADER.encode() + b"\n7;SDS011;70;1;1;2025-10-15T03:00:00;5\xff;;;5;;\n",
        "2025-10-15_sds011_sensor_8.csv.gz": gzip.compress(SDS_HEADER.encode() + b"\n8;SDS011;1;1;1;x")[:-12],
    }
    paths = _write(tmp_path / "lake", files)
    with readings_connection(tmp_path / "h.duckdb") as connection:
        stats = merge_archive_day(connection, DAY, paths, now=NOW)
        problems = stats.details
        assert problems["malformed_rows"] == 1
        assert problems["repeated_headers"] == 1
        assert problems["rows_with_space_timestamps"] == 1
        assert problems["rows_with_decimal_commas"] == 1
        assert problems["empty_files"] == 1
        assert problems["header_only_files"] == 1
        assert problems["files_missing_columns"] == 1
        assert problems["files_without_header"] == 1
        assert problems["duplicate_rows"] == 1
        assert problems["invalid_timestamps"] == 1
        assert problems["files_with_invalid_utf8"] == 1
        assert problems["unreadable_gzip_files"] == 1  # truncated: left in the lake, not merged, not logged
        assert stats.files == 7  # of 8: the broken gzip file is skipped
        assert connection.execute("SELECT count(*) FROM archive_files WHERE file LIKE '%_8.csv.gz'").fetchone()[0] == 0
        sensor_1 = connection.execute(
            'SELECT strftime("timestamp", \'%H:%M:%S\'), latitude, pm10, pm25 FROM aqi_readings '
            'WHERE sensor_id = 1 ORDER BY "timestamp"'
        ).fetchall()
        assert sensor_1 == [
            ("00:00:21", 50.5, 12.5, 7.25),  # decimal commas read as points
            ("00:05:21", 50.5, 13.5, 8.0),  # the space format; the later duplicate (99) is quarantined
        ]
        # 00:15:21 had both values quarantined: no value kept, so no reading (as for snapshots); the values are
        # in quarantine with their reasons.
        assert connection.execute(
            """SELECT count(*) FROM rejected_values WHERE sensor_id = 1 AND period = 'archive'
               AND strftime("timestamp", '%H:%M:%S') = '00:15:21'"""
        ).fetchone()[0] == 2
        assert connection.execute("SELECT pm10, pm25 FROM aqi_readings WHERE sensor_id = 2").fetchone() == (20.0, None)
        assert connection.execute(
            "SELECT temperature, humidity FROM aqi_readings WHERE sensor_id = 5"
        ).fetchone() == (21.5, None)
        reasons = dict(
            connection.execute(
                "SELECT coalesce(value_type, '-') || ' ' || reason, count(*) FROM rejected_values GROUP BY 1"
            ).fetchall()
        )
        assert reasons == {
            "P1 non-numeric": 2,  # 'abc' and '5\ufffd' (the invalid byte, replaced)
            "P2 negative": 1,
            "humidity out of range: humidity ≥ 100": 1,
            f"- {MALFORMED_ROW_REASON}": 1,
            f"- {DUPLICATE_ROW_REASON}": 1,
            "- missing or invalid timestamp": 1,
            "- no header line before this row": 1,
        }
        assert stats.measurements == 6 and stats.sensors == 4


def test_a_day_is_merged_once_and_a_crash_leaves_nothing_half_merged(tmp_path: Path, monkeypatch) -> None:
    paths = _write(tmp_path / "lake", day_files(DAY))
    with readings_connection(tmp_path / "h.duckdb") as connection:
        real_insert = archive_merge._rejected_rows_sql

        def crash(*args, **kwargs):
            raise RuntimeError("simulated crash after the readings were inserted")

        monkeypatch.setattr(archive_merge, "_rejected_rows_sql", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            merge_archive_day(connection, DAY, paths, now=NOW)
        assert _tables(connection) == ([], [], [])
        assert connection.execute("SELECT count(*) FROM archive_log").fetchone()[0] == 0
        monkeypatch.setattr(archive_merge, "_rejected_rows_sql", real_insert)

        first = merge_archive_day(connection, DAY, paths, now=NOW)
        assert first.files == 6 and first.rows_inserted > 1000
        before = _tables(connection)
        again = merge_archive_day(connection, DAY, paths, now=NOW)
        assert (again.files, again.files_already_merged, again.rows_inserted) == (0, 6, 0)
        assert _tables(connection) == before
        # A new file of the same day adds only its own rows; overlapping rows are already known.
        extra = _write(tmp_path / "lake", {"2025-10-15_sds011_sensor_9.csv": SDS_HEADER + "\n"
                                           "9;SDS011;90;1;1;2025-10-15T05:00:00;4;;;2;;\n"})
        more = merge_archive_day(connection, DAY, [*paths, *extra], now=NOW)
        assert (more.files, more.files_already_merged, more.rows_inserted) == (1, 6, 1)
        assert json.loads(connection.execute("SELECT max(details) FROM archive_log").fetchone()[0]) is not None


def test_values_get_the_same_verdicts_as_in_a_snapshot(tmp_path: Path) -> None:
    values = {"P1": ["-5", "2000", "nan", "abc", "1e999", "12.5"], "P2": ["899.9", "900", "", "1", "2", "3"]}
    csv_rows = [SDS_HEADER] + [
        f"1;SDS011;1;1;1;2025-10-15T00:{i:02d}:00;{p1};;;{p2};;" for i, (p1, p2) in
        enumerate(zip(values["P1"], values["P2"], strict=True))
    ]
    paths = _write(tmp_path / "lake", {"2025-10-15_sds011_sensor_1.csv": "\n".join(csv_rows) + "\n"})
    records = [
        {"id": i + 1, "timestamp": f"2025-10-15 00:{i:02d}:00", "location": {"id": 1, "country": "DE"},
         "sensor": {"id": 1, "sensor_type": {"name": "SDS011"}},
         "sensordatavalues": [{"value_type": "P1", "value": p1}] + ([{"value_type": "P2", "value": p2}] if p2 else [])}
        for i, (p1, p2) in enumerate(zip(values["P1"], values["P2"], strict=True))
    ]
    snapshot = tmp_path / "5min_20251015T000000Z_000000000000.json.gz"
    snapshot.write_bytes(gzip.compress(json.dumps(records).encode()))
    with readings_connection(tmp_path / "h.duckdb") as connection:
        merge_archive_day(connection, DAY, paths, now=NOW)
        merge_snapshot(connection, snapshot, "5min", now=NOW)
        verdicts = connection.execute(
            """
            SELECT period, "timestamp", value_type, reason FROM rejected_values ORDER BY 2, 3, 1
            """
        ).fetchall()
        by_period = {p: [(t, v, r) for q, t, v, r in verdicts if q == p] for p in ("archive", "5min")}
        assert by_period["archive"] == by_period["5min"]
        assert len(by_period["archive"]) == 6  # P1: 5 bad values; P2: 900
        kept = connection.execute(
            "SELECT period, pm10, pm25, aqi_us FROM aqi_readings ORDER BY \"timestamp\", period"
        ).fetchall()
        assert [row[1:] for row in kept if row[0] == "archive"] == [row[1:] for row in kept if row[0] == "5min"]


def test_particle_counters_in_the_archive_get_no_index(tmp_path: Path) -> None:
    """A PPD42NS counts particles (per 0.01 ft³): its P1/P2 are kept as text in `other_values` (the pm columns
    hold µg/m³ only, as for the snapshots), never indexed, with the reason shown."""
    row = "2025-10-15T00:00:21;260.5;;;88.1;;"
    paths = _write(
        tmp_path / "lake",
        {
            "2025-10-15_ppd42ns_sensor_11.csv": f"{SDS_HEADER}\n11;PPD42NS;1;1;1;{row}\n",
            "2025-10-15_sds011_sensor_12.csv": f"{SDS_HEADER}\n12;SDS011;1;1;1;{row}\n",
        },
    )
    with readings_connection(tmp_path / "h.duckdb") as connection:
        merge_archive_day(connection, DAY, paths, now=NOW)
        rows = dict(
            (sensor, rest)
            for sensor, *rest in connection.execute(
                "SELECT sensor_id, daqi, aqi_us, no_index_reason, pm10, pm25, other_values FROM aqi_readings "
                "ORDER BY sensor_id"
            ).fetchall()
        )
    assert rows[11][:2] == [None, None] and "mass concentration" in rows[11][2]
    assert rows[11][3:5] == [None, None] and rows[11][5] == {"P1": "260.5", "P2": "88.1"}
    assert rows[12] == [10, 174, None, 260.5, 88.1, None]
