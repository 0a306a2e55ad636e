"""Faults around the core history: a process killed mid-merge, a DuckDB file held by another process,
a 200 MB body, and a soak of many overlapping snapshots."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import pytest

from aqi_assets.defs.air_quality.assets import ingest_assets
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.lib.air_quality.generator import generate_records, generate_snapshot
from aqi_assets.lib.air_quality.normalise import merge_snapshot
from aqi_assets.lib.common.duckdb_conn import DuckDBLockTimeout, open_duckdb
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.http import snapshot_source

NOW = datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc)

KILL_DURING_MERGE = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime, timezone
    from pathlib import Path
    import duckdb
    from aqi_assets.lib.air_quality import normalise
    from aqi_assets.lib.readings.schema import readings_connection

    class DieBeforeCommit:
        # Forwards to the real connection, but is killed after the readings are inserted, before COMMIT.
        def __init__(self, connection):
            self._connection = connection
        def execute(self, sql, *args):
            if sql.strip() == "COMMIT":
                os.kill(os.getpid(), signal.SIGKILL)
            return self._connection.execute(sql, *args)
        def __getattr__(self, name):
            return getattr(self._connection, name)

    database, snapshot = sys.argv[1], Path(sys.argv[2])
    with readings_connection(database) as connection:
        normalise.merge_snapshot(DieBeforeCommit(connection), snapshot, "5min",
                                 now=datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc))
    """
)


def test_sigkill_in_the_middle_of_the_merge_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    snapshot = tmp_path / "s.json.gz"
    snapshot.write_bytes(gzip.compress(generate_snapshot(5000, seed=8)))
    database = tmp_path / "h.duckdb"
    with readings_connection(database) as connection:  # a history that already holds another snapshot
        merge_snapshot(connection, _write(tmp_path / "old.json.gz", generate_snapshot(300, seed=1)), "5min", now=NOW)
        before = connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0]
    child = subprocess.run([sys.executable, "-c", KILL_DURING_MERGE, str(database), str(snapshot)], check=False)
    assert child.returncode == -9  # really killed, mid-transaction
    with readings_connection(database) as connection:
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0] == before
        assert connection.execute("SELECT count(*) FROM snapshot_log").fetchone()[0] == 1
        stats = merge_snapshot(connection, snapshot, "5min", now=NOW)  # the re-run
        assert stats.rows_inserted == stats.readings > 4000
        total, distinct = connection.execute(
            'SELECT count(*), count(DISTINCT (period, sensor_id, "timestamp")) FROM aqi_readings'
        ).fetchone()
        assert total == distinct == before + stats.readings
        rejected = connection.execute("SELECT count(*) FROM rejected_values WHERE snapshot = 's.json.gz'").fetchone()
        assert rejected[0] == stats.values_rejected


def _write(path: Path, body: bytes) -> Path:
    path.write_bytes(gzip.compress(body))
    return path


