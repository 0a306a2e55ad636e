"""Sync bookkeeping in DuckDB: per-(period, sensor) watermarks and the log of readings a sink refused.

The sinks are never queried to find what is new (a Timestream query costs at least 10 MB scanned): the
watermark of a sensor is the pair (ingest_seq, timestamp) of the last reading, in that order, that the sink
has accepted, or refused and that refusal is recorded here. Ordering by `ingest_seq` first (one increasing
number per merge into `aqi_readings`) means a reading merged later with an older timestamp (a replayed
snapshot, a sensor's skewed clock) is still above the watermark, so it is sent rather than skipped forever.
Rows from before `ingest_seq` existed count as merge 0. The watermark only moves forward, and only over a
contiguous run of finished readings, so a failed batch is re-sent next time (the sinks treat an identical
re-send as a no-op). Merges hold the DuckDB file exclusively (the `duckdb` pool, DuckDB's own file lock), so
merges commit in `ingest_seq` order and no smaller number can appear behind a watermark.

So that a sync costs what is new and not the size of the history, each target also keeps a scan start
(`sync_progress.finished_below_seq`): every reading with a smaller `ingest_seq` is finished. The pending
query reads only rows from there on, which DuckDB finds by the zone maps of `ingest_seq` (rows are appended
in merge order) without touching older row groups. A run moves it up to its first unfinished reading, or
past everything it loaded when it saw every pending row. Deleting a target's watermarks to re-send
everything means deleting its `sync_progress` row too.

A record with no measurement (only its location, or every value quarantined) is not a reading: the sinks
never send it, and it is passed over (watermark and scan start move past it) as if it had been sent.

Only rows of the periods registered with `Feed.SINKS` are scanned (read from the registry at each scan), and
only the columns the contract gives a sink role (`lib.sinks.columns`). The scan start passes the rows of other
periods too: a period that starts feeding the sinks after rows of it were merged reaches them from its next
merge on, unless the targets' `sync_progress` rows are deleted (which re-scans everything, as above).

All SQL takes values as parameters or from a registered Arrow table; table names come from a fixed map.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from aqi_assets.lib.common.duckdb_conn import transaction
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.periods import Feed, period_names, sql_list
from aqi_assets.lib.readings.schema import MEASUREMENT_COLUMNS
from aqi_assets.lib.sinks.columns import SINK_COLUMNS, SinkColumns, sink_columns

# Sync target -> (watermark table, refusal log). Only these names ever reach SQL text.
SYNC_TABLES: dict[str, tuple[str, str]] = {
    "timestream": ("timestream_sync_state", "timestream_rejected"),
    "influxdb": ("influxdb_sync_state", "influxdb_rejected"),
}

# Columns of `aqi_readings` the sinks carry: those with a sink role in the contract (`other_values` has none:
# free-form keys stay in DuckDB). As imported, for readers and tests; a scan reads `sink_columns()` when it runs.
READING_COLUMNS: tuple[str, ...] = SINK_COLUMNS.carried

ReadingKey = tuple[str, int, datetime]
# Where a reading sits in its sensor's sync order: (period, sensor_id, ingest_seq, timestamp).
OrderKey = tuple[str, int, int, datetime]
# A sensor's watermark: (ingest_seq, timestamp) of the last finished reading, compared as a pair.
Watermark = tuple[int, datetime]
# Opens a short-lived DuckDB connection (a context manager): the sinks never hold one across network I/O.
ConnectionFactory = Callable[[], AbstractContextManager[Any]]

# Per-record outcome of a write: ACCEPTED, REJECTED (the sink refused it; not retryable as is: recorded,
# and the watermark may pass it) or FAILED (not known to be written: re-sent by the next run).
ACCEPTED = "accepted"
REJECTED = "rejected"
FAILED = "failed"


@dataclass(frozen=True)
class RecordOutcome:
    status: str
    reason: str | None = None
    existing_version: int | None = None


@dataclass
class WriteReport:
    outcomes: list[RecordOutcome]
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def _state_ddl(table: str) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS {table} (
        period VARCHAR NOT NULL,
        sensor_id BIGINT NOT NULL,
        synced_seq BIGINT,
        synced_through TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (period, sensor_id)
    )"""


