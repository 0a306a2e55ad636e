"""Benchmark of `local_zones`: `python -m aqi_assets.bench local-zones [--locations N] [--europe-share F]`.

`--locations` distinct land locations (a seeded numpy generator; a share in Europe, where most Sensor.Community
sensors are, the rest anywhere between 56° S and 72° N; points at sea, whose zone is an ``Etc/GMT±N`` ocean zone,
are drawn again) resolved to their zone and standard offset for one date:
cold (both caches cleared: a polygon look-up per location, an offset per zone), warm (all from the caches), and
with only the offsets cold (locations cached: the share of the cold time that is the zones' offsets).
Each is the best of `--repeat` runs. tzfpy builds its finder on its first call; that is timed on its own and is
not in the cold figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from importlib.metadata import version
from typing import Any

import numpy as np
import tzfpy

from aqi_assets.bench.memory import peak_rss_mb
from aqi_assets.lib.air_quality import local_time

EUROPE = ((36.0, 71.0), (-10.0, 40.0))  # (latitudes, longitudes)
WORLD = ((-56.0, 72.0), (-180.0, 180.0))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--locations", type=int, default=20_000, help="distinct land locations")
    parser.add_argument("--europe-share", type=float, default=0.75, help="share of the locations in Europe")
    parser.add_argument("--date", type=date.fromisoformat, default=date(2025, 7, 15), help="the day (ISO)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, the best is reported")
    parser.add_argument("--seed", type=int, default=0)


def land_locations(count: int, europe_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct points on land (4 decimals, about 10 m), in the order drawn."""
    rng = np.random.default_rng(seed)
    chosen: dict[tuple[float, float], None] = {}  # insertion-ordered set
    europe_wanted = round(count * europe_share)
    for (lat_range, lon_range), wanted in ((EUROPE, europe_wanted), (WORLD, count - europe_wanted)):
        kept = 0
        while kept < wanted:
            latitudes = np.round(rng.uniform(*lat_range, 4 * wanted), 4)
            longitudes = np.round(rng.uniform(*lon_range, 4 * wanted), 4)
            for point in zip(latitudes.tolist(), longitudes.tolist(), strict=True):
                if kept == wanted:
                    break
                zone = tzfpy.get_tz(point[1], point[0])
                if zone and not zone.startswith("Etc/") and point not in chosen:
                    chosen[point] = None
                    kept += 1
    points = np.array(list(chosen), dtype=float)
    return points[:, 0], points[:, 1]


def _clear_caches() -> None:
    local_time.zone_at.cache_clear()
    local_time._standard_offset_minutes_in_year.cache_clear()


def _best_seconds(call: Any, repeat: int, before: Any = None) -> float:
    best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    tzfpy.get_tz(13.4, 52.5)  # builds the finder
    finder_load = time.perf_counter() - started

    started = time.perf_counter()
    latitudes, longitudes = land_locations(args.locations, args.europe_share, args.seed)
    generation = time.perf_counter() - started

    def resolve() -> list[local_time.LocalZone]:
        return local_time.local_zones(latitudes, longitudes, args.date)

    cold = _best_seconds(resolve, args.repeat, before=_clear_caches)
    zones = resolve()  # caches warm from the last cold run
    warm = _best_seconds(resolve, args.repeat)
    # The part of the cold run that is the zones' offsets (365 zoneinfo samples per zone), locations cached.
    offsets_cold = _best_seconds(resolve, args.repeat, before=local_time._standard_offset_minutes_in_year.cache_clear)
    offsets = {zone.standard_offset_minutes for zone in zones}
    return {
        "benchmark": "local-zones",
        "locations": len(latitudes),
        "europe_share": args.europe_share,
        "date": args.date.isoformat(),
        "seed": args.seed,
        "repeat": args.repeat,
        "distinct_zones": len({zone.time_zone for zone in zones}),
        "distinct_standard_offsets": len(offsets),
        "tzfpy": version("tzfpy"),
        "tzfpy_data": tzfpy.data_version(),
        "finder_load_seconds": round(finder_load, 4),
        "location_generation_seconds": round(generation, 4),
        "seconds": {"cold": round(cold, 4), "warm": round(warm, 4), "cold_offsets_only": round(offsets_cold, 4)},
        "locations_per_second": {"cold": round(len(latitudes) / cold), "warm": round(len(latitudes) / warm)},
        "peak_rss_mb": peak_rss_mb(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
