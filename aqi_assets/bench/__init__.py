"""Benchmarks: `python -m aqi_assets.bench <core|covid|timestream|influxdb> ...` prints one JSON object."""
