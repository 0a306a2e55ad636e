"""A real moto server (Timestream over HTTP) on a free 127.0.0.1 port, in this process so tests can read
what it stored from moto's backend."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from moto.server import ThreadedMotoServer


@contextlib.contextmanager
def threaded_moto_server() -> Iterator[str]:
    # port=0: the OS picks a free port atomically; get_host_and_port() reads it back.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def stored_timestream_records(database: str, table: str) -> list[dict[str, Any]]:
    """Records moto's backend holds for `database.table` (whatever account/region the client used).
    moto stores each `Records` entry as sent, without `CommonAttributes`."""
    from moto.timestreamwrite.models import timestreamwrite_backends

    found: list[dict[str, Any]] = []
    for account in list(timestreamwrite_backends):
        for region in list(timestreamwrite_backends[account]):
            backend = timestreamwrite_backends[account][region]
            db = backend.databases.get(database)
            if db is not None and table in db.tables:
                found.extend(db.tables[table].records)
    return found
