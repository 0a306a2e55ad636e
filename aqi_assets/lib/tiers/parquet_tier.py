"""One UTC day of `aqi_readings` as Parquet: export (staged, then swapped in), verification against DuckDB.

Layout (Hive style, what Athena, Spark, Trino and DuckDB all discover):
`<root>/period=<5min|24h>/date=YYYY-MM-DD/part-<token>.parquet`, zstd, sorted by (sensor_id, timestamp) so
one sensor's readings sit in few row groups and their min/max statistics let readers skip the rest. The
partition columns are not stored in the files (they are in the path), as every Hive-style reader expects.

A day is written under `<root>/_staging/<token>/` first and moved into place only when complete, then the
day's older files are removed: a re-run replaces exactly that day, and a crash leaves either the old files
or the new ones (plus, at worst, a staging directory or both versions side by side, which verification
rejects and the next run of that day cleans up). Nothing is ever deleted from DuckDB on the strength of an
export alone: `verify_day` re-reads the files and compares row counts and a checksum of the keys with the
hot tier, and only a verified day may be pruned.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.readings.periods import PERIODS

# Partition columns with explicit types: with a bare "hive" partitioning `date` would be text and a DATE
# filter would not reach the file listing (every file fetched).
PARTITIONING_SCHEMA = pa.schema([("period", pa.string()), ("date", pa.date32())])
STAGING_DIR = "_staging"

# One row per (day, period) exported: what was written, when it was verified, when the hot copy went.
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


class DayPrunedError(RuntimeError):
    """The day was pruned from DuckDB: its Parquet files are the only copy and are not overwritten."""


def ensure_tier_tables(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(TIER_LOG_DDL)


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time())
    return start, start + timedelta(days=1)


def day_path(location: TierLocation, period: str, day: date) -> str:
    if period not in PERIODS:  # the period becomes part of a path
        raise ValueError(f"unknown period {period!r}; expected one of {PERIODS}")
    return location.path(f"period={period}", f"date={day.isoformat()}")


@dataclass(frozen=True)
class KeyStats:
    """Row count and an order-independent checksum of the (sensor_id, timestamp) keys of one period-day."""

    rows: int
    checksum: int


# DuckDB's hash of the key columns, summed (HUGEINT: no overflow); identical whichever side it reads.
_STATS_SQL = 'SELECT count(*), coalesce(sum(hash(sensor_id, "timestamp")::HUGEINT), 0) FROM {source}'


def hot_stats(connection: duckdb.DuckDBPyConnection, period: str, day: date) -> KeyStats:
    start, end = day_bounds(day)
    row = connection.execute(
        _STATS_SQL.format(source='aqi_readings WHERE period = ? AND "timestamp" >= ? AND "timestamp" < ?'),
        [period, start, end],
    ).fetchone()
    return KeyStats(int(row[0]), int(row[1]))


def parquet_stats(location: TierLocation, period: str, day: date) -> KeyStats:
    """Count and key checksum read back from the day's files. Every column of every row is decoded and every
    page's CRC checked (written with the files), so damage anywhere in a file raises, not just in the keys."""
    files = [info.path for info in location.files_under(day_path(location, period, day))]
    if not files:
        return KeyStats(0, 0)
    checked = ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
    )
    dataset = ds.dataset(files, format=checked, filesystem=location.filesystem)
    reader = dataset.scanner(batch_size=65_536).to_reader()
    with duckdb.connect() as scratch:
        scratch.execute("SET enable_progress_bar = false")
        scratch.register("day_files", reader)
        row = scratch.execute(_STATS_SQL.format(source="day_files")).fetchone()
    return KeyStats(int(row[0]), int(row[1]))


@dataclass
class DayExport:
    day: date
    rows: dict[str, int] = field(default_factory=dict)
    parquet_bytes: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.parquet_bytes.values())


def _is_pruned(connection: duckdb.DuckDBPyConnection, day: date) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM parquet_tier_log WHERE day = ? AND pruned_at IS NOT NULL", [day]
    ).fetchone()
    return bool(row and row[0])


def _write_period(
    connection: duckdb.DuckDBPyConnection,
    location: TierLocation,
    period: str,
    day: date,
    staging: str,
    basename: str,
    row_group_rows: int,
) -> tuple[int, int, str | None]:
    """The period-day sorted into one staged file; (rows, bytes, staged path or None when no rows)."""
    # A cursor of its own: the streamed result must not collide with other statements on `connection`.
    cursor = connection.cursor()
    try:
        return _stream_to_parquet(cursor, location, period, day, staging, basename, row_group_rows)
    finally:
        cursor.close()


