"""One month of the archive's monthly files → the history: cold days straight to the Parquet tier, hot days staged
for DuckDB.

The archive publishes each month per sensor type as Spark Parquet (`parquet/YYYY-MM/<type>/part-*.parquet`) or,
where a type has no Parquet, as one zipped CSV (`csv_per_month/YYYY-MM/YYYY-MM_<type>.zip`). Both are judged by the
daily CSVs' own rules (`lib.archive.merge`): a Parquet file's columns are read by name and cast to text, whatever
their order or physical types (a column the rules do not know goes to `other_values`), then typed, quarantined
and indexed by the same SQL as a CSV line; a zipped CSV is cut into chunks that go through the CSV path itself.

The month is staged in a scratch DuckDB file of its own (never the history's file), so months run in parallel
with nothing shared but the tier's directories, each run writing only its own days:

- **Cold days** (before `hot_from`, the first day of the hot window) become the tier's `period=archive/date=…/`
  partitions, in the layout and with the verification of `lib.tiers.parquet_tier`. Each day holds the union of
  what the tier already had for it (a day exported from DuckDB, or an earlier run) and the month's new readings,
  a key the tier holds winning, as in every merge. Every file is staged, re-read and compared (row count and
  key checksum) before it moves into place, and again after; the month's manifest
  (`lib.readings.history.BACKFILL_DIR`) is removed before the first move and written after the last check, so
  the history reads the month's days from the tier exactly when all of them are verified.
- **Hot days** are written to one staged Parquet file (readings and quarantined values) that
  `merge_hot_rows` adds to DuckDB under the history's writer.

Rows stamped outside the month are quarantined: they belong to another month's partition, which a re-run of
this month must not touch. A file that cannot be read fails the month, naming the file, before anything is
written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aqi_assets.lib.air_quality.normalise import utc_timestamp_sql
from aqi_assets.lib.archive.merge import (
    cleaned_text_sql,
    drop_staging,
    ensure_archive_schema,
    file_sha256,
    insert_rejected,
    other_map_sql,
    readable_copies,
    restrict_sensors,
    stage_csv_texts,
    stage_indices,
    stage_readings,
    stage_records,
    staged_rows_sql,
)
from aqi_assets.lib.archive.schema import BASE_COLUMNS, COLUMN_VALUE_TYPES
from aqi_assets.lib.archive.selection import ResolvedSelection
from aqi_assets.lib.common.duckdb_conn import transaction
from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.history import (
    BACKFILL_DIR,
    BACKFILL_MANIFEST_VERSION,
    day_dir,
    day_path,
    manifest_path,
    tier_dataset,
)
from aqi_assets.lib.readings.periods import ARCHIVE
from aqi_assets.lib.readings.schema import VALUE_TYPE_COLUMNS, column_names, ensure_schema
from aqi_assets.lib.tiers.parquet_tier import KeyStats, files_stats, write_tier_file

# DuckDB's limits while a month is staged: it spills to the scratch directory beyond the memory limit.
MONTH_MEMORY_LIMIT = "900MB"
# A zipped month CSV is cut into chunks of about this size (each with the header line), merged one at a time.
CSV_CHUNK_BYTES = 128 << 20
# A type's Parquet files are staged in groups of about this many rows (the staging tables' memory follows it).
UNIT_ROWS = 3_000_000
OUTSIDE_MONTH_REASON = "timestamp outside the month of its file (another month's partition)"
BACKFILL_STAGING_DIR = "_backfill_staging"
REJECTED_DIR = "_rejected"
HOT_READINGS_FILE = "hot-readings.parquet"
HOT_REJECTED_FILE = "hot-rejected.parquet"


class MonthSourceError(RuntimeError):
    """A monthly file cannot be read; the message names it. Nothing of the month was written."""


class MonthVerificationError(RuntimeError):
    """A day's files in the tier do not hold what was staged for it."""


class MonthSource(Protocol):
    """A monthly file in the lake (`lib.archive.monthly_fetch.MonthFile`)."""

    @property
    def sensor_type(self) -> str: ...
    @property
    def kind(self) -> str: ...  # "parquet" or "csv_zip"
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Path: ...