def _rejected_ddl(table: str) -> str:
    # One row per reading (re-running after a crash refuses the same reading again: upsert, not append).
    return f"""
    CREATE TABLE IF NOT EXISTS {table} (
        period VARCHAR NOT NULL,
        sensor_id BIGINT NOT NULL,
        "timestamp" TIMESTAMP NOT NULL,
        kind VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        existing_version BIGINT,
        version BIGINT,
        recorded_at TIMESTAMP NOT NULL,
        PRIMARY KEY (period, sensor_id, "timestamp")
    )"""


def _tables(target: str) -> tuple[str, str]:
    try:
        return SYNC_TABLES[target]
    except KeyError:
        raise ValueError(f"unknown sync target {target!r}; expected one of {sorted(SYNC_TABLES)}") from None


def ensure_sync_tables(connection: duckdb.DuckDBPyConnection, target: str) -> None:
    state_table, rejected_table = _tables(target)
    connection.execute(_state_ddl(state_table))
    # Files written before the watermark followed ingest order: their NULL synced_seq reads as merge 0.
    connection.execute(f"ALTER TABLE {state_table} ADD COLUMN IF NOT EXISTS synced_seq BIGINT")
    connection.execute(_rejected_ddl(rejected_table))
    connection.execute(_PROGRESS_DDL)


# Where each target's scan starts: every reading with a smaller `ingest_seq` is finished for that target
# (at or below its sensor's watermark, or a record without values). `aqi_readings` only grows by appends in
# `ingest_seq` order, so a scan from there lets DuckDB skip every older row group by its zone maps, and a sync
# costs what is new rather than the whole history.
PROGRESS_TABLE = "sync_progress"
_PROGRESS_DDL = f"""
    CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (
        target VARCHAR PRIMARY KEY,
        finished_below_seq BIGINT NOT NULL,
        updated_at TIMESTAMP NOT NULL
    )"""

# A reading is pending when its (ingest_seq, timestamp) is above its sensor's watermark (or it has none).
_PENDING_CONDITION = """s.synced_through IS NULL
    OR coalesce(r.ingest_seq, 0) > coalesce(s.synced_seq, 0)
    OR (coalesce(r.ingest_seq, 0) = coalesce(s.synced_seq, 0) AND r."timestamp" > s.synced_through)"""

# A record with no measurement (only its location, or every value quarantined) is not a reading: never sent.
HAS_MEASUREMENT = "(" + " OR ".join(f"r.{c} IS NOT NULL" for c in MEASUREMENT_COLUMNS) + ")"


# The watermarks of a target never synced (no state table yet, e.g. a read-only look): none, so every reading
# is pending. Same columns as the state table, so the pending query keeps one shape.
_NO_WATERMARKS = (
    "(SELECT NULL::VARCHAR AS period, NULL::BIGINT AS sensor_id, NULL::BIGINT AS synced_seq, "
    "NULL::TIMESTAMP AS synced_through WHERE false)"
)


def _table_exists(connection: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        connection.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = current_schema() AND table_name = ?",
            [table],
        ).fetchall()[0][0]  # fetchall: DuckDB keeps a result open after fetchone, blocking the next `sql()`
    )


def finished_below_seq(connection: duckdb.DuckDBPyConnection, target: str) -> int:
    """The `ingest_seq` below which every reading is finished for `target` (0: scan everything). Reads only,
    so it also works on a read-only connection (no table yet: nothing is known to be finished)."""
    _tables(target)
    if not _table_exists(connection, PROGRESS_TABLE):
        return 0
    rows = connection.execute(f"SELECT finished_below_seq FROM {PROGRESS_TABLE} WHERE target = ?", [target]).fetchall()
    return int(rows[0][0]) if rows else 0


def _sink_periods_condition(alias: str = "r") -> str:
    """`alias.period IN (...)`: the periods registered with `Feed.SINKS`, read from the registry now."""
    return f"{alias}.period IN {sql_list(period_names(Feed.SINKS))}"


