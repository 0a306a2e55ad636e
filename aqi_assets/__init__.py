"""aqi_assets: a Dagster code location for Sensor.Community air-quality data."""
