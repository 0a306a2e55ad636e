"""Overlapping runs on a real Dagster instance never fail on the DuckDB lock.

Three runs start at once in three processes, as `dagster dev` would launch them (each run its own process,
`execute_job` on a reconstructable job): two back-to-back 5-minute ingests (a sensor firing twice) and a
24-hour ingest (a manual materialisation while the sensor's runs are in flight). They share a temporary
`DAGSTER_HOME` whose `dagster.yaml` is the project's own, so the `duckdb` pool (limit 1) is what keeps their
DuckDB steps apart. The local HTTP server holds every fetch until all three arrived, so the DuckDB steps
really do compete. Each worker records when it held the DuckDB file (from connect to close), so the test
sees the runs take turns on the file while they overlap in time.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aqi_assets.lib.air_quality.generator import Quirks, generate_snapshot
from aqi_assets_tests.support.http import local_http_server
from aqi_assets_tests.support.samples import PROJECT_ROOT

PROJECT_DAGSTER_YAML = PROJECT_ROOT / ".dagster" / "dagster.yaml"
RUNS = ("ingest_5min_job", "ingest_5min_job", "ingest_24h_job")
RECORDS = {"5min": 4000, "24h": 3000}
RUN_TIMEOUT_S = 240
TEST_TAG = {"aqi/test": "overlapping-runs"}

# Runs in each worker process: the same path a launched run takes (execute_job on a reconstructable job).
WORKER = """
import contextlib
import os
import sys
import time

import dagster as dg
from aqi_assets.lib.common import duckdb_conn

# Record each hold of the DuckDB file: from after the connect to before the close, so a recorded hold lies
# inside the real one (patched before the project is imported, so every `duckdb_connection` is this one).
opened_connection = duckdb_conn.duckdb_connection


@contextlib.contextmanager
def recorded_connection(path, **options):
    with opened_connection(path, **options) as connection:
        opened = time.time()
        try:
            yield connection
        finally:
            with open(os.environ["AQI_TEST_DUCKDB_HOLDS"], "a") as holds:
                holds.write(f"{os.getpid()} {opened!r} {time.time()!r} {bool(options.get('read_only'))}\\n")


duckdb_conn.duckdb_connection = recorded_connection

job = dg.build_reconstructable_job(
    "aqi_assets_tests.defs.ops.test_concurrency", "job_by_name", reconstructable_args=(sys.argv[1],)
)
with dg.DagsterInstance.get() as instance:
    with dg.execute_job(job, instance=instance, tags={"aqi/test": "overlapping-runs"}) as result:
        print("RUN", result.run_id, result.success, flush=True)
        sys.exit(0 if result.success else 1)
