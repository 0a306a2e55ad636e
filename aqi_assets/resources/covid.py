"""Resources of the COVID-19 analytics group: where its inputs come from and its own DuckDB IO manager."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.storage.db_io_manager import DbIOManager, TablePartitionDimension  # as dagster_duckdb does
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler
from pydantic import Field

from aqi_assets.core.fetch import file_url_path, parse_file_roots
from aqi_assets.resources.env import env_or

JHU_CONFIRMED_GLOBAL_URL = (
    "https://raw.githubusercontent.com/CSSEGISandData/COVID-19/master/csse_covid_19_data/"
    "csse_covid_19_time_series/time_series_covid19_confirmed_global.csv"
)
WORLD_CONTINENTS_URL = (
    "https://raw.githubusercontent.com/AlexisBalayre/covid19-analysis-project/main/data/World_Continents.zip"
)
COVID_SCHEMA = "covid19"


class CovidSource(dg.ConfigurableResource):
    """The JHU CSSE confirmed-cases CSV and the Esri World Continents shapefile (zip)."""

    csv_url: str = Field(default=JHU_CONFIRMED_GLOBAL_URL, description="Confirmed-cases CSV (AQI_COVID_CSV_URL).")
    continents_url: str = Field(
        default=WORLD_CONTINENTS_URL, description="World Continents shapefile zip (AQI_CONTINENTS_URL)."
    )
    allowed_file_roots: str = Field(
        default="",
        description="Directories file:// URLs may point into, separated by ',' or the OS path separator "
        "(AQI_ALLOWED_FILE_ROOTS); empty = the directory of the configured file URL only (as for snapshots).",
    )
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    def file_roots(self, url: str) -> Sequence[str]:
        """Where a file:// ``url`` may read from: the configured roots, else the URL's own directory (the
        same rule as `SnapshotSource.file_roots`; an empty list would let a file URL read anywhere)."""
        roots = parse_file_roots(self.allowed_file_roots)
        if roots:
            return roots
        if url.lower().startswith("file:"):
            return [str(file_url_path(url).parent)]
        return []


class ReplacingDuckDBPandasTypeHandler(DuckDBPandasTypeHandler):
    """Writes a table as a whole: replaced in one statement, never silently skipped.

    The stock handler skips an empty DataFrame (downstream loads then fail on a missing table) and
    inserts into an existing table, so a changed set of columns fails until someone drops it. Every table
    of this group is a full recomputation, so `CREATE OR REPLACE` is both simpler and safe.
    """

    def handle_output(self, context: dg.OutputContext, table_slice: Any, obj: pd.DataFrame, connection) -> None:
        if obj.empty:
            raise ValueError(f"refusing to store an empty table {table_slice.schema}.{table_slice.table}")
        connection.register("covid_output_frame", obj)
        try:
            connection.execute(
                f"create or replace table {table_slice.schema}.{table_slice.table} as select * from covid_output_frame"
            )
        finally:
            connection.unregister("covid_output_frame")
        context.add_output_metadata(
            {
                "dagster/row_count": int(obj.shape[0]),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=str(name), type=str(dtype)) for name, dtype in obj.dtypes.items()]
                ),
            }
        )


class _ReplacingDuckDbClient(DuckDbClient):
    """Skips the stock `DELETE FROM` before an unpartitioned write: `CREATE OR REPLACE` is atomic on its own,
    so a failed write (bad frame, full disk) leaves the previous table intact instead of empty."""

    @staticmethod
    @contextlib.contextmanager
    def connect(context: Any, table_slice: Any) -> Iterator[Any]:
        # The stock client skips close() when the body raises, which leaves the file open (locked) in this
        # process: a later connection in the same process then fails with a configuration mismatch.
        with contextlib.ExitStack() as stack:
            connection = DuckDbClient.connect(context, table_slice).__enter__()
            stack.callback(connection.close)
            yield connection

    @staticmethod
    def delete_table_slice(context: dg.OutputContext, table_slice: Any, connection) -> None:
        partitions: Sequence[TablePartitionDimension] = table_slice.partition_dimensions or ()
        if partitions:
            DuckDbClient.delete_table_slice(context, table_slice, connection)


class CovidDuckDBIOManager(DuckDBPandasIOManager):
    """`DuckDBPandasIOManager` whose tables (schema `covid19`) are replaced whole and atomically."""

    @staticmethod
    def type_handlers() -> Sequence[Any]:
        return [ReplacingDuckDBPandasTypeHandler()]

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=_ReplacingDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=pd.DataFrame,
            io_manager_name="CovidDuckDBIOManager",
        )


def covid_resources(duckdb_path: Any) -> dict[str, Any]:
    """Resource key → resource; ``duckdb_path`` is the platform's DuckDB file (a str or `dg.EnvVar`)."""
    return {
        "covid_source": CovidSource(
            csv_url=env_or("AQI_COVID_CSV_URL", JHU_CONFIRMED_GLOBAL_URL),
            continents_url=env_or("AQI_CONTINENTS_URL", WORLD_CONTINENTS_URL),
            allowed_file_roots=env_or("AQI_ALLOWED_FILE_ROOTS", ""),
        ),
        "covid_io_manager": CovidDuckDBIOManager(database=duckdb_path, schema=COVID_SCHEMA),
    }
