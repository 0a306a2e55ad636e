"""A day of archive CSVs → readings, quarantined values and indices merged into `aqi_readings`, exactly once.

All the day's files are read in one DuckDB pass, each line as one text value (no CSV sniffing: the files'
columns differ by sensor type, and a broken line must not stop the others). Each file's first header line
gives its columns; rows are split on `;` and mapped by name, so a missing column, extra per-type columns, a
second header in the middle, an empty or header-only file, a malformed row, either timestamp format (a
time with a zone is converted to UTC) and decimal commas are each handled and counted, never aborting the day.
A row's UTC time may fall on a neighbouring day: it is kept there, as any row of another day in the files is.

Values go through the snapshots' rules (`aqi_assets.lib.air_quality.normalise`: the same plausibility limits,
timestamp reading and reasons), so archived and live readings are judged alike. An empty cell is no
measurement (the API leaves such value types out), not a bad value.

Exactly once: every merged file is logged in `archive_files` (name and sha256) in the same transaction as its
rows and the day's `archive_log` entry, so a re-run merges only files not merged before, and a crash leaves
nothing half-merged. Keys the history already holds are skipped, so overlapping files add nothing twice.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from aqi_assets.lib.air_quality.normalise import (
    FUTURE_TOLERANCE,
    MAX_KEPT_RAW_CHARS,
    PLAUSIBLE_RANGES,
    index_table,
    utc_timestamp_sql,
)
from aqi_assets.lib.air_quality.sensor_types import (
    NOT_MASS_CONCENTRATION_REASON,
    PM_VALUE_TYPES,
    is_mass_concentration_sql,
)
from aqi_assets.lib.archive.schema import (
    ARCHIVE_LOG_DDL,
    BASE_COLUMNS,
    COLUMN_VALUE_TYPES,
    EXPECTED_COLUMNS,
)
from aqi_assets.lib.common.duckdb_conn import bounded_memory, transaction
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.periods import ARCHIVE
from aqi_assets.lib.readings.schema import INDEX_COLUMNS, VALUE_TYPE_COLUMNS, column_names

ARCHIVE_FILES_DDL = """
CREATE TABLE IF NOT EXISTS archive_files (
    file VARCHAR NOT NULL,       -- the archive's file name
    sha256 VARCHAR NOT NULL,     -- of the bytes in the lake
    day DATE NOT NULL,
    bytes BIGINT NOT NULL,
    merged_at TIMESTAMP NOT NULL,
    run_id VARCHAR,
    PRIMARY KEY (file, sha256)
)
"""
ARCHIVE_DDL: tuple[str, ...] = (ARCHIVE_LOG_DDL, ARCHIVE_FILES_DDL)

DUPLICATE_ROW_REASON = "duplicate record: the same sensor and timestamp earlier in the files of the day"
NO_HEADER_REASON = "no header line before this row"
MALFORMED_ROW_REASON = "malformed row: more fields than the header"
HASH_CHUNK = 1 << 20
# DuckDB's memory limit while a day merges: one day of 1,000 sensors peaked at 0.87 GiB without it and 0.69 GiB
# with it, in the same time; a day five times larger still completes (spilling).
ARCHIVE_MEMORY_LIMIT = "500MB"


@dataclass(frozen=True)
class ArchiveMergeStats:
    day: date
    files: int  # files merged by this call (files merged before are skipped)
    files_already_merged: int
    bytes: int
    lines: int
    measurements: int  # valid rows (one per sensor and timestamp)
    rows_inserted: int
    rows_already_known: int
    values_quarantined: int
    records_quarantined: int
    sensors: int
    details: dict[str, int] = field(default_factory=dict)


def ensure_archive_schema(connection: duckdb.DuckDBPyConnection) -> None:
    for ddl in ARCHIVE_DDL:
        connection.execute(ddl)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as body:
        for chunk in iter(lambda: body.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fileset_sha256(hashes: dict[str, str]) -> str:
    """One hash for a set of files: over the sorted (name, sha256) pairs."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}\0{hashes[name]}\n".encode())
    return digest.hexdigest()


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class _FileColumns:
    """Where one file's columns are (1-based positions in a split row; None when absent)."""

    file_no: int
    header_line: int | None  # 1-based number of the first header line
    column_count: int
    base: dict[str, int | None]
    values: dict[str, int | None]  # value type → position
    others: dict[str, int]  # other column name → position
    repeated_headers: int
    missing_expected: bool


