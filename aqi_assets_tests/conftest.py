"""Shared fixtures: the real samples of aqi_assets_tests/data, temporary storage, snapshot bodies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets_tests.support import skip_policy
from aqi_assets_tests.support.samples import fragment_records

# CI explores the same examples on every run (a red CI must mean a change broke something); locally
# hypothesis draws new examples each time and remembers failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A skipped test fails the run (see support/skip_policy.py; deselect on purpose with a marker instead)."""
    skip_policy.sessionfinish(session)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many tests ran, passed, failed and were skipped or deselected, before pytest's closing line."""
    skip_policy.terminal_summary(terminalreporter)


@pytest.fixture
def real_records() -> list[dict]:
    return fragment_records()


@pytest.fixture
def real_snapshot_body(real_records: list[dict]) -> bytes:
    return json.dumps(real_records).encode()


@pytest.fixture
def storage(tmp_path: Path) -> AqiStorage:
    return AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(tmp_path / "data" / "aqi.duckdb"))


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver's server on the IPv4 loopback only, on a free port."""
    return ("127.0.0.1", 0)
