"""Public-site benchmark: build the site for N sensors, draw it in headless Chromium, load it with Locust.

1. A generated snapshot (seeded generator) with about N outdoor PM sensors is merged by the real ingest; the
   hours before it (7 days by default) are added as one reading per sensor and hour, so every sensor's history
   holds a full week; `aggregates.aqi_hourly` (the site's other input: it fails without it) is computed for
   those hours by the real aggregates code, as the pipeline does before the hourly build.
2. `build_site` is timed, each time in a fresh process as a Dagster run step is: the hourly build (`--builds`
   times, every history file written into an empty site) and a rebuild after a new reading (what every
   5-minute update costs: the week's history files unchanged).
3. Debian's Chromium (Playwright) opens the page from nginx: milliseconds from navigation start until the first
   view is drawn (`window.aqiSite.drawnAtMs`: every sensor loaded into the clustering, its groups and single
   sensors drawn); with `--docs-screenshots DIR` it also takes the documentation's screenshots of that site.
4. Locust (headless, FastHttpUser, constant pacing) against nginx on loopback: by default 60 s at 10
   arrivals/s then 120 s at 30 arrivals/s, each arrival loading index.html, the assets, the pointer,
   latest.geojson and the history files of three sensors, with gzip. p50/p95/p99 per file and phase, errors,
   the achieved arrival rate, next to the targets of the plan this replaces (p95 < 75 ms, p99 < 100 ms, no errors).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from aqi_assets.bench.memory import in_fresh_process, peak_rss_mb, process_peak_rss_mb
from aqi_assets.lib.air_quality.aggregates import (
    AGGREGATES_SCHEMA,
    AQI_HOURLY,
    COMPUTE_MEMORY_LIMIT,
    DAY,
    HOURLY_SCHEMA,
    hourly_indices,
)
from aqi_assets.lib.air_quality.generator import generate_snapshot
from aqi_assets.lib.air_quality.normalise import merge_snapshot
from aqi_assets.lib.common.duckdb_conn import bounded_memory
from aqi_assets.lib.common.duckdb_tables import replace_partition
from aqi_assets.lib.public_site.build import SiteConfig, build_site, read_pointer
from aqi_assets.lib.public_site.nginx import serving
from aqi_assets.lib.readings.history import attach_history
from aqi_assets.lib.readings.periods import FIVE_MINUTE
from aqi_assets.lib.readings.schema import readings_connection

# Where the aggregates IO manager keeps aqi_hourly by default (named in lib: the timed build processes stay
# free of Dagster).
HOURLY_TABLE = f"{AGGREGATES_SCHEMA}.{AQI_HOURLY}"
TARGET_P95_MS = 75.0
TARGET_P99_MS = 100.0
MAP_DRAW_GOAL_MS = 1500.0
BUILD_GOAL_S = 2.0
GZIP_GOAL_BYTES = 1_500_000
# Half the generated records are PM sensors; a few are indoors or without coordinates.
RECORDS_PER_SHOWN_SENSOR = 2.12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sensors", type=int, default=20_000, help="about this many sensors on the map")
    parser.add_argument("--history-hours", type=int, default=168, help="hours of history per sensor")
    parser.add_argument("--phases", default="60:10,120:30", help="seconds:arrivals_per_s,... (Locust)")
    parser.add_argument("--pacing", type=float, default=2.0, help="seconds between one user's visits")
    parser.add_argument("--no-load", action="store_true", help="skip Locust (build and browser only)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium draw timing")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the drawn map here")
    parser.add_argument("--docs-screenshots", type=Path, metavar="DIR",
                        help="write the documentation's screenshots (site-europe.png, site-city.png, "
                             "site-phone.png) into DIR")
    parser.add_argument("--port", type=int, default=0, help="nginx port (0: a free one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--builds", type=int, default=3, help="hourly builds timed (each in a fresh process)")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _prepare_history(database: Path, args: argparse.Namespace, at: datetime) -> int:
    records = max(2, round(args.sensors * RECORDS_PER_SHOWN_SENSOR))
    snapshot = database.parent / "latest.json.gz"
    snapshot.write_bytes(gzip.compress(generate_snapshot(records, seed=args.seed, at=at), compresslevel=1))
    with readings_connection(database) as connection:
        merge_snapshot(connection, snapshot, FIVE_MINUTE.name, now=at)
        if args.history_hours > 0:
            # One reading per sensor and earlier hour, its PM scaled by a deterministic pseudo-random factor.
            connection.execute(
                """
                INSERT INTO aqi_readings
                SELECT r.* REPLACE (
                    "timestamp" - INTERVAL 1 HOUR * h AS "timestamp",
                    pm25 * (0.5 + ((sensor_id * 7 + h * 13) % 20) / 10.0) AS pm25,
                    pm10 * (0.5 + ((sensor_id * 7 + h * 13) % 20) / 10.0) AS pm10,
                    snapshot || '-h' || h AS snapshot
                )
                FROM aqi_readings r, range(1, $hours + 1) AS hours(h)
                WHERE period = $period AND snapshot = $name
                """,
                {"hours": args.history_hours, "name": snapshot.name, "period": FIVE_MINUTE.name},
            )
        _hourly_aggregates(connection, at, args.history_hours)
    return records


def _hourly_aggregates(connection: duckdb.DuckDBPyConnection, at: datetime, hours: int) -> None:
    """`aggregates.aqi_hourly` over the history, a day at a time, as the `aqi_hourly` partitions compute it."""
    end = at.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours)
    attach_history(connection, None)  # the aggregate reads aqi_readings_all (nothing is pruned here)
    if start == end:  # no complete hour: the table exists, empty, as after the first (empty) partition
        replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, HOURLY_SCHEMA.empty_table(), "hour", (end, end))
    while start < end:
        stop = min(start + DAY, end)
        with bounded_memory(connection, COMPUTE_MEMORY_LIMIT):
            frame = hourly_indices(connection, start, stop)
        replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, frame, "hour", (start, stop))
        start = stop


def _build_in_child(database: str, site: str, results: Any) -> None:
    with readings_connection(database, read_only=True) as connection:
        cpu = time.process_time()
        built = build_site(connection, Path(site), SiteConfig(tile_url=""), hourly_table=HOURLY_TABLE, location=None)
    results.put({"seconds": built.seconds, "cpu_seconds": time.process_time() - cpu,
                 "history_files_written": built.history_files_written, "features": built.features,
                 "latest_bytes": built.latest_bytes, "latest_gzip_bytes": built.latest_gzip_bytes,
                 "indices_source": built.indices_source, "peak_rss_mb": process_peak_rss_mb()})


def _timed_build(database: Path, site: Path) -> dict[str, Any]:
    """One `build_site` in a process of its own (cold memory, as each Dagster run step has)."""
    return in_fresh_process(_build_in_child, str(database), str(site))


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    array = np.asarray(values)
    return {
        "count": int(array.size),
        "p50_ms": round(float(np.percentile(array, 50)), 1),
        "p95_ms": round(float(np.percentile(array, 95)), 1),
        "p99_ms": round(float(np.percentile(array, 99)), 1),
        "max_ms": round(float(array.max()), 1),
    }


def _browser_draw(url: str, screenshot: Path | None) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            state = page.evaluate(
                "() => ({drawnAtMs: aqiSite.drawnAtMs, drawMs: aqiSite.drawMs, features: aqiSite.features, "
                "markers: aqiSite.layer.getLayers().length, groups: aqiSite.groups.length})"
            )
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    return {
        "map_drawn_ms_from_navigation": round(state["drawnAtMs"]),
        "markers_draw_ms": round(state["drawMs"]),
        "markers": state["markers"],  # symbols drawn at the first view: groups and single sensors
        "groups": state["groups"],
        "features": state["features"],
        "goal_ms": MAP_DRAW_GOAL_MS,
    }


def _docs_screenshots(url: str, directory: Path) -> list[str]:
    """The documentation's screenshots of the site at `url`: Europe at the first view, a city zoomed in (found by
    the place search), the phone layout. (The popup with German advice comes from the browser test, whose
    history has complete hours for the chart: this benchmark's history has one reading per hour.)"""
    from playwright.sync_api import sync_playwright

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    ready = "body[data-ready=true]"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            desktop = browser.new_page(viewport={"width": 1280, "height": 800}, locale="en-GB")
            desktop.goto(f"{url}/?lang=en")
            desktop.wait_for_selector(ready, timeout=60_000)
            desktop.screenshot(path=str(directory / "site-europe.png"))
            desktop.locator("#find-id").fill("Munich")
            desktop.locator("#find-id").press("Enter")
            desktop.evaluate("() => { window.aqiSite.map.setZoom(9, {animate: false}); }")
            desktop.wait_for_timeout(500)
            desktop.screenshot(path=str(directory / "site-city.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 844}, locale="en-GB")
            phone.goto(f"{url}/?lang=en")
            phone.wait_for_selector(ready, timeout=60_000)
            phone.screenshot(path=str(directory / "site-phone.png"))
            written = ["site-europe.png", "site-city.png", "site-phone.png"]
        finally:
            browser.close()
    return written


def _page_assets(site: Path) -> list[str]:
    """What a first visit loads besides the data: the files index.html names, the text catalogue of the default
    language and the places (both named in the page's configuration, fetched by the script)."""
    index = (site / "index.html").read_text()
    assets = [
        token.split('"')[1]
        for token in index.split()
        if token.startswith(('href="assets/', 'src="assets/', 'href="vendor/', 'src="vendor/'))
    ]
    config_json = index.split('<script id="site-config" type="application/json">', 1)[1].split("</script>", 1)[0]
    config = json.loads(config_json)
    return [*assets, config["i18n"][config["defaultLang"]], config["places"]]


def _run_locust(url: str, site: Path, workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    pointer = read_pointer(site)
    assets = _page_assets(site)
    geojson = json.loads((site / pointer["latest"]).read_bytes())
    sensor_ids = [str(f["properties"]["id"]) for f in geojson["features"]][:5000]
    results = workdir / "locust-results.json"
    phases = [(float(d), float(r)) for d, r in (p.split(":") for p in args.phases.split(","))]
    env = {
        **os.environ,
        "SITE_PACING_S": str(args.pacing),
        "SITE_PHASES": args.phases,
        "SITE_ASSETS": ",".join(assets),
        "SITE_SENSOR_IDS": ",".join(sensor_ids),
        "SITE_RESULTS": str(results),
    }
    locustfile = Path(__file__).with_name("site_locustfile.py")
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url,
               "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "10"]
    started = time.monotonic()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, cwd=workdir)
    wall = time.monotonic() - started
    if not results.exists():
        raise RuntimeError(f"locust wrote no results (exit {completed.returncode}): {completed.stderr[-2000:]}")
    data = json.loads(results.read_text())
    report: dict[str, object] = {}
    for number, (duration, rate) in enumerate(phases):
        samples = [s for s in data["samples"] if s[0] == number]
        names = sorted({s[1] for s in samples})
        per_file = {name: _percentiles([s[2] for s in samples if s[1] == name]) for name in names}
        errors = [s[4] for s in samples if s[4]]
        worst_p95 = max((v.get("p95_ms", 0) for v in per_file.values()), default=0)
        worst_p99 = max((v.get("p99_ms", 0) for v in per_file.values()), default=0)
        report[f"phase_{number + 1}"] = {
            "seconds": duration,
            "target_arrivals_per_s": rate,
            "achieved_arrivals_per_s": round(data["visits"][number] / duration, 2),
            "requests": len(samples),
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:3],
            "all_files": _percentiles([s[2] for s in samples]),
            "per_file": per_file,
            "meets_targets": bool(samples) and not errors and worst_p95 < TARGET_P95_MS and worst_p99 < TARGET_P99_MS,
        }
    report["targets"] = {"p95_ms": TARGET_P95_MS, "p99_ms": TARGET_P99_MS, "errors": 0}
    report["locust_exit_code"] = completed.returncode
    report["wall_seconds"] = round(wall, 1)
    return report


def _server_side(access_log: Path) -> dict[str, float]:
    """nginx's own $request_time (last field of the access log), in ms."""
    times = []
    if access_log.exists():
        for line in access_log.read_text().splitlines():
            try:
                times.append(float(line.rsplit(" ", 1)[1]) * 1000)
            except (IndexError, ValueError):
                continue
    return _percentiles(times)


def run(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="aqi-site-bench-"))
    os.chmod(workdir, 0o755)  # nginx's workers (nobody) must enter it
    try:
        at = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0) - timedelta(minutes=2)
        database = workdir / "aqi.duckdb"
        started = time.perf_counter()
        records = _prepare_history(database, args, at)
        prepare_s = time.perf_counter() - started
        site = workdir / "site"
        hourly = []
        for _ in range(max(1, args.builds)):
            shutil.rmtree(site, ignore_errors=True)  # every history file written again
            hourly.append(_timed_build(database, site))
        cold = hourly[-1]
        with readings_connection(database) as connection:
            # A new 5-minute reading (in the hour not yet complete): the map changes, the week's files do not.
            connection.execute(
                """UPDATE aqi_readings SET pm25 = pm25 + 0.1
                   WHERE period = $period AND "timestamp" >= date_trunc('hour', $at::TIMESTAMP)""",
                {"at": at, "period": FIVE_MINUTE.name},
            )
        rebuild = _timed_build(database, site)
        seconds = [b["seconds"] for b in hourly]
        result: dict[str, object] = {
            "benchmark": "site-load",
            "records_generated": records,
            "sensors_on_map": cold["features"],
            "history_hours": args.history_hours,
            "indices": cold["indices_source"],
            "prepare_seconds": round(prepare_s, 1),
            "build": {
                "hourly_seconds": [round(s, 3) for s in seconds],
                "hourly_seconds_median": round(float(np.median(seconds)), 3),
                "hourly_cpu_seconds": [round(b["cpu_seconds"], 3) for b in hourly],
                "hourly_history_files_written": cold["history_files_written"],
                "hourly_peak_rss_mb": max(b["peak_rss_mb"] for b in hourly),
                "rebuild_seconds": round(rebuild["seconds"], 3),
                "rebuild_cpu_seconds": round(rebuild["cpu_seconds"], 3),
                "rebuild_history_files_written": rebuild["history_files_written"],
                "goal_seconds": BUILD_GOAL_S,
            },
            "latest_geojson": {
                "raw_bytes": rebuild["latest_bytes"],
                "gzip_bytes": rebuild["latest_gzip_bytes"],
                "gzip_goal_bytes": GZIP_GOAL_BYTES,
            },
        }
        history_files = list((site / read_pointer(site)["history"]).glob("*.json.gz"))  # stored as gzip only
        if history_files:  # what a visitor downloads for the chart of a sensor
            result["history_file_bytes_mean"] = {
                "files": len(history_files),
                "raw": round(float(np.mean([len(gzip.decompress(p.read_bytes())) for p in history_files]))),
                "gzip": round(float(np.mean([p.stat().st_size for p in history_files]))),
            }
        port = args.port or _free_port()
        with serving(site, port) as server:
            if not args.no_browser:
                result["browser"] = _browser_draw(f"{server.url}/", args.screenshot)
            if args.docs_screenshots:
                result["docs_screenshots"] = _docs_screenshots(server.url, args.docs_screenshots)
            if not args.no_load:
                result["load"] = _run_locust(server.url, site, workdir, args)
                result["load"]["nginx_request_time"] = _server_side(server.access_log)
        result["peak_rss_mb"] = peak_rss_mb()
        result["load_average_1_5_15"] = [round(v, 1) for v in os.getloadavg()]  # a busy machine shows here
        result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
