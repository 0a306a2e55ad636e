"""The production topology, live: a real PostgreSQL, then the gRPC code server, the daemon and the webserver as
three processes on 127.0.0.1 with deploy/dagster.yaml (started exactly as `make prod` starts them).

- the snapshot sensor, started through the GraphQL API, sees a new snapshot on a local HTTP server; the daemon
  launches the ingest run through the queued coordinator; the rows land in DuckDB; the automation sensor carries
  them downstream; a broken snapshot fails its run and the failure alert reaches a local webhook;
- ten overlapping runs: no two steps of the `duckdb` pool ever run at once (from the event log in PostgreSQL);
- the daemon is SIGKILLed while a run is in flight and restarted: the run completes, nothing is requested twice.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from werkzeug import Request, Response

from aqi_assets.lib.air_quality.generator import Quirks, generate_snapshot
from aqi_assets.lib.deploy.service import Deployment, free_port
from aqi_assets_tests.support.http import local_http_server

from .conftest import Postgres

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(1800)]

RECORDS = 600
BASE_TIME = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
SENSOR = "snapshot_5min_sensor"
SENSOR_SELECTOR = {"repositoryLocationName": "aqi_assets", "repositoryName": "__repository__", "sensorName": SENSOR}
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class SnapshotFeed:
    """What the local "data.sensor.community" serves: one current snapshot, answered like the real server
    (Last-Modified, 304 to a matching If-Modified-Since). The download of a run (no If-Modified-Since) can be
    slowed down, so a run is reliably in flight when the test needs it."""

    body: bytes = b"[]"
    last_modified: str = ""
    download_delay_s: float = 0.0
    answered: int = 0  # full answers given for the current snapshot
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, number: int, body: bytes | None = None, delay_s: float = 0.0) -> str:
        """Serve snapshot `number` (its records have sensor ids number*100_000 + …); returns its run key."""
        moment = BASE_TIME + timedelta(minutes=number)
        with self.lock:
            self.body = body if body is not None else snapshot_body(number)
            self.last_modified = format_datetime(moment, usegmt=True)
            self.download_delay_s = delay_s
            self.answered = 0
        return f"5min:{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}"

    def handle(self, request: Request) -> Response:
        if request.headers.get("If-Modified-Since") == self.last_modified:
            return Response(b"", status=304, headers={"Last-Modified": self.last_modified})
        with self.lock:
            body, last_modified, delay = self.body, self.last_modified, self.download_delay_s
            first = self.answered == 0  # the sensor's probe; what follows without If-Modified-Since is a run
            self.answered += 1
        if not first and "If-Modified-Since" not in request.headers and delay:
            time.sleep(delay)
        return Response(body, content_type="application/json", headers={"Last-Modified": last_modified})


def snapshot_body(number: int) -> bytes:
    return generate_snapshot(
        RECORDS,
        seed=number,
        at=BASE_TIME + timedelta(minutes=number),
        quirks=Quirks.clean(),
        first_sensor_id=number * 100_000,
    )


@dataclass
class Live:
    deployment: Deployment
    instance: dg.DagsterInstance
    feed: SnapshotFeed
    alerts: list[dict]
    duckdb_path: Path

    def runs(self, **tags: str) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(filters=dg.RunsFilter(tags=tags) if tags else None))

    def wait_for(self, what: str, predicate: Callable[[], object], timeout_s: float) -> object:
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {name} ---\n" + "\n".join(self.deployment.log_path(name).read_text().splitlines()[-15:])
                    for name in ("daemon", "code_server")
                )
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")
            time.sleep(1.0)

    def finished_run(self, run_key: str, timeout_s: float = 150) -> dg.DagsterRun:
        def done() -> dg.DagsterRun | None:
            runs = self.runs(**{"dagster/run_key": run_key})
            return runs[0] if runs and runs[0].status in TERMINAL else None

        return self.wait_for(f"the run of {run_key}", done, timeout_s)

    def readings(self, number: int) -> tuple[int, int]:
        """(rows, distinct readings) of snapshot `number` in the DuckDB history, read-only."""
        low, high = number * 100_000, (number + 1) * 100_000
        for _ in range(60):
            try:
                with duckdb.connect(str(self.duckdb_path), read_only=True) as history:
                    return history.execute(
                        'SELECT count(*), count(DISTINCT (sensor_id, "timestamp")) FROM aqi_readings '
                        "WHERE sensor_id >= ? AND sensor_id < ?",
                        [low, high],
                    ).fetchone()
            except duckdb.IOException:  # a run holds the file for writing: wait for it
                time.sleep(1.0)
        raise AssertionError("the DuckDB file stayed locked for a minute")

    def ensure_sensor_running(self) -> None:
        data = self.deployment.graphql(
            """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {
                 sensorState { status } } } }""",
            {"s": SENSOR_SELECTOR},
        )
        if data["sensorOrError"]["sensorState"]["status"] != "RUNNING":
            self.deployment.start_sensor(SENSOR)

    def sensor_ticks(self) -> list[dict]:
        data = self.deployment.graphql(
            """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename ... on Sensor {
                 sensorState { ticks(limit: 20) { timestamp status runIds skipReason } } } } }""",
            {"s": SENSOR_SELECTOR},
        )
        return data["sensorOrError"]["sensorState"]["ticks"]


@pytest.fixture(scope="module")
def live(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    state_dir = tmp_path_factory.mktemp("prod")
    data_dir = state_dir / "data"
    feed = SnapshotFeed()
    alerts: list[dict] = []
    pg_env = postgres.new_database("live")

    def webhook(request: Request) -> Response:
        alerts.append(json.loads(request.get_data()))
        return Response("ok")

    with local_http_server() as snapshots, local_http_server() as hooks:
        snapshots.expect_request("/static/v2/data.json").respond_with_handler(feed.handle)
        snapshots.expect_request("/static/v2/data.24h.json").respond_with_handler(feed.handle)
        hooks.expect_request("/hooks/alert", method="POST").respond_with_handler(webhook)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AQI_", "DAGSTER_"))}
        env.update(
            pg_env,
            AQI_DATA_DIR=str(data_dir),
            AQI_DUCKDB_PATH=str(data_dir / "aqi.duckdb"),
            AQI_SNAPSHOT_5MIN_URL=snapshots.url_for("/static/v2/data.json"),
            AQI_SNAPSHOT_24H_URL=snapshots.url_for("/static/v2/data.24h.json"),
            AQI_SENSOR_5MIN_INTERVAL_S="10",
            AQI_ALERT_WEBHOOK_URL=hooks.url_for("/hooks/alert"),
        )
        deployment = Deployment(state_dir=state_dir, env=env, code_port=free_port(), web_port=free_port())
        deployment.prepare()
        deployment.start(timeout_s=240)
        try:
            with pytest.MonkeyPatch.context() as patch:
                for name in (*pg_env, "DAGSTER_COMPUTE_LOG_DIR"):
                    patch.setenv(name, deployment.env[name])
                with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
                    yield Live(deployment, instance, feed, alerts, data_dir / "aqi.duckdb")
        finally:
            deployment.stop()


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # the gRPC child binds ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def test_the_deployment_is_three_processes_on_loopback_sharing_postgres(live: Live) -> None:
    import psutil

    assert set(live.deployment.processes) == {"code_server", "daemon", "webserver"}
    pids = {name: process.pid for name, process in live.deployment.processes.items()}
    assert len(set(pids.values())) == 3
    for name, pid in pids.items():
        listening = [
            conn.laddr
            for member in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
            for conn in member.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        ]
        assert all(is_loopback(address.ip) for address in listening), (name, listening)
        if name != "daemon":  # the daemon serves nothing
            assert listening, name
    assert all(live.deployment.daemon_statuses().values())
    assert type(live.instance.run_storage).__name__ == "PostgresRunStorage"


def test_sensor_run_rows_automation_and_failure_alert(live: Live) -> None:
    run_key = live.feed.publish(1)
    live.deployment.start_sensor(SENSOR)

    run = live.finished_run(run_key)
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.run_id
    assert run.job_name == "ingest_5min_job"
    assert run.tags["dagster/sensor_name"] == SENSOR
    events = {
        entry.dagster_event.event_type_value
        for entry in live.instance.all_logs(run.run_id)
        if entry.dagster_event is not None
    }
    assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"} <= events  # through the queue
    assert live.readings(1) == (RECORDS, RECORDS)

    # The automation-condition sensor requests the sync assets downstream of the new rows in a run of its own.
    def synced_after_ingest() -> dg.EventLogRecord | None:
        record = live.instance.get_latest_materialization_event(dg.AssetKey("timestream_readings"))
        return record if record is not None and record.run_id != run.run_id else None

    record = live.wait_for("automation to materialise timestream_readings", synced_after_ingest, 150)
    automation_run = live.instance.get_run_by_id(record.run_id)
    assert automation_run.tags.get("dagster/sensor_name") == "aqi_automation_condition_sensor"
    assert record.timestamp > live.instance.get_run_record_by_id(run.run_id).end_time

    # A broken snapshot: the run fails at the fetch step and the failure alert reaches the webhook.
    broken_key = live.feed.publish(2, body=b'[{"sensor": {"id": 1}, "sensordatavalues": [')
    broken = live.finished_run(broken_key)
    assert broken.status == dg.DagsterRunStatus.FAILURE
    alert = live.wait_for(
        "the failure alert", lambda: next((a for a in live.alerts if broken.run_id in json.dumps(a)), None), 120
    )
    assert "ingest_5min_job" in alert["text"]
    assert "not a JSON array" in json.dumps(alert)
    assert live.readings(1) == (RECORDS, RECORDS)  # the history is untouched


# Two claims this close together can both win Dagster's pool slot (see the overlap test); later ones cannot.
SIMULTANEOUS_CLAIM_S = 0.05


def duckdb_pool_steps(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> list[tuple[float, float, str]]:
    """(start, end, run/step) of every step in the `duckdb` pool, from the event log in PostgreSQL."""
    from aqi_assets.definitions import defs

    definitions = defs()
    intervals = []
    for run in runs:
        job = definitions.resolve_job_def(run.job_name)
        pooled = {node.name for node in job.graph.node_dict.values() if node.definition.pool == "duckdb"}
        starts: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None or entry.step_key not in pooled:
                continue
            if event.event_type_value == "STEP_START":
                starts[entry.step_key] = entry.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                intervals.append((starts.pop(entry.step_key), entry.timestamp, f"{run.run_id[:8]}/{entry.step_key}"))
        assert not starts, f"{run.run_id}: steps started and never ended: {starts}"
    return sorted(intervals)


def test_ten_overlapping_runs_never_run_two_duckdb_steps_at_once(live: Live) -> None:
    live.feed.publish(3)
    run_ids = [live.deployment.launch_job("ingest_5min_job", {"aqi/test": "overlap"}) for _ in range(10)]

    def all_done() -> bool:
        return all(live.instance.get_run_by_id(run_id).status in TERMINAL for run_id in run_ids)

    live.wait_for("ten runs to finish", all_done, 600)
    runs = [live.instance.get_run_by_id(run_id) for run_id in run_ids]
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    # The runs really overlapped (the queue lets four in at once) ...
    records = [live.instance.get_run_record_by_id(run.run_id) for run in runs]
    spans = sorted((record.start_time, record.end_time) for record in records)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
    # ... and across every run of this deployment, no two duckdb-pool steps overlapped, except two that claimed
    # the slot at the same moment: Dagster runs the claim's SELECT ... FOR UPDATE and its UPDATE as separate
    # autocommit statements, so simultaneous claims can both win (seen once in CI: 3 ms apart). DuckDB's file
    # lock (the bounded wait) then holds the second writer back, and the history below is still exact.
    steps = duckdb_pool_steps(live.instance, [r for r in live.runs() if r.status in TERMINAL])
    assert len(steps) >= 10 * 2
    clashes = [(a, b) for a, b in itertools.pairwise(steps) if b[0] < a[1]]
    queued_behind_the_pool = [(a, b) for a, b in clashes if b[0] - a[0] > SIMULTANEOUS_CLAIM_S]
    assert not queued_behind_the_pool, clashes
    assert live.readings(3) == (RECORDS, RECORDS)


def test_killing_the_daemon_mid_run_loses_nothing(live: Live) -> None:
    run_key = live.feed.publish(4, delay_s=8.0)  # the run's download takes 8 s: time to kill the daemon
    live.ensure_sensor_running()  # (already running when the whole module runs)

    def in_flight() -> dg.DagsterRun | None:
        runs = live.runs(**{"dagster/run_key": run_key})
        return runs[0] if runs and runs[0].status == dg.DagsterRunStatus.STARTED else None

    started = live.wait_for("the run to start", in_flight, 90)
    live.deployment.stop_process("daemon", kill=True)
    killed_at = time.time()

    # The run lives in the code server's process group: it finishes without the daemon.
    run = live.finished_run(run_key)
    assert run.run_id == started.run_id
    assert run.status == dg.DagsterRunStatus.SUCCESS

    live.deployment.start_process("daemon")
    live.deployment.wait_daemon(timeout_s=120)

    # Two sensor ticks after the restart: both skip (the snapshot was requested once already).
    def ticks_after_restart() -> list[dict] | None:
        ticks = [t for t in live.sensor_ticks() if t["timestamp"] > killed_at and t["status"] != "STARTED"]
        return ticks if len(ticks) >= 2 else None

    ticks = live.wait_for("two sensor ticks after the restart", ticks_after_restart, 90)
    assert all(not tick["runIds"] for tick in ticks), ticks
    assert [r.run_id for r in live.runs(**{"dagster/run_key": run_key})] == [run.run_id]
    assert live.readings(4) == (RECORDS, RECORDS)
    # Nothing is left hanging: every run of the deployment ends (automation may still be syncing the rows).
    live.wait_for("every run to end", lambda: all(r.status in TERMINAL for r in live.runs()), 300)
