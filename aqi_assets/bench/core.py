"""Core processing benchmark: a raw (gzip) snapshot file → readings, quarantine and indices merged into DuckDB.

Generation of the snapshot and the warm-up are excluded from `seconds`; the figure is the time of
`merge_snapshot` into a fresh DuckDB file, i.e. parse + quarantine + pivot + indices + keyed insert + commit.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

from aqi_assets.bench.memory import peak_rss_mb
from aqi_assets.lib.air_quality.generator import generate_snapshot
from aqi_assets.lib.air_quality.indices import compute_indices
from aqi_assets.lib.air_quality.normalise import merge_snapshot
from aqi_assets.lib.readings.periods import FIVE_MINUTE
from aqi_assets.lib.readings.schema import readings_connection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--records", type=int, default=20_000, help="generate a snapshot of N records")
    source.add_argument("--snapshot", type=Path, help="a v2-shaped JSON array file (plain or .gz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs, each into a fresh DuckDB file")


def _prepare(args: argparse.Namespace, workdir: Path) -> tuple[Path, int]:
    target = workdir / "snapshot.json.gz"
    if args.snapshot is not None:
        if args.snapshot.suffix == ".gz":
            shutil.copyfile(args.snapshot, target)
        else:
            with open(args.snapshot, "rb") as source, gzip.open(target, "wb", compresslevel=6) as out:
                shutil.copyfileobj(source, out)
        raw_bytes = len(gzip.decompress(target.read_bytes()))
    else:
        body = generate_snapshot(args.records, seed=args.seed)
        raw_bytes = len(body)
        target.write_bytes(gzip.compress(body, compresslevel=6))
    return target, raw_bytes


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="aqi-bench-") as tmp:
        workdir = Path(tmp)
        snapshot, raw_bytes = _prepare(args, workdir)
        with duckdb.connect() as warm:  # loads the JSON extension once, as a long-lived process would have
            warm.execute("SELECT 1")
        timings = []
        stats = None
        for attempt in range(max(1, args.repeat)):
            with readings_connection(workdir / f"bench-{attempt}.duckdb") as connection:
                started = time.perf_counter()
                stats = merge_snapshot(connection, snapshot, FIVE_MINUTE.name)
                timings.append(time.perf_counter() - started)
        assert stats is not None
        seconds = min(timings)
        indices_seconds = _time_indices(workdir / "bench-0.duckdb")
        return {
            "benchmark": "core",
            "records": stats.records,
            "rows": stats.rows_inserted,
            "values_quarantined": stats.values_rejected,
            "snapshot_mb": round(raw_bytes / 1e6, 1),
            "seconds": round(seconds, 3),
            "seconds_all_runs": [round(t, 3) for t in timings],
            "rows_per_s": round(stats.rows_inserted / seconds),
            "indices_seconds": indices_seconds,
            "peak_rss_mb": peak_rss_mb(),
            "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}, "
            f"DuckDB {duckdb.__version__}",
        }


def _time_indices(database: Path) -> float:
    """The part of `seconds` spent computing both indices (best of 3) for the merged readings."""
    with duckdb.connect(str(database), read_only=True) as connection:
        columns = connection.execute("SELECT pm25, pm10 FROM aqi_readings").fetchnumpy()
    pm25 = np.ma.filled(columns["pm25"].astype(np.float64), np.nan)
    pm10 = np.ma.filled(columns["pm10"].astype(np.float64), np.nan)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        compute_indices(pm25, pm10)
        best = min(best, time.perf_counter() - started)
    return round(best, 4)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
