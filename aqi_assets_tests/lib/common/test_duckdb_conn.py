"""`bounded_memory`: DuckDB's memory limit for a block, restored after it without drift."""

from __future__ import annotations

import duckdb

from aqi_assets.lib.common.duckdb_conn import bounded_memory


def test_bounded_memory_sets_and_restores_duckdb_memory_limit() -> None:
    with duckdb.connect() as connection:
        default = connection.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        with bounded_memory(connection, "500MB"):
            inside = connection.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        after_default = connection.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        connection.execute("SET memory_limit = '3GB'")
        before = connection.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        for _ in range(3):  # no drift when used again and again
            with bounded_memory(connection, "500MB"):
                pass
        after = connection.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert inside.endswith("MiB") and 470 <= float(inside.split()[0]) <= 480  # 500 MB
    assert after_default == default
    # A limit set by someone else comes back as it was shown (DuckDB shows it to 0.1 GiB), however often.
    assert after == before
