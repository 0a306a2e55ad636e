"""Archive benchmark: parse + quarantine + indices + merge of one day of archive CSVs already on disk.

`--sensors N` SDS011 files of `--rows` measurements each (the archive's shape: a measurement every ~145 s, CRLF
lines, empty dur/ratio columns) are generated first (not timed). `seconds` is `merge_archive_day` of day 1 into
a fresh DuckDB file; `seconds_with_history` is the next day merged into a history that already holds
`--history-days` days, which shows that a day's cost does not grow with the history.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from aqi_assets.bench.memory import peak_rss_mb
from aqi_assets.lib.archive.merge import merge_archive_day
from aqi_assets.lib.readings.schema import readings_connection

FIRST_DAY = date(2025, 10, 15)
HEADER = "sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sensors", type=int, default=1000, help="PM sensors (one file each) per day")
    parser.add_argument("--rows", type=int, default=600, help="measurements per sensor and day")
    parser.add_argument("--history-days", type=int, default=1, help="days merged before the timed second day")
    parser.add_argument("--seed", type=int, default=0)


def write_day(directory: Path, day: date, sensors: int, rows: int, seed: int) -> list[Path]:
    """One day of SDS011 archive files (generated; the values are plausible, a few are bad)."""
    rng = np.random.default_rng([seed, day.toordinal()])
    directory.mkdir(parents=True, exist_ok=True)
    start = datetime.combine(day, datetime.min.time())
    step = 86_400 / rows
    paths = []
    for index in range(sensors):
        sensor = 10_000 + index
        offsets = (np.arange(rows) * step + rng.uniform(0, step / 2, rows)).astype(int)
        pm10 = rng.gamma(2.0, 10.0, rows)
        pm25 = pm10 * rng.uniform(0.3, 0.8, rows)
        lat, lon = rng.uniform(35, 60), rng.uniform(-10, 30)
        lines = [HEADER]
        for offset, p1, p2 in zip(offsets.tolist(), pm10.tolist(), pm25.tolist(), strict=True):
            moment = start + timedelta(seconds=offset)
            lines.append(f"{sensor};SDS011;{sensor + 5};{lat:.3f};{lon:.3f};{moment:%Y-%m-%dT%H:%M:%S};"
                         f"{p1:.2f};;;{p2:.2f};;")
        path = directory / f"{day.isoformat()}_sds011_sensor_{sensor}.csv"
        path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
        paths.append(path)
    return paths


def _cpu_seconds() -> float:
    """CPU time of this process (all threads, DuckDB's included): unlike wall time, it does not grow when
    other processes share the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="aqi-bench-archive-") as tmp:
        workdir = Path(tmp)
        days = [FIRST_DAY + timedelta(days=i) for i in range(args.history_days + 1)]
        files = {day: write_day(workdir / day.isoformat(), day, args.sensors, args.rows, args.seed) for day in days}
        raw_bytes = sum(p.stat().st_size for p in files[days[0]])
        with duckdb.connect() as warm:
            warm.execute("SELECT 1")
        with readings_connection(workdir / "bench.duckdb") as connection:
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            first = merge_archive_day(connection, days[0], files[days[0]])
            seconds, cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu_started
            for day in days[1:-1]:
                merge_archive_day(connection, day, files[day])
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            last = merge_archive_day(connection, days[-1], files[days[-1]])
            seconds_with_history = time.perf_counter() - started
            cpu_seconds_with_history = _cpu_seconds() - cpu_started
            history_rows = connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0]
    return {
        "benchmark": "archive",
        "sensors": args.sensors,
        "files": first.files,
        "measurements": first.measurements,
        "rows": first.rows_inserted,
        "values_quarantined": first.values_quarantined,
        "day_mb": round(raw_bytes / 1e6, 1),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "rows_per_s": round(first.rows_inserted / seconds),
        "seconds_with_history": round(seconds_with_history, 3),
        "cpu_seconds_with_history": round(cpu_seconds_with_history, 3),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "history_rows_before_timed_day": history_rows - last.rows_inserted,
        "peak_rss_mb": peak_rss_mb(),
        "machine": f"{platform.machine()}, Python {platform.python_version()}, DuckDB {duckdb.__version__}",
    }