def _candidates(floor: int, since: datetime | None = None, until: datetime | None = None) -> tuple[str, list[Any]]:
    """The rows that can be pending, and the query parameters: rows of the periods the sinks take, from the
    scan start on (a table filter, so DuckDB skips the row groups whose zone map lies below it) plus rows
    without an `ingest_seq` (written before the column existed, or by hand: never covered by the scan start),
    within [since, until) of `timestamp` when given. `floor` is an int, so the literal is safe."""
    conditions = [_sink_periods_condition("aqi_readings")]
    params: list[Any] = []
    if floor > 0:
        conditions.append(f"(ingest_seq >= {int(floor)} OR ingest_seq IS NULL)")
    if since is not None:
        conditions.append('"timestamp" >= ?')
        params.append(since)
    if until is not None:
        conditions.append('"timestamp" < ?')
        params.append(until)
    return f"(SELECT * FROM aqi_readings WHERE {' AND '.join(conditions)})", params


def _pending_sql(
    connection: duckdb.DuckDBPyConnection,
    target: str,
    columns: str,
    only_readings: bool,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[str, list[Any]]:
    state_table, _ = _tables(target)
    watermarks = state_table if _table_exists(connection, state_table) else _NO_WATERMARKS
    candidates, params = _candidates(finished_below_seq(connection, target), since, until)
    condition = f"({_PENDING_CONDITION})" + (f" AND {HAS_MEASUREMENT}" if only_readings else "")
    sql = f"""
        SELECT {columns}
        FROM {candidates} r
        LEFT JOIN {watermarks} s ON s.period = r.period AND s.sensor_id = r.sensor_id
        WHERE {condition}"""
    return sql, params


def pending_readings(
    connection: duckdb.DuckDBPyConnection, target: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """Readings above their sensor's watermark that carry at least one measurement, in (ingest_seq,
    timestamp) order, so a `limit` keeps for every sensor a prefix of its pending readings in the order its
    watermark follows. Each row carries `ingest_seq` (0 for rows merged before the column existed) besides
    the carried columns (`sink_columns().carried`)."""
    return scan_pending(connection, target, limit).to_pylist()


def scan_pending(connection: duckdb.DuckDBPyConnection, target: str, limit: int | None = None) -> pa.Table:
    """The scan behind `pending_readings`, as an Arrow table: what reading the history costs, before the
    rows become the Python records the writers build requests from (a cost of the chunk, not the history)."""
    return _pending_rows(connection, target, limit, only_readings=True, columns=sink_columns())


def _pending_rows(
    connection: duckdb.DuckDBPyConnection,
    target: str,
    limit: int | None,
    only_readings: bool,
    columns: SinkColumns,
) -> pa.Table:
    selected = ", ".join(f'r."{c}"' for c in columns.carried)
    selected += ", coalesce(r.ingest_seq, 0) AS ingest_seq"
    if not only_readings:
        selected += f", {HAS_MEASUREMENT} AS has_measurement"
    sql, params = _pending_sql(connection, target, selected, only_readings)
    sql += ' ORDER BY coalesce(r.ingest_seq, 0), r."timestamp", r.period, r.sensor_id'
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    # Arrow straight from DuckDB's vectors (a relation, not a DB-API cursor: no extra copy of the rows).
    return connection.sql(sql, params=params).to_arrow_table()


def count_pending(
    connection: duckdb.DuckDBPyConnection,
    target: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """How many readings (records with at least one measurement) `target` has not finished; with `since` /
    `until`, only those whose `timestamp` lies in [since, until) (retention asks day by day, by this rule).
    Reads only: works on a read-only connection, and before the first sync (every reading is pending)."""
    sql, params = _pending_sql(connection, target, "count(*)", True, since, until)
    row = connection.execute(sql, params).fetchall()
    return int(row[0][0]) if row else 0


@dataclass
class PendingBatch:
    """One load of pending rows: `readings` to send, `without_values` (the order keys of records with no
    measurement: finished without being sent), and `complete_below_seq`: every pending row with a smaller
    `ingest_seq` is in this batch (so once they are finished, the target's scan may start there)."""

    readings: list[dict[str, Any]]
    without_values: list[OrderKey]
    complete_below_seq: int


def _max_seq_from(connection: duckdb.DuckDBPyConnection, floor: int) -> int | None:
    candidates, params = _candidates(floor)
    row = connection.execute(f"SELECT max(coalesce(ingest_seq, 0)) FROM {candidates}", params).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def reading_key(reading: dict[str, Any]) -> ReadingKey:
    return (reading["period"], int(reading["sensor_id"]), reading["timestamp"])


def order_key(reading: dict[str, Any]) -> OrderKey:
    return (reading["period"], int(reading["sensor_id"]), int(reading.get("ingest_seq") or 0), reading["timestamp"])


def advance_watermarks(keys: Sequence[OrderKey], finished: Sequence[bool]) -> dict[tuple[str, int], Watermark]:
    """New watermark per (period, sensor): the last finished (ingest_seq, timestamp) before every unfinished one.

    `finished[i]` says whether reading `keys[i]` was accepted, or refused and recorded. Readings after an
    unfinished one of the same sensor (in (ingest_seq, timestamp) order) stay pending even when they were
    accepted: they are re-sent (an identical re-send is a no-op in both sinks) rather than skipped forever.
    """
    if len(keys) != len(finished):
        raise ValueError("keys and finished differ in length")
    first_unfinished: dict[tuple[str, int], Watermark] = {}
    for (period, sensor_id, seq, ts), done in zip(keys, finished, strict=True):
        if not done:
            sensor = (period, sensor_id)
            if sensor not in first_unfinished or (seq, ts) < first_unfinished[sensor]:
                first_unfinished[sensor] = (seq, ts)
    marks: dict[tuple[str, int], Watermark] = {}
    for (period, sensor_id, seq, ts), done in zip(keys, finished, strict=True):
        sensor = (period, sensor_id)
        if not done or (sensor in first_unfinished and (seq, ts) >= first_unfinished[sensor]):
            continue
        if sensor not in marks or (seq, ts) > marks[sensor]:
            marks[sensor] = (seq, ts)
    return marks


@contextlib.contextmanager
def _registered(connection: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> Iterator[None]:
    """Arrow tables visible to SQL by name for the block."""
    for name, table in tables.items():
        connection.register(name, table)
    try:
        yield
    finally:
        for name in tables:
            connection.unregister(name)


@dataclass(frozen=True)
class RefusedReading:
    """A reading the sink refused (`kind="rejected"`) or that was never sent (`kind="skipped"`)."""

    key: ReadingKey
    kind: str
    reason: str
    existing_version: int | None = None
    version: int | None = None


def save_sync_outcome(
    connection: duckdb.DuckDBPyConnection,
    target: str,
    watermarks: dict[tuple[str, int], Watermark],
    refused: Iterable[RefusedReading],
    now: datetime | None = None,
    finished_below: int | None = None,
) -> None:
    """Record refusals, advance watermarks and the target's scan start (`finished_below`: every reading with
    a smaller `ingest_seq` is now finished) in one transaction (all or nothing survives a crash)."""
    state_table, rejected_table = _tables(target)
    now = now or naive_utc()
    refused = list(refused)
    batches: dict[str, pa.Table] = {}
    if refused:
        batches["refused_batch"] = pa.table(
            {
                "period": pa.array([r.key[0] for r in refused], pa.string()),
                "sensor_id": pa.array([r.key[1] for r in refused], pa.int64()),
                "timestamp": pa.array([r.key[2] for r in refused], pa.timestamp("us")),
                "kind": pa.array([r.kind for r in refused], pa.string()),
                "reason": pa.array([r.reason for r in refused], pa.string()),
                "existing_version": pa.array([r.existing_version for r in refused], pa.int64()),
                "version": pa.array([r.version for r in refused], pa.int64()),
            }
        )
    if watermarks:
        sensors = list(watermarks)
        batches["watermark_batch"] = pa.table(
            {
                "period": pa.array([s[0] for s in sensors], pa.string()),
                "sensor_id": pa.array([s[1] for s in sensors], pa.int64()),
                "synced_seq": pa.array([watermarks[s][0] for s in sensors], pa.int64()),
                "synced_through": pa.array([watermarks[s][1] for s in sensors], pa.timestamp("us")),
            }
        )
    ensure_sync_tables(connection, target)
    # The transaction ends (committed or rolled back) before the batches are unregistered: an aborted
    # transaction refuses even an unregister, whose error would hide the first one.
    with _registered(connection, batches), transaction(connection):
        if refused:
            connection.execute(
                f"""INSERT INTO {rejected_table}
                    SELECT period, sensor_id, "timestamp", kind, reason, existing_version, version, ?
                    FROM refused_batch
                    ON CONFLICT (period, sensor_id, "timestamp") DO UPDATE SET
                        kind = excluded.kind, reason = excluded.reason,
                        existing_version = excluded.existing_version, version = excluded.version,
                        recorded_at = excluded.recorded_at""",
                [now],
            )
        if watermarks:
            # The stored pair is replaced only by a greater one: a watermark never moves backwards,
            # whatever order runs finish in.
            later = f"""(excluded.synced_seq > coalesce({state_table}.synced_seq, 0)
                OR (excluded.synced_seq = coalesce({state_table}.synced_seq, 0)
                    AND excluded.synced_through > {state_table}.synced_through))"""
            connection.execute(
                f"""INSERT INTO {state_table} (period, sensor_id, synced_seq, synced_through, updated_at)
                    SELECT period, sensor_id, synced_seq, synced_through, ? FROM watermark_batch
                    ON CONFLICT (period, sensor_id) DO UPDATE SET
                        synced_seq = CASE WHEN {later} THEN excluded.synced_seq
                                          ELSE {state_table}.synced_seq END,
                        synced_through = CASE WHEN {later} THEN excluded.synced_through
                                              ELSE {state_table}.synced_through END,
                        updated_at = excluded.updated_at""",
                [now],
            )
        if finished_below is not None and finished_below > 0:
            # Forward only, like the watermarks: each run's claim holds when it commits.
            connection.execute(
                f"""INSERT INTO {PROGRESS_TABLE} (target, finished_below_seq, updated_at) VALUES (?, ?, ?)
                    ON CONFLICT (target) DO UPDATE SET
                        finished_below_seq = greatest({PROGRESS_TABLE}.finished_below_seq,
                                                      excluded.finished_below_seq),
                        updated_at = excluded.updated_at""",
                [target, int(finished_below), now],
            )


@dataclass
class SyncSummary:
    """What one sync run did; `as_metadata()` is what the asset reports (no endpoints' secrets in it)."""

    pending: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    sensors_advanced: int = 0
    without_values: int = 0  # records with no measurement: not readings, passed over without being sent
    errors: list[str] = field(default_factory=list)

    @property
    def records_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_metadata(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "records_sent": self.sent,
            "records_accepted": self.accepted,
            "records_rejected": self.rejected,
            "records_skipped": self.skipped,
            "records_failed": self.failed,
            "requests": self.requests,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "records_per_s": round(self.records_per_s, 1),
            "sensors_advanced": self.sensors_advanced,
            "records_without_values": self.without_values,
        }


def load_pending_batch(
    open_connection: ConnectionFactory,
    target: str,
    limit: int | None = None,
    columns: SinkColumns | None = None,
) -> PendingBatch:
    """The rows `target` has not finished yet (up to `limit`, in sync order), read in one snapshot through a
    connection closed before any write starts; records without a measurement are set apart. `columns`: what
    to read of each row, `sink_columns()` unless the caller already holds them."""
    columns = columns or sink_columns()
    with open_connection() as connection:
        ensure_sync_tables(connection, target)
        with transaction(connection):  # the newest ingest_seq and the rows from one snapshot
            floor = finished_below_seq(connection, target)
            newest = _max_seq_from(connection, floor)
            rows = _pending_rows(connection, target, limit, only_readings=False, columns=columns).to_pylist()
    if limit is not None and len(rows) >= limit:
        # Full: rows after the last one may share its ingest_seq, so only the smaller ones are all here.
        complete_below = int(rows[-1]["ingest_seq"])
    else:
        complete_below = floor if newest is None else max(floor, newest + 1)
    readings: list[dict[str, Any]] = []
    without_values: list[OrderKey] = []
    for row in rows:
        if row.pop("has_measurement"):
            readings.append(row)
        else:
            without_values.append(order_key(row))
    return PendingBatch(readings, without_values, complete_below)


def load_pending(open_connection: ConnectionFactory, target: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The readings `target` has not finished yet, read through a connection closed before any write starts."""
    return load_pending_batch(open_connection, target, limit).readings


def finish_sync(
    open_connection: ConnectionFactory,
    target: str,
    batch: PendingBatch,
    skipped: Sequence[RefusedReading],
    sent_positions: Sequence[int],
    report: WriteReport,
    sent_versions: Sequence[int | None] | None = None,
) -> SyncSummary:
    """Close a sync run: `batch.readings[sent_positions[i]]` was sent and got `report.outcomes[i]`; every
    other reading was never sent and is in `skipped`. Accepted and refused readings, and the records without
    values, are finished; refusals are recorded (with `sent_versions[i]`, the record version sent, where the
    sink has one), watermarks advance over finished readings only, and the target's scan start moves up to
    the first unfinished reading, all saved in one transaction."""
    readings = batch.readings
    if len(skipped) + len(sent_positions) != len(readings):
        raise ValueError("every reading must be either sent or skipped")
    keys = [reading_key(r) for r in readings]
    finished = [True] * len(readings)  # the skipped ones are refused and recorded
    for position in sent_positions:
        finished[position] = False
    refused = list(skipped)
    for index, (position, outcome) in enumerate(zip(sent_positions, report.outcomes, strict=True)):
        if outcome.status == ACCEPTED:
            finished[position] = True
        elif outcome.status == REJECTED:
            version = sent_versions[index] if sent_versions is not None else None
            refused.append(
                RefusedReading(
                    keys[position], "rejected", outcome.reason or "rejected", outcome.existing_version, version
                )
            )
            finished[position] = True
    order_keys = [order_key(r) for r in readings]
    watermarks = advance_watermarks(order_keys + batch.without_values, finished + [True] * len(batch.without_values))
    unfinished_seqs = [key[2] for key, done in zip(order_keys, finished, strict=True) if not done]
    finished_below = min([batch.complete_below_seq, *unfinished_seqs])
    with open_connection() as connection:
        save_sync_outcome(connection, target, watermarks, refused, finished_below=finished_below)
    return SyncSummary(
        pending=len(readings),
        without_values=len(batch.without_values),
        sent=len(sent_positions),
        accepted=report.count(ACCEPTED),
        rejected=report.count(REJECTED),
        skipped=len(skipped),
        failed=report.count(FAILED),
        requests=report.requests,
        retries=report.retries,
        seconds=report.seconds,
        sensors_advanced=len(watermarks),
        errors=report.errors,
    )


_SUMMED_COUNTS = (
    "pending",
    "sent",
    "accepted",
    "rejected",
    "skipped",
    "failed",
    "requests",
    "retries",
    "without_values",
)


def sync_in_chunks(sync_chunk: Callable[[int], SyncSummary], chunk_rows: int, max_rows: int = 0) -> SyncSummary:
    """Run `sync_chunk(limit)` until nothing is pending, so memory stays bounded by `chunk_rows` however
    long the backlog. Stops early on any failed record (those stay pending; looping would resend them)
    or once `max_rows` (0 = no cap) readings were handled."""
    total = SyncSummary()
    while True:
        limit = chunk_rows if not max_rows else min(chunk_rows, max_rows - total.pending - total.without_values)
        if limit <= 0:
            return total
        part = sync_chunk(limit)
        for name in _SUMMED_COUNTS:
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.seconds += part.seconds
        total.sensors_advanced += part.sensors_advanced
        total.errors.extend(part.errors[: max(0, 20 - len(total.errors))])
        if part.failed or part.pending + part.without_values < limit:
            return total