@dataclass
class MonthBackfill:
    """What one month's run did."""

    month: date
    files: int = 0
    bytes: int = 0
    measurements: int = 0  # valid rows of the selected sensors, before the keys already known were skipped
    rows_new: int = 0  # rows the tier and the hot staging hold now that they did not before
    rows_in_tier_before: int = 0
    rows_outside_month: int = 0
    values_quarantined: int = 0
    records_quarantined: int = 0
    sensors: int = 0
    cold_rows: dict[str, int] = field(default_factory=dict)  # day → rows the tier now holds
    cold_files: list[str] = field(default_factory=list)
    parquet_bytes: int = 0
    hot_rows: int = 0
    hot_readings: Path | None = None  # staged for `merge_hot_rows`
    hot_rejected: Path | None = None
    manifest: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cold_total(self) -> int:
        return sum(self.cold_rows.values())

    def hours_touched(self) -> list[tuple[datetime, datetime]]:
        """The hours whose indices this run may have changed: the whole month, when it brought any row."""
        if not (self.cold_total or self.hot_rows):
            return []
        return [(datetime.combine(self.month, datetime.min.time()),
                 datetime.combine(_next_month(self.month), datetime.min.time()))]


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_days(month: date) -> list[date]:
    end = _next_month(month)
    return [month + timedelta(days=i) for i in range((end - month).days)]


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _parquet_columns(sources: Sequence[MonthSource]) -> list[str]:
    """The columns of a type's Parquet files, from their footers (a truncated or damaged file fails here)."""
    names: dict[str, None] = {}
    for source in sources:
        try:
            schema = pq.read_schema(source.path)
        except (OSError, pa.ArrowException) as error:
            raise MonthSourceError(
                f"{source.name}: not a readable Parquet file ({error}); nothing was written"
            ) from None
        for name in schema.names:
            names.setdefault(name, None)
    return list(names)


def _parquet_line_sql(value_types: Sequence[str]) -> str:
    """The text kept for a Parquet row quarantined as a whole, from its cells (computed for those rows only)."""
    cells = ["sensor_id", "sensor_type", "location_id", "lat", "lon", "raw_timestamp",
             *(f'"raw_{t}"' for t in value_types)]
    return "concat_ws(';', " + ", ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in cells) + ")"


PARQUET_FILES_SQL = "read_parquet($files, union_by_name = true, filename = true, file_row_number = true)"


def _parquet_cells_sql(
    present: list[str], value_types: Sequence[str], other_names: Sequence[str], source: str = PARQUET_FILES_SQL
) -> str:
    """CTEs ending in `cells` (the contract of `merge.stage_records`) from Parquet columns read by name: every
    cell is cast to text first, so a number stored as a string, a DOUBLE or a DECIMAL reads alike."""
    value_columns: dict[str, str] = {}
    for column, value_type in COLUMN_VALUE_TYPES.items():
        if column in present and value_type not in value_columns:
            value_columns[value_type] = column

    def text(column: str | None) -> str:
        return f'CAST(s."{column}" AS VARCHAR)' if column and column in present else "NULL::VARCHAR"

    base = {c: text(c) for c in BASE_COLUMNS}
    raw_values = "".join(f", {cleaned_text_sql(text(value_columns.get(t)))} AS \"raw_{t}\"" for t in value_types)
    commas = " OR ".join(
        f"contains({text(c)}, ',')" for c in ("lat", "lon", *(value_columns.get(t) for t in value_types)) if c
    )
    other_map = other_map_sql(other_names, lambda i: text(other_names[i]))
    return f"""
        cells AS (
            SELECT f.file_no * 1000000000 + s.file_row_number + 1 AS rn, f.name AS file,
                   NULL::VARCHAR AS line, s.file_row_number + 1 AS line_no,
                   {len(present)} AS column_count, 0 AS header_line, false AS extra_fields,
                   TRY_CAST(trim({base["sensor_id"]}) AS BIGINT) AS sensor_id,
                   nullif(trim({base["sensor_type"]}), '') AS sensor_type,
                   TRY_CAST(trim({base["location"]}) AS BIGINT) AS location_id,
                   TRY_CAST({cleaned_text_sql(base["lat"])} AS DOUBLE) AS lat,
                   TRY_CAST({cleaned_text_sql(base["lon"])} AS DOUBLE) AS lon,
                   {base["timestamp"]} AS raw_timestamp,
                   {utc_timestamp_sql(base["timestamp"])} AS ts,
                   coalesce({commas or "false"}, false) AS decimal_comma
                   {raw_values},
                   {other_map} AS other_map
            FROM {source} s
            JOIN month_files f ON s.filename = f.path
        )"""


