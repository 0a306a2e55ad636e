"""Benchmark: the Timestream writer against a local moto server (or a configured endpoint).

`python -m aqi_assets.bench timestream --records 20000` fills a temporary DuckDB `aqi_readings` table with
synthetic readings, starts `moto_server` in a subprocess on 127.0.0.1 (unless `--endpoint-url` is given),
runs the full sync (pending query, records, WriteRecords on a thread pool, watermark save) and a second
sync that must send nothing, and returns one JSON-able dict.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from aqi_assets.core.duckdb_conn import duckdb_connection
from aqi_assets.core.sync_state import READING_COLUMNS

COUNTRIES = ("DE", "NL", "BE", "FR", "PL", "BG", "IT", "AT")
SENSOR_TYPES = ("SDS011", "SPS30", "BME280", "DHT22")


def synthetic_readings(
    n_readings: int, now: datetime | None = None, seed: int = 7, per_sensor: int = 5, step_minutes: int = 5
) -> list[dict[str, Any]]:
    """`n_readings` rows shaped like `aqi_readings` (naive UTC timestamps, the newest a minute before `now`),
    `per_sensor` consecutive readings per sensor, all inside Timestream's default 6 h memory-store window."""
    rng = random.Random(seed)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)
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
                    "period": "5min",
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


_ARROW_TYPES: dict[str, pa.DataType] = {
    "period": pa.string(),
    "sensor_id": pa.int64(),
    "timestamp": pa.timestamp("us"),
    "measurement_id": pa.int64(),
    "location_id": pa.int64(),
    "country": pa.string(),
    "indoor": pa.bool_(),
    "sensor_type": pa.string(),
    "daqi_band": pa.string(),
    "aqi_us_category": pa.string(),
    "aqi_us_beyond": pa.bool_(),
    "snapshot": pa.string(),
    "ingested_at": pa.timestamp("us"),
    "daqi_pm25": pa.int64(),
    "daqi_pm10": pa.int64(),
    "daqi": pa.int64(),
    "aqi_us_pm25": pa.int64(),
    "aqi_us_pm10": pa.int64(),
    "aqi_us": pa.int64(),
}


def insert_readings(connection: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Append rows to `aqi_readings` (columns by name; `other_values` stays NULL)."""
    table = pa.table(
        {c: pa.array([r.get(c) for r in rows], _ARROW_TYPES.get(c, pa.float64())) for c in READING_COLUMNS}
    )
    connection.register("new_readings", table)
    try:
        connection.execute("INSERT INTO aqi_readings BY NAME SELECT * FROM new_readings")
    finally:
        connection.unregister("new_readings")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def moto_subprocess(timeout_s: float = 30.0) -> Iterator[str]:
    """`moto_server` in its own process on a free loopback port (so the server does not compete with the
    writer for this process's GIL); stopped by its own pid."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {endpoint}") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=20_000, help="readings to generate and sync")
    parser.add_argument("--concurrency", type=int, default=8, help="WriteRecords calls in flight")
    parser.add_argument("--endpoint-url", default=None, help="Timestream endpoint (default: a local moto server)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--database", default="aqi_bench")
    parser.add_argument("--table", default="readings")
    parser.add_argument("--seed", type=int, default=7)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    from aqi_assets.core.timestream_records import TableWindow
    from aqi_assets.core.timestream_writer import TimestreamWriter, sync_to_timestream, timestream_client_config

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aqi-bench-ts-")))
        db_path = workdir / "bench.duckdb"
        rows = synthetic_readings(args.records, seed=args.seed)
        with duckdb_connection(db_path) as connection:
            insert_readings(connection, rows)

        if args.endpoint_url:
            endpoint, session = args.endpoint_url, boto3.session.Session(region_name=args.region)
            server = "configured endpoint"
        else:
            endpoint = stack.enter_context(moto_subprocess())
            # moto accepts any credentials; explicit dummies keep the real credential chain out of it.
            session = boto3.session.Session(
                region_name=args.region, aws_access_key_id="bench", aws_secret_access_key="bench"
            )
            server = "moto_server (local subprocess)"
        client = session.client(
            "timestream-write",
            endpoint_url=endpoint,
            config=timestream_client_config(10, max_pool_connections=max(10, 2 * args.concurrency)),
        )
        per_call: list[int] = []
        client.meta.events.register(
            "before-parameter-build.timestream-write.WriteRecords",
            lambda params, **_: per_call.append(len(params.get("Records", []))),
        )
        with contextlib.suppress(client.exceptions.ConflictException):
            client.create_database(DatabaseName=args.database)
        with contextlib.suppress(client.exceptions.ConflictException):
            client.create_table(DatabaseName=args.database, TableName=args.table)
        window = TableWindow.from_description(
            client.describe_table(DatabaseName=args.database, TableName=args.table)["Table"]
        )
        writer = TimestreamWriter(client, args.database, args.table, max_workers=args.concurrency)

        def connect() -> Any:
            return duckdb_connection(db_path)

        started = time.perf_counter()
        first = sync_to_timestream(connect, writer, window)
        end_to_end = time.perf_counter() - started
        second = sync_to_timestream(connect, writer, window)

    return {
        "target": "timestream",
        "server": server,
        "records": args.records,
        "records_sent": first.sent,
        "records_accepted": first.accepted,
        "records_rejected": first.rejected,
        "records_skipped": first.skipped,
        "records_failed": first.failed,
        "requests": first.requests,
        "max_records_per_request": max(per_call, default=0),
        "concurrency": args.concurrency,
        "seconds": round(end_to_end, 3),
        "records_per_s": round(first.sent / end_to_end, 1) if end_to_end else 0.0,
        "write_seconds": round(first.seconds, 3),
        "write_records_per_s": round(first.records_per_s, 1),
        "second_run_records_sent": second.sent,
    }
