"""The history's tables, written once: every column of `aqi_readings` with its type, its description and what
the sinks do with it, and the DDL and migrations derived from them.

Data consumers (DuckDB, Parquet, Timestream, InfluxDB) rely on these names and types; every other module takes
its column lists from here (`columns_where`, `MEASUREMENT_COLUMNS`, ...) instead of typing them again.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from aqi_assets.lib.common.duckdb_conn import duckdb_connection


class SinkRole(enum.Enum):
    """What a column is in Timestream and InfluxDB."""

    DIMENSION = "dimension"  # a Timestream dimension, an InfluxDB tag: what queries filter and group by
    MEASURE = "measure"  # a Timestream measure, an InfluxDB field
    TIME = "time"  # the record's time
    VERSION = "version"  # carried to version a record (the reading's merge time and file)


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    description: str
    sink: SinkRole | None = None  # None: stays in DuckDB and Parquet (free-form or bookkeeping)
    not_null: bool = False


# Value types of the v2 API that get a column of their own; every other type is kept in `other_values`.
VALUE_TYPE_COLUMNS: dict[str, str] = {
    "P0": "pm1",
    "P2": "pm25",
    "P4": "pm4",
    "P1": "pm10",
    "temperature": "temperature",
    "humidity": "humidity",
    "pressure": "pressure",
    "pressure_at_sealevel": "pressure_at_sealevel",
}
_MEASUREMENT_DESCRIPTIONS: dict[str, str] = {
    "pm1": "PM1 (P0), µg/m³ (mass-concentration sensor types only; others keep P0–P4 in other_values)",
    "pm25": "PM2.5 (P2), µg/m³ (mass-concentration sensor types only)",
    "pm4": "PM4 (P4), µg/m³ (mass-concentration sensor types only)",
    "pm10": "PM10 (P1), µg/m³ (mass-concentration sensor types only)",
    "temperature": "°C",
    "humidity": "relative humidity, %",
    "pressure": "station pressure, Pa (30–110 kPa accepted: it falls with altitude)",
    "pressure_at_sealevel": "pressure reduced to sea level, Pa (85–120 kPa accepted)",
}
_INDEX_COLUMNS: tuple[Column, ...] = (
    Column("daqi_pm25", "TINYINT", "UK DAQI sub-index for PM2.5 (1–10)", SinkRole.MEASURE),
    Column("daqi_pm10", "TINYINT", "UK DAQI sub-index for PM10 (1–10)", SinkRole.MEASURE),
    Column("daqi", "TINYINT", "UK DAQI: the highest sub-index (indicative on 5-minute data)", SinkRole.MEASURE),
    Column("daqi_band", "VARCHAR", "Low 1–3, Moderate 4–6, High 7–9, Very High 10", SinkRole.MEASURE),
    Column("aqi_us_pm25", "SMALLINT", "US EPA AQI (2024) for PM2.5", SinkRole.MEASURE),
    Column("aqi_us_pm10", "SMALLINT", "US EPA AQI for PM10", SinkRole.MEASURE),
    Column("aqi_us", "SMALLINT", "US EPA AQI: the highest sub-index (indicative on 5-minute data)", SinkRole.MEASURE),
    Column("aqi_us_category", "VARCHAR", "Good … Hazardous", SinkRole.MEASURE),
    Column("aqi_us_beyond", "BOOLEAN", "a concentration above the top breakpoint (AQI reported as 500)",
           SinkRole.MEASURE),
)  # fmt: skip

# `aqi_readings`, in table order (the order of existing files and of the Parquet tier's columns).
READINGS_COLUMNS: tuple[Column, ...] = (
    Column("period", "VARCHAR", "where the row comes from: a name of lib.readings.periods.PERIODS ('5min' "
           "data.json, '24h' data.24h.json, 'archive' archive.sensor.community CSVs)", SinkRole.DIMENSION, True),
    Column("sensor_id", "BIGINT", "Sensor.Community sensor id", SinkRole.DIMENSION, True),
    Column("timestamp", "TIMESTAMP", "end of the averaging period, UTC", SinkRole.TIME, True),
    Column("measurement_id", "BIGINT", "the record's id in the snapshot (the highest wins among duplicates within "
           "one snapshot; across snapshots the first merged copy is kept, a later one with other values goes to "
           "rejected_values)", SinkRole.MEASURE),
    Column("location_id", "BIGINT", "station id, shared by the PM and climate sensors of one station",
           SinkRole.DIMENSION),
    Column("country", "VARCHAR", "ISO-2 country code as reported", SinkRole.DIMENSION),
    Column("latitude", "DOUBLE", "degrees; NULL when absent or off the globe", SinkRole.MEASURE),
    Column("longitude", "DOUBLE", "degrees; NULL when absent or off the globe", SinkRole.MEASURE),
    Column("altitude", "DOUBLE", "metres", SinkRole.MEASURE),
    Column("indoor", "BOOLEAN", "the sensor is indoors (the official map hides these)", SinkRole.DIMENSION),
    Column("sensor_type", "VARCHAR", "e.g. SDS011, SPS30, DHT22, BME280", SinkRole.DIMENSION),
    *(Column(name, "DOUBLE", description, SinkRole.MEASURE) for name, description in _MEASUREMENT_DESCRIPTIONS.items()),
    Column("other_values", "MAP(VARCHAR, VARCHAR)", "every other value type of the record, as text (also P0–P4 of "
           "sensors that count particles, e.g. PPD42NS: not µg/m³)"),
    *_INDEX_COLUMNS,
    Column("snapshot", "VARCHAR", "raw snapshot file the reading came from", SinkRole.VERSION, True),
    Column("ingested_at", "TIMESTAMP", "when the reading was merged, UTC", SinkRole.VERSION, True),
    # One number per merge, increasing: sync watermarks follow it, so a late reading (an older timestamp merged
    # later) is still sent.
    Column("ingest_seq", "BIGINT", "merge number (increasing); the sync watermarks follow it"),
    Column("no_index_reason", "VARCHAR", "why a reading with PM values has no index (e.g. the sensor type counts "
           "particles); NULL otherwise"),
)  # fmt: skip
READINGS_KEY: tuple[str, ...] = ("period", "sensor_id", "timestamp")

MEASUREMENT_COLUMNS: tuple[str, ...] = tuple(VALUE_TYPE_COLUMNS.values())
INDEX_COLUMNS: dict[str, str] = {c.name: c.sql_type for c in _INDEX_COLUMNS}
COLUMN_DESCRIPTIONS: dict[str, str] = {c.name: c.description for c in READINGS_COLUMNS}


def column_names() -> tuple[str, ...]:
    return tuple(c.name for c in READINGS_COLUMNS)


def columns_where(*roles: SinkRole) -> tuple[str, ...]:
    """The columns the sinks treat as one of ``roles``, in table order."""
    return tuple(c.name for c in READINGS_COLUMNS if c.sink in roles)


def _column_ddl(column: Column) -> str:
    return f'"{column.name}" {column.sql_type}' + (" NOT NULL" if column.not_null else "")


def readings_ddl(*, primary_key: bool = True) -> str:
    """`CREATE TABLE aqi_readings` from the columns as they are now (a test may have added one). Without
    ``primary_key`` for a scratch copy that only stages rows (its index would cost memory and enforce nothing the
    merge does not already ensure)."""
    key = ",\n    PRIMARY KEY (" + ", ".join(f'"{k}"' for k in READINGS_KEY) + ")" if primary_key else ""
    return (
        "CREATE TABLE IF NOT EXISTS aqi_readings (\n    "
        + ",\n    ".join(_column_ddl(c) for c in READINGS_COLUMNS)
        + key
        + "\n)"
    )


AQI_READINGS_DDL = readings_ddl()

INGEST_SEQUENCE_DDL = "CREATE SEQUENCE IF NOT EXISTS aqi_ingest_seq START 1"

REJECTED_VALUES_DDL = """
CREATE TABLE IF NOT EXISTS rejected_values (
    period VARCHAR NOT NULL,
    sensor_id BIGINT,
    "timestamp" TIMESTAMP,
    value_type VARCHAR,
    raw_value VARCHAR,
    reason VARCHAR NOT NULL,
    snapshot VARCHAR NOT NULL,
    ingested_at TIMESTAMP NOT NULL,
    -- 'value': one sensordatavalues entry; 'record': a record rejected as a whole (or of malformed shape),
    -- raw_value holding its JSON or timestamp; 'location': coordinates off the globe.
    scope VARCHAR NOT NULL
)
"""

# One row per raw snapshot file merged (or found unreadable): makes merges exactly-once, because the
# rows and this entry are committed in one transaction.
SNAPSHOT_LOG_DDL = """
CREATE TABLE IF NOT EXISTS snapshot_log (
    snapshot VARCHAR PRIMARY KEY,
    period VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    records BIGINT,
    rows_inserted BIGINT,
    rows_duplicate BIGINT,
    values_rejected BIGINT,
    error VARCHAR,
    processed_at TIMESTAMP NOT NULL,
    run_id VARCHAR,  -- the Dagster run that merged it: its checks look at exactly these rows
    values_read BIGINT,  -- every value entry of the snapshot
    values_invalid BIGINT,  -- of those, the ones that failed a rule (also those of already-known readings)
    -- accepted records that became no reading: no value kept (empty sensordatavalues, or every value quarantined)
    records_without_values BIGINT
)
"""

# One row per (day, period) exported to the Parquet tier: what was written, when it was verified, when the hot
# copy went. The history accessor reads it to know which days live only in Parquet.
TIER_LOG_DDL = """
CREATE TABLE IF NOT EXISTS parquet_tier_log (
    day DATE NOT NULL,
    period VARCHAR NOT NULL,
    uri VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    key_checksum HUGEINT NOT NULL,
    parquet_bytes BIGINT NOT NULL,
    exported_at TIMESTAMP NOT NULL,
    verified_at TIMESTAMP,
    pruned_at TIMESTAMP,
    PRIMARY KEY (day, period)
)
"""

# Columns added to a table other than `aqi_readings` after its first release, for files created before them.
MIGRATIONS: tuple[str, ...] = (
    "ALTER TABLE snapshot_log ADD COLUMN IF NOT EXISTS run_id VARCHAR",
    "ALTER TABLE snapshot_log ADD COLUMN IF NOT EXISTS values_read BIGINT",
    "ALTER TABLE snapshot_log ADD COLUMN IF NOT EXISTS values_invalid BIGINT",
    "ALTER TABLE snapshot_log ADD COLUMN IF NOT EXISTS records_without_values BIGINT",
)


class SchemaError(RuntimeError):
    """A file's `aqi_readings` cannot be brought to the contract."""


