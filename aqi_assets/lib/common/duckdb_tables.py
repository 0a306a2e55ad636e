"""Whole tables and partitions of tables in DuckDB, written atomically from pandas or Arrow frames."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any

import duckdb
import pandas as pd

from aqi_assets.lib.common.duckdb_conn import transaction

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EmptyTableError(ValueError):
    """A frame with no rows was to replace a whole table (a broken upstream, not a result)."""


def identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier, after checking it is a plain name (asset keys become table names)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain identifier")
    return f'"{name}"'


@contextlib.contextmanager
def _registered(connection: duckdb.DuckDBPyConnection, frame: Any):
    view = "frame_to_store"
    connection.register(view, frame)
    try:
        yield view
    finally:
        connection.unregister(view)


def column_names(frame: Any) -> list[str]:
    """Column names of a pandas DataFrame or a pyarrow Table (whose ``.columns`` are the arrays)."""
    names = getattr(frame, "column_names", None)
    return [str(c) for c in (names if names is not None else frame.columns)]


def replace_table(connection: duckdb.DuckDBPyConnection, schema: str, table: str, frame: Any) -> int:
    """Replace ``schema.table`` by ``frame`` in one statement (a failure leaves the old table); returns rows.

    An empty frame is refused: downstream loads would find nothing, and the previous table is better evidence.
    """
    rows = len(frame)
    if rows == 0:
        raise EmptyTableError(f"refusing to store an empty table {schema}.{table}")
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {identifier(schema)}")
    with _registered(connection, frame) as view:
        connection.execute(f"CREATE OR REPLACE TABLE {identifier(schema)}.{identifier(table)} AS SELECT * FROM {view}")
    return rows


def read_table(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> pd.DataFrame:
    return connection.execute(f"SELECT * FROM {identifier(schema)}.{identifier(table)}").df()


def table_columns(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, type) of each column, in order."""
    return [
        (name, column_type)
        for name, column_type in connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
    ]


def _add_missing_columns(connection: duckdb.DuckDBPyConnection, qualified: str, view: str) -> None:
    have = {row[0] for row in connection.execute(f"DESCRIBE {qualified}").fetchall()}
    for name, data_type, *_ in connection.execute(f"DESCRIBE SELECT * FROM {view}").fetchall():
        if name not in have:
            connection.execute(f"ALTER TABLE {qualified} ADD COLUMN {identifier(name)} {data_type}")


def replace_partition(
    connection: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    frame: Any,
    partition_column: str,
    bounds: tuple[Any, Any],
    *,
    primary_key: Sequence[str] = (),
) -> int:
    """Replace the rows of ``schema.table`` whose ``partition_column`` lies in ``[start, end)`` by ``frame``.

    Delete and insert commit together, so a re-run never duplicates and a failed write leaves the old rows.
    The table is created from the frame's columns on first use (with ``primary_key`` when given); columns are
    matched by name, and a column the frame has and an existing table lacks is added to it (NULL in the rows
    written before: a table kept across a release that added columns). ``frame`` is a pandas DataFrame or a
    pyarrow Table (typed columns: give Arrow when the column types matter, e.g. a partition whose first write
    has only NULLs in a column). Returns the rows written (an empty frame clears the partition: no data is a
    result here).
    """
    start, end = bounds
    qualified = f"{identifier(schema)}.{identifier(table)}"
    column = identifier(partition_column)
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {identifier(schema)}")
    with _registered(connection, frame) as view:
        exists = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        ).fetchone()[0]
        with transaction(connection):
            if not exists:
                connection.execute(f"CREATE TABLE {qualified} AS SELECT * FROM {view} LIMIT 0")
                if primary_key:
                    # DuckDB cannot add a primary key later; an index enforces the same uniqueness.
                    keys = ", ".join(identifier(k) for k in primary_key)
                    connection.execute(f"CREATE UNIQUE INDEX {identifier(table + '_key')} ON {qualified} ({keys})")
            else:
                _add_missing_columns(connection, qualified, view)
            connection.execute(f"DELETE FROM {qualified} WHERE {column} >= ? AND {column} < ?", [start, end])
            names = ", ".join(identifier(c) for c in column_names(frame))
            connection.execute(f"INSERT INTO {qualified} ({names}) SELECT {names} FROM {view}")
    return len(frame)
