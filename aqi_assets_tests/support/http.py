"""Local HTTP servers on 127.0.0.1 for the tests, and a snapshot source with fast retries."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from pytest_httpserver import HTTPServer

from aqi_assets.defs.air_quality.resources import SnapshotSource


def free_port() -> int:
    """A free TCP port on the IPv4 loopback (for servers the tests start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
