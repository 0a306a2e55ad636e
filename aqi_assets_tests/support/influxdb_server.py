"""A real InfluxDB 1.6 server (Debian's `influxd`) for tests: free 127.0.0.1 port, generated config, all
data in a temp dir, stopped by its own pid. The launcher lives in `aqi_assets.bench.influxdb` (the
benchmark needs it too); this module adds the pytest side."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aqi_assets.bench.influxdb import LocalInfluxd, influxd_binary


def start_influxd(workdir: Path) -> Iterator[LocalInfluxd]:
    """Generator for a fixture: skips (naming `influxd`) only when the binary is missing."""
    if influxd_binary() is None:
        pytest.skip("influxd not found on PATH: install Debian's `influxdb` package (.ci/run does)")
    server = LocalInfluxd(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
