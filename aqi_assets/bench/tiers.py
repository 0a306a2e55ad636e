"""Tiered storage benchmark: export of one day to Parquet, bytes per reading, DuckDB size before and after
hot-tier retention, and query times hot vs tiered.

A history of `--days` days × `--rows-per-day` five-minute readings is generated in DuckDB by SQL (one
reading per sensor every 5 minutes, PM2.5 following a per-sensor level with a daily swing and noise at two
decimals, climate sensors with temperature/humidity/pressure; real data compresses differently). Each phase
that is measured for memory runs in a fresh process, so `peak_rss_mb` is that phase's own.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from aqi_assets.bench.memory import peak_rss_mb

GENERATE_DAY_SQL = """
INSERT INTO aqi_readings BY NAME
WITH slots AS (
    SELECT s.range AS sensor, k.range AS slot
    FROM range($sensors) s, range(288) k
    WHERE s.range * 288 + k.range < $rows
), values AS (
    SELECT sensor, slot,
        ['SDS011', 'SPS30', 'BME280', 'DHT22'][1 + sensor % 4] AS sensor_type,
        sensor % 4 < 2 AS has_pm,
        $day::TIMESTAMP + to_seconds(slot * 300 + sensor % 300) AS ts,
        5 + (hash(sensor) % 300) / 10.0 AS level,
        sin((slot + sensor % 50) / 45.8) AS swing,
        ((hash(sensor, slot, $day) % 200)::DOUBLE - 100) / 100 AS noise
    FROM slots
)
SELECT '5min' AS period, 1000 + sensor AS sensor_id, ts AS "timestamp",
    (($day::DATE - DATE '2020-01-01') * 288 + slot) * 100000 + sensor AS measurement_id,
    500 + sensor // 2 AS location_id,
    ['DE', 'NL', 'BE', 'FR', 'PL', 'BG', 'IT', 'AT'][1 + (hash(sensor // 2) % 8)::BIGINT] AS country,
    round(36 + (hash(sensor // 2, 'lat') % 24000) / 1000.0, 3) AS latitude,
    round(-8 + (hash(sensor // 2, 'lon') % 36000) / 1000.0, 3) AS longitude,
    (hash(sensor // 2) % 900)::DOUBLE AS altitude,
    hash(sensor) % 20 = 0 AS indoor,
    sensor_type,
    CASE WHEN has_pm THEN round(greatest(0.5, level * (1 + 0.3 * swing) + noise), 2) END AS pm25,
    CASE WHEN has_pm THEN round(greatest(0.8, 1.6 * level * (1 + 0.3 * swing) + 2 * noise), 2) END AS pm10,
    CASE WHEN NOT has_pm THEN round(10 + 8 * swing + noise, 2) END AS temperature,
    CASE WHEN NOT has_pm THEN round(60 - 20 * swing + 5 * noise, 2) END AS humidity,
    CASE WHEN sensor_type = 'BME280' THEN round(101000 + 500 * swing + 20 * noise, 1) END AS pressure,
    CASE WHEN has_pm THEN least(10, 1 + (level // 12))::TINYINT END AS daqi_pm25,
    CASE WHEN has_pm THEN least(10, 1 + (level // 20))::TINYINT END AS daqi_pm10,
    CASE WHEN has_pm THEN least(10, 1 + (level // 12))::TINYINT END AS daqi,
    CASE WHEN has_pm THEN CASE WHEN level < 36 THEN 'Low' ELSE 'Moderate' END END AS daqi_band,
    CASE WHEN has_pm THEN (level * 3)::SMALLINT END AS aqi_us_pm25,
    CASE WHEN has_pm THEN (level * 2)::SMALLINT END AS aqi_us_pm10,
    CASE WHEN has_pm THEN (level * 3)::SMALLINT END AS aqi_us,
    CASE WHEN has_pm THEN CASE WHEN level * 3 <= 50 THEN 'Good' ELSE 'Moderate' END END AS aqi_us_category,
    CASE WHEN has_pm THEN false END AS aqi_us_beyond,
    '5min_' || strftime($day::TIMESTAMP + to_seconds(slot * 300), '%Y%m%dT%H%M%S') || 'Z_0123456789ab.json.gz'
        AS snapshot,
    $day::TIMESTAMP + to_seconds(slot * 300 + 290) AS ingested_at,
    ($day::DATE - DATE '2020-01-01') * 288 + slot AS ingest_seq
FROM values
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows-per-day", type=int, default=1_000_000, help="five-minute readings per day")
    parser.add_argument("--days", type=int, default=3, help="days of history")
    parser.add_argument("--hot-days", type=int, default=1, help="days kept in DuckDB by the retention step")
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2026, 10, 1))
    parser.add_argument("--export-only", action="store_true", help="skip retention and the query comparison")


def _generate(db: str, days: list[date], rows_per_day: int) -> float:
    from aqi_assets.lib.readings.schema import readings_connection

    started = time.perf_counter()
    with readings_connection(db) as connection:
        connection.execute("SET enable_progress_bar = false")
        for day in days:
            connection.execute(
                GENERATE_DAY_SQL,
                {"sensors": -(-rows_per_day // 288), "rows": rows_per_day, "day": day.isoformat()},
            )
        connection.execute("CHECKPOINT")
    return time.perf_counter() - started


def _export(db: str, parquet: str, day: date) -> dict[str, Any]:
    from aqi_assets.lib.common.location import open_location
    from aqi_assets.lib.readings.schema import readings_connection
    from aqi_assets.lib.tiers.parquet_tier import export_day, verify_day

    location = open_location(parquet)
    with readings_connection(db) as connection:
        connection.execute("SET enable_progress_bar = false")
        export = export_day(connection, location, day)
        started = time.perf_counter()
        verified = verify_day(connection, location, day).ok
        verify_seconds = time.perf_counter() - started
    return {
        "rows": export.total_rows,
        "bytes": export.total_bytes,
        "seconds": export.seconds,
        "verify_seconds": verify_seconds,
        "verified": verified,
        "peak_rss_mb": peak_rss_mb(),
    }


_SENSOR_MONTH = 'SELECT count(*), avg(pm25) FROM {table} WHERE sensor_id = 1010 AND period = \'5min\''
_COUNTRY_DAILY = (
    'SELECT CAST("timestamp" AS DATE) AS day, avg(pm25) FROM {table} WHERE country = \'DE\' GROUP BY day '
    "ORDER BY day"
)


def _time_queries(connection: Any, table: str, repeat: int = 3) -> dict[str, Any]:
    figures = {}
    for name, sql in (("one_sensor_all_days", _SENSOR_MONTH), ("country_daily_means", _COUNTRY_DAILY)):
        best, result = float("inf"), None
        for _ in range(repeat):
            started = time.perf_counter()
            result = connection.execute(sql.format(table=table)).fetchall()
            best = min(best, time.perf_counter() - started)
        figures[name] = {"seconds": round(best, 4), "result_rows": len(result or [])}
    return figures


def _retention(db: str, parquet: str, today: date, hot_days: int) -> dict[str, Any]:
    import duckdb

    from aqi_assets.lib.common.location import open_location
    from aqi_assets.lib.readings.schema import readings_connection
    from aqi_assets.lib.tiers.retention import create_all_readings_view, prune_hot_tier

    location = open_location(parquet)
    with duckdb.connect(db, read_only=True) as connection:
        hot_queries = _time_queries(connection, "aqi_readings")
    with readings_connection(db) as connection:
        started = time.perf_counter()
        report = prune_hot_tier(connection, location, today=today, hot_days=hot_days)
        seconds = time.perf_counter() - started
        create_all_readings_view(connection, location, temporary=False)
    with duckdb.connect(db, read_only=True) as connection:
        tiered_queries = _time_queries(connection, "aqi_readings_all")
    return {
        "duckdb_used_bytes_before": report.used_bytes_before,
        "duckdb_used_bytes_after": report.used_bytes_after,
        "duckdb_bytes_before": report.file_bytes_before,
        "duckdb_bytes_after": report.file_bytes_after,
        "days_pruned": len(report.days_pruned),
        "rows_deleted": report.rows_deleted,
        "retention_seconds": round(seconds, 3),
        "query_hot": hot_queries,
        "query_tiered": tiered_queries,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    days = [args.first_day + timedelta(days=i) for i in range(args.days)]
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="aqi-bench-tiers-") as tmp:
        db, parquet = str(Path(tmp) / "bench.duckdb"), str(Path(tmp) / "parquet")

        def in_fresh_process(function: Any, *call_args: Any) -> Any:
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                return pool.submit(function, *call_args).result()

        generate_seconds = in_fresh_process(_generate, db, days, args.rows_per_day)
        exports = [in_fresh_process(_export, db, parquet, day) for day in days]
        total_rows = sum(e["rows"] for e in exports)
        total_bytes = sum(e["bytes"] for e in exports)
        retention: dict[str, Any] = {"duckdb_bytes_before": Path(db).stat().st_size}
        if not args.export_only:
            retention = in_fresh_process(_retention, db, parquet, days[-1] + timedelta(days=1), args.hot_days)
            # The next day arrives after the prune: it goes into the freed blocks, the file does not grow.
            in_fresh_process(_generate, db, [days[-1] + timedelta(days=1)], args.rows_per_day)
            retention["duckdb_bytes_after_next_day"] = Path(db).stat().st_size
        first = exports[0]
        return {
            "benchmark": "tiers",
            "rows_per_day": args.rows_per_day,
            "days": args.days,
            "hot_days": args.hot_days,
            "generate_seconds": round(generate_seconds, 1),
            "export_one_day_seconds": round(first["seconds"], 3),
            "export_one_day_peak_rss_mb": first["peak_rss_mb"],
            "export_rows_per_s": round(first["rows"] / first["seconds"]) if first["seconds"] else 0,
            "verify_one_day_seconds": round(first["verify_seconds"], 3),
            "export_seconds_all_days": [round(e["seconds"], 2) for e in exports],
            "all_verified": all(e["verified"] for e in exports),
            "parquet_bytes": total_bytes,
            "parquet_bytes_per_reading": round(total_bytes / total_rows, 2) if total_rows else 0.0,
            "duckdb_bytes_per_reading_before": round(retention["duckdb_bytes_before"] / total_rows, 1),
            **retention,
        }
