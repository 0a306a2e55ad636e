"""The hourly source: archive readings where they cover a sensor-hour, 5-minute readings otherwise."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from aqi_assets.lib.archive.hourly_source import create_hourly_source_view, hourly_source_sql
from aqi_assets.lib.common.duckdb_conn import duckdb_connection


def _insert(connection, period: str, sensor: int, stamp: str, pm25: float) -> None:
    connection.execute(
        "INSERT INTO aqi_readings (period, sensor_id, \"timestamp\", pm25, pm10, country, indoor, sensor_type, "
        "snapshot, ingested_at) VALUES (?, ?, ?::TIMESTAMP, ?, ?, 'DE', false, 'SDS011', 'test', now())",
        [period, sensor, stamp, pm25, pm25 * 2],
    )


def test_each_sensor_hour_comes_from_exactly_one_source(tmp_path: Path) -> None:
    with duckdb_connection(tmp_path / "h.duckdb") as connection:
        # Sensor 1, 10:00–11:00: both sources → archive only. 11:00–12:00: 5-minute only → 5-minute.
        for minute in (2, 20, 40):
            _insert(connection, "archive", 1, f"2025-10-15 10:{minute:02d}:00", 10.0)
        for minute in (5, 10, 55):
            _insert(connection, "5min", 1, f"2025-10-15 10:{minute:02d}:00", 50.0)
        _insert(connection, "5min", 1, "2025-10-15 11:05:00", 30.0)
        # Sensor 2 has only archive rows in 11:00, and a 5-minute row in 10:00.
        _insert(connection, "archive", 2, "2025-10-15 11:30:00", 5.0)
        _insert(connection, "5min", 2, "2025-10-15 10:30:00", 7.0)
        # 24-hour averages are never an hourly source; rows outside the range are not read.
        _insert(connection, "24h", 1, "2025-10-15 10:30:00", 99.0)
        _insert(connection, "5min", 1, "2025-10-15 13:05:00", 99.0)
        view = create_hourly_source_view(
            connection, datetime(2025, 10, 15, 10, tzinfo=timezone.utc), datetime(2025, 10, 15, 12)
        )
        rows = connection.execute(
            f"""SELECT sensor_id, date_trunc('hour', "timestamp") AS hour, list(DISTINCT period_source),
                       count(*), avg(pm25)
                FROM {view} GROUP BY ALL ORDER BY 1, 2"""
        ).fetchall()
        assert [(s, h.hour, sources, n, mean) for s, h, sources, n, mean in rows] == [
            (1, 10, ["archive"], 3, 10.0),
            (1, 11, ["5min"], 1, 30.0),
            (2, 10, ["5min"], 1, 7.0),
            (2, 11, ["archive"], 1, 5.0),
        ]
        columns = [d[0] for d in connection.execute(f"SELECT * FROM {view} LIMIT 0").description]
        assert columns == ["period_source", "sensor_id", "timestamp", "pm25", "pm10", "country", "latitude",
                           "longitude", "indoor", "sensor_type"]


def test_a_caller_may_bucket_hours_its_own_way(tmp_path: Path) -> None:
    # With hours as (start, end] (a 5-minute average ending at 11:00:00 belongs to 10:00–11:00), the archive
    # rows of 10:00–11:00 replace that reading too; with the default buckets it stays, in the 11:00 hour.
    end_of_window = "date_trunc('hour', \"timestamp\" - INTERVAL 1 SECOND)"
    with duckdb_connection(tmp_path / "h.duckdb") as connection:
        _insert(connection, "archive", 1, "2025-10-15 10:30:00", 10.0)
        _insert(connection, "5min", 1, "2025-10-15 11:00:00", 50.0)
        start, end = datetime(2025, 10, 15, 10), datetime(2025, 10, 15, 12)
        shifted = create_hourly_source_view(connection, start, end, hour_expression=end_of_window)
        assert connection.execute(f"SELECT list(period_source) FROM {shifted}").fetchone()[0] == ["archive"]
        default = connection.execute(
            f"SELECT list(period_source ORDER BY period_source) FROM ({hourly_source_sql(start, end)})"
        ).fetchone()[0]
        assert default == ["5min", "archive"]
