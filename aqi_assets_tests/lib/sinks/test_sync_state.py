"""The sync scan is bounded by what can be pending, and gives exactly what a scan of the whole history would:
against a real DuckDB file (row groups and zone maps), and on random histories with late readings, records
without values, failed writes and chunked runs."""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from aqi_assets.bench.sync_common import insert_readings
from aqi_assets.lib.readings.schema import MEASUREMENT_COLUMNS, ensure_schema, readings_connection
from aqi_assets.lib.sinks.influx_writer import InfluxWriteError, InfluxWriter, sync_to_influxdb
from aqi_assets.lib.sinks.sync_state import (
    READING_COLUMNS,
    SyncSummary,
    count_pending,
    ensure_sync_tables,
    finished_below_seq,
    pending_readings,
    sync_in_chunks,
)

T0 = datetime(2026, 11, 1, 0, 0)
SENSORS_PER_MERGE = 1024
SMALL_ROW_GROUP = 2048  # rows per row group of the test file (DuckDB's default is 122,880)


def accept_all(body: str) -> None:
    """An InfluxDB that takes every line."""


def history_sql(first_seq: int, merges: int) -> str:
    """`merges` merges of SENSORS_PER_MERGE PM readings each, one minute apart, ingest_seq from `first_seq`."""
    return f"""
        INSERT INTO aqi_readings (period, sensor_id, "timestamp", pm25, pm10, snapshot, ingested_at, ingest_seq)
        SELECT '5min', i % {SENSORS_PER_MERGE}, TIMESTAMP '{T0}' + to_minutes(i // {SENSORS_PER_MERGE}),
               1 + i % 50, 2 + i % 70, 'merge-' || (i // {SENSORS_PER_MERGE}),
               TIMESTAMP '{T0}' + to_minutes(i // {SENSORS_PER_MERGE}), {first_seq} + i // {SENSORS_PER_MERGE}
        FROM range({merges * SENSORS_PER_MERGE}) t(i)"""


def scan_profile(connection: duckdb.DuckDBPyConnection, tmp_path: Path, query: Any) -> list[tuple[int, int]]:
    """Run `query(connection)` with DuckDB's profiler on; (row groups scanned, row groups) of each table scan."""
    output = tmp_path / "profile.txt"
    connection.execute("SET enable_profiling = 'query_tree'")
    connection.execute(f"SET profiling_output = '{output}'")
    try:
        query(connection)
    finally:
        connection.execute("RESET enable_profiling")
    return [(int(a), int(b)) for a, b in re.findall(r"Row Groups Scanned: (\d+) / (\d+)", output.read_text())]


def test_a_sync_scan_reads_only_the_row_groups_merged_since_the_last_sync(tmp_path: Path) -> None:
    with duckdb.connect() as instance:
        # Small row groups so that a history of a few thousand rows spans many of them.
        instance.execute(f"ATTACH '{tmp_path / 'aqi.duckdb'}' AS history (ROW_GROUP_SIZE {SMALL_ROW_GROUP})")

        @contextlib.contextmanager
        def open_connection() -> Iterator[duckdb.DuckDBPyConnection]:
            with instance.cursor() as connection:
                connection.execute("USE history")
                yield connection

        with open_connection() as connection:
            ensure_schema(connection)
            connection.execute(history_sql(first_seq=1, merges=16))
        # The real sync path synchronises the whole history once ...
        first = sync_in_chunks(
            lambda limit: sync_to_influxdb(open_connection, InfluxWriter(accept_all), limit=limit), 5000
        )
        assert first.accepted == 16 * SENSORS_PER_MERGE and first.failed == 0
        with open_connection() as connection:
            assert finished_below_seq(connection, "influxdb") == 17  # everything merged so far is finished
            # ... then one more merge arrives, with a late reading (an old timestamp, a new ingest_seq).
            connection.execute(
                history_sql(first_seq=17, merges=1).replace("TIMESTAMP", "INTERVAL 16 MINUTE + TIMESTAMP")
            )
            insert_readings(connection, [late_reading(sensor_id=5, timestamp=T0 - timedelta(days=3), seq=17)])
            connection.execute("CHECKPOINT")

            counted = scan_profile(connection, tmp_path, lambda c: count_pending(c, "influxdb"))
            loaded = scan_profile(connection, tmp_path, lambda c: pending_readings(c, "influxdb"))
            assert count_pending(connection, "influxdb") == SENSORS_PER_MERGE + 1
            readings = pending_readings(connection, "influxdb")
    assert len(readings) == SENSORS_PER_MERGE + 1
    assert {r["ingest_seq"] for r in readings} == {17}
    assert (5, T0 - timedelta(days=3)) in {(r["sensor_id"], r["timestamp"]) for r in readings}
    for profile in (counted, loaded):
        history_scan = max(profile, key=lambda groups: groups[1])  # the biggest table: aqi_readings
        assert history_scan[1] >= 9  # 17,409 rows in 2,048-row groups
        assert history_scan[0] == 1  # only the group holding the new merge is read