class _Scratch:
    """The month's staging area: an in-memory DuckDB (spilling to a directory of its own) and the staged rows,
    as Parquet per unit and day under `staged/`."""

    def __init__(self, directory: Path, memory_limit: str, threads: int | None) -> None:
        self.directory = directory
        self.staged = directory / "staged"
        self.staged.mkdir()
        self.units = 0
        self.threads = threads
        # Staged rows name their Parquet file by a short key ('f12': DuckDB keeps strings of up to 12 bytes
        # inline, so 18 M rows allocate no text for it); the names go back in when the days are written.
        self.file_names: dict[str, str] = {}
        self.connection = duckdb.connect()
        self.connection.execute("SET enable_progress_bar = false")
        # Freed memory stays mapped for reuse: on VMs where fresh pages are costly, returning it to the OS after
        # every step and faulting it back in the next cost a third of the run in system time.
        self.connection.execute(f"SET allocator_flush_threshold = '{memory_limit}'")
        self.connection.execute(f"SET memory_limit = '{memory_limit}'")
        self.connection.execute(f"SET temp_directory = '{directory / 'spill'}'")
        if threads:
            self.connection.execute(f"SET threads = {int(threads)}")
        # Empty: the keys already known are the tier's, taken per day when the days are written.
        ensure_schema(self.connection, primary_key=False)

    def name_files(self, names: list[str]) -> list[str]:
        """Short keys for ``names`` (unique within the month)."""
        keys = [f"f{len(self.file_names) + i}" for i in range(len(names))]
        self.file_names.update(zip(keys, names, strict=True))
        return keys

    def register_file_names(self) -> None:
        self.connection.register("month_file_names", pa.table({
            "short": pa.array(list(self.file_names), pa.string()),
            "name": pa.array(list(self.file_names.values()), pa.string()),
        }))

    def close(self) -> None:
        self.connection.close()


def _quarantine_outside(connection: duckdb.DuckDBPyConnection, month: date, now: datetime) -> int:
    """Rows of the staged readings stamped outside the month → `rejected_values`; how many."""
    bounds = {"start": datetime.combine(month, datetime.min.time()),
              "end": datetime.combine(_next_month(month), datetime.min.time())}
    outside = 'NOT ("timestamp" >= $start AND "timestamp" < $end)'
    moved = connection.execute(
        f"""INSERT INTO rejected_values
            SELECT $period, sensor_id, "timestamp", NULL, strftime("timestamp", '%Y-%m-%dT%H:%M:%S'),
                   {_sql_text(OUTSIDE_MONTH_REASON)}, file, $now, 'record'
            FROM arc_readings WHERE {outside}""",
        {**bounds, "now": now, "period": ARCHIVE},
    ).fetchone()[0]
    connection.execute(f"DELETE FROM arc_readings WHERE {outside}", bounds)
    return int(moved)


def _stage_unit(scratch: _Scratch, month: date, now: datetime, value_types: list[str], result: MonthBackfill) -> None:
    """The staged readings of one unit (`arc_readings`) as rows of the contract, indexed, written per day under
    `staged/unit=N/day=…/`; their quarantined values into the scratch's `rejected_values`."""
    connection = scratch.connection
    result.rows_outside_month += _quarantine_outside(connection, month, now)
    result.measurements += connection.execute("SELECT count(*) FROM arc_readings").fetchone()[0]
    result.records_quarantined += connection.execute(
        "SELECT count(*) FROM arc_recs WHERE record_reason IS NOT NULL OR superseded"
    ).fetchone()[0]
    stage_indices(connection, in_order=False)  # each day is sorted when it is written
    unit = scratch.units
    scratch.units += 1
    connection.execute(
        f"""COPY (SELECT *, CAST("timestamp" AS DATE) AS day FROM ({staged_rows_sql()}))
            TO '{scratch.staged / f"unit={unit:05d}"}' (FORMAT parquet, PARTITION_BY (day), COMPRESSION lz4)""",
        {"period": ARCHIVE, "now": now, "seq": 0},
    )
    result.values_quarantined += insert_rejected(connection, now, value_types)
    drop_staging(connection)


@dataclass(frozen=True)
class _Slice:
    """Whole row groups of one Parquet file staged together: rows [first_row, end_row) (None: the whole file).
    DuckDB reads only the row groups a `file_row_number` range covers."""

    source: MonthSource
    first_row: int = 0
    end_row: int | None = None


