"""Aggregates benchmark: hourly and daily index partitions computed from a large generated history.

The history (``--sensors`` PM sensors reporting every minute for ``--days`` days, about 900,000 readings an hour
for 15,000 sensors) is generated with SQL in DuckDB, in a child process so that its memory does not count in
this process's peak. It is written in time order, as the merges write it, and without the primary-key index:
the aggregates never use that index, and building it over 150 million generated rows would dominate the set-up.

Timed, each in a process of its own as Dagster runs a step, with that process's peak RSS (each the computation
plus the partition write in one transaction, as the IO manager does it):
one hourly partition (the last hour), one daily partition (the last day), and a backfill of the last
``--backfill-days`` days of `aqi_daily` in one run (single-run backfill policy). Run at 1 and at 7 days of
history to see that the cost of one partition does not grow with the history.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from aqi_assets.bench.memory import in_fresh_process, process_peak_rss_mb
from aqi_assets.lib.air_quality.aggregates import (
    AGGREGATES_SCHEMA,
    COMPUTE_MEMORY_LIMIT,
    DAY,
    HOUR,
    daily_indices,
    hourly_indices,
)
from aqi_assets.lib.common.duckdb_conn import bounded_memory
from aqi_assets.lib.common.duckdb_tables import replace_partition
from aqi_assets.lib.readings.history import attach_history
from aqi_assets.lib.readings.schema import readings_connection

HISTORY_START = datetime(2025, 3, 1)
SENSOR_TYPES = ("SDS011", "SPS30", "PMS7003")
COUNTRIES = ("DE", "NL", "BE", "FR", "PL", "BG", "IT", "AT")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sensors", type=int, default=15_000, help="PM sensors reporting every minute")
    parser.add_argument("--days", type=int, default=1, help="days of history")
    parser.add_argument("--backfill-days", type=int, default=7, help="days of aqi_daily in the backfill run")
    parser.add_argument("--seed", type=int, default=0)


def _generate_day(connection: duckdb.DuckDBPyConnection, day: int, sensors: int, seed: int) -> None:
    """One day of 1-minute readings, minute by minute (time order, as merges write them): a smooth diurnal
    PM level per sensor, about 1 value in 400 quarantined (NULL) and 1 hour in 40 offline. Per-sensor
    attributes are integer arithmetic on the sensor number, and rows come straight from `range` in order (no
    join, no sort), so a day of 15,000 sensors is generated in seconds."""
    types = " ".join(f"WHEN {i} THEN '{t}'" for i, t in enumerate(SENSOR_TYPES))
    countries = " ".join(f"WHEN {i} THEN '{c}'" for i, c in enumerate(COUNTRIES))
    connection.execute(
        f"""
        INSERT INTO aqi_readings (period, sensor_id, "timestamp", location_id, country, latitude, longitude,
                                  altitude, indoor, sensor_type, pm25, pm10, snapshot, ingested_at, ingest_seq)
        WITH grid AS (
            SELECT i // $sensors AS minute, i % $sensors AS s, hash(i, $seed) AS h
            FROM range($day * 1440 * $sensors, ($day + 1) * 1440 * $sensors) r(i)
        ), readings AS (
            SELECT minute, s, $start + to_minutes(minute) AS ts,
                   -- the sensor's level (2..60 µg/m³), a daily cycle with its own phase, and noise
                   (2 + ((s * 7919 + $seed) % 5800) / 100.0)
                       * (1 + 0.5 * sin(2 * pi() * (minute % 1440) / 1440.0 + ((s * 104729) % 628) / 100.0))
                       * (0.85 + (h % 300) / 1000.0) AS pm25_raw,
                   (h // 300) % 400 = 0 AS quarantined,
                   hash(s, minute // 60, $seed) % 40 = 0 AS offline_hour
            FROM grid
        )
        SELECT '5min', 100000 + s, ts, 50000 + s, CASE s % {len(COUNTRIES)} {countries} END,
               36 + (s % 2400) / 100.0, -8 + (s % 3800) / 100.0, 100.0, s % 50 = 0,
               CASE s % {len(SENSOR_TYPES)} {types} END,
               CASE WHEN quarantined THEN NULL ELSE round(pm25_raw, 2) END,
               round(pm25_raw * (1.2 + ((s * 31) % 60) / 100.0), 2),
               'generated', ts, $day + 1
        FROM readings
        WHERE NOT offline_hour
        """,
        {"sensors": sensors, "day": day, "start": HISTORY_START, "seed": seed},
    )


def generate_history(path: str, sensors: int, days: int, seed: int) -> None:
    with readings_connection(path) as connection:
        # The real table's columns (as the contract made them) without its primary-key index (see the module
        # docstring): DuckDB cannot drop a key, and CREATE TABLE AS copies the columns only.
        connection.execute("ALTER TABLE aqi_readings RENAME TO aqi_readings_keyed")
        connection.execute("CREATE TABLE aqi_readings AS SELECT * FROM aqi_readings_keyed LIMIT 0")
        connection.execute("DROP TABLE aqi_readings_keyed")
        connection.execute("SET memory_limit = '2GB'")
        connection.execute("SET enable_progress_bar = false")
        for day in range(days):
            _generate_day(connection, day, sensors, seed)
        connection.execute("CHECKPOINT")


def _timed(path: str, compute_name: str, table: str, column: str, bounds: tuple[datetime, datetime],
           results: Any) -> None:
    """One partition (or backfill run) computed and written, in a process of its own as Dagster runs a step:
    its time, CPU time and the process's peak RSS (so one step's DuckDB cache does not count in the next)."""
    compute = {"hourly_indices": hourly_indices, "daily_indices": daily_indices}[compute_name]
    with readings_connection(path) as connection:
        connection.execute("SET enable_progress_bar = false")
        attach_history(connection, None)  # as the assets read it (nothing is pruned here: no tier needed)
        started, cpu_started = time.perf_counter(), time.process_time()
        with bounded_memory(connection, COMPUTE_MEMORY_LIMIT):  # as the assets compute
            frame = compute(connection, *bounds)
        computed = time.perf_counter()
        rows = replace_partition(connection, AGGREGATES_SCHEMA, table, frame, column, bounds)
        written = time.perf_counter()
    results.put({
        "seconds": round(written - started, 3),
        # CPU time of all threads: on a shared machine the wall time also counts waiting for a core.
        "cpu_seconds": round(time.process_time() - cpu_started, 3),
        "compute_seconds": round(computed - started, 3),
        "write_seconds": round(written - computed, 3),
        "rows": rows,
        "peak_rss_mb": process_peak_rss_mb(),
    })


def _timed_in_child(path: str, compute_name: str, table: str, column: str,
                    bounds: tuple[datetime, datetime]) -> dict[str, float]:
    return in_fresh_process(_timed, path, compute_name, table, column, bounds)


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="aqi-bench-aggregates-") as tmp:
        path = str(Path(tmp) / "history.duckdb")
        started = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(
            target=generate_history, args=(path, args.sensors, args.days, args.seed)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"history generation failed (exit code {child.exitcode})")
        generate_seconds = time.perf_counter() - started
        end = HISTORY_START + timedelta(days=args.days)
        backfill_days = min(args.backfill_days, args.days)
        with readings_connection(path) as connection:
            connection.execute("SET enable_progress_bar = false")
            readings_in_hour = connection.execute(
                'SELECT count(*) FROM aqi_readings WHERE "timestamp" >= ? AND "timestamp" < ?', [end - HOUR, end]
            ).fetchall()[0][0]
            history_rows = connection.execute("SELECT count(*) FROM aqi_readings").fetchall()[0][0]
        hourly = _timed_in_child(path, "hourly_indices", "aqi_hourly", "hour", (end - HOUR, end))
        daily = _timed_in_child(path, "daily_indices", "aqi_daily", "day", (end - DAY, end))
        backfill = _timed_in_child(path, "daily_indices", "aqi_daily", "day", (end - backfill_days * DAY, end))
    return {
        "benchmark": "aggregates",
        "sensors": args.sensors,
        "history_days": args.days,
        "history_rows": history_rows,
        "generate_seconds": round(generate_seconds, 1),
        "hourly_partition": {**hourly, "readings_in": readings_in_hour},
        "daily_partition": daily,
        f"daily_backfill_{backfill_days}d": backfill,
        "peak_rss_mb": max(step["peak_rss_mb"] for step in (hourly, daily, backfill)),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "machine": f"{platform.machine()}, {multiprocessing.cpu_count()} cores, Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}",
    }