def late_reading(sensor_id: int, timestamp: datetime, seq: int | None, with_values: bool = True) -> dict[str, Any]:
    reading: dict[str, Any] = {column: None for column in READING_COLUMNS}
    reading.update(
        period="5min",
        sensor_id=sensor_id,
        timestamp=timestamp,
        latitude=50.0,
        longitude=8.0,
        altitude=120.0,
        snapshot=f"merge-{seq}",
        ingested_at=T0,
        ingest_seq=seq,
    )
    if with_values:
        reading["pm25"] = 7.5
    return reading


# ------------------------------------------------------------------------- random histories

FULL_SCAN_PENDING = f"""
    SELECT r.period, r.sensor_id, r."timestamp", coalesce(r.ingest_seq, 0) AS seq
    FROM aqi_readings r LEFT JOIN influxdb_sync_state s ON s.period = r.period AND s.sensor_id = r.sensor_id
    WHERE (s.synced_through IS NULL
           OR coalesce(r.ingest_seq, 0) > coalesce(s.synced_seq, 0)
           OR (coalesce(r.ingest_seq, 0) = coalesce(s.synced_seq, 0) AND r."timestamp" > s.synced_through))
      AND ({" OR ".join(f"r.{c} IS NOT NULL" for c in MEASUREMENT_COLUMNS)})
    ORDER BY seq, r."timestamp", r.period, r.sensor_id
"""