def _parquet_chunks(sources: Sequence[MonthSource]) -> list[list[_Slice]]:
    """A type's Parquet files in groups of about UNIT_ROWS rows (from their footers), staged one group at a
    time so the staging's memory stays bounded however large a month is: small files together, a file larger
    than that in slices of its row groups."""
    groups: list[list[_Slice]] = [[]]
    rows = 0
    for source in sources:
        try:
            metadata = pq.ParquetFile(source.path).metadata
        except (OSError, pa.ArrowException) as error:
            raise MonthSourceError(
                f"{source.name}: not a readable Parquet file ({error}); nothing was written"
            ) from None
        if metadata.num_rows > UNIT_ROWS and metadata.num_row_groups > 1:
            first_row, taken = 0, 0
            for index in range(metadata.num_row_groups):
                taken += metadata.row_group(index).num_rows
                last = index == metadata.num_row_groups - 1
                next_rows = 0 if last else metadata.row_group(index + 1).num_rows
                if last or taken + next_rows > UNIT_ROWS:
                    groups.append([_Slice(source, first_row, first_row + taken)])
                    first_row, taken = first_row + taken, 0
            groups.append([])
            rows = 0
            continue
        if groups[-1] and rows + metadata.num_rows > UNIT_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append(_Slice(source))
        rows += metadata.num_rows
    return [group for group in groups if group]


def _stage_parquet_type(
    scratch: _Scratch,
    sources: Sequence[MonthSource],
    month: date,
    now: datetime,
    sensor_ids: frozenset[int] | None,
    result: MonthBackfill,
) -> None:
    connection = scratch.connection
    known = {*BASE_COLUMNS, *COLUMN_VALUE_TYPES}
    for group in _parquet_chunks(sources):
        present = _parquet_columns([piece.source for piece in group])
        value_types = [t for t in VALUE_TYPE_COLUMNS if any(COLUMN_VALUE_TYPES.get(c) == t for c in present)]
        other_names = [c for c in present if c not in known]
        paths = [str(piece.source.path) for piece in group]
        keys = scratch.name_files([f"{month:%Y-%m}/{piece.source.sensor_type}/{piece.source.name}" for piece in group])
        connection.register("month_files", pa.table({
            "path": paths,
            "file_no": pa.array([int(key[1:]) for key in keys], pa.int64()),
            "name": keys,
        }))
        piece = group[0]
        source, parameters = PARQUET_FILES_SQL, {"files": paths}
        if piece.end_row is not None:
            source = f"(SELECT * FROM {PARQUET_FILES_SQL} WHERE file_row_number >= $first AND file_row_number < $end)"
            parameters |= {"first": piece.first_row, "end": piece.end_row}
        cells = _parquet_cells_sql(present, value_types, other_names, source)
        try:
            stage_records(connection, now, value_types, cells, parameters,
                          quarantined_line_sql=_parquet_line_sql(value_types))
        except (duckdb.Error, OSError, pa.ArrowException) as error:
            names = ", ".join(piece.source.name for piece in group)
            raise MonthSourceError(
                f"{month:%Y-%m} {group[0].source.sensor_type}: the Parquet files ({names}) cannot be read: "
                f"{error}; nothing was written"
            ) from None
        finally:
            connection.unregister("month_files")
        restrict_sensors(connection, sensor_ids)
        stage_readings(connection, value_types)
        _stage_unit(scratch, month, now, value_types, result)


def _csv_chunks(source: MonthSource, directory: Path) -> list[Path]:
    """The zip's CSV cut into chunks of about CSV_CHUNK_BYTES at line ends, each starting with the header line."""
    try:
        archive = zipfile.ZipFile(source.path)
    except (zipfile.BadZipFile, OSError) as error:
        raise MonthSourceError(f"{source.name}: not a readable zip file ({error}); nothing was written") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and m.filename.lower().endswith(".csv")]
        if len(members) != 1:
            raise MonthSourceError(f"{source.name}: expected one CSV inside, found {len(members)}")
        stem = Path(members[0].filename).stem
        chunks: list[Path] = []
        try:
            with archive.open(members[0]) as body:
                header = body.readline()
                out = None
                while True:
                    line = body.readline()
                    if not line:
                        break
                    if out is None or out.tell() >= CSV_CHUNK_BYTES:
                        if out is not None:
                            out.close()
                        chunks.append(directory / f"{stem}.chunk{len(chunks) + 1:04d}.csv")
                        out = open(chunks[-1], "wb")  # noqa: SIM115 - closed when the next chunk starts
                        out.write(header if header.endswith(b"\n") else header + b"\n")
                    out.write(line)
                if out is not None:
                    out.close()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise MonthSourceError(f"{source.name}: the CSV inside cannot be read ({error}); nothing was written") \
                from None
    return chunks


