"""Opening the DuckDB file safely when another process may hold it.

DuckDB allows one writing process per file, and while it holds the file even read-only opens fail. Within
Dagster the `duckdb` concurrency pool serialises the platform's own steps; this module covers everything
else (a user's `duckdb` shell, a test, a second instance) by waiting a bounded time and then failing with a
message that names the lock holder.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

_LOCK_PATTERN = re.compile(r"lock", re.IGNORECASE)


class DuckDBLockTimeout(RuntimeError):
    """The DuckDB file stayed locked by another process for longer than allowed."""


def _is_lock_error(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and bool(_LOCK_PATTERN.search(str(error)))


def open_duckdb(
    path: str | Path,
    *,
    read_only: bool = False,
    lock_timeout_s: float = 120.0,
    poll_s: float = 0.25,
) -> duckdb.DuckDBPyConnection:
    """Connect to ``path``, waiting up to ``lock_timeout_s`` while another process holds the file."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout_s
    delay = poll_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if not _is_lock_error(error):
                raise
            if time.monotonic() >= deadline:
                # DuckDB's own message names the holder ("Conflicting lock is held in <exe> (PID n)").
                raise DuckDBLockTimeout(
                    f"DuckDB file {path} is still locked after {lock_timeout_s:.0f} s: {error}"
                ) from error
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)


@contextlib.contextmanager
def duckdb_connection(
    path: str | Path, *, read_only: bool = False, lock_timeout_s: float = 120.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that is closed on exit, so no step holds the file longer than it needs."""
    connection = open_duckdb(path, read_only=read_only, lock_timeout_s=lock_timeout_s)
    try:
        yield connection
    finally:
        connection.close()


@contextlib.contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT around the block; on any exception (KeyboardInterrupt included) ROLLBACK and re-raise.

    The one transaction helper: a failed ROLLBACK (the connection already broken) never hides the first error.
    """
    connection.execute("BEGIN TRANSACTION")
    try:
        yield connection
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _step_middle(shown: str) -> str:
    """'2.7 GiB' → '2.75 GiB': the middle of the range DuckDB shows as '2.7 GiB'."""
    number, _, unit = shown.partition(" ")
    decimals = len(number.partition(".")[2])
    return f"{float(number) + 0.5 * 10**-decimals:.{decimals + 1}f} {unit}"


@contextlib.contextmanager
def bounded_memory(connection: duckdb.DuckDBPyConnection, limit: str) -> Iterator[None]:
    """DuckDB's `memory_limit` set to `limit` for the block (its buffer cache is evicted down to it; work that
    needs more spills to disk), then restored: reset when it was DuckDB's default, else set back to the middle
    of the value DuckDB reported (it shows the limit cut to one decimal, so the middle of that step is a fixed
    point: using this again and again does not wear the limit down)."""

    def current() -> str:
        return connection.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]

    previous = current()
    connection.execute("RESET memory_limit")
    was_default = current() == previous
    connection.execute(f"SET memory_limit = '{limit}'")
    try:
        yield
    finally:
        connection.execute("RESET memory_limit" if was_default else f"SET memory_limit = '{_step_middle(previous)}'")