class FlakySink:
    """Accepts a line unless its sensor is failing this run; remembers every line it accepted, in order."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.accepted: list[str] = []

    def __call__(self, body: str) -> None:
        lines = body.split("\n")
        if any(_sensor_of(line) in self.failing for line in lines):
            raise InfluxWriteError(503, "service unavailable")
        self.accepted.extend(lines)


def _sensor_of(line: str) -> str:
    return re.search(r",sensor_id=(\d+)", line).group(1)  # type: ignore[union-attr]


def _key_of(line: str) -> tuple[str, int]:
    return _sensor_of(line), int(line.rsplit(" ", 1)[1])


def _merge(connection: duckdb.DuckDBPyConnection, rng: random.Random, seq: int | None, used: set[Any]) -> None:
    rows = []
    for _ in range(rng.randint(1, 12)):
        sensor = rng.randint(1, 6)
        # Mostly new minutes, sometimes an old one (a late reading or a replayed snapshot).
        minute = rng.randint(0, 40) if rng.random() < 0.3 else rng.randint(40, 400)
        key = (sensor, minute)
        if key in used:
            continue
        used.add(key)
        rows.append(late_reading(sensor, T0 + timedelta(minutes=minute), seq, with_values=rng.random() > 0.15))
    if rows:
        insert_readings(connection, rows)


@pytest.mark.parametrize("seed", range(12))
def test_the_bounded_scan_gives_what_a_full_scan_gives_on_random_histories(seed: int) -> None:
    rng = random.Random(seed)
    with duckdb.connect() as database:

        @contextlib.contextmanager
        def open_connection() -> Iterator[duckdb.DuckDBPyConnection]:
            with database.cursor() as cursor:  # the same in-memory database, as a connection of its own
                yield cursor

        with open_connection() as connection:
            ensure_schema(connection)
            ensure_sync_tables(connection, "influxdb")
        sink = FlakySink()
        used: set[Any] = set()
        finished: set[tuple[str, int]] = set()  # readings whose watermark has passed: never to be sent again
        if rng.random() < 0.5:
            with open_connection() as connection:
                _merge(connection, rng, None, used)  # rows from before ingest_seq existed
        for seq in range(1, 15):
            with open_connection() as connection:
                _merge(connection, rng, seq, used)
            sink.failing = {str(s) for s in range(1, 7) if rng.random() < 0.2}
            before = len(sink.accepted)
            writer = InfluxWriter(sink, batch_lines=1, max_workers=1)
            sync_to_influxdb(open_connection, writer, limit=rng.randint(1, 9))
            resent = [line for line in sink.accepted[before:] if _key_of(line) in finished]
            assert not resent, "a finished reading was sent again"

            with open_connection() as connection:
                expected = connection.execute(FULL_SCAN_PENDING).fetchall()
                got = pending_readings(connection, "influxdb")
            with open_connection() as connection:
                assert count_pending(connection, "influxdb") == len(expected)
            assert [(r["period"], r["sensor_id"], r["timestamp"], r["ingest_seq"]) for r in got] == expected
            pending_keys = {(str(p[1]), int((p[2] - datetime(1970, 1, 1)).total_seconds() * 1000)) for p in expected}
            finished |= {_key_of(line) for line in sink.accepted} - pending_keys

        sink.failing = set()
        sync_in_chunks(
            lambda limit: sync_to_influxdb(open_connection, InfluxWriter(sink, batch_lines=3), limit=limit), 4
        )
        with open_connection() as connection:
            assert count_pending(connection, "influxdb") == 0
        with open_connection() as connection:
            with_values = connection.execute(
                f"""SELECT sensor_id, epoch_ms("timestamp") FROM aqi_readings
                    WHERE {" OR ".join(f"{c} IS NOT NULL" for c in MEASUREMENT_COLUMNS)}"""
            ).fetchall()
    # Everything with a value was written, nothing without one.
    assert {_key_of(line) for line in sink.accepted} == {(str(s), t) for s, t in with_values}


# ------------------------------------------------------------------------- chunked runs


def test_sync_in_chunks_stops_at_the_first_chunk_with_a_failure() -> None:
    limits: list[int] = []
    outcomes = [SyncSummary(pending=10, sent=10, accepted=10), SyncSummary(pending=10, sent=10, accepted=7, failed=3)]

    def chunk(limit: int) -> SyncSummary:
        limits.append(limit)
        return outcomes[len(limits) - 1] if len(limits) <= len(outcomes) else SyncSummary(pending=10, accepted=10)

    total = sync_in_chunks(chunk, chunk_rows=10)
    assert limits == [10, 10]  # a third chunk would re-send the failed readings in a loop
    assert (total.pending, total.accepted, total.failed) == (20, 17, 3)


def test_sync_in_chunks_caps_a_run_at_max_rows_and_ends_when_nothing_is_left() -> None:
    limits: list[int] = []

    def chunk(limit: int) -> SyncSummary:
        limits.append(limit)
        return SyncSummary(pending=limit, sent=limit, accepted=limit)

    assert sync_in_chunks(chunk, chunk_rows=10, max_rows=25).pending == 25
    assert limits == [10, 10, 5]
    limits.clear()
    # A chunk that comes back short means the backlog is empty; records without values count as loaded.
    backlog = [SyncSummary(pending=6, without_values=4), SyncSummary(pending=3)]
    assert sync_in_chunks(lambda limit: backlog.pop(0), chunk_rows=10).pending == 9
    assert backlog == []


def test_the_pending_count_works_on_a_read_only_connection(tmp_path: Path) -> None:
    """Reading the scan start writes nothing, so a read-only look at the backlog (a shell, the UI) works."""
    db_path = tmp_path / "aqi.duckdb"
    with readings_connection(db_path) as connection:
        connection.execute(history_sql(first_seq=1, merges=2))
    # The first merge and one reading of the second.
    sync_to_influxdb(lambda: readings_connection(db_path), InfluxWriter(accept_all), limit=SENSORS_PER_MERGE + 1)
    with readings_connection(db_path, read_only=True) as connection:
        assert finished_below_seq(connection, "influxdb") == 2  # the first merge is finished
        assert count_pending(connection, "influxdb") == SENSORS_PER_MERGE - 1
        assert len(pending_readings(connection, "influxdb")) == SENSORS_PER_MERGE - 1
