"""Pure Python logic, grouped by domain. Nothing below this package imports Dagster (a test enforces it):
every module is unit-tested directly, and the Dagster layer in `aqi_assets.defs` stays thin on top."""
