"""Tiered storage benchmark: export of one day to Parquet, bytes per reading, DuckDB size before and after
hot-tier retention, and query times hot vs tiered.

A history of `--days` days × `--rows-per-day` five-minute readings is generated in DuckDB by SQL (one
reading per sensor every 5 minutes, PM2.5 following a per-sensor level with a daily swing and noise at two
decimals, climate sensors with temperature/humidity/pressure; real data compresses differently). Each phase
that is measured for memory runs in a fresh process, so `peak_rss_mb` is that phase's own.

`--backfilled-month` measures the archive's path through the tier instead: `--archive-days` days of
`--archive-sensors` SDS011 sensors (one measurement every `--archive-interval-s` seconds) are generated as
archive CSV files with a seeded generator and merged by the real archive merge, next to `--snapshot-days` days of
five-minute readings; every day is exported and verified, then retention with a hot window of the snapshot days
prunes the backfilled month.
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
from aqi_assets.lib.readings.periods import FIVE_MINUTE

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
SELECT $period AS period, 1000 + sensor AS sensor_id, ts AS "timestamp",
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
    parser.add_argument(
        "--hot-days", type=int, default=None, help="days kept in DuckDB by the retention step (default 1; with "
        "--backfilled-month the snapshot days)"
    )  # fmt: skip
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2026, 10, 1))
    parser.add_argument("--export-only", action="store_true", help="skip retention and the query comparison")
    month = parser.add_argument_group("backfilled month (--backfilled-month)")
    month.add_argument("--backfilled-month", action="store_true", help="archive days through export and retention")
    month.add_argument("--archive-days", type=int, default=30, help="backfilled archive days")
    month.add_argument("--archive-sensors", type=int, default=200, help="archive sensors (one CSV each) per day")
    month.add_argument("--archive-interval-s", type=int, default=145, help="seconds between a sensor's measurements")
    month.add_argument("--snapshot-days", type=int, default=3, help="days of five-minute readings after the month")
    month.add_argument("--seed", type=int, default=0, help="seed of the archive files' generator")


def _generate(db: str, days: list[date], rows_per_day: int) -> float:
    from aqi_assets.lib.readings.schema import readings_connection

    started = time.perf_counter()
    with readings_connection(db) as connection:
        connection.execute("SET enable_progress_bar = false")
        for day in days:
            connection.execute(
                GENERATE_DAY_SQL,
                {"sensors": -(-rows_per_day // 288), "rows": rows_per_day, "day": day.isoformat(),
                 "period": FIVE_MINUTE.name},
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
    from aqi_assets.lib.readings.history import attach_history
    from aqi_assets.lib.readings.schema import readings_connection
    from aqi_assets.lib.tiers.retention import prune_hot_tier

    location = open_location(parquet)
    with duckdb.connect(db, read_only=True) as connection:
        hot_queries = _time_queries(connection, "aqi_readings")
    with readings_connection(db) as connection:
        started = time.perf_counter()
        report = prune_hot_tier(connection, location, today=today, hot_days=hot_days)
        seconds = time.perf_counter() - started
        attach_history(connection, location, persist=True)
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
    if args.backfilled_month:
        return run_backfilled_month(args)
    hot_days = 1 if args.hot_days is None else args.hot_days
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
            retention = in_fresh_process(_retention, db, parquet, days[-1] + timedelta(days=1), hot_days)
            # The next day arrives after the prune: it goes into the freed blocks, the file does not grow.
            in_fresh_process(_generate, db, [days[-1] + timedelta(days=1)], args.rows_per_day)
            retention["duckdb_bytes_after_next_day"] = Path(db).stat().st_size
        first = exports[0]
        return {
            "benchmark": "tiers",
            "rows_per_day": args.rows_per_day,
            "days": args.days,
            "hot_days": hot_days,
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


# --- a backfilled month of archive days through the tier ---------------------------------------------------


def _build_month(
    db: str, raw: str, archive_days: list[date], snapshot_days: list[date], args: argparse.Namespace
) -> dict[str, Any]:
    """The archive month from generated CSV files through the real merge, then the snapshot days by SQL."""
    from aqi_assets.bench.archive import write_day
    from aqi_assets.bench.memory import process_peak_rss_mb
    from aqi_assets.lib.archive.merge import merge_archive_day
    from aqi_assets.lib.readings.schema import readings_connection

    measurements = 86_400 // args.archive_interval_s
    write_seconds = merge_seconds = 0.0
    csv_bytes = 0
    with readings_connection(db) as connection:
        connection.execute("SET enable_progress_bar = false")
        for day in archive_days:
            started = time.perf_counter()
            paths = write_day(Path(raw) / day.isoformat(), day, args.archive_sensors, measurements, args.seed)
            csv_bytes += sum(p.stat().st_size for p in paths)
            write_seconds += time.perf_counter() - started
            started = time.perf_counter()
            merge_archive_day(connection, day, paths)
            merge_seconds += time.perf_counter() - started
            for path in paths:  # the lake's copy is not what is measured: keep the temporary disk small
                path.unlink()
        started = time.perf_counter()
        rows_per_day = args.archive_sensors * 288
        for day in snapshot_days:
            connection.execute(
                GENERATE_DAY_SQL,
                {"sensors": args.archive_sensors, "rows": rows_per_day, "day": day.isoformat(),
                 "period": FIVE_MINUTE.name},
            )
        connection.execute("CHECKPOINT")
        snapshot_seconds = time.perf_counter() - started
        per_period = dict(connection.execute("SELECT period, count(*) FROM aqi_readings GROUP BY ALL").fetchall())
    return {
        "archive_csv_bytes": csv_bytes,
        "archive_csv_write_seconds": round(write_seconds, 1),
        "archive_merge_seconds": round(merge_seconds, 1),
        "snapshot_generate_seconds": round(snapshot_seconds, 1),
        "rows_per_period": per_period,
        "peak_rss_mb": process_peak_rss_mb(),
    }


def _export_month(db: str, parquet: str, days: list[date]) -> dict[str, Any]:
    from aqi_assets.bench.memory import process_peak_rss_mb
    from aqi_assets.lib.common.location import open_location
    from aqi_assets.lib.readings.schema import readings_connection
    from aqi_assets.lib.tiers.parquet_tier import export_day, verify_day

    location = open_location(parquet)
    rows: dict[str, int] = {}
    parquet_bytes: dict[str, int] = {}
    export_seconds = verify_seconds = 0.0
    verified = True
    with readings_connection(db) as connection:
        connection.execute("SET enable_progress_bar = false")
        for day in days:
            export = export_day(connection, location, day)
            export_seconds += export.seconds
            for period, count in export.rows.items():
                rows[period] = rows.get(period, 0) + count
                parquet_bytes[period] = parquet_bytes.get(period, 0) + export.parquet_bytes[period]
            started = time.perf_counter()
            verified = verify_day(connection, location, day).ok and verified
            verify_seconds += time.perf_counter() - started
    return {
        "rows_exported_per_period": rows,
        "parquet_bytes_per_period": parquet_bytes,
        "export_seconds": round(export_seconds, 2),
        "verify_seconds": round(verify_seconds, 2),
        "all_verified": verified,
        "peak_rss_mb": process_peak_rss_mb(),
    }


def _retain_month(db: str, parquet: str, today: date, hot_days: int) -> dict[str, Any]:
    from aqi_assets.bench.memory import process_peak_rss_mb
    from aqi_assets.lib.common.location import open_location
    from aqi_assets.lib.readings.history import HISTORY_VIEW, attach_history
    from aqi_assets.lib.readings.schema import readings_connection
    from aqi_assets.lib.tiers.retention import prune_hot_tier

    location = open_location(parquet)
    with readings_connection(db) as connection:
        connection.execute("SET enable_progress_bar = false")
        started = time.perf_counter()
        report = prune_hot_tier(connection, location, today=today, hot_days=hot_days)
        seconds = time.perf_counter() - started
        attach_history(connection, location, persist=True)
        left = dict(connection.execute("SELECT period, count(*) FROM aqi_readings GROUP BY ALL").fetchall())
        across = dict(connection.execute(f"SELECT period, count(*) FROM {HISTORY_VIEW} GROUP BY ALL").fetchall())
    return {
        "retention_seconds": round(seconds, 2),
        "days_pruned": len(report.days_pruned),
        "days_kept_hot": report.skipped,
        "rows_deleted_per_period": report.rows_deleted_per_period,
        "rows_left_hot": left,
        "rows_across_tiers": across,
        "duckdb_bytes_before": report.file_bytes_before,
        "duckdb_bytes_after": report.file_bytes_after,
        "duckdb_used_bytes_before": report.used_bytes_before,
        "duckdb_used_bytes_after": report.used_bytes_after,
        "peak_rss_mb": process_peak_rss_mb(),
    }


def run_backfilled_month(args: argparse.Namespace) -> dict[str, Any]:
    """Build the month and the snapshot days, export and verify every day, prune the month; one JSON object."""
    snapshot_days = [args.first_day + timedelta(days=i) for i in range(args.snapshot_days)]
    # The archive month ends a week before the snapshot days (a backfill of an older month).
    archive_first = args.first_day - timedelta(days=args.archive_days + 7)
    archive_days = [archive_first + timedelta(days=i) for i in range(args.archive_days)]
    hot_days = args.snapshot_days if args.hot_days is None else args.hot_days
    today = snapshot_days[-1] + timedelta(days=1)
    spawn = multiprocessing.get_context("spawn")

    def in_fresh_process(function: Any, *call_args: Any) -> Any:
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            return pool.submit(function, *call_args).result()

    with tempfile.TemporaryDirectory(prefix="aqi-bench-tiers-month-") as tmp:
        db, raw, parquet = (str(Path(tmp) / name) for name in ("bench.duckdb", "raw", "parquet"))
        started = time.perf_counter()
        built = in_fresh_process(_build_month, db, raw, archive_days, snapshot_days, args)
        build_seconds = time.perf_counter() - started
        exported = in_fresh_process(_export_month, db, parquet, archive_days + snapshot_days)
        retained = in_fresh_process(_retain_month, db, parquet, today, hot_days)
    parquet_bytes = sum(exported["parquet_bytes_per_period"].values())
    rows_exported = sum(exported["rows_exported_per_period"].values())
    return {
        "benchmark": "tiers --backfilled-month",
        "archive_days": f"{archive_days[0]}..{archive_days[-1]}",
        "archive_sensors": args.archive_sensors,
        "archive_measurements_per_sensor_day": 86_400 // args.archive_interval_s,
        "snapshot_days": f"{snapshot_days[0]}..{snapshot_days[-1]}",
        "hot_days": hot_days,
        "seed": args.seed,
        "build_seconds": round(build_seconds, 1),
        **{k: v for k, v in built.items() if k != "peak_rss_mb"},
        "rows_exported_per_period": exported["rows_exported_per_period"],
        "parquet_bytes": parquet_bytes,
        "parquet_bytes_per_period": exported["parquet_bytes_per_period"],
        "parquet_bytes_per_reading": round(parquet_bytes / rows_exported, 2) if rows_exported else 0.0,
        "export_seconds": exported["export_seconds"],
        "verify_seconds": exported["verify_seconds"],
        "all_verified": exported["all_verified"],
        **{k: v for k, v in retained.items() if k != "peak_rss_mb"},
        "peak_rss_mb": {"build": built["peak_rss_mb"], "export": exported["peak_rss_mb"],
                        "retention": retained["peak_rss_mb"]},
    }  # fmt: skip