def _stage_zip(
    scratch: _Scratch, source: MonthSource, month: date, now: datetime, sensor_ids: frozenset[int] | None,
    result: MonthBackfill,
) -> None:
    chunk_dir = scratch.directory / "chunks"
    chunk_dir.mkdir(exist_ok=True)
    for chunk in _csv_chunks(source, chunk_dir):
        readable, _, _ = readable_copies([chunk], chunk_dir / "readable")
        _, value_types = stage_csv_texts(scratch.connection, readable, [chunk.name], now, sensor_ids)
        _stage_unit(scratch, month, now, value_types, result)
        chunk.unlink()


def _tier_columns() -> list[str]:
    """The tier files' columns: the contract's, without the partition column `period`."""
    return [c for c in column_names() if c != "period"]


def _staged_sql(files: str) -> str:
    """The staged rows of ``files`` (a glob or a list, as SQL) with their file names restored, and their unit."""
    columns = ", ".join(
        'coalesce(n.name, s."snapshot") AS "snapshot"' if c == "snapshot" else f's."{c}"' for c in column_names()
    )
    return (f"SELECT {columns}, s.unit FROM read_parquet({files}, hive_partitioning = true, "
            "hive_types = {'unit': INTEGER, 'day': DATE}) s LEFT JOIN month_file_names n ON s.\"snapshot\" = n.short")


REJECTED_SQL = (
    'SELECT r.* REPLACE (coalesce(n.name, r."snapshot") AS "snapshot") FROM rejected_values r '
    'LEFT JOIN month_file_names n ON r."snapshot" = n.short'
)


def _staged_sensors(scratch: _Scratch) -> int:
    """How many sensors the month's staged readings hold."""
    if not list(scratch.staged.glob("unit=*/day=*/*.parquet")):
        return 0
    files = _sql_text(scratch.staged.as_posix() + "/unit=*/day=*/*.parquet")
    return scratch.connection.execute(
        f"SELECT count(DISTINCT sensor_id) FROM read_parquet({files}, hive_partitioning = false)"
    ).fetchone()[0]


def _day_rows_sql(scratch: _Scratch, with_tier: bool, day: date) -> str:
    """The day's rows: the tier's (they win) and the staged units', one per key, in (sensor, time) order."""
    columns = ", ".join(f'"{c}"' for c in column_names())
    staged = scratch.staged.as_posix() + f"/unit=*/day={day.isoformat()}/*.parquet"
    parts = []
    if with_tier:
        parts.append(f"SELECT {columns}, -1 AS unit FROM tier_day")
    if list(scratch.staged.glob(f"unit=*/day={day.isoformat()}/*.parquet")):
        # File names are restored by the writer (`_restore_file_names`), on Arrow buffers, not per row in DuckDB.
        parts.append(f"SELECT {columns}, unit FROM read_parquet('{staged}', hive_partitioning = true, "
                     "hive_types = {'unit': INTEGER, 'day': DATE})")
    if not parts:
        return ""
    union = " UNION ALL ".join(parts)
    return f"""SELECT {columns} FROM ({union})
               QUALIFY row_number() OVER (PARTITION BY sensor_id, "timestamp" ORDER BY unit) = 1
               ORDER BY sensor_id, "timestamp" """


T = TypeVar("T")


class InlineExecutor:
    """An executor that runs each task when it is submitted (a worker held to one thread)."""

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, task: Callable[..., T], *args: object) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(task(*args))
        except BaseException as error:  # handed to whoever reads the result, as a thread pool does
            future.set_exception(error)
        return future


def _restore_file_names(rows: pa.Table, names: dict[str, str]) -> pa.Table:
    """The staged rows' short file keys replaced by the files' names (rows the tier held keep theirs)."""
    if not names:
        return rows
    position = rows.schema.get_field_index("snapshot")
    column = rows.column(position)
    found = pc.index_in(column, value_set=pa.array(list(names), pa.string()))
    restored = pc.if_else(pc.is_null(found), column,
                          pc.take(pa.array(list(names.values()), pa.string()), found))
    return rows.set_column(position, rows.field(position), restored)


