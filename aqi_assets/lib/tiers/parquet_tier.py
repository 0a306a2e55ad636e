"""One UTC day of `aqi_readings` as Parquet, per period: export (staged, then swapped in), verification against
DuckDB.

Every period of `period_names(Feed.TIER)` is exported (read at call time: the snapshot feeds and the
backfilled archive days alike), into the layout of `lib.readings.history` (`period=<name>/date=YYYY-MM-DD/`), zstd,
sorted by (sensor_id, timestamp) so one sensor's readings sit in few row groups and their min/max statistics
let readers skip the rest. The partition columns are not stored in the files (they are in the path), as every
Hive-style reader expects.

A (day, period) is written under `<root>/_staging/<token>/` first and moved into place only when complete,
then its older files are removed: a re-run replaces exactly that (day, period), and a crash leaves either the
old files or the new ones (plus, at worst, a staging directory or both versions side by side, which
verification rejects and the next run of that day cleans up). Nothing is ever deleted from DuckDB on the
strength of an export alone: `verify_day` re-reads the files and compares row counts and a checksum of the
keys with the hot tier, and only a verified (day, period) may be pruned.

A pruned (day, period) — its rows deleted from DuckDB by retention — keeps its files: they are the only copy.
A re-export leaves it as it is; rows of that period arriving in DuckDB afterwards (an archive day merged after
its day was pruned) make the export fail with `DayPrunedError` rather than overwrite the files.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.history import STAGING_DIR, backfilled, day_dir, day_path
from aqi_assets.lib.readings.periods import Feed, period_names, sql_list


class DayPrunedError(RuntimeError):
    """Rows of a (day, period) that was pruned from DuckDB are hot again: its Parquet files are the only copy of
    the pruned rows and are never overwritten."""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time())
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class KeyStats:
    """Row count and an order-independent checksum of the (sensor_id, timestamp) keys of one (day, period)."""

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
    return files_stats(location, [info.path for info in location.files_under(day_path(location, period, day))])


def files_stats(location: TierLocation, files: list[str], *, single_thread: bool = False) -> KeyStats:
    """`parquet_stats` of exactly these files (e.g. staged ones, before they move into place); with
    ``single_thread`` on one core (a worker held to one thread)."""
    if not files:
        return KeyStats(0, 0)
    checked = ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
    )
    dataset = ds.dataset(files, format=checked, filesystem=location.filesystem)
    reader = dataset.scanner(batch_size=65_536, use_threads=not single_thread).to_reader()
    with duckdb.connect() as scratch:
        scratch.execute("SET enable_progress_bar = false")
        if single_thread:
            scratch.execute("SET threads = 1")
        scratch.register("day_files", reader)
        row = scratch.execute(_STATS_SQL.format(source="day_files")).fetchone()
    return KeyStats(int(row[0]), int(row[1]))


@dataclass
class DayExport:
    day: date
    rows: dict[str, int] = field(default_factory=dict)
    parquet_bytes: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    kept_pruned: list[str] = field(default_factory=list)  # periods already pruned: their files were left as they are
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.parquet_bytes.values())


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
        return stream_day_to_parquet(cursor, location, period, day, staging, basename, row_group_rows)
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


def stream_day_to_parquet(
    cursor: duckdb.DuckDBPyConnection,
    location: TierLocation,
    period: str,
    day: date,
    staging: str,
    basename: str,
    row_group_rows: int,
) -> tuple[int, int, str | None]:
    reader = _sorted_batches(cursor, period, day, min(row_group_rows, 100_000))
    target = "/".join((staging, *day_dir(period, day), basename))
    rows, size = write_tier_file(reader, location, target, row_group_rows)
    return (rows, size, target) if rows else (0, 0, None)


def write_tier_file(
    batches: Iterable[pa.RecordBatch], location: TierLocation, target: str, row_group_rows: int
) -> tuple[int, int]:
    """Sorted batches of one (day, period) as one tier file at ``target`` (zstd, statistics, page checksums);
    (rows, bytes). No file is created for no rows."""
    rows = 0
    writer: pq.ParquetWriter | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    try:
        for batch in batches:
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
        return 0, 0
    return rows, location.filesystem.get_file_info(target).size


def _pruned_rows(connection: duckdb.DuckDBPyConnection, day: date) -> dict[str, int]:
    """period → rows logged for each (day, period) already pruned from DuckDB."""
    return dict(
        connection.execute(
            "SELECT period, rows FROM parquet_tier_log WHERE day = ? AND pruned_at IS NOT NULL", [day]
        ).fetchall()
    )


def export_day(
    connection: duckdb.DuckDBPyConnection, location: TierLocation, day: date, *, row_group_rows: int = 250_000
) -> DayExport:
    """Write every tier period of `day` as Parquet, replacing whatever the tier held for those (day, period)s.

    `connection` holds the history's tables (`lib.readings.schema.readings_connection`). A (day, period)
    already pruned is left as it is (`DayExport.kept_pruned`); one that has hot rows again raises
    `DayPrunedError` before anything is written.
    """
    started = time.perf_counter()
    periods = period_names(Feed.TIER)
    # A (day, period) pruned with no rows has no files to protect (retention marks only the periods whose
    # rows it deleted; older logs also marked empty ones): it is exported like any other.
    pruned = {p: n for p, n in _pruned_rows(connection, day).items() if p in periods and n}
    # Written straight to the tier by the monthly backfill: the files are the only copy, as for a pruned day.
    pruned |= {p: entry.rows for (p, _), entry in backfilled(location, first=day, last=day).items() if p in periods}
    returned = {p: hot_stats(connection, p, day).rows for p in pruned}
    returned = {p: n for p, n in returned.items() if n}
    if returned:
        found = ", ".join(f"{n} '{p}' rows (pruned with {pruned[p]})" for p, n in sorted(returned.items()))
        raise DayPrunedError(
            f"{day}: {found} reached DuckDB after the day's {', '.join(sorted(returned))} rows were pruned to "
            "Parquet (merged late, e.g. an archive day backfilled after retention); the Parquet files are the "
            "only copy of the pruned rows and are not overwritten by a re-export"
        )
    export = DayExport(day, kept_pruned=sorted(pruned))
    to_write = [p for p in periods if p not in pruned]
    # Exports hold the DuckDB file, so none runs concurrently: whatever is staged is a crashed run's leftover.
    if location.exists(location.path(STAGING_DIR)):
        location.filesystem.delete_dir(location.path(STAGING_DIR))
    token = f"{naive_utc():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    staging = location.path(STAGING_DIR, token)
    basename = f"part-{token}.parquet"
    staged: dict[str, str | None] = {}
    for period in to_write:
        rows, size, path = _write_period(connection, location, period, day, staging, basename, row_group_rows)
        export.rows[period], export.parquet_bytes[period], staged[period] = rows, size, path
    # The swap: the new file moves in first, then the (day, period)'s other files go (a reader may briefly see
    # both; verification would then fail, never pass on a partial day).
    for period in to_write:
        final_dir = day_path(location, period, day)
        keep = None
        staged_path = staged[period]
        if staged_path is not None:
            location.filesystem.create_dir(final_dir, recursive=True)
            keep = f"{final_dir}/{basename}"
            location.filesystem.move(staged_path, keep)
            export.files.append(keep)
        for info in location.files_under(final_dir):
            if info.path != keep:
                location.filesystem.delete_file(info.path)
    if location.exists(staging):
        location.filesystem.delete_dir(staging)
    now = naive_utc()
    for period in to_write:
        stats = hot_stats(connection, period, day)
        connection.execute(
            """INSERT OR REPLACE INTO parquet_tier_log
               (day, period, uri, rows, key_checksum, parquet_bytes, exported_at, verified_at, pruned_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)""",
            [day, period, location.uri_of(*day_dir(period, day)), stats.rows, stats.checksum,
             export.parquet_bytes[period], now],
        )  # fmt: skip
    export.seconds = time.perf_counter() - started
    return export


@dataclass
class DayVerification:
    day: date
    ok: bool
    hot: dict[str, KeyStats] = field(default_factory=dict)  # what the files must hold (the log's, once pruned)
    parquet: dict[str, KeyStats] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # periods of the day already pruned from DuckDB

    def as_metadata(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "ok": self.ok,
            "rows_hot": {p: s.rows for p, s in self.hot.items()},
            "rows_parquet": {p: s.rows for p, s in self.parquet.items()},
            "periods_pruned": self.pruned,
            "problems": self.problems,
        }


def verify_day(connection: duckdb.DuckDBPyConnection, location: TierLocation, day: date) -> DayVerification:
    """Re-read the day's Parquet files and compare count and key checksum with DuckDB, per tier period.

    A period passes when it was exported (a log row) and its files hold exactly the hot rows' keys, or, once
    pruned, exactly the keys logged when it was verified (and no hot rows of it came back); a period with no
    log row passes only when it has neither hot rows nor files. A file that cannot
    be read is a failure with its reason, never an exception that skips the rest. `verified_at` is set for each
    period that passed and cleared for each that failed; retention prunes a day only when every period passed.
    """
    verification = DayVerification(day, ok=True)
    logged = {
        row[0]: (KeyStats(int(row[1]), int(row[2])), row[3] is not None)
        for row in connection.execute(
            "SELECT period, rows, key_checksum, pruned_at FROM parquet_tier_log WHERE day = ?", [day]
        ).fetchall()
    }
    # A (day, period) the monthly backfill wrote to the tier is checked against its manifest (what was verified
    # when it was written), like a pruned one: the manifest is newer than any log row of that pair.
    written_cold = backfilled(location, first=day, last=day)
    for (period, _), entry in written_cold.items():
        logged[period] = (KeyStats(entry.rows, entry.key_checksum), True)
    passed: list[str] = []
    failed: list[str] = []
    for period in period_names(Feed.TIER):
        if period not in logged:
            # No rows and no files is complete without an export (a day exported before the period was
            # registered); anything else was never exported.
            problem = _verify_unlogged(connection, location, period, day, verification)
            if problem is not None:
                verification.problems.append(problem)
            continue
        problem = _verify_period(connection, location, period, day, *logged[period], verification)
        if problem is None:
            passed.append(period)
        else:
            verification.problems.append(problem)
            failed.append(period)
    verification.ok = not verification.problems
    passed = [p for p in passed if (p, day) not in written_cold]  # no log row to mark: the manifest is the record
    failed = [p for p in failed if (p, day) not in written_cold]
    if passed:
        connection.execute(
            f"UPDATE parquet_tier_log SET verified_at = ? WHERE day = ? AND period IN {sql_list(tuple(passed))}",
            [naive_utc(), day],
        )
    if failed:
        connection.execute(
            f"UPDATE parquet_tier_log SET verified_at = NULL WHERE day = ? AND period IN {sql_list(tuple(failed))}",
            [day],
        )
    return verification


def _verify_period(
    connection: duckdb.DuckDBPyConnection,
    location: TierLocation,
    period: str,
    day: date,
    logged: KeyStats,
    pruned: bool,
    verification: DayVerification,
) -> str | None:
    """The problem with one (day, period)'s files, or None; records the figures on `verification`."""
    if pruned:
        verification.pruned.append(period)
        back = hot_stats(connection, period, day).rows
        if back:
            return f"{period}: {back} rows in DuckDB although this (day, period) was pruned (merged after pruning)"
    # A pruned (day, period) has no hot rows left: its files must still match what was verified before pruning.
    expected = logged if pruned else hot_stats(connection, period, day)
    verification.hot[period] = expected
    try:
        found = parquet_stats(location, period, day)
    except (OSError, pa.ArrowException, duckdb.Error) as error:
        return f"{period}: Parquet unreadable: {error}"
    verification.parquet[period] = found
    if expected == found:
        return None
    same_count = " (same count, different keys)" if expected.rows == found.rows else ""
    source = "the log (pruned)" if pruned else "DuckDB"
    return f"{period}: {source} has {expected.rows} rows, Parquet {found.rows}{same_count}"


def _verify_unlogged(
    connection: duckdb.DuckDBPyConnection,
    location: TierLocation,
    period: str,
    day: date,
    verification: DayVerification,
) -> str | None:
    hot = hot_stats(connection, period, day)
    if hot.rows:
        return f"{period}: never exported ({hot.rows} rows in DuckDB)"
    try:
        found = parquet_stats(location, period, day)
    except (OSError, pa.ArrowException, duckdb.Error) as error:
        return f"{period}: never exported, and its Parquet files are unreadable: {error}"
    if found.rows:
        return f"{period}: never exported, yet its Parquet files hold {found.rows} rows DuckDB does not have"
    verification.hot[period] = verification.parquet[period] = hot
    return None


def verified_days(connection: duckdb.DuckDBPyConnection, period: str) -> set[date]:
    """Days of `period` whose Parquet copy was verified (pruned days included: verified before pruning)."""
    return {
        row[0]
        for row in connection.execute(
            "SELECT day FROM parquet_tier_log WHERE period = ? AND verified_at IS NOT NULL", [period]
        ).fetchall()
    }
