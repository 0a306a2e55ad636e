"""Monthly archive benchmark: months of local Spark Parquet → verified Parquet tier partitions (`backfill_month`).

`--workers W` months (from 2016-01, skipping months shorter than D days) of `--sensors N` SDS011 sensors over
`--days D` days are generated first (not timed, in a child process) by `archive_month_data`. Every timed run is
a fresh spawned process, as Dagster runs a step, backfilling into a tier directory of its own with every day
cold (`hot_from` is today):

- `one_worker`: month 1, DuckDB on every core; `one_worker_one_thread`: month 1, one DuckDB thread;
- `workers`: W processes at once (released together by a barrier), each its own month on one thread; `speedup` is
  their combined throughput over `one_worker_one_thread`'s (on a 2-core machine, a stand-in for W pods);
- `per_day_csv`: the daily per-sensor CSVs of the first `--csv-days` days of month 1 merged with
  `merge_archive_day` into a fresh DuckDB file (the merges only, no tier export), extrapolated to the month;
- `floor`: one bare DuckDB `COPY` of month 1's Parquet to one zstd Parquet file, no rules applied.

`estimate` scales the measured month linearly to a year of the whole network (`--network-sensors`).
"""

from __future__ import annotations

import argparse
import calendar
import multiprocessing
import os
import platform
import queue
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from aqi_assets.bench.memory import process_peak_rss_mb

FIRST_MONTH = date(2016, 1, 1)
SENSOR_TYPE = "sds011"  # as in the archive's paths
DAYS_PER_YEAR = 365
ESTIMATE_WORKERS = 50
# The targets for one month of 1,000 PM sensors (31 days) on a 2-core machine.
TARGET_MONTH_SECONDS = 60
TARGET_PEAK_RSS_MB = 1500
TARGET_SPEEDUP = 1.7
# A child that has not reached the start line by then has failed (the others stop waiting).
BARRIER_TIMEOUT_S = 600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sensors", type=int, default=1000, help="SDS011 sensors per month")
    parser.add_argument("--days", type=int, default=31, help="days of each month (from the 1st)")
    parser.add_argument("--workers", type=int, default=2, help="months backfilled at once, one process each")
    parser.add_argument("--parts", type=int, default=4, help="Spark part files per month")
    parser.add_argument("--csv-days", type=int, default=None,
                        help="per-day CSV path: merge only the first K days and extrapolate (default: every day)")
    parser.add_argument("--no-csv", action="store_true", help="skip the per-day CSV path")
    parser.add_argument("--network-sensors", type=int, default=15_000, help="sensors of the yearly estimate")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where data and tiers go, kept afterwards (default: a temporary directory, removed)")
    parser.add_argument("--seed", type=int, default=0)


def _months(count: int, days: int) -> list[date]:
    """The first ``count`` months from FIRST_MONTH at least ``days`` long (February has no 31st), so every
    worker gets the same amount of data."""
    months: list[date] = []
    month = FIRST_MONTH
    while len(months) < count:
        if calendar.monthrange(month.year, month.month)[1] >= days:
            months.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


def _parquet_dir(workdir: Path, month: date) -> Path:
    return workdir / "parquet" / f"{month:%Y-%m}" / SENSOR_TYPE


def _generate_month(
    workdir: str, month: date, sensors: int, days: int, parts: int, csv_days: int, seed: int, start_line: Any,
    results: Any,
) -> None:
    """Child process: the month as Spark Parquet and, when ``csv_days``, its first days as daily CSVs
    (``start_line`` is not waited for: nothing here is timed)."""
    import pyarrow.compute as pc

    from aqi_assets.bench.archive_month_data import month_readings, write_day_csvs, write_spark_parquet

    root = Path(workdir)
    table = month_readings(month, sensors, days, seed=seed)
    parquet_dir = _parquet_dir(root, month)
    shutil.rmtree(parquet_dir, ignore_errors=True)  # part names are new each run: old ones would add up
    parts_written = write_spark_parquet(table, parquet_dir, parts=parts)
    figures: dict[str, Any] = {
        "rows_generated": table.num_rows,
        "parquet_files": len(parts_written),
        "parquet_bytes": sum(path.stat().st_size for path in parts_written),
        "csv_files": 0,
        "csv_bytes": 0,
        "csv_rows_generated": 0,
    }
    if csv_days:
        # The timestamp's dictionary indices are seconds since the month's start.
        seconds = table["timestamp"].combine_chunks().indices
        first_days = table.filter(pc.less(seconds, csv_days * 86_400))
        csv_dir = root / "csv" / f"{month:%Y-%m}"
        shutil.rmtree(csv_dir, ignore_errors=True)
        written = write_day_csvs(first_days, csv_dir)
        paths = [path for day_paths in written.values() for path in day_paths]
        figures.update(csv_files=len(paths), csv_bytes=sum(path.stat().st_size for path in paths),
                       csv_rows_generated=first_days.num_rows)
    results.put(figures)


