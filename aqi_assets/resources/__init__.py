"""Dagster resources: thin `ConfigurableResource` wrappers around the pure modules in `aqi_assets.core`."""
