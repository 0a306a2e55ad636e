"""A generated multi-day history in `aqi_readings` for the tiers tests: 5-minute and 24-hour rows inserted
directly, archive days merged from generated CSV files through the real archive merge."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from aqi_assets.bench.archive import write_day
from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.lib.archive.merge import merge_archive_day
from aqi_assets.lib.readings.schema import column_names


def history_rows(days: list[date], sensors: int = 40, per_sensor: int = 6) -> list[dict[str, Any]]:
    """Per day: `sensors` × `per_sensor` five-minute readings ending at 20:00 (one ingest per day) and one
    24-hour reading per sensor at 23:30; the same sensor ids every day, so keys differ only by time."""
    rows: list[dict[str, Any]] = []
    for seq, day in enumerate(days, start=1):
        noon = datetime.combine(day, datetime.min.time()) + timedelta(hours=20, minutes=1)
        five = synthetic_readings(sensors * per_sensor, now=noon, seed=day.toordinal(), per_sensor=per_sensor)
        late = datetime.combine(day, datetime.min.time()) + timedelta(hours=23, minutes=31)
        daily = synthetic_readings(sensors, now=late, seed=day.toordinal() + 1, per_sensor=1)
        for row in daily:
            row["period"] = "24h"
        for row in (*five, *daily):
            row["ingest_seq"] = seq
            row["snapshot"] = f"5min_{day:%Y%m%d}T200000Z_000000000000.json.gz"
        rows.extend(five)
        rows.extend(daily)
    return rows


def insert_history(connection: Any, days: list[date], **kwargs: Any) -> list[dict[str, Any]]:
    rows = history_rows(days, **kwargs)
    insert_readings(connection, rows)
    return rows


def per_day_counts(rows: list[dict[str, Any]]) -> dict[date, int]:
    return dict(Counter(row["timestamp"].date() for row in rows))


def per_country_mean_pm25(rows: list[dict[str, Any]]) -> dict[str, float]:
    sums: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for row in rows:
        if row["pm25"] is not None:
            sums[row["country"]] += row["pm25"]
            counts[row["country"]] += 1
    return {country: sums[country] / counts[country] for country in counts}


def merge_archive(
    connection: Any, directory: Path, day: date, *, sensors: int = 6, rows: int = 40, seed: int = 0
) -> int:
    """`sensors` generated SDS011 archive files of `day` (`rows` measurements each) merged as 'archive' rows;
    returns the rows inserted. Another `seed` gives the same files with other measurement times (a re-published
    day: new files to the merge, new keys)."""
    paths = write_day(directory / f"{day.isoformat()}-{seed}", day, sensors, rows, seed)
    return merge_archive_day(connection, day, paths).rows_inserted


def readings(connection: Any, table: str = "aqi_readings", where: str = "TRUE") -> list[tuple]:
    """Every column of every row of `table` (the history's columns, in contract order), sorted by key."""
    columns = ", ".join(f'"{c}"' for c in column_names())
    return connection.execute(
        f'SELECT {columns} FROM {table} WHERE {where} ORDER BY period, sensor_id, "timestamp"'
    ).fetchall()


def per_period_counts(connection: Any, day: date, table: str = "aqi_readings") -> dict[str, int]:
    return dict(
        connection.execute(
            f'SELECT period, count(*) FROM {table} WHERE CAST("timestamp" AS DATE) = ? GROUP BY ALL', [day]
        ).fetchall()
    )