def readable_copies(paths: Sequence[Path], scratch: Path) -> tuple[list[Path], int, list[str]]:
    """Paths DuckDB's `read_text` can read: gzip files decompressed and invalid UTF-8 replaced, into
    ``scratch`` under the original name (the lake keeps the exact bytes). Returns the paths, how many files
    held invalid UTF-8, and the names of gzip files that cannot be decompressed."""
    readable, invalid_utf8, unreadable = [], 0, []
    for path in paths:
        gzipped = path.suffix == ".gz"
        if not gzipped and path.stat().st_size < (64 << 20):
            data = path.read_bytes()
        elif gzipped:
            try:
                with gzip.open(path, "rb") as body:
                    data = body.read()
            except (OSError, EOFError, zlib.error):
                unreadable.append(path.name)  # a broken gzip file: left in the lake, not merged, counted
                continue
        else:
            readable.append(path)  # too large to check here: read_text reports a broken one
            continue
        try:
            data.decode("utf-8")
            fixed = None
        except UnicodeDecodeError:
            fixed = data.decode("utf-8", errors="replace").encode("utf-8")
            invalid_utf8 += 1
        if fixed is None and not gzipped:
            readable.append(path)
            continue
        copy = scratch / path.name
        copy.write_bytes(data if fixed is None else fixed)
        readable.append(copy)
    return readable, invalid_utf8, unreadable


