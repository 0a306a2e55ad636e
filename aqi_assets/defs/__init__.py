"""Dagster objects only, one package per domain; each body calls into `aqi_assets.lib`."""