# Rows sorted at a time: the day is cut into sensor ranges of about this many rows, each sorted on its own,
# so the sort's memory stays bounded however many readings a day holds (one sort of 15 M wide rows took
# over 4 GB).
SORT_CHUNK_ROWS = 2_000_000


def _sorted_batches(
    cursor: duckdb.DuckDBPyConnection, period: str, day: date, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """The period-day's rows in (sensor_id, timestamp) order, as Arrow batches, one sensor range at a time."""
    start, end = day_bounds(day)
    params = {"period": period, "start": start, "end": end}
    where = 'period = $period AND "timestamp" >= $start AND "timestamp" < $end'
    total = cursor.sql(f"SELECT count(*) FROM aqi_readings WHERE {where}", params=params).fetchall()[0][0]
    if not total:
        return
    chunks = -(-total // SORT_CHUNK_ROWS)
    bounds: list[int | None] = [None]
    if chunks > 1:
        fractions = [i / chunks for i in range(1, chunks)]
        cuts = cursor.sql(
            f"SELECT quantile_disc(sensor_id, {fractions}) FROM aqi_readings WHERE {where}", params=params
        ).fetchall()[0][0]
        bounds += sorted(set(cuts))
    bounds.append(None)
    for low, high in itertools.pairwise(bounds):
        condition = where
        if low is not None:
            condition += f" AND sensor_id >= {int(low)}"
        if high is not None:
            condition += f" AND sensor_id < {int(high)}"
        relation = cursor.sql(
            f'SELECT * EXCLUDE (period) FROM aqi_readings WHERE {condition} ORDER BY sensor_id, "timestamp"',
            params=params,
        )
        yield from relation.to_arrow_reader(batch_rows)


def _stream_to_parquet(
    cursor: duckdb.DuckDBPyConnection,
    location: TierLocation,
    period: str,
    day: date,
    staging: str,
    basename: str,
    row_group_rows: int,
) -> tuple[int, int, str | None]:
    reader = _sorted_batches(cursor, period, day, min(row_group_rows, 100_000))
    target = f"{staging}/period={period}/date={day.isoformat()}/{basename}"
    rows = 0
    writer: pq.ParquetWriter | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    try:
        for batch in reader:
            if batch.num_rows == 0:
                continue
            if writer is None:
                location.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
                writer = pq.ParquetWriter(
                    target,
                    batch.schema,
                    filesystem=location.filesystem,
                    compression="zstd",
                    compression_level=3,
                    write_statistics=True,
                    write_page_checksum=True,  # lets verification catch damage to any page of any column
                )
            pending.append(batch)
            pending_rows += batch.num_rows
            rows += batch.num_rows
            if pending_rows >= row_group_rows:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=row_group_rows)
                pending, pending_rows = [], 0
        if writer is not None and pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=row_group_rows)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return 0, 0, None
    return rows, location.filesystem.get_file_info(target).size, target


def export_day(
    connection: duckdb.DuckDBPyConnection, location: TierLocation, day: date, *, row_group_rows: int = 250_000
) -> DayExport:
    """Write both periods of `day` as Parquet, replacing whatever the tier held for that day."""
    started = time.perf_counter()
    ensure_tier_tables(connection)
    if _is_pruned(connection, day):
        raise DayPrunedError(
            f"{day} was pruned from DuckDB after verification: its Parquet files are the only copy and are "
            "not overwritten by a re-export"
        )
    # Exports hold the DuckDB file, so none runs concurrently: whatever is staged is a crashed run's leftover.
    if location.exists(location.path(STAGING_DIR)):
        location.filesystem.delete_dir(location.path(STAGING_DIR))
    token = f"{utc_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    staging = location.path(STAGING_DIR, token)
    basename = f"part-{token}.parquet"
    export = DayExport(day)
    staged: dict[str, str | None] = {}
    for period in PERIODS:
        rows, size, path = _write_period(connection, location, period, day, staging, basename, row_group_rows)
        export.rows[period], export.parquet_bytes[period], staged[period] = rows, size, path
    # The swap: the new file moves in first, then the day's other files go (a reader may briefly see both;
    # verification would then fail, never pass on a partial day).
    for period in PERIODS:
        final_dir = day_path(location, period, day)
        keep = None
        if staged[period] is not None:
            location.filesystem.create_dir(final_dir, recursive=True)
            keep = f"{final_dir}/{basename}"
            location.filesystem.move(staged[period], keep)
            export.files.append(keep)
        for info in location.files_under(final_dir):
            if info.path != keep:
                location.filesystem.delete_file(info.path)
    if location.exists(staging):
        location.filesystem.delete_dir(staging)
    now = utc_now()
    for period in PERIODS:
        stats = hot_stats(connection, period, day)
        connection.execute(
            """INSERT OR REPLACE INTO parquet_tier_log
               (day, period, uri, rows, key_checksum, parquet_bytes, exported_at, verified_at, pruned_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)""",
            [day, period, location.uri_of(f"period={period}", f"date={day.isoformat()}"), stats.rows,
             stats.checksum, export.parquet_bytes[period], now],
        )  # fmt: skip
    export.seconds = time.perf_counter() - started
    return export