def _write_cold_days(
    scratch: _Scratch,
    location: TierLocation,
    month: date,
    days: list[date],
    row_group_rows: int,
    result: MonthBackfill,
    provenance: dict,
) -> None:
    """Each cold day's rows (the tier's and the month's) staged as one file and verified (re-read: row count and
    key checksum); then the month's manifest removed, the files swapped in, the manifest written."""
    connection = scratch.connection
    token = f"{naive_utc():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    staging = location.path(BACKFILL_STAGING_DIR, f"{month:%Y-%m}", token)
    basename = f"part-{token}.parquet"
    expected: dict[date, KeyStats] = {}
    staged: dict[date, tuple[str, int]] = {}
    tier_columns = ", ".join(f'"{c}"' for c in _tier_columns())

    def write_and_verify(day: date, rows: pa.Table, stats: KeyStats) -> tuple[str, int]:
        rows = _restore_file_names(rows, scratch.file_names)
        target = "/".join((staging, *day_dir(ARCHIVE, day), basename))
        written, size = write_tier_file(rows.to_batches(100_000), location, target, row_group_rows)
        found = files_stats(location, [target], single_thread=single_thread)
        if found != stats or written != stats.rows:
            raise MonthVerificationError(
                f"{day}: the staged file holds {found.rows} rows, {stats.rows} were staged; nothing moved"
            )
        return target, size

    # DuckDB prepares the next day while a thread writes and re-reads the last (zstd and the checks release the
    # GIL); at most two days' rows are held at a time. A worker held to one thread writes in turn instead.
    single_thread = scratch.threads == 1
    pending: dict[date, Future[tuple[str, int]]] = {}
    try:
        with (InlineExecutor() if single_thread
              else ThreadPoolExecutor(max_workers=1, thread_name_prefix="month-writer")) as writer:
            for day in days:
                tier_files = [info.path for info in location.files_under(day_path(location, ARCHIVE, day))
                              if info.path.endswith(".parquet")]
                if tier_files:
                    connection.register("tier_day", tier_dataset(location, tier_files))
                    result.rows_in_tier_before += connection.execute("SELECT count(*) FROM tier_day").fetchone()[0]
                try:
                    rows_sql = _day_rows_sql(scratch, bool(tier_files), day)
                    if not rows_sql:
                        continue
                    connection.execute(f"CREATE OR REPLACE TEMP TABLE day_rows AS {rows_sql}")
                finally:
                    if tier_files:
                        connection.unregister("tier_day")
                count, checksum = connection.execute(
                    'SELECT count(*), coalesce(sum(hash(sensor_id, "timestamp")::HUGEINT), 0) FROM day_rows'
                ).fetchall()[0]
                expected[day] = KeyStats(int(count), int(checksum))
                connection.complete()
                rows = connection.sql(f"SELECT {tier_columns} FROM day_rows").to_arrow_table()
                for done in [d for d, future in pending.items() if future.done()] or list(pending)[:1]:
                    staged[done] = pending.pop(done).result()
                pending[day] = writer.submit(write_and_verify, day, rows, expected[day])
                del rows
            for day, future in pending.items():
                staged[day] = future.result()
        connection.execute("DROP TABLE IF EXISTS day_rows")
        staged = dict(sorted(staged.items()))
        # From here the tier changes: the manifest goes first, so no reader takes a half-swapped month as whole.
        manifest_file = manifest_path(location, ARCHIVE, month)
        if location.exists(manifest_file):
            location.filesystem.delete_file(manifest_file)
        entries: dict[str, dict] = {}
        for day, (path, size) in staged.items():
            final_dir = day_path(location, ARCHIVE, day)
            location.filesystem.create_dir(final_dir, recursive=True)
            keep = f"{final_dir}/{basename}"
            location.filesystem.move(path, keep)
            for info in location.files_under(final_dir):
                if info.path != keep:
                    location.filesystem.delete_file(info.path)
            # The file was verified before the move; now the directory must hold it alone, whole.
            left = location.files_under(final_dir)
            if [(info.path, info.size) for info in left] != [(keep, size)]:
                raise MonthVerificationError(
                    f"{day}: {location.uri_of(*day_dir(ARCHIVE, day))} does not hold exactly the verified file "
                    "after the move; the month's manifest was not written"
                )
            entries[day.isoformat()] = {
                "rows": expected[day].rows, "key_checksum": str(expected[day].checksum), "files": [keep],
                "parquet_bytes": size,
            }
            result.cold_rows[day.isoformat()] = expected[day].rows
            result.cold_files.append(keep)
            result.parquet_bytes += size
        manifest = {
            "version": BACKFILL_MANIFEST_VERSION,
            "period": ARCHIVE,
            "month": f"{month:%Y-%m}",
            "days": entries,
            "written_at": naive_utc().isoformat(),
            **provenance,
        }
        _write_json(location, manifest_file, manifest, staging)
        result.manifest = location.uri_of(BACKFILL_DIR, day_dir(ARCHIVE, month)[0], f"{month:%Y-%m}.json")
    finally:
        # The month's own staging directory only: another month's run may be staging beside it.
        month_staging = location.path(BACKFILL_STAGING_DIR, f"{month:%Y-%m}")
        if location.exists(month_staging):
            location.filesystem.delete_dir(month_staging)


