"""History benchmark: what one more snapshot costs on top of an N-row history that is fully synced.

Builds the history inside DuckDB with synthetic SQL (one merge per minute of `--sensors` sensors, so
`ingest_seq` grows with time as in production; PM and climate sensors; watermarks and scan starts set as
after a full sync of both targets), then times, each with the peak resident memory reached so far:

- `merge`: one generated `--records`-record snapshot merged (`normalise.merge_snapshot`);
- `checks`: the post-ingest checks of `lib/air_quality/checks.py` on that run's scope;
- `summary`: the summary metadata of `aqi_readings` (`summary.readings_summary`);
- `sync_scan`: one sync scan (`count_pending` + `scan_pending` of one chunk, as a sync run starts); the
  chunk's conversion into Python records for the writers is reported apart (`to_python_seconds`).

Goal: every figure at `--rows 150000000` within 2× of `--rows 0`, and the sync scan ≤ 0.1 s and ≤ 300 MB.
Each step runs in a fresh process of its own, as Dagster runs each step (so a DuckDB cache starts cold), and
reports that process's peak resident memory (Python, DuckDB and the step).
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from aqi_assets.bench.memory import process_peak_rss_mb
from aqi_assets.lib.air_quality import checks
from aqi_assets.lib.air_quality.generator import generate_snapshot
from aqi_assets.lib.air_quality.normalise import merge_snapshot
from aqi_assets.lib.air_quality.summary import readings_summary
from aqi_assets.lib.readings.periods import FIVE_MINUTE
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.sinks.sync_state import (
    PROGRESS_TABLE,
    SYNC_TABLES,
    count_pending,
    ensure_sync_tables,
    scan_pending,
)

SNAPSHOT_AT = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)  # the generator's default time
FIRST_SENSOR_ID = 10_002  # the generator's first sensor id, so the snapshot's sensors have a history
SYNC_CHUNK_ROWS = 50_000  # the sinks' default chunk
BUILD_BATCH_MINUTES = 600  # minutes of history per INSERT while building (9 M rows at 15,000 sensors)

# One history row per (sensor, minute) from `range(N)`: i % sensors is the sensor, i // sensors the minute
# (merge) counted from the oldest. Even sensors are PM sensors (SDS011), odd ones climate sensors (BME280).
# Index columns follow the concentrations roughly (plausible values, not the exact breakpoints).
_HISTORY_SQL = """
INSERT INTO aqi_readings BY NAME
WITH base AS (
    SELECT i, i % $sensors AS k, i // $sensors AS minute, hash(i) % 1000 AS noise FROM range($first_row, $end_row) t(i)
), shaped AS (
    SELECT *, $first_sensor + k AS sensor_id, k % 2 = 0 AS is_pm,
           round(2 + noise / 12.0 + (k % 37), 1) AS pm
    FROM base
)
SELECT
    $period AS period,
    sensor_id,
    $newest::TIMESTAMP - to_minutes(CAST($minutes - 1 - minute AS BIGINT)) AS "timestamp",
    i AS measurement_id,
    50_000 + k // 2 AS location_id,
    ['DE', 'NL', 'BE', 'FR', 'PL', 'BG', 'IT', 'AT'][1 + k % 8] AS country,
    36 + (k % 2400) / 100.0 AS latitude,
    -8 + (k % 3800) / 100.0 AS longitude,
    (k % 900)::DOUBLE AS altitude,
    k % 33 = 0 AS indoor,
    CASE WHEN is_pm THEN 'SDS011' ELSE 'BME280' END AS sensor_type,
    CASE WHEN is_pm THEN pm END AS pm25,
    CASE WHEN is_pm THEN round(pm * 1.6, 1) END AS pm10,
    CASE WHEN NOT is_pm THEN round(-5 + noise / 30.0, 2) END AS temperature,
    CASE WHEN NOT is_pm THEN round(20 + noise / 13.0, 2) END AS humidity,
    CASE WHEN NOT is_pm THEN 95_000 + noise * 8.0 END AS pressure,
    CASE WHEN NOT is_pm THEN 100_000 + noise * 3.5 END AS pressure_at_sealevel,
    CASE WHEN is_pm THEN least(10, 1 + (pm // 12)::INT) END AS daqi_pm25,
    CASE WHEN is_pm THEN least(10, 1 + (pm * 1.6 // 17)::INT) END AS daqi_pm10,
    CASE WHEN is_pm THEN greatest(daqi_pm25, daqi_pm10) END AS daqi,
    CASE WHEN NOT is_pm THEN NULL WHEN daqi <= 3 THEN 'Low' WHEN daqi <= 6 THEN 'Moderate'
         WHEN daqi <= 9 THEN 'High' ELSE 'Very High' END AS daqi_band,
    CASE WHEN is_pm THEN least(500, (pm * 3)::INT) END AS aqi_us_pm25,
    CASE WHEN is_pm THEN least(500, (pm * 1.6)::INT) END AS aqi_us_pm10,
    CASE WHEN is_pm THEN greatest(aqi_us_pm25, aqi_us_pm10) END AS aqi_us,
    CASE WHEN NOT is_pm THEN NULL WHEN aqi_us <= 50 THEN 'Good' WHEN aqi_us <= 100 THEN 'Moderate'
         ELSE 'Unhealthy for Sensitive Groups' END AS aqi_us_category,
    CASE WHEN is_pm THEN false END AS aqi_us_beyond,
    'history-' || minute AS snapshot,
    $newest::TIMESTAMP - to_minutes(CAST($minutes - 1 - minute AS BIGINT)) + INTERVAL 1 MINUTE AS ingested_at,
    minute + 1 AS ingest_seq
FROM shaped
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of history to build first")
    parser.add_argument("--sensors", type=int, default=15_000, help="sensors reporting every minute")
    parser.add_argument("--records", type=int, default=20_000, help="records of the snapshot merged on top")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database", type=Path, help="build into this file (default: a temporary directory)")


def build_history(path: Path, rows: int, sensors: int) -> None:
    """`rows` readings, one merge per minute, newest 5 minutes before the snapshot; synced for both targets."""
    minutes = -(-rows // sensors)  # ceil
    newest = (SNAPSHOT_AT - timedelta(minutes=5)).replace(tzinfo=None)
    with readings_connection(path) as connection:
        connection.execute("SET preserve_insertion_order = true")
        # In batches of whole minutes, each committed: one INSERT of 150 M rows held ~17 GB before its commit.
        connection.execute("SET memory_limit = '4GB'")
        batch = BUILD_BATCH_MINUTES * sensors
        for first_row in range(0, rows, batch):
            connection.execute(
                _HISTORY_SQL,
                {
                    "first_row": first_row,
                    "end_row": min(rows, first_row + batch),
                    "sensors": sensors,
                    "first_sensor": FIRST_SENSOR_ID,
                    "minutes": minutes,
                    "newest": newest,
                    "period": FIVE_MINUTE.name,
                },
            )
        connection.execute(
            """INSERT INTO snapshot_log (snapshot, period, status, records, rows_inserted, rows_duplicate,
                   values_rejected, processed_at, values_read, values_invalid)
               SELECT 'history-' || m, $period, 'merged', $sensors, $sensors, 0, 0,
                      $newest::TIMESTAMP - to_minutes(CAST($minutes - 1 - m AS BIGINT)) + INTERVAL 1 MINUTE,
                      2 * $sensors, 0
               FROM range($minutes) t(m)""",
            {"sensors": sensors, "minutes": minutes, "newest": newest, "period": FIVE_MINUTE.name},
        )
        # The next merge gets the next number, as it would after `minutes` merges.
        connection.execute(f"CREATE OR REPLACE SEQUENCE aqi_ingest_seq START {minutes + 1}")
        for target, (state_table, _) in SYNC_TABLES.items():
            ensure_sync_tables(connection, target)
            # As after a full sync: each sensor's watermark is its last reading (its last minute).
            connection.execute(
                f"""INSERT INTO {state_table} (period, sensor_id, synced_seq, synced_through, updated_at)
                    SELECT $period, $first_sensor + k, last_minute + 1,
                           $newest::TIMESTAMP - to_minutes(CAST($minutes - 1 - last_minute AS BIGINT)), now()
                    FROM (SELECT k, ($rows - 1 - k) // $sensors AS last_minute
                          FROM range(least($rows, $sensors)) t(k))""",
                {
                    "rows": rows,
                    "sensors": sensors,
                    "first_sensor": FIRST_SENSOR_ID,
                    "minutes": minutes,
                    "newest": newest,
                    "period": FIVE_MINUTE.name,
                },
            )
            if rows:
                connection.execute(f"INSERT INTO {PROGRESS_TABLE} VALUES (?, ?, now())", [target, minutes + 1])
        connection.execute("CHECKPOINT")


def _timed(step: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    started = time.perf_counter()
    result = step()
    return result, {"seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": process_peak_rss_mb()}


def _run_checks(connection: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, bool]:
    scope = checks.scope_snapshots(connection, run_id)
    now = SNAPSHOT_AT + timedelta(minutes=1)
    outcomes = {
        "indices_match_concentrations": checks.indices_match_concentrations(connection, scope),
        "indices_in_range": checks.indices_in_range(connection, scope),
        "overall_is_max_of_sub_indices": checks.overall_is_max_of_sub_indices(connection, scope),
        "daqi_band_matches_index": checks.daqi_band_matches_index(connection, scope),
        "no_duplicate_readings": checks.no_duplicate_readings(connection, scope),
        "quarantine_share": checks.quarantine_share(connection, 0.05, scope),
        "humid_pm_share": checks.humid_pm_share(connection, scope=scope),
        "readings_fresh": checks.readings_fresh(connection, now=now),
    }
    return {name: outcome.passed for name, outcome in outcomes.items()}


def _sync_scan(connection: duckdb.DuckDBPyConnection, target: str = "timestream") -> dict[str, Any]:
    """What a sync run reads from DuckDB: the pending count and the first chunk of pending readings (as
    Arrow). Turning that chunk into the Python records the writers use is timed apart (`to_python_seconds`):
    it costs the chunk's size, whatever the history's."""
    started = time.perf_counter()
    pending = count_pending(connection, target)
    counted = time.perf_counter()
    chunk = scan_pending(connection, target, SYNC_CHUNK_ROWS)
    scanned = time.perf_counter()
    readings = chunk.to_pylist()
    if len(readings) != min(pending, SYNC_CHUNK_ROWS):
        raise AssertionError(f"{target}: {len(readings)} readings loaded, {pending} pending")
    return {
        "target": target,
        "pending": pending,
        "count_pending_seconds": round(counted - started, 3),
        "scan_pending_seconds": round(scanned - counted, 3),
        "seconds": round(scanned - started, 3),
        "to_python_seconds": round(time.perf_counter() - scanned, 3),
    }


def _step(name: str, database: Path, snapshot: Path, run_id: str) -> dict[str, Any]:
    """One step in a process of its own (as Dagster runs each step), timed, with that process's peak RSS."""
    with duckdb.connect() as warm:  # loads the JSON extension once, as a long-lived process would have
        warm.execute("SELECT 1")
    with readings_connection(database) as connection:
        if name == "merge":
            stats, figures = _timed(
                lambda: merge_snapshot(connection, snapshot, FIVE_MINUTE.name, now=SNAPSHOT_AT, run_id=run_id)
            )
            figures["rows_merged"] = stats.rows_inserted
        elif name == "checks":
            passed, figures = _timed(lambda: _run_checks(connection, run_id))
            figures["passed"] = passed
        elif name == "summary":
            summary, figures = _timed(lambda: readings_summary(connection))
            figures["total_rows"] = summary.total_rows
        else:
            scan, figures = _timed(lambda: _sync_scan(connection))
            figures["seconds_with_to_python"] = figures.pop("seconds")
            figures.update(scan)
    return figures


def _step_in_child(name: str, database: Path, snapshot: Path, run_id: str, results: Any) -> None:
    results.put(_step(name, database, snapshot, run_id))


STEPS = ("merge", "checks", "summary", "sync_scan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aqi-bench-history-") as tmp:
        database = args.database or Path(tmp) / "history.duckdb"
        snapshot = Path(tmp) / "snapshot.json.gz"
        snapshot.write_bytes(gzip.compress(generate_snapshot(args.records, seed=args.seed, at=SNAPSHOT_AT)))
        started = time.perf_counter()
        build_history(database, args.rows, args.sensors)
        build_seconds = time.perf_counter() - started
        figures: dict[str, Any] = {}
        context = multiprocessing.get_context("spawn")
        for name in STEPS:
            results = context.Queue()
            child = context.Process(target=_step_in_child, args=(name, database, snapshot, "bench-history", results))
            child.start()
            figures[name] = results.get()
            child.join()
            if child.exitcode:
                raise RuntimeError(f"step {name} failed (exit code {child.exitcode})")
        return {
            "benchmark": "history",
            "history_rows": args.rows,
            "sensors": args.sensors,
            "snapshot_records": args.records,
            "build_seconds": round(build_seconds, 1),
            "database_mb": round(database.stat().st_size / 1e6, 1),
            **figures,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"DuckDB {duckdb.__version__}",
        }
