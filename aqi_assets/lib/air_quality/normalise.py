"""Raw snapshot file → typed readings, quarantined values and AQI indices, merged into the DuckDB history.

One DuckDB pass does parse + unnest + plausibility + pivot; the indices are computed on the pivoted PM
columns with the NumPy module `aqi_assets.lib.air_quality.indices`. Everything for one snapshot is committed in one
transaction together with its `snapshot_log` entry, so a snapshot is merged exactly once even when the
process dies half way.

Records are parsed with an explicit schema whose leaves are all VARCHAR (values come as strings or numbers)
and cast with TRY_CAST, so odd values are quarantined instead of failing the snapshot. When a record's shape
is so wrong that the typed reader cannot map it (e.g. `sensordatavalues` not an array), the snapshot is read
again object by object with a lenient transform, and the malformed parts are quarantined with a reason.

What the history keeps:
- A row of `aqi_readings` exists only for a record with at least one kept value (a measurement column or an
  entry of `other_values`). A record with empty `sensordatavalues`, or whose every value was quarantined, is no
  reading: it is counted in `snapshot_log.records_without_values`, and its quarantined values are in
  `rejected_values`.
- PM values (P0–P4) go to the µg/m³ columns only for mass-concentration sensor types (`sensor_types`); another
  type's (e.g. the PPD42NS's particle counts) stay as text in `other_values`, with NULL indices and a
  `no_index_reason`.
- Across snapshots the first merged copy of a reading stays. A later copy with other values is recorded in
  `rejected_values` (each of its values, `LATER_COPY_REASON`); identical repeats leave no trace.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from aqi_assets.lib.air_quality.indices import compute_indices
from aqi_assets.lib.air_quality.sensor_types import (
    AT_MEASURING_LIMIT_REASON,
    BEYOND_MEASURING_LIMIT_REASON,
    NOT_MASS_CONCENTRATION_REASON,
    PM_VALUE_TYPES,
    full_scale_sql,
    mass_concentration_sql_list,
)
from aqi_assets.lib.common.duckdb_conn import transaction
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.periods import period_names
from aqi_assets.lib.readings.schema import (
    INDEX_COLUMNS,
    MEASUREMENT_COLUMNS,
    READINGS_KEY,
    VALUE_TYPE_COLUMNS,
    column_names,
)

# The part of a v2 record the platform reads; every leaf is text, cast with TRY_CAST later. Fields not named
# here are ignored (the raw file keeps them).
RECORD_SHAPE: dict[str, object] = {
    "id": "VARCHAR",
    "timestamp": "VARCHAR",
    "location": dict.fromkeys(("id", "latitude", "longitude", "altitude", "country", "indoor"), "VARCHAR"),
    "sensor": {"id": "VARCHAR", "sensor_type": {"name": "VARCHAR"}},
    "sensordatavalues": [{"value": "VARCHAR", "value_type": "VARCHAR"}],
}


def _duckdb_type(shape: object) -> str:
    if isinstance(shape, dict):
        return "STRUCT(" + ", ".join(f'"{name}" {_duckdb_type(child)}' for name, child in shape.items()) + ")"
    if isinstance(shape, list):
        return _duckdb_type(shape[0]) + "[]"
    return str(shape)


RECORD_COLUMNS = {name: _duckdb_type(child) for name, child in RECORD_SHAPE.items()}
# A zone after the time (`Z`, `+02:00`, `-0500`, ` UTC`, ` Europe/Berlin`, ...): past the time's last field, its
# fraction and any blanks, a character that is no digit, dot or colon. Other text after the time matches too, so
# it is read with the time or the time is rejected, never cut off.
TIME_ZONE_SUFFIX = r":\d*(\.\d*)?[[:space:]]*[^\d.:[:space:]]"
MAX_OBJECT_BYTES = 64 << 20  # a single record larger than this is not a Sensor.Community record
MAX_KEPT_RAW_CHARS = 500  # longer raw values are cut in rejected_values (the raw file keeps them whole)
DUPLICATE_REASON = "duplicate record: superseded by the one with the highest measurement id"
# A reading already in the history delivered again with other values: the first merged copy stays.
LATER_COPY_REASON = "later copy of a merged reading with different values: the first merged copy is kept"
FUTURE_TOLERANCE = "15 minutes"

# Plausibility limits (the official map's, see ../shared/reference): (lower inclusive, upper exclusive).
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "P1": (0.0, 1900.0),
    "P2": (0.0, 900.0),
    "P0": (0.0, 900.0),  # PM1 is part of PM2.5
    "P4": (0.0, 1900.0),  # PM4 is part of PM10
    "temperature": (-50.0, 70.0),
    "humidity": (0.0, 100.0001),
    # Station pressure falls with altitude (≈ 77 kPa in Mexico City at 2,240 m, 53 kPa at La Rinconada, 5,100 m,
    # the highest town; 33 kPa on Everest) and peaks near 107–108 kPa by the Dead Sea (−430 m).
    "pressure": (30_000.0, 110_000.0),  # Pa
    # Reduced to sea level: the official map's range (world records 87.0 and 108.4 kPa).
    "pressure_at_sealevel": (85_000.0, 120_000.0),
}


def utc_timestamp_sql(text: str) -> str:
    """SQL for the naive UTC TIMESTAMP that the timestamp text `text` (an SQL expression) stands for; NULL when
    it is no reading time. One rule for the snapshots and the archive.

    A time without a zone is UTC (the API's and the archive's convention) and is read as written, by DuckDB's
    fast cast (`2016-07-14 11:02:46`, `2016-07-14T11:02:46.5`). A time with a zone is converted:
    `2016-07-14T13:02:46+02:00` is 11:02:46. The cast to TIMESTAMP would silently drop the zone, so such text is
    cast to TIMESTAMPTZ (the zone fixes the instant) and made naive through its epoch, which no session TimeZone
    can shift; a zone DuckDB cannot read gives NULL. Text without a time of day (a date alone, `epoch`,
    `infinity`) gives NULL too.
    """
    return (
        f"CASE WHEN regexp_matches({text}, '{TIME_ZONE_SUFFIX}') "
        f"THEN make_timestamp(epoch_us(TRY_CAST({text} AS TIMESTAMPTZ))) "
        f"WHEN contains({text}, ':') THEN TRY_CAST({text} AS TIMESTAMP) END"
    )


class SnapshotFormatError(ValueError):
    """The snapshot is not a JSON array of records (empty, truncated, HTML, ...)."""


@dataclass(frozen=True)
class MergeStats:
    snapshot: str
    period: str
    records: int
    readings: int
    rows_inserted: int
    rows_duplicate: int
    values_rejected: int  # rows added to rejected_values (bad values of readings not seen before)
    values_read: int  # value entries in the snapshot
    values_invalid: int  # of those, the ones that broke a rule (including those of already-known readings)
    lenient_parse: bool
    # Accepted records that did not become a reading because no value of theirs was kept (empty
    # `sensordatavalues`, or every value quarantined: those values are in rejected_values).
    records_without_values: int = 0
    # Readings the history already held, delivered again with other values (recorded in rejected_values).
    readings_differing: int = 0


# Columns of aqi_readings not copied from the staged readings: the key, the indices (joined in), and what the
# merge itself stamps.
_NOT_STAGED = {*READINGS_KEY, *INDEX_COLUMNS, "snapshot", "ingested_at", "ingest_seq"}


def _check_period(period: str) -> None:
    if period not in period_names():
        raise ValueError(f"unknown period {period!r}; expected one of {period_names()}")


def count_records(connection: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Validate that ``path`` holds one JSON array and count its elements (raises SnapshotFormatError)."""
    if path.stat().st_size == 0:
        raise SnapshotFormatError(f"{path} is empty")
    try:
        records = connection.execute(
            "SELECT count(*) FROM read_json_objects(?, format = 'array', maximum_object_size = ?)",
            [str(path), MAX_OBJECT_BYTES],
        ).fetchone()[0]
    except (duckdb.InvalidInputException, duckdb.IOException, duckdb.ConversionException) as error:
        raise SnapshotFormatError(f"{path} is not a JSON array of records: {_first_line(error)}") from error
    if records == 0:
        _require_empty_array(path)
    return records


