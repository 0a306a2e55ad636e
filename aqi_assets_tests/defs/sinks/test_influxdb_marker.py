"""The `influxdb` marker (declared in pyproject.toml) is on every test that starts the real influxd, so
`pytest -m "not influxdb"` runs everything else on a machine without the Debian binary."""

from __future__ import annotations

import inspect
from types import ModuleType

import aqi_assets_tests.defs.sinks.test_influxdb_sync as sink_tests
import aqi_assets_tests.system.test_reliability_sync_and_security as system_tests


def influxd_tests_of(module: ModuleType) -> dict[str, set[str]]:
    """Test name → its marker names, for the tests that take the `influxd` fixture."""
    return {
        name: {mark.name for mark in getattr(function, "pytestmark", [])}
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("test_") and "influxd" in inspect.signature(function).parameters
    }


def test_every_test_that_starts_influxd_carries_the_influxdb_marker() -> None:
    for module in (sink_tests, system_tests):
        using = influxd_tests_of(module)
        assert using, f"{module.__name__} has no influxd test any more: update this list"
        unmarked = sorted(name for name, marks in using.items() if "influxdb" not in marks)
        assert not unmarked, f"{module.__name__}: {unmarked} start influxd without @pytest.mark.influxdb"
