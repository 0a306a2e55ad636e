"""Resources of the COVID-19 analytics group: where its inputs come from and its own DuckDB IO manager."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from aqi_assets.defs.common.env import from_env
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.lib.common.duckdb_tables import read_table, replace_table
from aqi_assets.lib.common.fetch import file_roots_for

JHU_CONFIRMED_GLOBAL_URL = (
    "https://raw.githubusercontent.com/CSSEGISandData/COVID-19/master/csse_covid_19_data/"
    "csse_covid_19_time_series/time_series_covid19_confirmed_global.csv"
)
WORLD_CONTINENTS_URL = (
    "https://raw.githubusercontent.com/AlexisBalayre/covid19-analysis-project/main/data/World_Continents.zip"
)
COVID_SCHEMA = "covid19"
COVID_SOURCE_ENV = {
    "csv_url": "AQI_COVID_CSV_URL",
    "continents_url": "AQI_CONTINENTS_URL",
    "allowed_file_roots": "AQI_ALLOWED_FILE_ROOTS",
}


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
        """Where a file:// ``url`` may read from (the same rule as `SnapshotSource.file_roots`)."""
        return file_roots_for(url, self.allowed_file_roots)


class CovidDuckDBIOManager(dg.ConfigurableIOManager):
    """Tables of the `covid19` group in the platform's DuckDB file, one per asset, replaced whole and atomically.

    Every table of the group is a full recomputation, so `CREATE OR REPLACE` is both simple and safe: a failed
    write (bad frame, full disk) leaves the previous table, and an empty frame is refused (downstream loads
    would find nothing). Opens the file through `storage`, with its bounded lock wait.
    """

    storage: AqiStorage
    db_schema: str = Field(default=COVID_SCHEMA, description="DuckDB schema of the group's tables.")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        table = context.asset_key.path[-1]
        with self.storage.connect() as connection:
            rows = replace_table(connection, self.db_schema, table, obj)
        context.add_output_metadata(
            {
                "dagster/row_count": rows,
                "dagster/table_name": f"{self.db_schema}.{table}",
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=str(name), type=str(dtype)) for name, dtype in obj.dtypes.items()]
                ),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        with self.storage.connect() as connection:
            return read_table(connection, self.db_schema, context.upstream_output.asset_key.path[-1])


def covid_resources(storage: AqiStorage) -> dict[str, Any]:
    """Resource key → resource; the IO manager writes into ``storage``'s DuckDB file."""
    return {
        "covid_source": from_env(CovidSource, COVID_SOURCE_ENV),
        "covid_io_manager": CovidDuckDBIOManager(storage=storage),
    }
