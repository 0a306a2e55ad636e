"""Scaffolding shared by the sync benchmarks (`timestream`, `influxdb`): synthetic readings in a temporary
DuckDB file, the common options, two timed syncs (the second must send nothing) and the timing figures.

`synthetic_readings` and `insert_readings` make realistic rows without a merge; the sync tests use them too.
`free_port` finds a loopback port for the local servers a benchmark starts.
"""

from __future__ import annotations

import argparse
import random
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings import schema
from aqi_assets.lib.readings.periods import FIVE_MINUTE
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.sinks.columns import sink_columns
from aqi_assets.lib.sinks.sync_state import ConnectionFactory, SyncSummary

COUNTRIES = ("DE", "NL", "BE", "FR", "PL", "BG", "IT", "AT")
SENSOR_TYPES = ("SDS011", "SPS30", "BME280", "DHT22")


def synthetic_readings(
    n_readings: int, now: datetime | None = None, seed: int = 7, per_sensor: int = 5, step_minutes: int = 5
) -> list[dict[str, Any]]:
    """`n_readings` rows shaped like `aqi_readings` (naive UTC timestamps, the newest a minute before `now`),
    `per_sensor` consecutive readings per sensor, all inside Timestream's default 6 h memory-store window."""
    rng = random.Random(seed)
    now = naive_utc(now).replace(microsecond=0)
    newest = now - timedelta(minutes=1)
    rows: list[dict[str, Any]] = []
    sensor_id = 1000
    while len(rows) < n_readings:
        sensor_id += 1
        sensor_type = rng.choice(SENSOR_TYPES)
        has_pm = sensor_type in ("SDS011", "SPS30")
        country = rng.choice(COUNTRIES)
        lat, lon = round(rng.uniform(36, 60), 3), round(rng.uniform(-8, 28), 3)
        for k in range(min(per_sensor, n_readings - len(rows))):
            pm25 = round(rng.uniform(0.5, 80), 2) if has_pm else None
            pm10 = round(pm25 * rng.uniform(1.1, 2.0), 2) if pm25 is not None else None
            daqi = None if pm25 is None else min(10, 1 + int(pm25 // 12))
            aqi_us = None if pm25 is None else int(pm25 * 3)
            rows.append(
                {
                    "period": FIVE_MINUTE.name,
                    "sensor_id": sensor_id,
                    "timestamp": newest - timedelta(minutes=step_minutes * k),
                    "measurement_id": sensor_id * 100 + k,
                    "location_id": sensor_id // 2,
                    "country": country,
                    "latitude": lat,
                    "longitude": lon,
                    "altitude": round(rng.uniform(0, 900), 1),
                    "indoor": rng.random() < 0.05,
                    "sensor_type": sensor_type,
                    "pm1": None,
                    "pm25": pm25,
                    "pm4": None,
                    "pm10": pm10,
                    "temperature": None if has_pm else round(rng.uniform(-10, 35), 2),
                    "humidity": None if has_pm else round(rng.uniform(10, 100), 2),
                    "pressure": None if has_pm or sensor_type == "DHT22" else round(rng.uniform(95000, 104000), 1),
                    "pressure_at_sealevel": None,
                    "daqi_pm25": daqi,
                    "daqi_pm10": daqi,
                    "daqi": daqi,
                    "daqi_band": None
                    if daqi is None
                    else ("Low" if daqi <= 3 else "Moderate" if daqi <= 6 else "High"),
                    "aqi_us_pm25": aqi_us,
                    "aqi_us_pm10": aqi_us,
                    "aqi_us": aqi_us,
                    "aqi_us_category": None if aqi_us is None else ("Good" if aqi_us <= 50 else "Moderate"),
                    "aqi_us_beyond": None if aqi_us is None else aqi_us > 500,
                    "snapshot": f"bench-{k}",
                    "ingested_at": now - timedelta(seconds=k),
                }
            )
    return rows


# DuckDB type → the Arrow type a column is handed over as (`INSERT … BY NAME` casts to the table's type).
_ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
    "TINYINT": pa.int64(),
    "SMALLINT": pa.int64(),
    "INTEGER": pa.int64(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "TIMESTAMP": pa.timestamp("us"),
}


def insert_readings(connection: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Append rows to `aqi_readings`: the columns the sinks carry, typed as the contract says (`other_values`
    stays NULL, and so does `ingest_seq` unless a row gives one)."""
    sql_types = {c.name: c.sql_type for c in schema.READINGS_COLUMNS}  # now: a test may extend the contract
    table = pa.table(
        {
            c: pa.array([r.get(c) for r in rows], _ARROW_TYPES[sql_types[c]])
            for c in (*sink_columns().carried, "ingest_seq")
        }
    )
    connection.register("new_readings", table)
    try:
        connection.execute("INSERT INTO aqi_readings BY NAME SELECT * FROM new_readings").fetchall()  # completed
    finally:
        connection.unregister("new_readings")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def add_sync_arguments(parser: argparse.ArgumentParser, concurrency: int, concurrency_help: str) -> None:
    """The options both sync benchmarks take; each adds its target's own."""
    parser.add_argument("--records", type=int, default=20_000, help="readings to generate and sync")
    parser.add_argument("--concurrency", type=int, default=concurrency, help=concurrency_help)
    parser.add_argument("--database", default="aqi_bench")
    parser.add_argument("--seed", type=int, default=7)


def bench_database(workdir: Path, records: int, seed: int) -> ConnectionFactory:
    """A DuckDB file in `workdir` holding `records` synthetic readings; returns how the sync opens it."""
    db_path = workdir / "bench.duckdb"
    with readings_connection(db_path) as connection:
        insert_readings(connection, synthetic_readings(records, seed=seed))

    def connect() -> Any:
        return readings_connection(db_path)

    return connect


def timed_syncs(sync: Callable[[], SyncSummary]) -> tuple[SyncSummary, SyncSummary, float]:
    """Run `sync` twice: the first run (timed end to end: pending query, writes, watermark save) and a
    second that must find nothing left to send."""
    started = time.perf_counter()
    first = sync()
    end_to_end = time.perf_counter() - started
    return first, sync(), end_to_end


def timing_figures(first: SyncSummary, second: SyncSummary, end_to_end: float) -> dict[str, Any]:
    return {
        "seconds": round(end_to_end, 3),
        "records_per_s": round(first.sent / end_to_end, 1) if end_to_end else 0.0,
        "write_seconds": round(first.seconds, 3),
        "write_records_per_s": round(first.records_per_s, 1),
        "second_run_records_sent": second.sent,
    }
