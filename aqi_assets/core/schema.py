"""DuckDB tables of the air-quality history: the contract data consumers and sync targets rely on."""

from __future__ import annotations

PERIODS: tuple[str, ...] = ("5min", "24h")

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

MEASUREMENT_COLUMNS: tuple[str, ...] = tuple(VALUE_TYPE_COLUMNS.values())

INDEX_COLUMNS: dict[str, str] = {
    "daqi_pm25": "TINYINT",
    "daqi_pm10": "TINYINT",
    "daqi": "TINYINT",
    "daqi_band": "VARCHAR",
    "aqi_us_pm25": "SMALLINT",
    "aqi_us_pm10": "SMALLINT",
    "aqi_us": "SMALLINT",
    "aqi_us_category": "VARCHAR",
    "aqi_us_beyond": "BOOLEAN",
}

AQI_READINGS_DDL = f"""
CREATE TABLE IF NOT EXISTS aqi_readings (
    period VARCHAR NOT NULL,
    sensor_id BIGINT NOT NULL,
    "timestamp" TIMESTAMP NOT NULL,
    measurement_id BIGINT,
    location_id BIGINT,
    country VARCHAR,
    latitude DOUBLE,
    longitude DOUBLE,
    altitude DOUBLE,
    indoor BOOLEAN,
    sensor_type VARCHAR,
    {", ".join(f"{c} DOUBLE" for c in MEASUREMENT_COLUMNS)},
    other_values MAP(VARCHAR, VARCHAR),
    {", ".join(f"{c} {t}" for c, t in INDEX_COLUMNS.items())},
    snapshot VARCHAR NOT NULL,
    ingested_at TIMESTAMP NOT NULL,
    PRIMARY KEY (period, sensor_id, "timestamp")
)
"""

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
    processed_at TIMESTAMP NOT NULL
)
"""

ALL_DDL: tuple[str, ...] = (AQI_READINGS_DDL, REJECTED_VALUES_DDL, SNAPSHOT_LOG_DDL)
