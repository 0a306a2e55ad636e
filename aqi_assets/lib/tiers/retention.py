"""Retention: old days leave DuckDB once verified in Parquet; old raw snapshots leave the lake once merged.

Hot tier: a day older than `hot_days` is deleted from `aqi_readings` only when, at that moment, its Parquet
copy re-reads with the same row count and key checksum as the rows about to be deleted, and no enabled sync
target still has one of its readings pending; the delete and the log entry commit together, and the DELETE's
own row count must equal the verified one or the transaction is rolled back. A CHECKPOINT then lets DuckDB
reuse (and, at the end of the file, give back) the freed blocks.

Raw lake: a snapshot older than `raw_days` goes only when `snapshot_log` records it as merged and the Parquet
copy of its period is verified for the day it was fetched and the day before (a snapshot fetched just after
midnight carries readings of the previous day). Snapshots never merged, found unreadable, or renamed
`.invalid` stay. With an archive location the file is copied there, its size checked, then removed locally.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from aqi_assets.lib.air_quality.lake import list_snapshots, snapshot_day
from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.readings.periods import PERIODS
from aqi_assets.lib.sinks.sync_state import SYNC_TABLES
from aqi_assets.lib.tiers.parquet_tier import (
    day_bounds,
    ensure_tier_tables,
    tier_dataset,
    utc_now,
    verified_days,
    verify_day,
)


def pending_on_day(connection: duckdb.DuckDBPyConnection, target: str, day: date) -> int:
    """Readings of `day` that sync target `target` has not finished (above its sensor's watermark).

    The same rule as `sync_state.pending_readings` (a reading is pending when its (ingest_seq, timestamp) is
    above the stored (synced_seq, synced_through) pair, or its sensor has none), restricted to one day; a
    test checks that the days add up to `sync_state.count_pending`.
    """
    state_table = SYNC_TABLES[target][0]
    exists = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'", [state_table]
    ).fetchone()[0]
    start, end = day_bounds(day)
    if not exists:  # never synced: every reading of the day is pending
        return int(
            connection.execute(
                'SELECT count(*) FROM aqi_readings WHERE "timestamp" >= ? AND "timestamp" < ?', [start, end]
            ).fetchone()[0]
        )
    return int(
        connection.execute(
            f"""SELECT count(*) FROM aqi_readings r
                LEFT JOIN {state_table} s ON s.period = r.period AND s.sensor_id = r.sensor_id
                WHERE r."timestamp" >= ? AND r."timestamp" < ?
                  AND (s.synced_through IS NULL
                       OR coalesce(r.ingest_seq, 0) > coalesce(s.synced_seq, 0)
                       OR (coalesce(r.ingest_seq, 0) = coalesce(s.synced_seq, 0)
                           AND r."timestamp" > s.synced_through))""",
            [start, end],
        ).fetchone()[0]
    )


def duckdb_file_bytes(connection: duckdb.DuckDBPyConnection) -> int:
    path = connection.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()")
    row = path.fetchone()
    return os.path.getsize(row[0]) if row and row[0] and os.path.exists(row[0]) else 0


def duckdb_used_bytes(connection: duckdb.DuckDBPyConnection) -> int:
    """Bytes of the file's blocks in use: DuckDB reuses freed blocks for new rows but rarely shrinks the file,
    so this, not the file size, shows what a prune gave back."""
    cursor = connection.execute("PRAGMA database_size")
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchall()[0], strict=True))
    return int(row["used_blocks"]) * int(row["block_size"])


@dataclass
class HotPruneReport:
    cutoff: date
    days_pruned: list[date] = field(default_factory=list)
    rows_deleted: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # day → why it stays hot
    file_bytes_before: int = 0
    file_bytes_after: int = 0
    used_bytes_before: int = 0
    used_bytes_after: int = 0

    def as_metadata(self) -> dict[str, Any]:
        return {
            "hot_cutoff": self.cutoff.isoformat(),
            "days_pruned": [d.isoformat() for d in self.days_pruned],
            "rows_deleted": self.rows_deleted,
            "days_kept_hot": self.skipped,
            "duckdb_bytes_before": self.file_bytes_before,
            "duckdb_bytes_after": self.file_bytes_after,
            "duckdb_used_bytes_before": self.used_bytes_before,
            "duckdb_used_bytes_after": self.used_bytes_after,
        }


def hot_days_before(connection: duckdb.DuckDBPyConnection, cutoff: date) -> list[date]:
    rows = connection.execute(
        'SELECT DISTINCT CAST("timestamp" AS DATE) AS day FROM aqi_readings WHERE "timestamp" < ? ORDER BY day',
        [datetime.combine(cutoff, datetime.min.time())],
    ).fetchall()
    return [row[0] for row in rows]


def prune_hot_tier(
    connection: duckdb.DuckDBPyConnection,
    location: TierLocation,
    *,
    today: date,
    hot_days: int,
    enabled_sinks: Iterable[str] = (),
) -> HotPruneReport:
    """Delete from `aqi_readings` every day before `today - hot_days` that is safely in Parquet."""
    ensure_tier_tables(connection)
    report = HotPruneReport(cutoff=today - timedelta(days=hot_days))
    report.file_bytes_before = duckdb_file_bytes(connection)
    report.used_bytes_before = duckdb_used_bytes(connection)
    sinks = list(enabled_sinks)
    for day in hot_days_before(connection, report.cutoff):
        waiting = {sink: n for sink in sinks if (n := pending_on_day(connection, sink, day))}
        if waiting:
            report.skipped[day.isoformat()] = f"readings not yet synced: {waiting}"
            continue
        verification = verify_day(connection, location, day)
        if not verification.ok:
            report.skipped[day.isoformat()] = "; ".join(verification.problems)
            continue
        expected_rows = sum(stats.rows for stats in verification.parquet.values())
        start, end = day_bounds(day)
        connection.execute("BEGIN TRANSACTION")
        try:
            deleted = connection.execute(
                'DELETE FROM aqi_readings WHERE "timestamp" >= ? AND "timestamp" < ?', [start, end]
            ).fetchone()[0]
            if deleted != expected_rows:  # something changed between verification and delete
                raise RuntimeError(f"{day}: would delete {deleted} rows but {expected_rows} were verified")
            connection.execute("UPDATE parquet_tier_log SET pruned_at = ? WHERE day = ?", [utc_now(), day])
            connection.execute("COMMIT")
        except RuntimeError as error:
            connection.execute("ROLLBACK")
            report.skipped[day.isoformat()] = str(error)
            continue
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        report.days_pruned.append(day)
        report.rows_deleted += int(deleted)
    if report.days_pruned:
        connection.execute("CHECKPOINT")
    report.file_bytes_after = duckdb_file_bytes(connection)
    report.used_bytes_after = duckdb_used_bytes(connection)
    return report


# --- one table over both tiers ------------------------------------------------------------------------


def pruned_days(connection: duckdb.DuckDBPyConnection) -> list[date]:
    """Days whose every period was pruned from DuckDB (their readings are only in Parquet)."""
    ensure_tier_tables(connection)
    rows = connection.execute(
        "SELECT day FROM parquet_tier_log GROUP BY day HAVING bool_and(pruned_at IS NOT NULL) ORDER BY day"
    ).fetchall()
    return [row[0] for row in rows]


def _cold_filter(days: list[date]) -> str:
    """SQL keeping exactly the pruned days of the Parquet tier: a date range (pushed down to the listing)
    minus any day inside it that is still hot."""
    if not days:
        return "FALSE"
    first, last = days[0], days[-1]
    pruned = set(days)
    holes = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    holes = [d for d in holes if d not in pruned]
    condition = f"date BETWEEN DATE '{first.isoformat()}' AND DATE '{last.isoformat()}'"
    if holes:
        condition += " AND date NOT IN (" + ", ".join(f"DATE '{d.isoformat()}'" for d in holes) + ")"
    return condition


def create_all_readings_view(
    connection: duckdb.DuckDBPyConnection, location: TierLocation, *, temporary: bool | None = None
) -> str:
    """Create `aqi_readings_all`: the hot rows plus the Parquet rows of pruned days, one table to query.

    For a local tier the view is stored in the DuckDB file (a `read_parquet` over the directory, usable from
    the `duckdb` shell); for S3, which DuckDB reads here only through pyarrow, it is a TEMP view over a
    registered Arrow dataset and lives as long as the connection. Returns the view's SQL.
    """
    days = pruned_days(connection)
    columns = [row[0] for row in connection.execute("DESCRIBE aqi_readings").fetchall()]
    select_cold = ", ".join(f'"{c}"' for c in columns)
    is_temporary = location.is_s3 if temporary is None else temporary
    if not days:
        cold = None
    elif is_temporary:
        connection.register("aqi_readings_parquet_dataset", tier_dataset(location))
        cold = f"SELECT {select_cold} FROM aqi_readings_parquet_dataset WHERE {_cold_filter(days)}"
    else:
        glob = location.path("period=*", "date=*", "*.parquet").replace("'", "''")
        hive_types = "{'period': VARCHAR, 'date': DATE}"
        cold = (
            f"SELECT {select_cold} FROM read_parquet('{glob}', hive_partitioning = true, "
            f"hive_types = {hive_types}) WHERE {_cold_filter(days)}"
        )
    hot = f"SELECT {select_cold} FROM aqi_readings"
    body = hot if cold is None else f"{hot}\nUNION ALL BY NAME\n{cold}"
    kind = "TEMP VIEW" if is_temporary else "VIEW"
    connection.execute(f"CREATE OR REPLACE {kind} aqi_readings_all AS {body}")
    return body


# --- the raw lake ------------------------------------------------------------------------------------


@dataclass
class RawPruneReport:
    cutoff: date
    removed: int = 0
    archived: int = 0
    bytes_freed: int = 0
    kept_unmerged: list[str] = field(default_factory=list)
    kept_unverified: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "raw_cutoff": self.cutoff.isoformat(),
            "snapshots_removed": self.removed,
            "snapshots_archived": self.archived,
            "bytes_freed": self.bytes_freed,
            "kept_not_merged": len(self.kept_unmerged),
            "kept_day_not_verified": len(self.kept_unverified),
            "kept_examples": (self.kept_unmerged + self.kept_unverified)[:10],
        }


def _archive(path: Path, raw_dir: Path, archive: TierLocation) -> None:
    relative = path.relative_to(raw_dir).as_posix()
    target = archive.path(relative)
    archive.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
    size = path.stat().st_size
    # compression=None: pyarrow would otherwise gzip a ".gz" name a second time.
    with path.open("rb") as source, archive.filesystem.open_output_stream(target, compression=None) as sink:
        while chunk := source.read(1 << 20):
            sink.write(chunk)
    stored = archive.filesystem.get_file_info(target).size
    if stored != size:
        raise OSError(f"archived copy of {path} has {stored} bytes, expected {size}")


def prune_raw_lake(
    connection: duckdb.DuckDBPyConnection,
    raw_dir: Path,
    *,
    today: date,
    raw_days: int,
    archive: TierLocation | None = None,
) -> RawPruneReport:
    """Remove (or move to `archive`) raw snapshots fetched before `today - raw_days` that are safely merged."""
    report = RawPruneReport(cutoff=today - timedelta(days=raw_days))
    for period in PERIODS:
        verified = verified_days(connection, period)
        merged = {
            row[0]
            for row in connection.execute(
                "SELECT snapshot FROM snapshot_log WHERE period = ? AND status = 'merged'", [period]
            ).fetchall()
        }
        for path in list_snapshots(raw_dir, period):
            day = snapshot_day(path.name)
            if day is None or day >= report.cutoff:
                continue
            if path.name not in merged:
                report.kept_unmerged.append(path.name)
                continue
            if not {day, day - timedelta(days=1)} <= verified:
                report.kept_unverified.append(path.name)
                continue
            size = path.stat().st_size
            if archive is not None:
                _archive(path, raw_dir, archive)
                report.archived += 1
            path.unlink()
            report.removed += 1
            report.bytes_freed += size
        _remove_empty_day_directories(raw_dir / period)
    return report


def _remove_empty_day_directories(base: Path) -> None:
    if not base.exists():
        return
    for directory in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()

