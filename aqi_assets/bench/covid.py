"""Benchmark of the three COVID-19 queries: `python -m aqi_assets.bench covid [--csv FILE] [--continents FILE]`.

By default it reads the repository's own samples (aqi_assets_tests/data/covid19: the final JHU CSSE file,
gzip-compressed, and the Esri continents). ``--csv`` takes the CSV as published or gzip-compressed.

Ingestion (reading and validating the CSV, reading the shapefile) is timed separately and excluded from
the total, as in the original report. Each query is run ``--repeat`` times on the parsed data; the JSON
holds the first (cold) run and the best run per query.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aqi_assets.lib.covid import queries as covid
from aqi_assets.lib.covid.continents import load_continents

SAMPLES = Path(__file__).resolve().parents[2] / "aqi_assets_tests" / "data" / "covid19"
GZIP_MAGIC = b"\x1f\x8b"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--csv", type=Path, default=SAMPLES / "time_series_covid19_confirmed_global.csv.gz",
        help="JHU CSSE time_series_covid19_confirmed_global.csv, plain or gzip-compressed (default: the sample)",
    )
    parser.add_argument(
        "--continents", type=Path, default=SAMPLES / "World_Continents.zip",
        help="Esri World Continents shapefile zip (default: the repository's sample)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per query (best and first are reported)")
    parser.add_argument("--n-init", type=int, default=10, help="k-means initialisations (both implementations)")


def _timed(function: Callable[[], Any], repeat: int) -> tuple[Any, float, float]:
    """(result, first run seconds, best run seconds)."""
    timings = []
    result = None
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        result = function()
        timings.append(time.perf_counter() - started)
    return result, timings[0], min(timings)


def read_csv(path: Path) -> bytes:
    """The CSV's bytes, decompressed when the file is gzip (told by its magic bytes, not its name)."""
    data = path.read_bytes()
    return gzip.decompress(data) if data.startswith(GZIP_MAGIC) else data


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    series = covid.parse_confirmed_csv(read_csv(Path(args.csv)), source=str(args.csv))
    polygons = load_continents(Path(args.continents))
    ingestion = time.perf_counter() - started
    # scikit-learn is imported on first use (see core.covid); its import is start-up, not query time.
    started = time.perf_counter()
    import sklearn.cluster
    import sklearn.metrics  # noqa: F401

    library_import = time.perf_counter() - started

    q1, q1_first, q1_best = _timed(lambda: covid.monthly_mean_daily_cases(series), args.repeat)
    # Query 2 includes the point-in-polygon continent assignment.
    q2, q2_first, q2_best = _timed(
        lambda: covid.weekly_continent_stats(series, covid.location_continents(series, polygons)), args.repeat
    )
    q3, q3_first, q3_best = _timed(lambda: covid.monthly_clusters(series, n_init=args.n_init), args.repeat)

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "benchmark": "covid",
        "csv": str(args.csv),
        "csv_rows": int(series.cumulative.shape[0]),
        "days": int(series.cumulative.shape[1]),
        "repeat": args.repeat,
        "n_init": args.n_init,
        "ingestion_seconds": round(ingestion, 4),
        "scikit_learn_import_seconds": round(library_import, 4),
        "seconds": {
            "q1_monthly_mean_daily_cases": round(q1_best, 4),
            "q2_weekly_continent_stats": round(q2_best, 4),
            "q3_monthly_clusters": round(q3_best, 4),
            "total": round(q1_best + q2_best + q3_best, 4),
        },
        "first_run_seconds": {
            "q1_monthly_mean_daily_cases": round(q1_first, 4),
            "q2_weekly_continent_stats": round(q2_first, 4),
            "q3_monthly_clusters": round(q3_first, 4),
            "total": round(q1_first + q2_first + q3_first, 4),
        },
        "rows": {
            "q1": len(q1),
            "q2": len(q2.stats),
            "q3": len(q3.assignments),
        },
        "q3_months_own_optimal": int((q3.months["inertia_own"] <= q3.months["inertia_optimal"] * (1 + 1e-9)).sum()),
        "q3_months_sklearn_optimal": int(
            (q3.months["inertia_sklearn"] <= q3.months["inertia_optimal"] * (1 + 1e-9)).sum()
        ),
        "q3_mean_adjusted_rand_index": round(float(q3.months["adjusted_rand_index"].mean()), 4),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