def _write_json(location: TierLocation, path: str, content: dict, staging: str) -> None:
    """Write ``content`` at ``path`` whole or not at all (staged, then moved)."""
    staged = f"{staging}/{uuid.uuid4().hex}.json"
    location.filesystem.create_dir(staging, recursive=True)
    with location.filesystem.open_output_stream(staged) as stream:
        stream.write(json.dumps(content, indent=1, sort_keys=True).encode())
    location.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    location.filesystem.move(staged, path)


def _write_rejected(scratch: _Scratch, location: TierLocation, month: date, before: date) -> int:
    """The month's quarantined values and records, but those of hot days (DuckDB gets them), as one Parquet file
    in the tier, `_rejected/period=archive/YYYY-MM.parquet`, replaced by each run."""
    scratch.connection.complete()
    table = scratch.connection.sql(
        f'SELECT * FROM ({REJECTED_SQL}) WHERE NOT coalesce("timestamp" >= $hot AND "timestamp" < $end, false)',
        params={"hot": datetime.combine(before, datetime.min.time()),
                "end": datetime.combine(_next_month(month), datetime.min.time())},
    ).to_arrow_table()
    target = location.path(REJECTED_DIR, day_dir(ARCHIVE, month)[0], f"{month:%Y-%m}.parquet")
    location.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
    staged = f"{target}.{uuid.uuid4().hex[:8]}.partial"
    pq.write_table(table, staged, filesystem=location.filesystem, compression="zstd")
    location.filesystem.move(staged, target)
    return table.num_rows


def _write_hot(scratch: _Scratch, month: date, hot_from: date, hot_dir: Path, result: MonthBackfill) -> None:
    """The hot days' readings and quarantined values, staged in the lake for `merge_hot_rows`."""
    if hot_dir.exists():
        shutil.rmtree(hot_dir)
    hot_days = [d for d in month_days(month) if d >= hot_from]
    files = [p for d in hot_days for p in scratch.staged.glob(f"unit=*/day={d.isoformat()}/*.parquet")]
    if not files:
        return
    hot_dir.mkdir(parents=True)
    readings, rejected = hot_dir / HOT_READINGS_FILE, hot_dir / HOT_REJECTED_FILE
    columns = ", ".join(f'"{c}"' for c in column_names())
    listed = "[" + ", ".join(_sql_text(p.as_posix()) for p in files) + "]"
    connection = scratch.connection
    connection.execute(
        f"""COPY (SELECT {columns} FROM ({_staged_sql(listed)})
                  QUALIFY row_number() OVER (PARTITION BY sensor_id, "timestamp" ORDER BY unit) = 1
                  ORDER BY sensor_id, "timestamp")
            TO '{readings}' (FORMAT parquet, COMPRESSION zstd)"""
    )
    connection.execute(
        f"""COPY (SELECT * FROM ({REJECTED_SQL}) WHERE "timestamp" >= $start AND "timestamp" < $end)
            TO '{rejected}' (FORMAT parquet, COMPRESSION zstd)""",
        {"start": datetime.combine(hot_days[0], datetime.min.time()),
         "end": datetime.combine(_next_month(month), datetime.min.time())},
    )
    result.hot_rows = connection.execute(f"SELECT count(*) FROM read_parquet('{readings}')").fetchone()[0]
    result.hot_readings, result.hot_rejected = readings, rejected