def readings_migrations() -> tuple[str, ...]:
    """Every nullable contract column added to a file created before it: adding a column to READINGS_COLUMNS is
    the whole change (a NOT NULL column cannot be added to rows that exist: `ensure_schema` refuses it)."""
    return tuple(
        f'ALTER TABLE aqi_readings ADD COLUMN IF NOT EXISTS "{c.name}" {c.sql_type}'
        for c in READINGS_COLUMNS
        if not c.not_null
    )


def ensure_schema(connection: duckdb.DuckDBPyConnection, *, primary_key: bool = True) -> None:
    """Create the history's tables (and add columns newer than a file) on a writable connection."""
    for ddl in (
        INGEST_SEQUENCE_DDL,
        readings_ddl(primary_key=primary_key),
        REJECTED_VALUES_DDL,
        SNAPSHOT_LOG_DDL,
        TIER_LOG_DDL,
        *readings_migrations(),
        *MIGRATIONS,
    ):
        connection.execute(ddl)
    present = {
        row[0]
        for row in connection.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'aqi_readings' AND schema_name = 'main' "
            "AND database_name = current_database()"
        ).fetchall()
    }
    absent = [c.name for c in READINGS_COLUMNS if c.name not in present]
    if absent:
        raise SchemaError(
            f"aqi_readings lacks the NOT NULL contract columns {absent}: a column added later must be nullable"
        )


@contextlib.contextmanager
def readings_connection(
    path: str | Path, *, read_only: bool = False, lock_timeout_s: float = 120.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The history's DuckDB file, its tables created or migrated first when opened for writing."""
    with duckdb_connection(path, read_only=read_only, lock_timeout_s=lock_timeout_s) as connection:
        if not read_only:
            ensure_schema(connection)
        yield connection