def _require_empty_array(path: Path) -> None:
    """DuckDB reads an empty (or whitespace-only) body as zero records; only `[]` is an empty snapshot."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as body:
        head = body.read(64).strip()
    if not head.startswith(b"["):
        raise SnapshotFormatError(f"{path} has an empty body, not a JSON array")


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:300]


def _typed_source() -> str:
    """Records through the typed reader: fast, fails on a record whose shape does not fit the schema."""
    return """
        SELECT row_number() OVER () AS rn, id, "timestamp", location, sensor, sensordatavalues,
               NULL::VARCHAR AS bad_shape
        FROM read_json($path, format = 'array', columns = $columns, maximum_object_size = $max_bytes)
    """


def _lenient_source() -> str:
    """Records object by object: json_transform maps what fits and yields NULL for what does not, and the
    JSON text of any part that did not fit is kept so it is quarantined rather than dropped."""
    return f"""
        SELECT rn, rec.id, rec."timestamp", rec.location, rec.sensor, rec.sensordatavalues, bad_shape
        FROM (
            SELECT rn, json_transform(doc, '{json.dumps(RECORD_SHAPE)}') AS rec,
                   CASE
                     WHEN json_type(doc) <> 'OBJECT' THEN 'record is not an object: ' || doc::VARCHAR
                     WHEN json_type(doc, '$.sensordatavalues') NOT IN ('ARRAY', 'NULL')
                       THEN 'sensordatavalues is not an array: ' || (doc -> '$.sensordatavalues')::VARCHAR
                     WHEN json_type(doc, '$.location') NOT IN ('OBJECT', 'NULL')
                       THEN 'location is not an object: ' || (doc -> '$.location')::VARCHAR
                     WHEN json_type(doc, '$.sensor') NOT IN ('OBJECT', 'NULL')
                       THEN 'sensor is not an object: ' || (doc -> '$.sensor')::VARCHAR
                   END AS bad_shape
            FROM (
                SELECT row_number() OVER () AS rn, json AS doc
                FROM read_json_objects($path, format = 'array', maximum_object_size = $max_bytes)
            )
        )
    """


def _sql_text(text: str) -> str:
    """A SQL string literal (reasons are constants of this module, but may contain quotes)."""
    return "'" + text.replace("'", "''") + "'"


def _plausibility_case() -> str:
    """SQL CASE giving the reason a numeric known value is implausible, NULL when it is fine.

    A value exactly at its sensor type's full scale is a saturated sensor (the most precise reason, so it comes
    first); one beyond it cannot have been measured either.
    """
    clauses = [f"WHEN abs(num - full_scale) < 1e-9 THEN {_sql_text(AT_MEASURING_LIMIT_REASON)}"]
    for value_type, (low, high) in PLAUSIBLE_RANGES.items():
        clauses.append(
            f"WHEN value_type = '{value_type}' AND num < {low} THEN "
            f"'{'negative' if low == 0 else f'out of range: {value_type} < {low:g}'}'"
        )
        clauses.append(
            f"WHEN value_type = '{value_type}' AND num >= {high} THEN 'out of range: {value_type} ≥ {high:g}'"
        )
    clauses.append(f"WHEN num > full_scale THEN {_sql_text(BEYOND_MEASURING_LIMIT_REASON)}")
    return "CASE " + " ".join(clauses) + " END"


def _stage_records(connection: duckdb.DuckDBPyConnection, path: Path, now: datetime) -> bool:
    """Parse the snapshot into temp table `recs` (one row per record with a verdict).

    Returns True when the lenient reader had to be used. Raises SnapshotFormatError when the file is not a
    JSON array of records at all.
    """
    if path.stat().st_size == 0:
        raise SnapshotFormatError(f"{path} is empty")
    parameters = {
        "now": naive_utc(now),
        "path": str(path),
        "max_bytes": MAX_OBJECT_BYTES,
    }
    try:
        connection.execute(_records_sql(_typed_source()), {**parameters, "columns": RECORD_COLUMNS})
        if connection.execute("SELECT count(*) FROM recs").fetchone()[0] == 0:
            _require_empty_array(path)
        return False
    except (duckdb.InvalidInputException, duckdb.ConversionException):
        pass
    try:
        connection.execute(_records_sql(_lenient_source()), parameters)
    except (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.IOException) as error:
        raise SnapshotFormatError(f"{path} is not a JSON array of records: {_first_line(error)}") from error
    return True


def _records_sql(source: str) -> str:
    return f"""
        CREATE OR REPLACE TEMP TABLE recs AS
        WITH parsed AS (
            SELECT rn, bad_shape,
                   TRY_CAST(id AS BIGINT) AS measurement_id,
                   TRY_CAST(sensor.id AS BIGINT) AS sensor_id,
                   "timestamp" AS raw_timestamp,
                   {utc_timestamp_sql('"timestamp"')} AS ts,
                   TRY_CAST(location.id AS BIGINT) AS location_id,
                   nullif(trim(location.country), '') AS country,
                   TRY_CAST(nullif(trim(location.latitude), '') AS DOUBLE) AS lat,
                   TRY_CAST(nullif(trim(location.longitude), '') AS DOUBLE) AS lon,
                   TRY_CAST(nullif(trim(location.altitude), '') AS DOUBLE) AS altitude,
                   -- 0/1 as served, but also JSON true/false or "true" (read as text 'true'): a boolean cast
                   -- takes all of them; anything else is outdoor, the API's default.
                   coalesce(TRY_CAST(trim(location.indoor) AS BOOLEAN), false) AS indoor,
                   sensor.sensor_type.name AS sensor_type,
                   sensordatavalues AS sdv
            FROM ({source})
        )
        ,
        -- Duplicate (sensor, timestamp) records: a well-formed record beats a malformed one, one with values
        -- beats one without, then the highest measurement id wins, then the later record.
        winners AS (
            SELECT arg_max(rn, (bad_shape IS NULL, len(coalesce(sdv, [])) > 0, coalesce(measurement_id, -1), rn))
                   AS rn
            FROM parsed GROUP BY sensor_id, ts
        )
        SELECT parsed.*,
               CASE
                 WHEN bad_shape IS NOT NULL THEN split_part(bad_shape, ':', 1)
                 WHEN sensor_id IS NULL THEN 'missing or invalid sensor id'
                 WHEN ts IS NULL THEN 'missing or invalid timestamp'
                 WHEN ts > $now::TIMESTAMP + INTERVAL '{FUTURE_TOLERANCE}' THEN 'timestamp in the future'
               END AS record_reason,
               winners.rn IS NULL AS superseded
        FROM parsed LEFT JOIN winners USING (rn)
    """


def _stage_values(connection: duckdb.DuckDBPyConnection, period: str) -> None:
    """From `recs`, build temp tables `vals` (one row per value with a verdict) and `readings` (pivoted).

    A value lands in its column when its type has one — except PM values of a sensor type that does not report
    µg/m³ (see `sensor_types`), which are kept as text in `other_values` like any other type. A record becomes a
    reading only when at least one of its values is kept.
    """
    known = ", ".join(f"'{t}'" for t in VALUE_TYPE_COLUMNS)
    pm_types = ", ".join(f"'{t}'" for t in PM_VALUE_TYPES)
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE vals AS
        WITH unnested AS (
            SELECT rn, sensor_id, ts, record_reason, superseded,
                   upper(trim(sensor_type)) AS type_key,
                   list_transform(sdv, lambda entry: entry.value_type) AS types,
                   unnest(sdv) AS v, generate_subscripts(sdv, 1) AS ord
            FROM recs
        ),
        typed AS (
            SELECT rn, sensor_id, ts, record_reason, superseded, ord,
                   v.value_type AS value_type, v.value AS raw_value,
                   TRY_CAST(trim(v.value) AS DOUBLE) AS num,
                   -- an earlier entry of the same record has this type
                   list_position(types, v.value_type) < ord AS repeated_type,
                   coalesce(v.value_type IN ({known})
                            AND (v.value_type NOT IN ({pm_types})
                                 OR type_key IN ({mass_concentration_sql_list()})), false) AS in_column,
                   {full_scale_sql("type_key", "v.value_type")} AS full_scale
            FROM unnested
        )
        SELECT rn, ord, sensor_id, ts, value_type, raw_value, num, in_column,
               CASE
                 WHEN record_reason IS NOT NULL THEN record_reason
                 WHEN superseded
                   THEN {_sql_text(DUPLICATE_REASON)}
                 WHEN value_type IS NULL OR trim(value_type) = '' THEN 'missing value_type'
                 WHEN repeated_type THEN 'duplicate value_type in record'
                 WHEN length(raw_value) > {MAX_KEPT_RAW_CHARS} THEN 'value too long'
                 WHEN NOT in_column THEN NULL
                 WHEN raw_value IS NULL THEN 'missing value'
                 WHEN num IS NULL THEN 'non-numeric'
                 WHEN isnan(num) THEN 'NaN'
                 WHEN isinf(num) THEN 'infinite'
                 ELSE {_plausibility_case()}
               END AS reason
        FROM typed
        """
    )
    measures = ",\n".join(
        f"max(num) FILTER (WHERE value_type = '{t}' AND in_column) AS {c}" for t, c in VALUE_TYPE_COLUMNS.items()
    )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE readings AS
        WITH pivoted AS (
            SELECT rn, {measures},
                   map_from_entries(
                       list({{'key': value_type, 'value': raw_value}} ORDER BY ord) FILTER (WHERE NOT in_column)
                   ) AS other_values,
                   bool_or(value_type IN ({pm_types}) AND NOT in_column) AS pm_not_mass
            FROM vals WHERE reason IS NULL
            GROUP BY rn
        )
        SELECT r.rn, '{period}' AS period, r.sensor_id, r.ts AS "timestamp", r.measurement_id, r.location_id,
               r.country,
               CASE WHEN r.lat BETWEEN -90 AND 90 AND r.lon BETWEEN -180 AND 180 THEN r.lat END AS latitude,
               CASE WHEN r.lat BETWEEN -90 AND 90 AND r.lon BETWEEN -180 AND 180 THEN r.lon END AS longitude,
               r.altitude, r.indoor, r.sensor_type,
               {", ".join("p." + c for c in VALUE_TYPE_COLUMNS.values())}, p.other_values,
               CASE WHEN p.pm_not_mass THEN {_sql_text(NOT_MASS_CONCENTRATION_REASON)} END AS no_index_reason
        -- The inner join keeps only records with at least one kept value: a record without values is no reading.
        FROM recs r JOIN pivoted p USING (rn)
        WHERE r.record_reason IS NULL AND NOT r.superseded
        """
    )


def _rejected_rows_sql() -> str:
    # Readings the history already holds were quarantined when first seen (see _stage_known_keys).
    new_key = "NOT EXISTS (SELECT 1 FROM known k WHERE k.sensor_id = {0}.sensor_id AND k.ts = {0}.ts)"
    return f"""
        SELECT $period, sensor_id, ts, value_type,
               CASE WHEN length(raw_value) > {MAX_KEPT_RAW_CHARS}
                    THEN left(raw_value, {MAX_KEPT_RAW_CHARS}) || '…' ELSE raw_value END,
               reason, $snapshot, $now::TIMESTAMP, 'value'
        FROM vals WHERE reason IS NOT NULL AND {new_key.format("vals")}
        UNION ALL
        -- Records rejected as a whole that carried no value (or whose shape was malformed) still leave a row.
        SELECT $period, r.sensor_id, r.ts, NULL,
               left(coalesce(r.bad_shape, r.raw_timestamp), {MAX_KEPT_RAW_CHARS}),
               coalesce(r.record_reason, {_sql_text(DUPLICATE_REASON)}),
               $snapshot, $now::TIMESTAMP, 'record'
        FROM recs r
        WHERE (r.bad_shape IS NOT NULL
               OR ((r.record_reason IS NOT NULL OR r.superseded) AND len(coalesce(r.sdv, [])) = 0))
          AND {new_key.format("r")}
        UNION ALL
        -- Coordinates outside the globe: the reading keeps NULL coordinates, the raw pair is kept here.
        SELECT $period, sensor_id, ts, 'location', lat::VARCHAR || ',' || lon::VARCHAR,
               'coordinates out of range', $snapshot, $now::TIMESTAMP, 'location'
        FROM recs SEMI JOIN readings USING (rn)
        WHERE (NOT lat BETWEEN -90 AND 90 OR NOT lon BETWEEN -180 AND 180)
          AND {new_key.format("recs")}
        UNION ALL
        -- A reading the history holds, delivered again with other values: the first copy stays, this one is
        -- kept here whole (each of its values; a bad one with its own reason).
        SELECT $period, v.sensor_id, v.ts, v.value_type,
               CASE WHEN length(v.raw_value) > {MAX_KEPT_RAW_CHARS}
                    THEN left(v.raw_value, {MAX_KEPT_RAW_CHARS}) || '…' ELSE v.raw_value END,
               coalesce(v.reason, {_sql_text(LATER_COPY_REASON)}), $snapshot, $now::TIMESTAMP, 'value'
        FROM vals v SEMI JOIN differing d USING (rn)
    """


# Rows whose indices are computed at a time: the NumPy temporaries stay bounded however large the staged set is
# (a month of 1,000 archive sensors is 18 M rows).
INDEX_BATCH_ROWS = 131_072
# The contract's SQL types of the index columns as compact Arrow types (NULL where the index code gives NaN/None).
_INDEX_ARROW_TYPES = {"TINYINT": pa.int8(), "SMALLINT": pa.int16(), "BOOLEAN": pa.bool_()}


def _index_array(values: np.ndarray, sql_type: str) -> pa.Array:
    if sql_type == "VARCHAR":  # a few distinct labels: dictionary-encoded, a byte per row
        return pa.array(values, pa.string()).dictionary_encode()
    if sql_type == "BOOLEAN":
        return pa.array(values, pa.bool_())
    floats = np.asarray(values, dtype=np.float64)
    missing = np.isnan(floats)
    return pa.array(np.where(missing, 0, floats).astype(_INDEX_ARROW_TYPES[sql_type].to_pandas_dtype()),
                    _INDEX_ARROW_TYPES[sql_type], mask=missing)


def index_table(
    connection: duckdb.DuckDBPyConnection, readings: str = "readings", *, in_order: bool = True
) -> pa.Table:
    """The indices of every row of the staged `readings` table (rn, pm25, pm10; µg/m³ only), keyed by `rn`, in
    the contract's compact types. `readings` is a fixed temp table name of the caller (snapshots: `readings`,
    archive: `arc_readings`). Computed INDEX_BATCH_ROWS at a time. ``in_order``: in `rn` order, so rows joined
    to it are inserted in the files' order (and a mean over them sums in the same order as over the tier's
    sorted copy); a caller that sorts later skips that sort."""
    connection.complete()  # a relation's stream may start only once no earlier result is pending
    batches = []
    order = " ORDER BY rn" if in_order else ""
    for batch in connection.sql(f"SELECT rn, pm25, pm10 FROM {readings}{order}").to_arrow_reader(INDEX_BATCH_ROWS):
        # NULL concentrations become NaN: the index code takes NaN for "no valid value".
        pm25 = batch.column("pm25").to_numpy(zero_copy_only=False).astype(np.float64)
        pm10 = batch.column("pm10").to_numpy(zero_copy_only=False).astype(np.float64)
        indices = compute_indices(pm25, pm10)
        arrays = {"rn": batch.column("rn").cast(pa.int64())}
        for name, sql_type in INDEX_COLUMNS.items():
            arrays[name] = _index_array(indices[name], sql_type)
        batches.append(pa.table(arrays))
    if not batches:
        return pa.table(
            {"rn": pa.array([], pa.int64()),
             **{name: pa.array([], pa.string() if sql_type == "VARCHAR" else _INDEX_ARROW_TYPES[sql_type])
                for name, sql_type in INDEX_COLUMNS.items()}}
        )
    return pa.concat_tables(batches, promote_options="permissive").unify_dictionaries().combine_chunks()


def merge_snapshot(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    period: str,
    snapshot: str | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
) -> MergeStats:
    """Merge one raw snapshot file into `aqi_readings` / `rejected_values` / `snapshot_log`, exactly once.

    Raises SnapshotFormatError (nothing written) when the file is not a JSON array. Returns zero counts when
    the snapshot was merged before. ``run_id`` (the Dagster run) lets that run's checks find these rows.
    """
    _check_period(period)
    snapshot = snapshot or path.name
    stamp = naive_utc(now)
    done = connection.execute("SELECT status FROM snapshot_log WHERE snapshot = ?", [snapshot]).fetchone()
    if done is not None:
        return MergeStats(snapshot, period, 0, 0, 0, 0, 0, 0, 0, False)
    try:
        # Staging lives in temp tables outside the transaction: a typed-reader failure must not abort it.
        lenient = _stage_records(connection, path, stamp)
        records = connection.execute("SELECT count(*) FROM recs").fetchone()[0]
        _stage_values(connection, period)
        values_read, values_invalid = connection.execute(
            "SELECT count(*), count(reason) FROM vals"
        ).fetchone()
        connection.register("index_table", index_table(connection))
        with transaction(connection):
            _stage_known_keys(connection, period)
            columns = [c for c in column_names() if c not in _NOT_STAGED]
            index_names = list(INDEX_COLUMNS)
            # The keys already in the history were just found (`known`), and the snapshot's own duplicates were
            # resolved while staging, so a plain INSERT suffices; the primary key still guards it (a conflict
            # would roll the whole snapshot back), and it costs far less than INSERT OR IGNORE's conflict path.
            inserted = connection.execute(
                f"""
                INSERT INTO aqi_readings
                    (period, sensor_id, "timestamp", {", ".join(columns)}, {", ".join(index_names)},
                     snapshot, ingested_at, ingest_seq)
                SELECT r.period, r.sensor_id, r."timestamp", {", ".join("r." + c for c in columns)},
                       {", ".join("i." + c for c in index_names)}, $snapshot, $now::TIMESTAMP, $seq
                FROM readings r JOIN index_table i USING (rn)
                WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.sensor_id = r.sensor_id AND k.ts = r."timestamp")
                """,
                {
                    "snapshot": snapshot,
                    "now": stamp,
                    "seq": connection.execute("SELECT nextval('aqi_ingest_seq')").fetchone()[0],
                },
            ).fetchone()[0]
            readings, differing = connection.execute(
                "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM differing)"
            ).fetchone()
            without_values = connection.execute(
                "SELECT count(*) FROM recs ANTI JOIN readings USING (rn) WHERE record_reason IS NULL AND NOT superseded"
            ).fetchone()[0]
            rejected = connection.execute(
                f"INSERT INTO rejected_values {_rejected_rows_sql()}",
                {"period": period, "snapshot": snapshot, "now": stamp},
            ).fetchone()[0]
            connection.execute(
                "INSERT INTO snapshot_log (snapshot, period, status, records, rows_inserted, rows_duplicate, "
                "values_rejected, error, processed_at, run_id, values_read, values_invalid, records_without_values) "
                "VALUES (?, ?, 'merged', ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                [snapshot, period, records, inserted, readings - inserted, rejected, stamp, run_id, values_read,
                 values_invalid, without_values],
            )
    finally:
        with contextlib.suppress(duckdb.Error):
            connection.unregister("index_table")
        for table in ("recs", "vals", "readings", "known", "differing"):
            connection.execute(f"DROP TABLE IF EXISTS {table}")
    return MergeStats(
        snapshot, period, records, readings, inserted, readings - inserted, rejected, values_read, values_invalid,
        lenient, records_without_values=without_values, readings_differing=differing,
    )


def _stage_known_keys(connection: duckdb.DuckDBPyConnection, period: str) -> None:
    """Temp tables `known`: the snapshot's readings the history already holds, with their stored values, and
    `differing`: the snapshot's copies of those whose values differ from the stored ones.

    Consecutive snapshots repeat most readings; their bad values were quarantined when first seen, so they are
    not quarantined again, and an identical repeat leaves no trace. The time range lets DuckDB skip all older
    row groups (zone maps).
    """
    values = ", ".join(f"a.{c}" for c in (*MEASUREMENT_COLUMNS, "other_values"))
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE known AS
        SELECT a.sensor_id, a."timestamp" AS ts, {values}
        FROM aqi_readings a
        SEMI JOIN recs r ON a.sensor_id = r.sensor_id AND a."timestamp" = r.ts
        WHERE a.period = $period
          AND a."timestamp" BETWEEN (SELECT min(ts) FROM recs) AND (SELECT max(ts) FROM recs)
        """,
        {"period": period},
    )
    # MAP equality depends on entry order, and upstream may list the same values in another order.
    differs = " OR ".join(
        [f"r.{c} IS DISTINCT FROM k.{c}" for c in MEASUREMENT_COLUMNS]
        + ["list_sort(map_entries(r.other_values)) IS DISTINCT FROM list_sort(map_entries(k.other_values))"]
    )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE differing AS
        SELECT r.rn FROM readings r JOIN known k ON k.sensor_id = r.sensor_id AND k.ts = r."timestamp"
        WHERE {differs}
        """
    )


def record_unreadable(
    connection: duckdb.DuckDBPyConnection,
    snapshot: str,
    period: str,
    error: str,
    now: datetime | None = None,
    run_id: str | None = None,
) -> None:
    """Note a snapshot that cannot be parsed, so later runs skip it (the raw file stays for a replay)."""
    connection.execute(
        "INSERT OR REPLACE INTO snapshot_log (snapshot, period, status, records, rows_inserted, rows_duplicate, "
        "values_rejected, error, processed_at, run_id, values_read, values_invalid) "
        "VALUES (?, ?, 'unreadable', NULL, 0, 0, 0, ?, ?, ?, NULL, NULL)",
        [snapshot, period, error, naive_utc(now), run_id],
    )
