"""`bounded_memory` (DuckDB's memory limit for a block, restored without drift), `transaction`, plain connections."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from aqi_assets.lib.common.duckdb_conn import bounded_memory, duckdb_connection, transaction


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


def test_transaction_commits_the_block_or_rolls_all_of_it_back() -> None:
    with duckdb.connect() as connection:
        connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        with transaction(connection):
            connection.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(duckdb.ConstraintException), transaction(connection):
            connection.execute("INSERT INTO t VALUES (2)")
            connection.execute("INSERT INTO t VALUES (1)")  # a conflict: the 2 goes too
        with pytest.raises(KeyboardInterrupt), transaction(connection):
            connection.execute("INSERT INTO t VALUES (3)")
            raise KeyboardInterrupt
        assert connection.execute("SELECT k FROM t").fetchall() == [(1,)]
        with transaction(connection):  # the connection is usable again after each rollback
            connection.execute("INSERT INTO t VALUES (4)")
        assert connection.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (4,)]


def test_a_plain_connection_runs_no_ddl(tmp_path: Path) -> None:
    """lib/common knows no domain: opening the file creates no table (the air-quality storage does that)."""
    with duckdb_connection(tmp_path / "x.duckdb") as connection:
        assert connection.execute("SELECT count(*) FROM duckdb_tables()").fetchall() == [(0,)]
