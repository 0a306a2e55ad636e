"""DuckDB tables of the air-quality history: the contract data consumers and sync targets rely on."""

from __future__ import annotations

from aqi_assets.lib.air_quality.periods import SNAPSHOT_PERIODS

PERIODS: tuple[str, ...] = tuple(SNAPSHOT_PERIODS)

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
    -- One number per merge, increasing: sync watermarks follow it, so a late reading (an older timestamp
    -- merged later) is still sent.
    ingest_seq BIGINT,
    -- Why a reading with PM values has no index (NULL otherwise), for the UI.
    no_index_reason VARCHAR,
    PRIMARY KEY (period, sensor_id, "timestamp")
)
"""

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

ALL_DDL: tuple[str, ...] = (INGEST_SEQUENCE_DDL, AQI_READINGS_DDL, REJECTED_VALUES_DDL, SNAPSHOT_LOG_DDL)

# Columns added after the first release of a table, for files created before them.
MIGRATIONS: tuple[str, ...] = (
    "ALTER TABLE aqi_readings ADD COLUMN IF NOT EXISTS ingest_seq BIGINT",
    "ALTER TABLE snapshot_log ADD COLUMN IF NOT EXISTS run_id VARCHAR",
    "ALTER TABLE snapshot_log ADD COLUMN IF NOT EXISTS values_read BIGINT",
    "ALTER TABLE snapshot_log ADD COLUMN IF NOT EXISTS values_invalid BIGINT",
    "ALTER TABLE aqi_readings ADD COLUMN IF NOT EXISTS no_index_reason VARCHAR",
    "ALTER TABLE snapshot_log ADD COLUMN IF NOT EXISTS records_without_values BIGINT",
)

# Shown in the UI's column table of `aqi_readings`.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "period": "'5min' (data.json), '24h' (data.24h.json) or 'archive' (archive.sensor.community CSVs)",
    "sensor_id": "Sensor.Community sensor id",
    "timestamp": "end of the averaging period, UTC",
    "measurement_id": "the record's id in the snapshot (the highest wins among duplicates within one snapshot; "
    "across snapshots the first merged copy is kept, a later one with other values goes to rejected_values)",
    "location_id": "station id, shared by the PM and climate sensors of one station",
    "country": "ISO-2 country code as reported",
    "latitude": "degrees; NULL when absent or off the globe",
    "longitude": "degrees; NULL when absent or off the globe",
    "altitude": "metres",
    "indoor": "the sensor is indoors (the official map hides these)",
    "sensor_type": "e.g. SDS011, SPS30, DHT22, BME280",
    "pm1": "PM1 (P0), µg/m³ (mass-concentration sensor types only; others keep P0–P4 in other_values)",
    "pm25": "PM2.5 (P2), µg/m³ (mass-concentration sensor types only)",
    "pm4": "PM4 (P4), µg/m³ (mass-concentration sensor types only)",
    "pm10": "PM10 (P1), µg/m³ (mass-concentration sensor types only)",
    "temperature": "°C",
    "humidity": "relative humidity, %",
    "pressure": "station pressure, Pa (30–110 kPa accepted: it falls with altitude)",
    "pressure_at_sealevel": "pressure reduced to sea level, Pa (85–120 kPa accepted)",
    "other_values": "every other value type of the record, as text (also P0–P4 of sensors that count particles, "
    "e.g. PPD42NS: not µg/m³)",
    "daqi_pm25": "UK DAQI sub-index for PM2.5 (1–10)",
    "daqi_pm10": "UK DAQI sub-index for PM10 (1–10)",
    "daqi": "UK DAQI: the highest sub-index (indicative on 5-minute data)",
    "daqi_band": "Low 1–3, Moderate 4–6, High 7–9, Very High 10",
    "aqi_us_pm25": "US EPA AQI (2024) for PM2.5",
    "aqi_us_pm10": "US EPA AQI for PM10",
    "aqi_us": "US EPA AQI: the highest sub-index (indicative on 5-minute data)",
    "aqi_us_category": "Good … Hazardous",
    "aqi_us_beyond": "a concentration above the top breakpoint (AQI reported as 500)",
    "snapshot": "raw snapshot file the reading came from",
    "ingested_at": "when the reading was merged, UTC",
    "ingest_seq": "merge number (increasing); the sync watermarks follow it",
    "no_index_reason": "why a reading with PM values has no index (e.g. the sensor type counts particles); "
    "NULL otherwise",
}