def _stage_texts(connection: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> None:
    """Temp table `arc_texts`: each file's text and its first header line (and that line's number)."""
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE arc_texts AS
        WITH texts AS (
            SELECT parse_filename(filename) AS file, content,
                   regexp_extract(content, '(^|\\n){HEADER_PATTERN}', 2) AS header
            FROM read_text($files)
        )
        SELECT file, content, nullif(header, '') AS header,
               CASE WHEN header <> '' THEN len(string_split(left(content, strpos(content, header)), chr(10)))
               END AS header_line,
               len(regexp_extract_all(content, '(^|\\n){HEADER_PATTERN}')) AS headers
        FROM texts
        """,
        {"files": [str(p) for p in paths]},
    )


HEADER_PATTERN = "\ufeff?[ \\t]*(sensor_id;[^\\r\\n]*)"


def _is_header(expression: str) -> str:
    return f"starts_with(ltrim(ltrim({expression}, chr(65279))), 'sensor_id;')"


def _file_columns(connection: duckdb.DuckDBPyConnection, names: Sequence[str]) -> dict[str, _FileColumns]:
    """Each file's columns, from its first header line (files without one are absent from the result)."""
    rows = connection.execute(
        "SELECT file, header_line, headers, header FROM arc_texts WHERE header IS NOT NULL"
    ).fetchall()
    numbers = {name: number for number, name in enumerate(names)}
    columns: dict[str, _FileColumns] = {}
    for file, header_line, headers, header in rows:
        names_in_file = [c.strip() for c in header.strip().rstrip("; ").split(";")]
        position = {name: index for index, name in reversed(list(enumerate(names_in_file, 1)))}
        values: dict[str, int | None] = {}
        for column, value_type in COLUMN_VALUE_TYPES.items():
            if values.get(value_type) is None:
                values[value_type] = position.get(column)
        known = {*BASE_COLUMNS, *COLUMN_VALUE_TYPES}
        expected = (*BASE_COLUMNS, *EXPECTED_COLUMNS.get(_type_from_name(file), ()))
        columns[file] = _FileColumns(
            file_no=numbers[file],
            header_line=header_line,
            column_count=len(names_in_file),
            base={c: position.get(c) for c in BASE_COLUMNS},
            values=values,
            others={c: i for c, i in position.items() if c and c not in known},
            repeated_headers=int(headers) - 1,
            missing_expected=not set(position).issuperset(expected),
        )
    return columns


def _positions_table(columns: dict[str, _FileColumns], names: Sequence[str]) -> pa.Table:
    """One row per file: where each base, value and other column is (NULL when absent)."""
    other_names = sorted({name for c in columns.values() for name in c.others})
    ordered = [columns.get(name) for name in names]
    arrays: dict[str, pa.Array] = {
        "file": pa.array(list(names), pa.string()),
        "file_no": pa.array(range(len(names)), pa.int64()),
        "header_line": pa.array([c.header_line if c else None for c in ordered], pa.int64()),
        "column_count": pa.array([c.column_count if c else None for c in ordered], pa.int64()),
    }
    for column in BASE_COLUMNS:
        arrays[f"i_{column}"] = pa.array([c.base[column] if c else None for c in ordered], pa.int64())
    for value_type in VALUE_TYPE_COLUMNS:
        arrays[f"v_{value_type}"] = pa.array([c.values.get(value_type) if c else None for c in ordered], pa.int64())
    for index, name in enumerate(other_names):
        arrays[f"o_{index}"] = pa.array([c.others.get(name) if c else None for c in ordered], pa.int64())
    return pa.table(arrays)


def _cell(position: str) -> str:
    """The cell at a (1-based, per-file) position of the current line; NULL when the file lacks the column."""
    return f"parts[{position}]"


def cleaned_text_sql(expression: str) -> str:
    """Text of a cell with blanks trimmed and a decimal comma made a point; NULL for an empty cell."""
    return f"nullif(replace(trim({expression}), ',', '.'), '')"


def _value_reason(value_type: str, raw: str, num: str, is_pm: bool = False) -> str:
    """The snapshots' value rules (normalise.py), in the same order and words, for one value column. A PM
    value of a type that does not report µg/m³ is kept as text, unchecked, as the snapshots keep it."""
    checks = [
        f"WHEN {raw} IS NULL THEN NULL",
        f"WHEN length({raw}) > {MAX_KEPT_RAW_CHARS} THEN 'value too long'",
        *([f"WHEN NOT {is_mass_concentration_sql('sensor_type')} THEN NULL"] if is_pm else []),
        f"WHEN {num} IS NULL THEN 'non-numeric'",
        f"WHEN isnan({num}) THEN 'NaN'",
        f"WHEN isinf({num}) THEN 'infinite'",
    ]
    if value_type in PLAUSIBLE_RANGES:
        low, high = PLAUSIBLE_RANGES[value_type]
        below = "negative" if low == 0 else f"out of range: {value_type} < {low:g}"
        checks.append(f"WHEN {num} < {low} THEN {_sql_text(below)}")
        checks.append(f"WHEN {num} >= {high} THEN {_sql_text(f'out of range: {value_type} ≥ {high:g}')}")
    return "CASE " + " ".join(checks) + " END"


def other_map_sql(other_names: Sequence[str], cell_of: Callable[[int], str]) -> str:
    """The `other_values` map of a row's other columns (non-empty cells only; NULL when all are empty)."""
    if not other_names:
        return "NULL::MAP(VARCHAR, VARCHAR)"
    cells = [f"nullif(trim({cell_of(i)}), '')" for i in range(len(other_names))]
    entries = ", ".join(
        f"{{'key': {_sql_text(name)}, 'value': {cell}}}" for name, cell in zip(other_names, cells, strict=True)
    )
    return (
        f"CASE WHEN coalesce({', '.join(cells)}) IS NOT NULL THEN "
        f"map_from_entries(list_filter([{entries}], lambda e: e.value IS NOT NULL)) END"
    )


def _cells_from_lines_sql(value_types: Sequence[str], other_names: Sequence[str]) -> str:
    """CTEs ending in `cells` (see `stage_records`) from the staged CSV texts (`arc_texts`, `arc_positions`)."""
    raw_values = "".join(
        ", " + cleaned_text_sql(_cell(f"p.v_{t}")) + f' AS "raw_{t}"'
        for t in value_types
    )
    comma_cells = ["p.i_lat", "p.i_lon", *(f"p.v_{t}" for t in value_types)]
    commas = " OR ".join(f"contains(parts[{cell}], ',')" for cell in comma_cells)
    other_map = other_map_sql(other_names, lambda i: f"parts[p.o_{i}]")
    return f"""
        split AS (SELECT file, string_split(content, chr(10)) AS lines FROM arc_texts),
        lines AS (  -- each file split once; two unnests in one SELECT run side by side
            SELECT file, rtrim(unnest(lines), chr(13)) AS line, unnest(range(1, len(lines) + 1)) AS line_no
            FROM split
        ),
        data_lines AS MATERIALIZED (  -- split once: every parts[...] below would split the line again
            SELECT p.file_no * 100000000 + l.line_no AS rn, l.file, l.line_no, l.line,
                   string_split(l.line, ';') AS parts,
                   p.* EXCLUDE (file)
            FROM lines l JOIN arc_positions p USING (file)
            -- not blank (a regex test allocates nothing), not a header (the cheap test first)
            WHERE regexp_matches(l.line, '[^ \r]')
              AND NOT (contains(l.line, 'sensor_id;') AND {_is_header("l.line")})
        ),
        cells AS (
            SELECT rn, file, line, line_no, column_count, header_line,
                   len(parts) > column_count
                     AND len(list_filter(parts[column_count + 1:], lambda x: trim(x) <> '')) > 0 AS extra_fields,
                   TRY_CAST(trim(parts[p.i_sensor_id]) AS BIGINT) AS sensor_id,
                   nullif(trim(parts[p.i_sensor_type]), '') AS sensor_type,
                   TRY_CAST(trim(parts[p.i_location]) AS BIGINT) AS location_id,
                   TRY_CAST({cleaned_text_sql("parts[p.i_lat]")} AS DOUBLE) AS lat,
                   TRY_CAST({cleaned_text_sql("parts[p.i_lon]")} AS DOUBLE) AS lon,
                   parts[p.i_timestamp] AS raw_timestamp,
                   -- both archive formats, `2016-07-14 11:02:46` (UTC) and `2016-07-14T13:02:46+02:00` (→ UTC)
                   {utc_timestamp_sql("parts[p.i_timestamp]")} AS ts,
                   coalesce({commas}, false) AS decimal_comma
                   {raw_values},
                   {other_map} AS other_map
            FROM data_lines p
        )"""


def stage_records(
    connection: duckdb.DuckDBPyConnection,
    now: datetime,
    value_types: Sequence[str],
    cells_sql: str,
    parameters: dict[str, object] | None = None,
    quarantined_line_sql: str = "line",
) -> None:
    """Temp table `arc_recs`: one row per data line, typed, with a verdict for the row and for each value.

    ``cells_sql`` are CTEs ending in `cells`: one row per record with its number `rn`, `file`, `line` and
    `line_no`, the file's `column_count` and `header_line`, `extra_fields`, the typed `sensor_id`,
    `sensor_type`, `location_id`, `lat`, `lon`, the `raw_timestamp` text and its UTC `ts`, `decimal_comma`,
    each value type's cleaned text `raw_<type>` and `other_map`. The CSV lines (`_cells_from_lines_sql`) and the
    monthly Parquet columns (`lib.tiers.archive_months`) each give them; every rule from here on is the same for both.
    ``quarantined_line_sql``: the text kept for a record rejected as a whole (over `typed`'s columns; evaluated
    for those records only).
    Only the value types some file has get columns, so a day of PM sensors pays for PM only.
    """
    typed_values = "".join(f', TRY_CAST("raw_{t}" AS DOUBLE) AS "num_{t}"' for t in value_types)
    reasons = "".join(
        ", " + _value_reason(t, f'"raw_{t}"', f'"num_{t}"', is_pm=t in PM_VALUE_TYPES) + f' AS "reason_{t}"'
        for t in value_types
    )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE arc_base AS
        WITH {cells_sql},
        typed AS (
            SELECT * {typed_values},
                   CASE
                     WHEN header_line IS NULL OR line_no < header_line THEN '{NO_HEADER_REASON}'
                     WHEN extra_fields THEN '{MALFORMED_ROW_REASON}'
                     WHEN sensor_id IS NULL THEN 'missing or invalid sensor id'
                     WHEN ts IS NULL THEN 'missing or invalid timestamp'
                     WHEN ts > $now::TIMESTAMP + INTERVAL '{FUTURE_TOLERANCE}' THEN 'timestamp in the future'
                   END AS record_reason
            FROM cells
        )
        SELECT typed.* EXCLUDE (line),
               -- the raw line is kept only where it is quarantined (rejected_values holds it)
               CASE WHEN record_reason IS NOT NULL THEN {quarantined_line_sql} END AS line
               {reasons}
        FROM typed
        """,
        {**(parameters or {}), "now": naive_utc(now)},
    )
    # Rows repeating an earlier row's sensor and timestamp (rare): a narrow table, so the wide one is written once.
    connection.execute(
        """
        CREATE OR REPLACE TEMP TABLE arc_dups AS
        SELECT rn FROM (
            SELECT rn, row_number() OVER (PARTITION BY sensor_id, ts ORDER BY rn) AS k
            FROM arc_base WHERE record_reason IS NULL
        ) WHERE k > 1
        """
    )
    connection.execute(
        """
        CREATE OR REPLACE TEMP VIEW arc_recs AS
        SELECT b.*, d.rn IS NOT NULL AS superseded FROM arc_base b LEFT JOIN arc_dups d USING (rn)
        """
    )


def restrict_sensors(connection: duckdb.DuckDBPyConnection, sensor_ids: frozenset[int] | None) -> None:
    """Keep the staged records (`arc_base`) of the selected sensors only (None: all); a record whose sensor cannot
    be read belongs to none."""
    if sensor_ids is None:
        return
    connection.register("arc_selected", pa.table({"sensor_id": pa.array(sorted(sensor_ids), pa.int64())}))
    try:
        connection.execute(
            "DELETE FROM arc_base WHERE sensor_id IS NULL OR sensor_id NOT IN (SELECT sensor_id FROM arc_selected)"
        )
    finally:
        connection.unregister("arc_selected")


def stage_csv_texts(
    connection: duckdb.DuckDBPyConnection,
    readable: Sequence[Path],
    names: Sequence[str],
    now: datetime,
    sensor_ids: frozenset[int] | None = None,
) -> tuple[dict[str, _FileColumns], list[str]]:
    """Archive CSV files (readable copies, named ``names``) staged as `arc_readings` by the archive's rules, for
    ``sensor_ids`` only (None: all); (each file's columns, the value types present)."""
    _stage_texts(connection, readable)
    columns = _file_columns(connection, names)
    value_types = [t for t in VALUE_TYPE_COLUMNS if any(c.values.get(t) for c in columns.values())]
    other_names = sorted({name for c in columns.values() for name in c.others})
    connection.register("arc_positions", _positions_table(columns, names))
    stage_records(connection, now, value_types, _cells_from_lines_sql(value_types, other_names))
    restrict_sensors(connection, sensor_ids)
    stage_readings(connection, value_types)
    return columns, value_types


def stage_readings(connection: duckdb.DuckDBPyConnection, value_types: Sequence[str]) -> None:
    # PM values of a type that does not report µg/m³ (a PPD42NS counts particles) go to `other_values` as text,
    # as the snapshots keep them: the `pm*` columns hold µg/m³ only.
    pm_present = [t for t in PM_VALUE_TYPES if t in value_types]

    def column(t: str, c: str) -> str:
        if t not in value_types:
            return f"NULL::DOUBLE AS {c}"
        kept = f'"reason_{t}" IS NULL' + (" AND mass_pm" if t in PM_VALUE_TYPES else "")
        return f'CASE WHEN {kept} THEN "num_{t}" END AS {c}'

    measures = ",\n".join(column(t, c) for t, c in VALUE_TYPE_COLUMNS.items())
    if pm_present:
        kept_text = {t: f'CASE WHEN "reason_{t}" IS NULL THEN "raw_{t}" END' for t in pm_present}
        entries = ", ".join(f"{{'key': {_sql_text(t)}, 'value': {kept_text[t]}}}" for t in pm_present)
        pm_text = f"map_from_entries(list_filter([{entries}], lambda e: e.value IS NOT NULL))"
        pm_not_mass = f"NOT mass_pm AND coalesce({', '.join(kept_text.values())}) IS NOT NULL"
        other_values = (
            f"CASE WHEN pm_not_mass THEN map_concat(coalesce(other_map, MAP {{}}::MAP(VARCHAR, VARCHAR)), {pm_text}) "
            "ELSE other_map END"
        )
    else:
        pm_not_mass, other_values = "false", "other_map"
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE arc_readings AS
        WITH flagged AS (
            SELECT *, {is_mass_concentration_sql("sensor_type")} AS mass_pm FROM arc_recs
            WHERE record_reason IS NULL AND NOT superseded
        ),
        flagged_pm AS (SELECT *, {pm_not_mass} AS pm_not_mass FROM flagged)
        SELECT rn, sensor_id, ts AS "timestamp", location_id,
               CASE WHEN lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180 THEN lat END AS latitude,
               CASE WHEN lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180 THEN lon END AS longitude,
               sensor_type, {measures},
               {other_values} AS other_values,
               pm_not_mass,
               file
        FROM flagged_pm
        """
    )


def _stage_known_keys(connection: duckdb.DuckDBPyConnection) -> None:
    """Temp table `arc_known`: the day's keys the history already holds (archive rows only; the time range
    lets DuckDB skip every other day's row groups, so the cost follows the day, not the history)."""
    connection.execute(
        """
        CREATE OR REPLACE TEMP TABLE arc_known AS
        SELECT DISTINCT a.sensor_id, a."timestamp"
        FROM aqi_readings a
        SEMI JOIN arc_readings r ON a.sensor_id = r.sensor_id AND a."timestamp" = r."timestamp"
        WHERE a.period = $period
          AND a."timestamp" BETWEEN (SELECT min("timestamp") FROM arc_readings)
                                AND (SELECT max("timestamp") FROM arc_readings)
        """,
        {"period": ARCHIVE},
    )


def _rejected_rows_sql(value_types: Sequence[str]) -> tuple[str, str]:
    """(rows of bad values and off-globe coordinates of kept readings, rows of records rejected as a whole)."""
    new_key = 'NOT EXISTS (SELECT 1 FROM arc_known k WHERE k.sensor_id = r.sensor_id AND k."timestamp" = r.ts)'
    value_rows = [
        f"""SELECT $period, sensor_id, ts, {_sql_text(t)},
                   CASE WHEN length("raw_{t}") > {MAX_KEPT_RAW_CHARS}
                        THEN left("raw_{t}", {MAX_KEPT_RAW_CHARS}) || '…' ELSE "raw_{t}" END,
                   "reason_{t}", file, $now::TIMESTAMP, 'value'
            FROM arc_recs r
            WHERE record_reason IS NULL AND NOT superseded AND "reason_{t}" IS NOT NULL AND {new_key}"""
        for t in value_types
    ]
    record_rows = f"""
        SELECT $period, sensor_id, ts, NULL, left(coalesce(line, raw_timestamp), {MAX_KEPT_RAW_CHARS}),
               coalesce(record_reason, '{DUPLICATE_ROW_REASON}'), file, $now::TIMESTAMP, 'record'
        FROM arc_recs r
        WHERE (record_reason IS NOT NULL OR superseded) AND (sensor_id IS NULL OR ts IS NULL OR {new_key})
    """
    location_rows = f"""
        SELECT $period, sensor_id, ts, 'location', lat::VARCHAR || ',' || lon::VARCHAR,
               'coordinates out of range', file, $now::TIMESTAMP, 'location'
        FROM arc_recs r
        WHERE record_reason IS NULL AND NOT superseded
          AND (NOT lat BETWEEN -90 AND 90 OR NOT lon BETWEEN -180 AND 180) AND {new_key}
    """
    return "\nUNION ALL\n".join([*value_rows, location_rows]), record_rows


def _file_problems(
    connection: duckdb.DuckDBPyConnection, names: Sequence[str], columns: dict[str, _FileColumns]
) -> dict[str, int]:
    """Per-problem counts of the staged day (each one handled; none aborts the day)."""
    # 1 for a file with any non-blank text, 0 for an empty (or blank) one
    text_lines = dict(
        connection.execute(
            "SELECT file, regexp_matches(content, '\\S')::INTEGER FROM arc_texts"
        ).fetchall()
    )
    data_per_file = dict(connection.execute("SELECT file, count(*) FROM arc_recs GROUP BY file").fetchall())
    counts = connection.execute(
        f"""
        SELECT count(*) FILTER (WHERE record_reason = '{MALFORMED_ROW_REASON}'),
               count(*) FILTER (WHERE record_reason = '{NO_HEADER_REASON}'),
               count(*) FILTER (WHERE record_reason = 'missing or invalid timestamp'),
               count(*) FILTER (WHERE superseded),
               count(*) FILTER (WHERE decimal_comma),
               count(*) FILTER (WHERE record_reason IS NULL AND strpos(raw_timestamp, 'T') = 0)
        FROM arc_recs
        """
    ).fetchone()
    return {
        "empty_files": sum(1 for name in names if text_lines.get(name, 0) == 0),
        "header_only_files": sum(
            1 for name in names if name in columns and text_lines.get(name, 0) > 0 and data_per_file.get(name, 0) == 0
        ),
        "files_without_header": sum(1 for name in names if text_lines.get(name, 0) > 0 and name not in columns),
        "files_missing_columns": sum(1 for c in columns.values() if c.missing_expected),
        "repeated_headers": sum(c.repeated_headers for c in columns.values()),
        "malformed_rows": int(counts[0]),
        "rows_before_header": int(counts[1]),
        "invalid_timestamps": int(counts[2]),
        "duplicate_rows": int(counts[3]),
        "rows_with_decimal_commas": int(counts[4]),
        "rows_with_space_timestamps": int(counts[5]),
    }


def _type_from_name(name: str) -> str:
    """`2025-10-15_sds011_sensor_82312.csv` → `SDS011` ('' when the name is not an archive name)."""
    parts = name.split("_sensor_")[0].split("_", 1)
    return parts[1].upper() if len(parts) == 2 else ""


def _row_values() -> dict[str, str]:
    """Each column of `aqi_readings` (in the contract's order) and the SQL giving it from the staged archive row
    `r` and its indices `i`. A column the contract adds must be given here: the merge fails loudly until it is."""
    given = {
        "period": "$period", "sensor_id": "r.sensor_id", "timestamp": 'r."timestamp"',
        "measurement_id": "NULL",  # the archive has no record ids
        "location_id": "r.location_id",
        "country": "NULL",  # the archive carries no country
        "latitude": "r.latitude", "longitude": "r.longitude",
        "altitude": "NULL",
        "indoor": "false",  # the archive holds outdoor sensors only
        "sensor_type": "r.sensor_type",
        **{c: f"r.{c}" for c in VALUE_TYPE_COLUMNS.values()},
        "other_values": "r.other_values",
        **{c: f"i.{c}" for c in INDEX_COLUMNS},
        "no_index_reason": f"CASE WHEN r.pm_not_mass THEN {_sql_text(NOT_MASS_CONCENTRATION_REASON)} END",
        "snapshot": "r.file", "ingested_at": "$now::TIMESTAMP", "ingest_seq": "$seq",
    }  # fmt: skip
    missing = [c for c in column_names() if c not in given]
    if missing:
        raise RuntimeError(f"the archive merge does not say how to fill {missing} of aqi_readings")
    return {c: given[c] for c in column_names()}


def staged_rows_sql() -> str:
    """SELECT of the staged readings (`arc_readings` with their indices, `stage_indices`) as rows of `aqi_readings`
    in the contract's column order: keys the history already holds (`arc_known`) skipped, and rows with no kept
    value left out (their bad values are quarantined). Parameters: $period, $now, $seq."""
    measure_columns = list(VALUE_TYPE_COLUMNS.values())
    values = _row_values()
    return f"""
        SELECT {", ".join(f'{sql} AS "{c}"' for c, sql in values.items())}
        FROM arc_readings r JOIN arc_index_table i USING (rn)
        WHERE NOT EXISTS (SELECT 1 FROM arc_known k
                          WHERE k.sensor_id = r.sensor_id AND k."timestamp" = r."timestamp")
          AND ({" OR ".join(f"r.{c} IS NOT NULL" for c in measure_columns)} OR r.other_values IS NOT NULL)
    """


def stage_indices(connection: duckdb.DuckDBPyConnection, *, in_order: bool = True) -> None:
    """The indices of the staged readings (`arc_index_table`) and the keys the history already holds
    (`arc_known`), for `staged_rows_sql` and `rejected_rows_sql`. ``in_order``: see `normalise.index_table`."""
    connection.register("arc_index_table", index_table(connection, "arc_readings", in_order=in_order))
    _stage_known_keys(connection)


def insert_staged(
    connection: duckdb.DuckDBPyConnection, now: datetime, value_types: Sequence[str]
) -> tuple[int, int]:
    """The staged readings (`arc_readings`, with their indices) into `aqi_readings` and their quarantined values
    and records into `rejected_values`, skipping keys the history already holds; (rows inserted, value rows
    quarantined). The caller holds the transaction."""
    stage_indices(connection)
    values = _row_values()
    inserted = connection.execute(
        f'INSERT INTO aqi_readings ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in values)}) {staged_rows_sql()}',
        {
            "period": ARCHIVE,
            "now": now,
            "seq": connection.execute("SELECT nextval('aqi_ingest_seq')").fetchone()[0],
        },
    ).fetchone()[0]
    return int(inserted), insert_rejected(connection, now, value_types)


def insert_rejected(connection: duckdb.DuckDBPyConnection, now: datetime, value_types: Sequence[str]) -> int:
    """The staged records' quarantined values and records into `rejected_values`; how many value rows."""
    value_sql, record_sql = _rejected_rows_sql(value_types)
    parameters = {"period": ARCHIVE, "now": now}
    values_rejected = connection.execute(f"INSERT INTO rejected_values {value_sql}", parameters).fetchone()[0]
    connection.execute(f"INSERT INTO rejected_values {record_sql}", parameters)
    return int(values_rejected)


def drop_staging(connection: duckdb.DuckDBPyConnection) -> None:
    """Remove every staging table and view of a merge from the connection."""
    for view in ("arc_index_table", "arc_file_rows", "arc_positions"):
        with contextlib.suppress(duckdb.Error):
            connection.unregister(view)
    with contextlib.suppress(duckdb.Error):
        connection.execute("DROP VIEW IF EXISTS arc_recs")
    for table in ("arc_texts", "arc_base", "arc_dups", "arc_readings", "arc_known"):
        with contextlib.suppress(duckdb.Error):
            connection.execute(f"DROP TABLE IF EXISTS {table}")


class ArchiveDayPrunedError(RuntimeError):
    """The day's archive rows were already moved to the Parquet tier: merging more would put keys in DuckDB that
    the tier also holds (read twice through `aqi_readings_all`) and the export refuses the day anyway."""


def pruned_archive_rows(connection: duckdb.DuckDBPyConnection, day: date) -> int:
    """How many archive rows of `day` the tier holds after retention pruned them from DuckDB (0: none)."""
    row = connection.execute(
        "SELECT coalesce(sum(rows), 0) FROM parquet_tier_log WHERE day = ? AND period = ? AND pruned_at IS NOT NULL",
        [day, ARCHIVE],
    ).fetchall()
    return int(row[0][0])


def merge_archive_day(
    connection: duckdb.DuckDBPyConnection,
    day: date,
    paths: Sequence[Path],
    *,
    now: datetime | None = None,
    run_id: str | None = None,
    backfilled_rows: dict[date, int] | None = None,
) -> ArchiveMergeStats:
    """Merge the day's archive files (in the lake) into the history; files merged before are skipped.

    ``backfilled_rows``: day → archive rows the monthly backfill wrote straight to the tier (its manifests): a
    day among them is refused like a pruned one.

    Everything of one call commits in one transaction with its `archive_files` and `archive_log` rows. DuckDB
    works within `ARCHIVE_MEMORY_LIMIT` meanwhile (it spills beyond it), then gets its limit back.
    """
    with bounded_memory(connection, ARCHIVE_MEMORY_LIMIT):
        return _merge_day(connection, day, paths, now=now, run_id=run_id, backfilled_rows=backfilled_rows)


def _merge_day(
    connection: duckdb.DuckDBPyConnection,
    day: date,
    paths: Sequence[Path],
    *,
    now: datetime | None,
    run_id: str | None,
    backfilled_rows: dict[date, int] | None,
) -> ArchiveMergeStats:
    stamp = naive_utc(now)
    ensure_archive_schema(connection)
    by_name = {path.name: path for path in paths}
    if len(by_name) != len(paths):
        raise ValueError("two archive files of one day share a name")
    hashes = {name: file_sha256(path) for name, path in by_name.items()}
    merged_before = {
        (file, sha)
        for file, sha in connection.execute(
            "SELECT file, sha256 FROM archive_files WHERE day = ?", [day]
        ).fetchall()
    }
    new = {name: path for name, path in sorted(by_name.items()) if (name, hashes[name]) not in merged_before}
    if not new:
        return ArchiveMergeStats(day, 0, len(by_name), 0, 0, 0, 0, 0, 0, 0, 0)
    backfilled_rows = dict(backfilled_rows or {})
    if cold := pruned_archive_rows(connection, day) or backfilled_rows.get(day, 0):
        raise ArchiveDayPrunedError(
            f"{day}: its {cold} archive rows were pruned to the Parquet tier; {len(new)} new file(s) "
            f"({', '.join(sorted(new)[:3])}{', …' if len(new) > 3 else ''}) are not merged into DuckDB. Nothing "
            "was changed; the files stay in the lake."
        )
    sizes = {name: path.stat().st_size for name, path in new.items()}
    already_merged = len(by_name) - len(new)
    try:
        # Staging lives in temp tables outside the transaction; only the writes below are transactional.
        with tempfile.TemporaryDirectory(prefix="aqi-archive-") as scratch:
            readable, invalid_utf8, unreadable = readable_copies(list(new.values()), Path(scratch))
            for name in unreadable:  # not logged as merged: a re-run tries it again (after a re-fetch)
                del new[name]
            names = list(new)
            if not new:
                raise ValueError(f"no archive file of {day} can be read: {', '.join(unreadable)}")
            columns, value_types = stage_csv_texts(connection, readable, names, stamp)
        # A file may hold rows of neighbouring days: none of them may land on a day already pruned (or written
        # to the tier by the monthly backfill) either.
        row_days = [row[0] for row in connection.execute(
            'SELECT DISTINCT CAST("timestamp" AS DATE) FROM arc_readings ORDER BY 1'
        ).fetchall()]
        cold_days = connection.execute(
            """SELECT day, rows FROM parquet_tier_log WHERE period = $period AND pruned_at IS NOT NULL
               AND day IN (SELECT DISTINCT CAST("timestamp" AS DATE) FROM arc_readings) ORDER BY day""",
            {"period": ARCHIVE},
        ).fetchall()
        cold_days += [(d, backfilled_rows[d]) for d in row_days if d in backfilled_rows]
        if cold_days:
            listed = ", ".join(f"{d} ({rows} rows)" for d, rows in cold_days[:3])
            raise ArchiveDayPrunedError(
                f"{day}: the files hold readings of {len(cold_days)} day(s) whose archive rows were already pruned "
                f"to the Parquet tier: {listed}. Nothing was merged; the files stay in the lake."
            )
        details = {
            **_file_problems(connection, names, columns),
            "files_with_invalid_utf8": invalid_utf8,
            "unreadable_gzip_files": len(unreadable),
        }
        lines, records_rejected = connection.execute(
            "SELECT (SELECT sum(len(string_split(content, chr(10)))) FROM arc_texts), "
            "count(*) FILTER (WHERE record_reason IS NOT NULL OR superseded) FROM arc_recs"
        ).fetchone()
        measurements, sensors = connection.execute(
            "SELECT count(*), count(DISTINCT sensor_id) FROM arc_readings"
        ).fetchone()
        with transaction(connection):
            inserted, values_rejected = insert_staged(connection, stamp, value_types)
            # One INSERT from an Arrow table: executemany runs a statement per file (1.5 s for 1,000 files).
            connection.register("arc_file_rows", pa.table({
                "file": list(new), "sha256": [hashes[name] for name in new], "bytes": [sizes[name] for name in new],
            }))
            connection.execute(
                "INSERT INTO archive_files (file, sha256, day, bytes, merged_at, run_id) "
                "SELECT file, sha256, $day, bytes, $now, $run_id FROM arc_file_rows",
                {"day": day, "now": stamp, "run_id": run_id},
            )
            stats = ArchiveMergeStats(
                day=day,
                files=len(new),
                files_already_merged=already_merged,
                bytes=sum(sizes[name] for name in new),
                lines=int(lines or 0),
                measurements=int(measurements),
                rows_inserted=int(inserted),
                rows_already_known=int(measurements) - int(inserted),
                values_quarantined=values_rejected,
                records_quarantined=int(records_rejected),
                sensors=int(sensors),
                details=details,
            )
            connection.execute(
                "INSERT INTO archive_log (day, fileset_sha256, files, bytes, lines, measurements, rows_inserted, "
                "rows_already_known, values_quarantined, records_quarantined, sensors, details, processed_at, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [day, fileset_sha256({n: hashes[n] for n in new}), stats.files, stats.bytes, stats.lines,
                 stats.measurements, stats.rows_inserted, stats.rows_already_known, stats.values_quarantined,
                 stats.records_quarantined, stats.sensors, json.dumps(details), stamp, run_id],
            )
    finally:
        drop_staging(connection)
    return stats


def stats_dict(stats: ArchiveMergeStats) -> dict[str, object]:
    values = asdict(stats)
    values["day"] = stats.day.isoformat()
    return values