def _warm_duckdb() -> None:
    """DuckDB's first query in a process pays for its set-up: not part of any step's time."""
    with duckdb.connect() as connection:
        connection.execute("SELECT 1").fetchall()


def _backfill(workdir: str, run: str, month: date, threads: int | None, start_line: Any, results: Any) -> None:
    """Child process: one month backfilled into the run's own tier; its figures and the tier's rows read back."""
    import pyarrow.parquet as pq

    from aqi_assets.lib.archive.monthly_fetch import PARQUET, MonthFile
    from aqi_assets.lib.common.location import open_location
    from aqi_assets.lib.tiers.archive_months import backfill_month

    root = Path(workdir)
    parts = sorted(_parquet_dir(root, month).glob("part-*.parquet"))
    sources = [MonthFile(SENSOR_TYPE, PARQUET, path.name, path, path.stat().st_size, "", False) for path in parts]
    tier_dir, scratch = root / "tier" / run, root / "scratch" / run
    for directory in (tier_dir, scratch):
        shutil.rmtree(directory, ignore_errors=True)  # a tier already holding the month would make it a no-op
    scratch.mkdir(parents=True)
    location = open_location(str(tier_dir))
    _warm_duckdb()
    start_line.wait(BARRIER_TIMEOUT_S)
    started_at, cpu_started = time.time(), time.process_time()
    result = backfill_month(month, sources, location, hot_from=date.today(), hot_dir=scratch / "hot",
                            threads=threads, scratch_root=scratch)
    ended_at, cpu_seconds = time.time(), time.process_time() - cpu_started
    peak_rss = process_peak_rss_mb()
    tier_files = [info.path for info in location.files_under(location.path("period=archive"))]
    results.put({
        "month": f"{month:%Y-%m}",
        "threads": threads or "all",
        "started_at": started_at,
        "ended_at": ended_at,
        "seconds": round(ended_at - started_at, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "stage_seconds": result.seconds,
        "measurements": result.measurements,
        "rows": result.cold_total,
        "rows_outside_month": result.rows_outside_month,
        "values_quarantined": result.values_quarantined,
        "records_quarantined": result.records_quarantined,
        "days": len(result.cold_rows),
        "hot_rows": result.hot_rows,
        "source_bytes": result.bytes,
        "parquet_bytes": result.parquet_bytes,
        "tier_files": len(tier_files),
        "tier_rows_read_back": sum(pq.ParquetFile(path).metadata.num_rows for path in tier_files),
        "peak_rss_mb": peak_rss,
    })


def _in_fresh_processes(step: Callable[..., None], calls: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Run ``step(*call, start_line, results)`` for every call at once, each in a spawned process (cold caches, its
    own peak RSS); the children start timing together at ``start_line``. Their figures, in the order of ``calls``."""
    context = multiprocessing.get_context("spawn")
    start_line = context.Barrier(len(calls))
    channels = [context.Queue() for _ in calls]
    children = [context.Process(target=step, args=(*call, start_line, channel))
                for call, channel in zip(calls, channels, strict=True)]
    for child in children:
        child.start()
    figures: list[dict[str, Any]] = []
    for child, channel in zip(children, channels, strict=True):
        while True:
            try:
                figures.append(channel.get(timeout=1))
                break
            except queue.Empty:
                # A child that died before reporting would otherwise leave the parent waiting forever.
                if not child.is_alive() and child.exitcode:
                    for other in children:
                        if other.is_alive():
                            other.terminate()
                    raise RuntimeError(f"{step.__name__} failed (exit code {child.exitcode})") from None
    for child in children:
        child.join()
    return figures


def _per_day_csv(workdir: str, month: date, days: int, start_line: Any, results: Any) -> None:
    """Child process: the first ``days`` days of daily CSVs merged day by day into a fresh DuckDB history."""
    from aqi_assets.lib.archive.merge import merge_archive_day
    from aqi_assets.lib.readings.schema import readings_connection

    root = Path(workdir)
    csv_dir = root / "csv" / f"{month:%Y-%m}"
    database = root / "csv-history" / "history.duckdb"
    shutil.rmtree(database.parent, ignore_errors=True)
    database.parent.mkdir(parents=True)
    day_dirs = sorted(path for path in csv_dir.iterdir() if path.is_dir())[:days]
    measurements = rows = 0
    with readings_connection(database) as connection:
        connection.execute("SET enable_progress_bar = false")
        start_line.wait(BARRIER_TIMEOUT_S)
        started, cpu_started = time.perf_counter(), time.process_time()
        for day_dir in day_dirs:
            merged = merge_archive_day(connection, date.fromisoformat(day_dir.name), sorted(day_dir.glob("*.csv")))
            measurements += merged.measurements
            rows += merged.rows_inserted
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    results.put({
        "days_merged": len(day_dirs),
        "files": sum(1 for day_dir in day_dirs for _ in day_dir.glob("*.csv")),
        "measurements": measurements,
        "rows": rows,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "rows_per_s": round(rows / seconds) if seconds else None,
        "peak_rss_mb": process_peak_rss_mb(),
    })


def _floor(workdir: str, month: date, start_line: Any, results: Any) -> None:
    """Child process: one bare DuckDB COPY of the month's Parquet to one Parquet file, no rules applied."""
    root = Path(workdir)
    parts = sorted(str(path) for path in _parquet_dir(root, month).glob("part-*.parquet"))
    target = root / "floor" / f"{month:%Y-%m}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    files = "[" + ", ".join(f"'{path}'" for path in parts) + "]"
    with duckdb.connect() as connection:
        connection.execute("SET enable_progress_bar = false")
        connection.execute("SELECT 1").fetchall()
        start_line.wait(BARRIER_TIMEOUT_S)
        started = time.perf_counter()
        rows = connection.execute(
            f"COPY (SELECT * FROM read_parquet({files})) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
        ).fetchone()[0]
        seconds = time.perf_counter() - started
    results.put({
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds) if seconds else None,
        "parquet_bytes": target.stat().st_size,
        "peak_rss_mb": process_peak_rss_mb(),
    })


def _with_throughput(run: dict[str, Any]) -> dict[str, Any]:
    """A backfill's figures as reported: timing stamps dropped, rows/s and Parquet bytes per row added."""
    figures = {key: value for key, value in run.items() if key not in ("started_at", "ended_at")}
    figures["rows_per_s"] = round(run["rows"] / run["seconds"]) if run["seconds"] else None
    figures["parquet_bytes_per_row"] = round(run["parquet_bytes"] / run["rows"], 2) if run["rows"] else None
    return figures


def _machine() -> str:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return (f"{platform.machine()}, {model or 'unknown CPU'}, {cores} cores, Python {platform.python_version()}, "
            f"DuckDB {duckdb.__version__}")


def _estimate(args: argparse.Namespace, one_worker: dict[str, Any], per_worker_rows_per_s: float) -> dict[str, Any]:
    """The measured month scaled linearly to a year of the whole network."""
    scale = (args.network_sensors / args.sensors) * (DAYS_PER_YEAR / args.days)
    rows = one_worker["rows"] * scale
    return {
        "note": (f"linear scaling of the measured month ({args.sensors} sensors x {args.days} days) to "
                 f"{args.network_sensors} sensors x {DAYS_PER_YEAR} days; hours_on_{ESTIMATE_WORKERS}_workers "
                 "assumes every worker (one DuckDB thread each, on its own machine) keeps the per-worker "
                 f"throughput measured with {args.workers} workers at once; an estimate, not a measurement"),
        "scale": round(scale, 2),
        "rows_per_year": round(rows),
        "parquet_bytes_per_year": round(one_worker["parquet_bytes"] * scale),
        "parquet_gb_per_year": round(one_worker["parquet_bytes"] * scale / 1e9, 1),
        "seconds_per_month_at_network_sensors": round(one_worker["seconds"] * args.network_sensors / args.sensors
                                                      * 31 / args.days, 1),
        "hours_on_this_machine": round(one_worker["seconds"] * scale / 3600, 2),
        f"hours_on_{ESTIMATE_WORKERS}_workers": (
            round(rows / (ESTIMATE_WORKERS * per_worker_rows_per_s) / 3600, 2) if per_worker_rows_per_s else None
        ),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.workers < 1 or args.sensors < 1:
        raise ValueError("--workers and --sensors must be at least 1")
    if not 1 <= args.days <= 31:
        raise ValueError(f"--days must be between 1 and 31, not {args.days}")
    csv_days = 0 if args.no_csv else min(args.csv_days or args.days, args.days)
    months = _months(args.workers, args.days)
    owned = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="aqi-bench-archive-month-")) if owned else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        # One month at a time, each in a child of its own: a month of 1,000 sensors takes ~1.3 GB to generate.
        generated = [
            _in_fresh_processes(_generate_month, [(str(workdir), month, args.sensors, args.days, args.parts,
                                                   csv_days if index == 0 else 0, args.seed)])[0]
            for index, month in enumerate(months)
        ]
        generate_seconds = time.perf_counter() - started

        [one_worker] = _in_fresh_processes(_backfill, [(str(workdir), "one_worker", months[0], None)])
        [one_thread] = _in_fresh_processes(_backfill, [(str(workdir), "one_worker_one_thread", months[0], 1)])
        together = _in_fresh_processes(
            _backfill, [(str(workdir), f"workers-{month:%Y-%m}", month, 1) for month in months]
        )
        csv_run = _in_fresh_processes(_per_day_csv, [(str(workdir), months[0], csv_days)])[0] if csv_days else None
        [floor] = _in_fresh_processes(_floor, [(str(workdir), months[0])])
    finally:
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)

    wall = max(r["ended_at"] for r in together) - min(r["started_at"] for r in together)
    together_rows = sum(r["rows"] for r in together)
    together_rows_per_s = together_rows / wall if wall else 0.0
    one_thread_rows_per_s = one_thread["rows"] / one_thread["seconds"] if one_thread["seconds"] else 0.0
    speedup = together_rows_per_s / one_thread_rows_per_s if one_thread_rows_per_s else None
    one_worker_report = _with_throughput(one_worker)

    result: dict[str, Any] = {
        "benchmark": "archive-month",
        "sensors": args.sensors,
        "days": args.days,
        "workers": args.workers,
        "months": [f"{month:%Y-%m}" for month in months],
        "seed": args.seed,
        "generated": {
            "seconds": round(generate_seconds, 1),
            "rows_per_month": [g["rows_generated"] for g in generated],
            "parquet_files_per_month": generated[0]["parquet_files"],
            "parquet_bytes_per_month": [g["parquet_bytes"] for g in generated],
        },
        "one_worker": one_worker_report,
        "one_worker_one_thread": _with_throughput(one_thread),
        "workers_run": {
            "threads_per_worker": 1,
            "wall_seconds": round(wall, 3),
            "rows": together_rows,
            "rows_per_s": round(together_rows_per_s),
            "per_worker_rows_per_s": round(together_rows_per_s / args.workers),
            "speedup": round(speedup, 3) if speedup is not None else None,
            "efficiency_per_worker": round(speedup / args.workers, 3) if speedup is not None else None,
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in together),
            "runs": [_with_throughput(r) for r in together],
        },
        "floor": {
            "note": "one bare DuckDB COPY of month 1's Parquet to one zstd Parquet file, no rules, all threads",
            **floor,
            "ratio_to_floor": round(one_worker["seconds"] / floor["seconds"], 2) if floor["seconds"] else None,
        },
    }
    if csv_run is not None:
        month_seconds = csv_run["seconds"] * args.days / csv_run["days_merged"] if csv_run["days_merged"] else 0.0
        result["per_day_csv"] = {
            "note": (f"daily per-sensor CSVs of month 1 merged day by day with merge_archive_day into a fresh "
                     f"DuckDB file (the merges only: no export to the tier); {csv_run['days_merged']} of "
                     f"{args.days} days merged, month_seconds extrapolated linearly"),
            **csv_run,
            "csv_bytes": generated[0]["csv_bytes"],
            "month_seconds_extrapolated": round(month_seconds, 1),
            "ratio_to_one_worker": round(month_seconds / one_worker["seconds"], 2) if one_worker["seconds"] else None,
        }
    result["estimate"] = _estimate(args, one_worker_report, together_rows_per_s / args.workers)
    full_month = args.sensors == 1000 and args.days == 31
    result["targets"] = {
        "note": "the issue's targets apply to 1,000 sensors x 31 days; checked only at that size",
        "month_seconds_max": TARGET_MONTH_SECONDS,
        "peak_rss_mb_max": TARGET_PEAK_RSS_MB,
        "speedup_min": TARGET_SPEEDUP,
        "met": {
            "month_seconds": one_worker["seconds"] <= TARGET_MONTH_SECONDS,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in (one_worker, one_thread, *together)) <= TARGET_PEAK_RSS_MB,
            "speedup": speedup is not None and speedup >= TARGET_SPEEDUP,
        } if full_month else None,
    }
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    result["machine"] = _machine()
    return result
