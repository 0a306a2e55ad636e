"""Retention: old days leave DuckDB once verified in Parquet; old raw snapshots leave the lake once merged.

Hot tier: a day older than `hot_days` is deleted from `aqi_readings` only when, at that moment, the Parquet
copy of every tier period of the day (`period_names(Feed.TIER)`, read at call time) re-reads with the same row
count and key checksum as the rows about to be deleted, and no enabled sync target still has one of its
readings pending. Then exactly what was verified goes: one `DELETE … WHERE period = ? AND timestamp in the
day` per (day, period) not yet pruned, each of which must delete exactly that period's verified count, and its
`pruned_at`, all in one transaction per day (any mismatch rolls the whole day back and keeps it hot). A
CHECKPOINT then lets DuckDB reuse (and, at the end of the file, give back) the freed blocks. Reading the
history across both tiers is `lib.readings.history.attach_history`.

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
from aqi_assets.lib.common.duckdb_conn import transaction
from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.periods import Feed, period_names, snapshot_periods, sql_list
from aqi_assets.lib.sinks.sync_state import count_pending
from aqi_assets.lib.tiers.parquet_tier import day_bounds, verified_days, verify_day


def pending_on_day(connection: duckdb.DuckDBPyConnection, target: str, day: date) -> int:
    """Readings of `day` that sync target `target` has not finished: the sinks' own rule
    (`sync_state.count_pending`: the periods feeding the sinks, above the sensor's watermark, with at least one
    measurement), restricted to that day, so the guard and the sync can never disagree."""
    start, end = day_bounds(day)
    return count_pending(connection, target, since=start, until=end)


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
    rows_deleted_per_period: dict[str, int] = field(default_factory=dict)
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
            "rows_deleted_per_period": self.rows_deleted_per_period,
            "days_kept_hot": self.skipped,
            "duckdb_bytes_before": self.file_bytes_before,
            "duckdb_bytes_after": self.file_bytes_after,
            "duckdb_used_bytes_before": self.used_bytes_before,
            "duckdb_used_bytes_after": self.used_bytes_after,
        }


class _DeleteMismatch(RuntimeError):
    """A DELETE would remove another number of rows than was verified: the day changed in between."""


def hot_days_before(connection: duckdb.DuckDBPyConnection, cutoff: date) -> list[date]:
    """Days before `cutoff` with hot rows of a tier period (other periods never leave DuckDB)."""
    rows = connection.execute(
        f"""SELECT DISTINCT CAST("timestamp" AS DATE) AS day FROM aqi_readings
            WHERE period IN {sql_list(period_names(Feed.TIER))} AND "timestamp" < ? ORDER BY day""",
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
    """Delete from `aqi_readings` every (day, period) before `today - hot_days` that is safely in Parquet."""
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
        # Exactly what was verified: periods already pruned have no hot rows (verification checked), and a
        # period with no rows has nothing to delete (it stays unpruned, so rows arriving later are exported).
        verified = {
            period: stats.rows
            for period, stats in verification.parquet.items()
            if period not in verification.pruned and stats.rows
        }
        try:
            deleted = _delete_verified(connection, day, verified)
        except _DeleteMismatch as error:
            report.skipped[day.isoformat()] = str(error)
            continue
        report.days_pruned.append(day)
        for period, rows in deleted.items():
            report.rows_deleted += rows
            report.rows_deleted_per_period[period] = report.rows_deleted_per_period.get(period, 0) + rows
    if report.days_pruned:
        connection.execute("CHECKPOINT")
    report.file_bytes_after = duckdb_file_bytes(connection)
    report.used_bytes_after = duckdb_used_bytes(connection)
    return report


def _delete_verified(connection: duckdb.DuckDBPyConnection, day: date, verified: dict[str, int]) -> dict[str, int]:
    """Delete each verified (day, period) and mark it pruned, in one transaction; a DELETE that removes another
    number of rows than was verified rolls the whole day back (`_DeleteMismatch`)."""
    start, end = day_bounds(day)
    deleted: dict[str, int] = {}
    with transaction(connection):
        for period, expected in verified.items():
            count = connection.execute(
                'DELETE FROM aqi_readings WHERE period = ? AND "timestamp" >= ? AND "timestamp" < ?',
                [period, start, end],
            ).fetchone()[0]
            if count != expected:  # something changed between verification and delete
                raise _DeleteMismatch(
                    f"{day}: would delete {count} '{period}' rows but {expected} were verified; the day stays hot"
                )
            connection.execute(
                "UPDATE parquet_tier_log SET pruned_at = ? WHERE day = ? AND period = ?", [naive_utc(), day, period]
            )
            deleted[period] = int(count)
    return deleted


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
    for period in snapshot_periods():
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
