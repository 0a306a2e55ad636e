"""Shared fixtures: the real samples in ../shared/data, temporary storage, and snapshot bodies."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from pytest_httpserver import HTTPServer

from aqi_assets.resources.snapshots import SnapshotSource
from aqi_assets.resources.storage import AqiStorage

# CI explores the same examples on every run (a red CI must mean a change broke something); locally
# hypothesis draws new examples each time and remembers failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
FRAGMENT = "sensor-community/v1-data-json_2019-04-16T142252Z_fragment_243-records.jsonfrag"


def shared_file(relative: str) -> Path:
    """A file of ../shared/data, or a skip that names the path it looked for."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"shared sample not found: {path}")
    return path


def fragment_records() -> list[dict]:
    """The 243 real records (the fragment has no enclosing brackets and ends every line with a comma)."""
    text = shared_file(FRAGMENT).read_text()
    return json.loads("[" + text.rstrip().rstrip(",") + "]")


@pytest.fixture
def real_records() -> list[dict]:
    return fragment_records()


@pytest.fixture
def real_snapshot_body(real_records: list[dict]) -> bytes:
    return json.dumps(real_records).encode()


@pytest.fixture
def storage(tmp_path: Path) -> AqiStorage:
    return AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(tmp_path / "data" / "aqi.duckdb"))


def snapshot_source(url_5min: str, url_24h: str | None = None, **overrides: object) -> SnapshotSource:
    """A source with fast retries, so fault tests do not sleep for minutes."""
    return SnapshotSource(
        url_5min=url_5min,
        url_24h=url_24h or url_5min,
        retries=overrides.pop("retries", 2),
        backoff_factor=overrides.pop("backoff_factor", 0.01),
        connect_timeout_s=overrides.pop("connect_timeout_s", 2.0),
        read_timeout_s=overrides.pop("read_timeout_s", 2.0),
        **overrides,
    )


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver's server on the IPv4 loopback only, on a free port."""
    return ("127.0.0.1", 0)


@contextlib.contextmanager
def local_http_server(threaded: bool = True) -> Iterator[HTTPServer]:
    """A pytest-httpserver on 127.0.0.1 of one's own (threaded: for clients that hold a request open)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=threaded)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()
