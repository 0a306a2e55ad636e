"""Where the platform keeps its data: the raw snapshot lake and the DuckDB file (history, sync state, COVID).

`connect()` opens the file as it is; `readings()` is the air-quality history's connection, whose tables and
migrations come from the readings contract (`lib/readings/schema.py`), so the COVID IO manager never runs them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from aqi_assets.lib.common.duckdb_conn import duckdb_connection
from aqi_assets.lib.readings.schema import readings_connection


class AqiStorage(dg.ConfigurableResource):
    """The data lake directory (raw snapshots) and the DuckDB file (history, sync state)."""

    data_dir: str = Field(default="data", description="Data lake root (AQI_DATA_DIR).")
    duckdb_path: str = Field(default="data/aqi.duckdb", description="DuckDB history file (AQI_DUCKDB_PATH).")
    lock_timeout_s: float = Field(
        default=120.0, description="How long to wait for another process to release the DuckDB file."
    )

    @property
    def raw_dir(self) -> Path:
        return Path(self.data_dir) / "raw"

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """The DuckDB file as it is (domains with tables of their own, e.g. COVID, create them themselves)."""
        with duckdb_connection(
            self.duckdb_path, read_only=read_only, lock_timeout_s=self.lock_timeout_s
        ) as connection:
            yield connection

    @contextlib.contextmanager
    def readings(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """The DuckDB file with the air-quality history's tables created or migrated (when writable)."""
        with readings_connection(
            self.duckdb_path, read_only=read_only, lock_timeout_s=self.lock_timeout_s
        ) as connection:
            yield connection


# Resource field → environment variable, read when the code location loads (`from_env`).
STORAGE_ENV = {"data_dir": "AQI_DATA_DIR", "duckdb_path": "AQI_DUCKDB_PATH"}