"""


def job_by_name(name: str) -> dg.JobDefinition:
    """Reconstructor used by the worker processes: the job as the code location defines it."""
    from aqi_assets.definitions import defs

    return defs().resolve_job_def(name)


@pytest.fixture()
def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    assert PROJECT_DAGSTER_YAML.is_file(), f"the project's instance config is missing: {PROJECT_DAGSTER_YAML}"
    shutil.copy(PROJECT_DAGSTER_YAML, home / "dagster.yaml")
    # Create the instance's storage once, as `dagster dev` does before it launches anything: processes that
    # all start on an empty DAGSTER_HOME race each other through the SQLite schema migrations.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    return home


@pytest.fixture()
def snapshot_server() -> Iterator[HTTPServer]:
    with local_http_server() as server:
        yield server


def serve_snapshots(server: HTTPServer, fetches: int) -> dict[str, bytes]:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
    bodies = {
        "5min": generate_snapshot(RECORDS["5min"], seed=5, at=at, quirks=Quirks.clean()),
        "24h": generate_snapshot(RECORDS["24h"], seed=24, at=at, quirks=Quirks.clean(), first_sensor_id=90_000),
    }
    everyone_fetching = threading.Barrier(fetches, timeout=30)

    def answer(period: str):
        def handler(request: Request) -> Response:
            # Release all fetches together, so the DuckDB steps collide; a late fetch is served anyway.
            with contextlib.suppress(threading.BrokenBarrierError):
                everyone_fetching.wait()
            return Response(
                bodies[period],
                content_type="application/json",
                headers={"Last-Modified": "Fri, 27 Nov 2026 12:00:00 GMT"},
            )

        return handler

    server.expect_request("/static/v2/data.json").respond_with_handler(answer("5min"))
    server.expect_request("/static/v2/data.24h.json").respond_with_handler(answer("24h"))
    return bodies


def worker_env(home: Path, data_dir: Path, server: HTTPServer) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AQI_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])),
        AQI_DATA_DIR=str(data_dir),
        AQI_DUCKDB_PATH=str(data_dir / "aqi.duckdb"),
        AQI_SNAPSHOT_5MIN_URL=server.url_for("/static/v2/data.json"),
        AQI_SNAPSHOT_24H_URL=server.url_for("/static/v2/data.24h.json"),
        AQI_TEST_DUCKDB_HOLDS=str(data_dir.parent / "duckdb_holds.txt"),
    )
    return env


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[entry.step_key] = entry.timestamp
    return {key: (starts[key], ends[key]) for key in starts}


def file_holds(path: Path) -> list[tuple[float, float, int, bool]]:
    """(opened, closed, pid, read_only) of every DuckDB connection the workers opened, by opening time."""
    holds = []
    for line in path.read_text().splitlines():
        pid, opened, closed, read_only = line.split()
        holds.append((float(opened), float(closed), int(pid), read_only == "True"))
    return sorted(holds)


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_overlapping_runs_share_the_duckdb_file(
    dagster_home: Path, snapshot_server: HTTPServer, tmp_path: Path
) -> None:
    serve_snapshots(snapshot_server, fetches=len(RUNS))
    data_dir = tmp_path / "data"
    env = worker_env(dagster_home, data_dir, snapshot_server)

    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, job_name],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job_name in RUNS
    ]
    outputs = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=RUN_TIMEOUT_S)
            outputs.append((worker.returncode, out, err))
    finally:
        for worker in workers:  # only our own workers, by their own handles
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    elapsed = time.monotonic() - started
    for job_name, (code, out, err) in zip(RUNS, outputs, strict=True):
        assert code == 0, f"{job_name} failed (exit {code}):\n{out}\n{err[-4000:]}"
        assert "DuckDBLockTimeout" not in err, err[-2000:]

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "op"
        runs = instance.get_runs(filters=dg.RunsFilter(tags=TEST_TAG))
        assert sorted(run.job_name for run in runs) == sorted(RUNS)
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}

        # The steps that open the DuckDB file (all but the fetches). With the SQLite instance storage of a
        # local `dagster dev` the pool is not a strict mutex: two processes can claim the one slot together
        # (dagster 1.13 `SqlEventLogStorage._claim_concurrency_slot` selects a free slot and updates it
        # without re-checking it is free; Postgres locks the row). `AqiStorage.connect` waiting on the file
        # lock covers that window, so the assertion that matters is that no run failed.
        duckdb_steps = sorted(
            (interval, run.run_id, key)
            for run in runs
            for key, interval in step_intervals(instance, run.run_id).items()
            if not key.startswith("raw_snapshot_")
        )
        assert sum(key == "aqi_readings" for _, _, key in duckdb_steps) == len(RUNS)
        # The pool is live and the runs really competed: at least one run waited for it.
        blocked = [
            entry
            for run in runs
            for entry in instance.all_logs(run.run_id)
            if "blocked by limit for pool duckdb" in (entry.message or "")
        ]
        assert blocked, "no run ever waited for the duckdb pool: the runs did not overlap"

    with duckdb.connect(str(data_dir / "aqi.duckdb"), read_only=True) as history:
        per_period = dict(
            history.execute(
                'SELECT period, count(*) FROM (SELECT DISTINCT period, sensor_id, "timestamp" FROM aqi_readings) '
                "GROUP BY period"
            ).fetchall()
        )
        total = history.execute("SELECT count(*) FROM aqi_readings").fetchone()[0]
        merged = dict(
            history.execute(
                "SELECT period, sum(rows_inserted) FROM snapshot_log WHERE status = 'merged' GROUP BY period"
            ).fetchall()
        )
    assert per_period == RECORDS  # every reading of both snapshots is there, each exactly once
    assert total == sum(RECORDS.values())
    assert merged == RECORDS
    # The runs shared the file: every worker held it, they took turns while their runs overlapped in time
    # (one run's hold falls between two holds of another), and no read-write hold overlapped any other hold.
    holds = file_holds(Path(env["AQI_TEST_DUCKDB_HOLDS"]))
    workers_pids = {worker.pid for worker in workers}
    assert {pid for _, _, pid, _ in holds} == workers_pids
    clashes = [
        (earlier, later)
        for earlier, later in itertools.combinations(holds, 2)
        if later[0] < earlier[1] and not (earlier[3] and later[3])
    ]
    assert clashes == [], f"two processes held the DuckDB file at once: {clashes}"
    turns = sum(earlier[2] != later[2] for earlier, later in itertools.pairwise(holds))
    assert turns >= len(RUNS), f"the runs did not take turns on the file: {holds}"
    print(f"{len(RUNS)} overlapping runs finished in {elapsed:.1f} s; {len(blocked)} pool waits; "
          f"{len(holds)} file holds, {turns} hand-overs between processes")
