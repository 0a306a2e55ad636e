"""Where the official indices are stored: partitioned tables `<db_schema>.<asset>` in the platform's DuckDB file
(`AGGREGATES_SCHEMA`, "aggregates", unless configured)."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.lib.air_quality.aggregates import AGGREGATES_SCHEMA
from aqi_assets.lib.common.duckdb_tables import identifier, replace_partition, table_columns
from aqi_assets.lib.common.utc import naive_utc

IO_MANAGER_KEY = "aggregates_io_manager"


class AggregatesDuckDBIOManager(dg.ConfigurableIOManager):
    """Partitioned tables `<db_schema>.<asset>` in the platform's DuckDB file.

    An asset declares its partition column as `partition_expr` metadata (as dagster-duckdb does). Storing a
    partition (or a range of them, from a single-run backfill) deletes that time window's rows and inserts the
    frame's in one transaction: a re-run never duplicates, a failed write leaves the old rows. An empty frame
    is a result here (no sensor reported in that hour): it clears the partition. Opens the file through
    `storage`, with its bounded lock wait.
    """

    storage: AqiStorage
    db_schema: str = Field(default=AGGREGATES_SCHEMA, description="DuckDB schema of the aggregate tables.")

    def table_name(self, asset: str) -> str:
        """The table holding ``asset`` (e.g. "aggregates.aqi_hourly"), for readers of the table such as the
        public site; both parts are plain identifiers, so the name can go into SQL as it is."""
        for part in (self.db_schema, asset):
            identifier(part)  # raises on anything but a plain name
        return f"{self.db_schema}.{asset}"

    def _qualified(self, asset: str) -> str:
        return f"{identifier(self.db_schema)}.{identifier(asset)}"

    def _partition_column(self, metadata: dict[str, Any] | None, asset: str) -> str:
        column = (metadata or {}).get("partition_expr")
        if not column:
            raise dg.Failure(f"asset {asset} has no `partition_expr` metadata naming its partition column")
        return str(column)

    def handle_output(self, context: dg.OutputContext, obj: pa.Table | pd.DataFrame) -> None:
        table = context.asset_key.path[-1]
        column = self._partition_column(context.definition_metadata, table)
        window = context.asset_partitions_time_window
        bounds = (naive_utc(window.start), naive_utc(window.end))
        with self.storage.readings() as connection:
            rows = replace_partition(connection, self.db_schema, table, obj, column, bounds)
            columns = table_columns(connection, self.db_schema, table)
        context.add_output_metadata(
            {
                "dagster/row_count": rows,
                "dagster/table_name": self.table_name(table),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=name, type=column_type) for name, column_type in columns]
                ),
                "partition_window": f"{bounds[0].isoformat()} .. {bounds[1].isoformat()}",
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        table = upstream.asset_key.path[-1]
        qualified = self._qualified(table)
        with self.storage.readings(read_only=True) as connection:
            if not context.has_asset_partitions:
                return connection.execute(f"SELECT * FROM {qualified}").df()
            column = identifier(self._partition_column(upstream.definition_metadata, table))
            window = context.asset_partitions_time_window
            return connection.execute(
                f"SELECT * FROM {qualified} WHERE {column} >= ? AND {column} < ? ORDER BY {column}, sensor_id",
                [naive_utc(window.start), naive_utc(window.end)],
            ).df()
