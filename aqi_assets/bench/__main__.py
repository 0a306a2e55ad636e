"""Entry point: `python -m aqi_assets.bench <benchmark> [options]` prints one JSON object on stdout."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHMARKS = {
    "core": "raw snapshot bytes → AQI rows merged into DuckDB",
    "covid": "the three COVID-19 queries",
    "timestream": "Timestream writer against a local moto server",
    "influxdb": "InfluxDB line-protocol writer against a local influxd",
    "history": "one snapshot's merge, checks, summary and sync scan on top of an N-row synced history",
    "aggregates": "hourly / daily index partitions (NowCast, 24-h DAQI, daily AQI) from a generated history",
    "deployment": "PostgreSQL-backed code server + daemon + webserver: new snapshot → rows in DuckDB",
    "tiers": "one day of readings → Parquet tier; retention; hot vs tiered queries",
    "site-load": "public map site: build, draw in Chromium, Locust load against nginx",
    "archive": "one day of Sensor.Community archive CSVs → readings merged into DuckDB",
    "archive-month": "months of archive Parquet → verified tier partitions: 1 vs N workers, CSV path, floor",
    "local-zones": "sensor locations → time zone and standard UTC offset (tzfpy + zoneinfo), cold and warm",
}


def _module(name: str) -> str:
    """A benchmark's module (`site-load` lives in `site_load.py`)."""
    return f"aqi_assets.bench.{name.replace('-', '_')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aqi_assets.bench", description=__doc__)
    commands = parser.add_subparsers(dest="benchmark", required=True)
    for name, help_text in BENCHMARKS.items():
        module = importlib.import_module(_module(name))
        module.add_arguments(commands.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    result = importlib.import_module(_module(args.benchmark)).run(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