HOLD_THE_FILE = textwrap.dedent(
    """
    import sys, time, duckdb
    connection = duckdb.connect(sys.argv[1])
    connection.execute("CREATE TABLE IF NOT EXISTS held (x INT)")
    print("holding", flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def lock_holder(tmp_path: Path):
    database = tmp_path / "held.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_FILE, str(database)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield database, holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_held_duckdb_file_makes_the_open_wait_then_fail_naming_the_holder(lock_holder) -> None:
    database, pid = lock_holder
    started = time.monotonic()
    with pytest.raises(DuckDBLockTimeout, match=rf"still locked after 1 s.*PID {pid}"):
        open_duckdb(database, lock_timeout_s=1.0)
    assert 1.0 <= time.monotonic() - started < 10


def test_a_run_against_a_held_file_fails_clearly_and_the_file_stays_intact(
    lock_holder, tmp_path: Path, real_snapshot_body: bytes
) -> None:
    database, pid = lock_holder
    source = tmp_path / "data.json"
    source.write_bytes(real_snapshot_body)
    storage = AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(database), lock_timeout_s=1.5)
    result = dg.materialize(
        ingest_assets, selection=["raw_snapshot_5min", "aqi_readings"],
        resources={"storage": storage, "snapshots": snapshot_source(source.as_uri())}, raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "aqi_readings"
    assert f"PID {pid}" in str(failure.step_failure_data.error)
    # The raw snapshot was kept; once the holder is gone the same raw file is merged.
    os.kill(pid, 9)
    psutil.Process(pid).wait(10) if psutil.pid_exists(pid) else None
    retry = dg.materialize(ingest_assets, selection=["aqi_readings"],
                           resources={"storage": storage, "snapshots": snapshot_source(source.as_uri())})
    assert retry.success
    with duckdb.connect(str(database), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM held").fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchone() == (243,)


BIG_BODY_FETCH = textwrap.dedent(
    """
    import json, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path
    from aqi_assets.lib.common.fetch import build_session, download
    from aqi_assets.lib.air_quality.lake import snapshot_name

    TARGET = int(sys.argv[2])

    def peak_rss_mb():
        # VmHWM, not ru_maxrss: a child's ru_maxrss also counts its parent's RSS (kept across fork/exec).
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM:"))
    record = json.dumps({"id": 1, "timestamp": "2026-11-27 12:00:00", "sensor": {"id": 7},
                         "sensordatavalues": [{"value": "12.30", "value_type": "P2"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            count = TARGET // (len(record) + 1)
            self.send_response(200)
            self.send_header("Content-Length", str(count * (len(record) + 1) + 1))
            self.end_headers()
            self.wfile.write(b"[")
            chunk = (record + b",") * 1000
            for _ in range(count // 1000):
                self.wfile.write(chunk)
            self.wfile.write((record + b",") * (count % 1000 - 1) + record + b"]")
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = peak_rss_mb()
    result = download(f"http://127.0.0.1:{server.server_port}/big.json", Path(sys.argv[1]),
                      lambda sha, at: snapshot_name("5min", sha, at), session=build_session(retries=0))
    after = peak_rss_mb()
    server.shutdown()
    print(result.body_bytes, after - before, TARGET // (len(record) + 1))
    """
)


def test_a_200_mb_body_is_streamed_to_disk_in_bounded_memory(tmp_path: Path) -> None:
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak RSS is read from /proc/self/status (Linux only)")
    size = 200 * 1024 * 1024
    out = subprocess.run(
        [sys.executable, "-c", BIG_BODY_FETCH, str(tmp_path), str(size)], capture_output=True, text=True, check=True
    )
    body_bytes, extra_peak_mb, records_sent = map(int, out.stdout.split())
    assert body_bytes > 0.99 * size
    assert extra_peak_mb < 64, f"fetching {body_bytes} bytes raised peak RSS by {extra_peak_mb} MB"
    stored = next(tmp_path.glob("*.json.gz"))
    with duckdb.connect() as connection:  # the stored file is the whole, valid body
        assert connection.execute(
            "SELECT count(*) FROM read_json_objects(?, format = 'array')", [str(stored)]
        ).fetchone()[0] == records_sent


SOAK_SNAPSHOTS = int(os.environ.get("AQI_SOAK_SNAPSHOTS", "24"))


@pytest.mark.soak
def test_soak_many_overlapping_snapshots(tmp_path: Path, record_property) -> None:
    """AQI_SOAK_SNAPSHOTS consecutive 20,000-record snapshots; each two share their readings (overlap)."""
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=SOAK_SNAPSHOTS)
    # Blocks are 5 minutes apart and a block's timestamps span 290 s, so blocks share no reading: the
    # distinct readings are the sum of each block's (no global set, whose memory would cloud the figure).
    expected_readings = 0
    database = tmp_path / "soak.duckdb"
    process = psutil.Process()
    rss_mb, size_mb = [], []
    blocks: dict[int, Path] = {}
    for index in range(SOAK_SNAPSHOTS):
        block = index // 2  # consecutive snapshots overlap completely, as data.json does minute to minute
        if block not in blocks:
            records = generate_records(20_000, seed=block, at=base + timedelta(minutes=5 * block))
            expected_readings += len({(r["sensor"]["id"], r["timestamp"]) for r in records})
            blocks = {block: _write(tmp_path / f"block-{block}.json.gz", _json(records))}
        with readings_connection(database) as connection:
            stats = merge_snapshot(connection, blocks[block], "5min", snapshot=f"snapshot-{index:04d}")
        if index % 2 == 0:  # a record without a valid value is no reading (counted by the merge instead)
            expected_readings -= stats.records_without_values
        rss_mb.append(process.memory_info().rss / 2**20)
        size_mb.append(database.stat().st_size / 2**20)
    with duckdb.connect(str(database), read_only=True) as connection:
        total = connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0]
    assert total == expected_readings
    quarter = max(1, SOAK_SNAPSHOTS // 4)
    first_rss, last_rss = max(rss_mb[:quarter]), max(rss_mb[-quarter:])
    record_property("soak_snapshots", SOAK_SNAPSHOTS)
    record_property("soak_rss_mb_first_last", (round(first_rss), round(last_rss)))
    record_property("soak_duckdb_mb", round(size_mb[-1], 1))
    print(f"soak: {SOAK_SNAPSHOTS} snapshots, {total} readings, RSS {first_rss:.0f} → {last_rss:.0f} MB, "
          f"DuckDB {size_mb[-1]:.1f} MB ({size_mb[-1] * 2**20 / total:.0f} bytes/reading)")
    assert last_rss < first_rss + 300, "process memory keeps growing with the number of snapshots"
    assert size_mb[-1] * 2**20 / total < 600, "the DuckDB file grows faster than the readings it holds"


def _json(records: list[dict]) -> bytes:
    import json

    return json.dumps(records).encode()
