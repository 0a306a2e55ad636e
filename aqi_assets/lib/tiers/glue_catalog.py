"""Registration of the Parquet tier in the AWS Glue Data Catalog, so Athena, EMR Spark and Trino find it.

One external table (Parquet SerDe, partition keys `period` string and `date` date, columns from the readings
contract `lib.readings.schema.READINGS_COLUMNS`) and one Glue partition per exported (period, day), whatever
the period. Partitions are added explicitly after
each export (no crawler, no `MSCK REPAIR TABLE` scanning the bucket), at most 100 per call, the Glue API
limit; a partition that already exists is not an error, so registering a day again is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.readings.schema import READINGS_COLUMNS

_PARQUET_FORMAT = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}
PARTITION_KEYS = [{"Name": "period", "Type": "string"}, {"Name": "date", "Type": "date"}]
BATCH_LIMIT = 100  # BatchCreatePartition accepts at most 100 partitions per call

_HIVE_TYPES = {
    "VARCHAR": "string",
    "BIGINT": "bigint",
    "INTEGER": "int",
    "SMALLINT": "smallint",
    "TINYINT": "tinyint",
    "DOUBLE": "double",
    "FLOAT": "float",
    "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamp",
    "DATE": "date",
    "MAP(VARCHAR, VARCHAR)": "map<string,string>",
}


def hive_columns() -> list[dict[str, str]]:
    """The Parquet files' columns (every `aqi_readings` column but the partition key `period`) as Glue types."""
    columns = []
    for column in READINGS_COLUMNS:
        if column.name == "period":
            continue
        if column.sql_type not in _HIVE_TYPES:
            raise ValueError(f"no Glue type for column {column.name} of DuckDB type {column.sql_type}")
        columns.append({"Name": column.name, "Type": _HIVE_TYPES[column.sql_type]})
    return columns


@dataclass(frozen=True)
class GlueTable:
    database: str
    table: str


def ensure_table(client: Any, target: GlueTable, location: TierLocation, columns: list[dict[str, str]]) -> None:
    """Create the database and the external table when missing; update the columns when they changed."""
    with contextlib.suppress(client.exceptions.AlreadyExistsException):
        client.create_database(DatabaseInput={"Name": target.database})
    table_input = {
        "Name": target.table,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "ZSTD"},
        "PartitionKeys": PARTITION_KEYS,
        "StorageDescriptor": {"Columns": columns, "Location": location.uri_of() + "/", **_PARQUET_FORMAT},
    }
    try:
        client.create_table(DatabaseName=target.database, TableInput=table_input)
    except client.exceptions.AlreadyExistsException:
        current = client.get_table(DatabaseName=target.database, Name=target.table)["Table"]
        if current.get("StorageDescriptor", {}).get("Columns") != columns:
            client.update_table(DatabaseName=target.database, TableInput=table_input)


def register_partitions(
    client: Any,
    target: GlueTable,
    location: TierLocation,
    columns: list[dict[str, str]],
    partitions: Iterable[tuple[str, date]],
) -> int:
    """Add the (period, day) partitions not yet in the catalog; returns how many were created."""
    inputs = [
        {
            "Values": [period, day.isoformat()],
            "StorageDescriptor": {
                "Columns": columns,
                "Location": location.uri_of(f"period={period}", f"date={day.isoformat()}") + "/",
                **_PARQUET_FORMAT,
            },
        }
        for period, day in partitions
    ]
    created = 0
    for start in range(0, len(inputs), BATCH_LIMIT):
        chunk = inputs[start : start + BATCH_LIMIT]
        response = client.batch_create_partition(
            DatabaseName=target.database, TableName=target.table, PartitionInputList=chunk
        )
        # The key is absent when there were no errors (moto, and some SDK versions).
        errors = response.get("Errors", [])
        real = [e for e in errors if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"]
        if real:
            raise RuntimeError(f"Glue refused partitions: {real[:3]}")
        created += len(chunk) - len(errors)
    return created


def catalogued_partitions(client: Any, target: GlueTable, expression: str = "") -> list[tuple[str, str]]:
    """(period, date) values of the table's partitions, optionally filtered by a Glue `Expression`."""
    found = []
    paginator = client.get_paginator("get_partitions")
    kwargs = {"DatabaseName": target.database, "TableName": target.table}
    if expression:
        kwargs["Expression"] = expression
    for page in paginator.paginate(**kwargs):
        found.extend(tuple(p["Values"]) for p in page["Partitions"])
    return sorted(found)
