"""Fixtures of the browser tests (see `aqi_assets_tests.support.browser`)."""

from aqi_assets_tests.support.browser import dagster_dev, output_dir, snapshot_server, ui  # noqa: F401
