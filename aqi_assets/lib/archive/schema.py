"""Archive facts written once: the CSV columns and the merge log table.

Archive measurements go into `aqi_readings` with the period `lib.readings.periods.ARCHIVE`: the key (period,
sensor_id, timestamp) keeps exactly-once merges per source, a 5-minute average and an archived measurement of the
same sensor never collide, and every row says where it came from. The archive has no country column and only
outdoor sensors. The archive's first day is the history's (`lib.readings.periods.DEFAULT_HISTORY_START`).
"""

from __future__ import annotations

# The columns every archive CSV starts with (the per-type measurement columns follow).
BASE_COLUMNS: tuple[str, ...] = ("sensor_id", "sensor_type", "location", "lat", "lon", "timestamp")

# Archive column → the platform's value type (the v2 API name); columns not named here go to `other_values`.
COLUMN_VALUE_TYPES: dict[str, str] = {
    "P0": "P0",
    "P1": "P1",
    "P2": "P2",
    "P4": "P4",
    "temperature": "temperature",
    "humidity": "humidity",
    "pressure": "pressure",
    "pressure_sealevel": "pressure_at_sealevel",
    "pressure_at_sealevel": "pressure_at_sealevel",
}

# Measurement columns a file of each type is expected to carry; a file lacking one is counted (its rows are
# still read: the values it has are kept).
EXPECTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "SDS011": ("P1", "P2"),
    "SDS021": ("P1", "P2"),
    "SPS30": ("P0", "P1", "P2", "P4"),
    "PMS1003": ("P0", "P1", "P2"),
    "PMS3003": ("P0", "P1", "P2"),
    "PMS5003": ("P0", "P1", "P2"),
    "PMS6003": ("P0", "P1", "P2"),
    "PMS7003": ("P0", "P1", "P2"),
    "HPM": ("P1", "P2"),
    "BME280": ("pressure", "temperature", "humidity"),
    "BMP280": ("pressure", "temperature"),
    "DHT22": ("temperature", "humidity"),
    "HTU21D": ("temperature", "humidity"),
}

# One row per (day, set of files) merged: the rows and this entry commit in one transaction, so a day is
# merged exactly once per file set (a re-run with the same files adds nothing; more files add only theirs).
ARCHIVE_LOG_DDL = """
CREATE TABLE IF NOT EXISTS archive_log (
    day DATE NOT NULL,
    fileset_sha256 VARCHAR NOT NULL,
    files INTEGER NOT NULL,
    bytes BIGINT NOT NULL,
    lines BIGINT NOT NULL,
    measurements BIGINT NOT NULL,          -- valid rows (one per sensor and timestamp)
    rows_inserted BIGINT NOT NULL,
    rows_already_known BIGINT NOT NULL,
    values_quarantined BIGINT NOT NULL,    -- bad values of rows that were kept
    records_quarantined BIGINT NOT NULL,   -- rows rejected as a whole
    sensors INTEGER NOT NULL,
    details JSON,                          -- per-problem counts (malformed rows, repeated headers, ...)
    processed_at TIMESTAMP NOT NULL,
    run_id VARCHAR,
    PRIMARY KEY (day, fileset_sha256)
)
"""

DEFAULT_ARCHIVE_URL = "https://archive.sensor.community"