def backfill_month(
    month: date,
    sources: Sequence[MonthSource],
    location: TierLocation,
    *,
    hot_from: date,
    hot_dir: Path,
    selection: ResolvedSelection | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    row_group_rows: int = 250_000,
    memory_limit: str = MONTH_MEMORY_LIMIT,
    threads: int | None = None,
    scratch_root: Path | None = None,
) -> MonthBackfill:
    """Normalise the month's files and write its cold days to the tier (see the module docstring).

    ``selection``: the sensors to keep (None: every sensor of the files). ``hot_dir``: where hot days' rows are
    staged for `merge_hot_rows` (replaced by each run). ``threads``: DuckDB threads (None: all cores).
    """
    if month.day != 1:
        raise ValueError(f"{month} is not the first day of a month")
    stamp = naive_utc(now)
    result = MonthBackfill(month)
    result.files = len(sources)
    result.bytes = sum(source.path.stat().st_size for source in sources)
    cold_days = [d for d in month_days(month) if d < hot_from]
    by_type: dict[str, list[MonthSource]] = defaultdict(list)
    zips: list[MonthSource] = []
    for source in sorted(sources, key=lambda s: (s.sensor_type, s.name)):
        if source.kind == "parquet":
            by_type[source.sensor_type].append(source)
        elif source.kind == "csv_zip":
            zips.append(source)
        else:
            raise ValueError(f"{source.name}: unknown kind {source.kind!r}")
    with tempfile.TemporaryDirectory(prefix=f"aqi-month-{month:%Y-%m}-", dir=scratch_root) as tmp:
        scratch = _Scratch(Path(tmp), memory_limit, threads)
        try:
            started = time.perf_counter()
            # Staging needs no row order (`rn` keeps the files' order), which lets DuckDB parallelise every step.
            scratch.connection.execute("SET preserve_insertion_order = false")
            for sensor_type in sorted(by_type):
                ids = None if selection is None else selection.ids_within(sensor_type)
                _stage_parquet_type(scratch, by_type[sensor_type], month, stamp, ids, result)
            for source in zips:
                ids = None if selection is None else selection.ids_within(source.sensor_type)
                _stage_zip(scratch, source, month, stamp, ids, result)
            result.seconds["normalise"] = round(time.perf_counter() - started, 3)
            scratch.connection.execute("SET preserve_insertion_order = true")  # the days are written in key order
            scratch.register_file_names()
            started = time.perf_counter()
            provenance = {
                "run_id": run_id,
                "sources": [
                    {"name": s.name, "kind": s.kind, "sensor_type": s.sensor_type, "sha256": file_sha256(s.path),
                     "bytes": s.path.stat().st_size}
                    for s in sorted(sources, key=lambda s: (s.sensor_type, s.name))
                ],
                "selection": "every sensor" if selection is None else selection.describe(),
            }
            if cold_days:
                _write_cold_days(scratch, location, month, cold_days, row_group_rows, result, provenance)
                _write_rejected(scratch, location, month, min(hot_from, _next_month(month)))
            _write_hot(scratch, month, hot_from, hot_dir, result)
            result.seconds["write"] = round(time.perf_counter() - started, 3)
            result.sensors = _staged_sensors(scratch)
        finally:
            scratch.close()
    result.rows_new = result.cold_total + result.hot_rows - result.rows_in_tier_before
    return result


HOT_FILE_PREFIX = "monthly:"


def merge_hot_rows(
    connection: duckdb.DuckDBPyConnection, month: date, readings: Path, rejected: Path | None, *,
    now: datetime | None = None, run_id: str | None = None,
) -> tuple[int, int]:
    """The hot days staged by `backfill_month` into the history (`aqi_readings`, `rejected_values`), exactly once
    per staged file (logged in `archive_files`), keys the history already holds skipped; (rows inserted, rows
    already known)."""
    ensure_archive_schema(connection)
    stamp = naive_utc(now)
    name = f"{HOT_FILE_PREFIX}{month:%Y-%m}"
    sha = file_sha256(readings)
    merged = connection.execute("SELECT count(*) FROM archive_files WHERE file = ? AND sha256 = ?", [name, sha])
    if merged.fetchone()[0]:
        return 0, 0
    with transaction(connection):
        total = connection.execute(f"SELECT count(*) FROM read_parquet('{readings}')").fetchone()[0]
        seq = connection.execute("SELECT nextval('aqi_ingest_seq')").fetchone()[0]
        inserted = connection.execute(
            f"""INSERT INTO aqi_readings BY NAME
                SELECT s.* REPLACE ($seq::BIGINT AS ingest_seq, $now::TIMESTAMP AS ingested_at)
                FROM read_parquet('{readings}') s
                WHERE NOT EXISTS (SELECT 1 FROM aqi_readings a WHERE a.period = s.period
                                  AND a.sensor_id = s.sensor_id AND a."timestamp" = s."timestamp")""",
            {"now": stamp, "seq": seq},
        ).fetchone()[0]
        if rejected is not None and rejected.exists():
            connection.execute(f"INSERT INTO rejected_values BY NAME SELECT * FROM read_parquet('{rejected}')")
        connection.execute(
            "INSERT INTO archive_files (file, sha256, day, bytes, merged_at, run_id) VALUES (?, ?, ?, ?, ?, ?)",
            [name, sha, month, readings.stat().st_size, stamp, run_id],
        )
    return int(inserted), int(total) - int(inserted)
