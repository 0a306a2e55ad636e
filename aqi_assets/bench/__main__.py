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
    "archive": "one day of Sensor.Community archive CSVs → readings merged into DuckDB",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aqi_assets.bench", description=__doc__)
    commands = parser.add_subparsers(dest="benchmark", required=True)
    for name, help_text in BENCHMARKS.items():
        module = importlib.import_module(f"aqi_assets.bench.{name}")
        module.add_arguments(commands.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    result = importlib.import_module(f"aqi_assets.bench.{args.benchmark}").run(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