@dataclass
class DayVerification:
    day: date
    ok: bool
    hot: dict[str, KeyStats] = field(default_factory=dict)
    parquet: dict[str, KeyStats] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "ok": self.ok,
            "rows_hot": {p: s.rows for p, s in self.hot.items()},
            "rows_parquet": {p: s.rows for p, s in self.parquet.items()},
            "problems": self.problems,
        }


def verify_day(connection: duckdb.DuckDBPyConnection, location: TierLocation, day: date) -> DayVerification:
    """Re-read the day's Parquet files and compare count and key checksum with DuckDB, per period.

    Passes only when the day was exported (a log row per period) and the files hold exactly the hot rows'
    keys; a file that cannot be read is a failure with its reason, never an exception that skips the rest.
    On success `verified_at` is set, which is what retention looks for.
    """
    ensure_tier_tables(connection)
    verification = DayVerification(day, ok=True)
    logged = {
        row[0]: (KeyStats(int(row[1]), int(row[2])), row[3] is not None)
        for row in connection.execute(
            "SELECT period, rows, key_checksum, pruned_at FROM parquet_tier_log WHERE day = ?", [day]
        ).fetchall()
    }
    for period in PERIODS:
        if period not in logged:
            verification.problems.append(f"{period}: never exported")
            continue
        logged_stats, pruned = logged[period]
        # A pruned day has no hot rows left: its files must still match what was verified before pruning.
        expected = logged_stats if pruned else hot_stats(connection, period, day)
        verification.hot[period] = expected
        try:
            verification.parquet[period] = parquet_stats(location, period, day)
        except (OSError, pa.ArrowException, duckdb.Error) as error:
            verification.problems.append(f"{period}: Parquet unreadable: {error}")
            continue
        found = verification.parquet[period]
        if expected != found:
            same_count = " (same count, different keys)" if expected.rows == found.rows else ""
            source = "the log (pruned day)" if pruned else "DuckDB"
            verification.problems.append(
                f"{period}: {source} has {expected.rows} rows, Parquet {found.rows}{same_count}"
            )
    verification.ok = not verification.problems
    if verification.ok:
        connection.execute("UPDATE parquet_tier_log SET verified_at = ? WHERE day = ?", [utc_now(), day])
    else:
        connection.execute("UPDATE parquet_tier_log SET verified_at = NULL WHERE day = ?", [day])
    return verification


def verified_days(connection: duckdb.DuckDBPyConnection, period: str) -> set[date]:
    """Days of `period` whose Parquet copy was verified (pruned days included: verified before pruning)."""
    ensure_tier_tables(connection)
    return {
        row[0]
        for row in connection.execute(
            "SELECT day FROM parquet_tier_log WHERE period = ? AND verified_at IS NOT NULL", [period]
        ).fetchall()
    }


def tier_dataset(location: TierLocation) -> ds.Dataset:
    """Every exported day as one Arrow dataset with typed `period` and `date` columns (filters on them
    select directories before any file is opened)."""
    return ds.dataset(
        location.root,
        format="parquet",
        filesystem=location.filesystem,
        partitioning=ds.partitioning(PARTITIONING_SCHEMA, flavor="hive"),
        exclude_invalid_files=False,
        ignore_prefixes=[STAGING_DIR, ".", "_"],
    )
