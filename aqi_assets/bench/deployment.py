"""Benchmark: the production topology (or `dagster dev`), from a new snapshot appearing to its rows in DuckDB.

`python -m aqi_assets.bench deployment --snapshots 20 --interval 15` starts a throwaway PostgreSQL cluster and
the code server, daemon and webserver with deploy/dagster.yaml (as `make prod` does), points the 5-minute
snapshot at a local `file://` feed and starts `snapshot_5min_sensor` (probe interval `--interval`, ≥ 10 s)
through the GraphQL API. Then, one at a time, it writes a new generated snapshot (atomic rename; the file's
mtime is "appeared") and measures until the `aqi_readings` materialisation of the run the sensor requested for
it (recorded after the merge commits), through sensor tick, queue, launch and run. Snapshots appear every
`--cadence` seconds (60: data.json is rewritten once a minute), the first at a random phase of the sensor
interval, as real ones do; `--cadence 0` publishes each at a random phase after the previous one landed.
Reports p50/p95/max latency and the idle memory of every process (PostgreSQL included) before the first
snapshot. Every snapshot's rows are checked in DuckDB at the end. `--topology dev` measures the same with one
`dagster dev` on the SQLite instance of `make dev`, for the side-by-side comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from aqi_assets.lib.air_quality.generator import Quirks, generate_snapshot
from aqi_assets.lib.deploy.postgres import throwaway_cluster
from aqi_assets.lib.deploy.service import Deployment, free_port, pg_env_from_cluster

SENSOR = "snapshot_5min_sensor"
BASE_TIME = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


_TICKS = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {
  sensorState { ticks(limit: 5) { timestamp status runIds skipReason error { message } } } } } }"""


def _selector() -> dict[str, str]:
    return {"repositoryLocationName": "aqi_assets", "repositoryName": "__repository__", "sensorName": SENSOR}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshots", type=int, default=20, help="snapshots to time (default 20)")
    parser.add_argument("--records", type=int, default=2000, help="records per snapshot (default 2000)")
    parser.add_argument("--interval", type=int, default=15, help="sensor probe interval in seconds (≥ 10)")
    parser.add_argument("--cadence", type=float, default=60.0,
                        help="seconds between snapshots, as the server rewrites the file (0: random phases)")
    parser.add_argument("--topology", choices=("production", "dev"), default="production",
                        help="production: PostgreSQL + code server, daemon, webserver; dev: one `dagster dev`")
    parser.add_argument("--seed", type=int, default=1)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return round(ordered[index], 2)


def _postgres_rss(postmaster_pid: int | None) -> int:
    """Resident memory of the cluster: the postmaster and its backends and workers."""
    import psutil

    if postmaster_pid is None:
        return 0
    postmaster = psutil.Process(postmaster_pid)
    total = 0
    for process in [postmaster, *postmaster.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def _ingested_at(
    instance: dg.DagsterInstance, appeared: float, timeout_s: float
) -> tuple[float, str, dict[str, float]]:
    """Wait for the sensor's run created after `appeared`; the time its aqi_readings materialisation landed,
    the run id, and where the time went (tick: appeared → run created; queue: → run started, which includes
    the launch of its process; run: → the materialisation)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = instance.get_run_records(
            filters=dg.RunsFilter(
                tags={"dagster/sensor_name": SENSOR},
                created_after=datetime.fromtimestamp(appeared - 1, tz=timezone.utc),
            )
        )
        for record in records:
            run = record.dagster_run
            if run.status == dg.DagsterRunStatus.FAILURE:
                raise RuntimeError(f"run {run.run_id} failed")
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
                if entry.dagster_event.asset_key == dg.AssetKey("aqi_readings"):
                    created = record.create_timestamp.timestamp()
                    started = record.start_time or created
                    stages = {
                        "tick": created - appeared,
                        "queue_and_launch": started - created,
                        "run": entry.timestamp - started,
                    }
                    return entry.timestamp, run.run_id, stages
        time.sleep(0.25)
    raise TimeoutError(f"no aqi_readings materialisation within {timeout_s:.0f} s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    password = secrets.token_urlsafe(16)
    dev = args.topology == "dev"
    with tempfile.TemporaryDirectory(prefix="aqi-bench-deploy-") as scratch, contextlib.ExitStack() as stack:
        # `dagster dev` keeps its instance in SQLite files under DAGSTER_HOME: no PostgreSQL.
        cluster = None if dev else stack.enter_context(throwaway_cluster(free_port(), "dagster", password, "dagster"))
        root = Path(scratch)
        feed = root / "feed"
        feed.mkdir()
        snapshot = feed / "data.json"
        snapshot.write_bytes(b"[]")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AQI_", "DAGSTER_"))}
        pg_env = {} if cluster is None else pg_env_from_cluster(cluster.port, "dagster", password, "dagster")
        env.update(
            pg_env,
            AQI_DATA_DIR=str(root / "data"),
            AQI_DUCKDB_PATH=str(root / "data" / "aqi.duckdb"),
            AQI_SNAPSHOT_5MIN_URL=snapshot.as_uri(),
            AQI_SNAPSHOT_24H_URL=(feed / "data.24h.json").as_uri(),
            AQI_ALLOWED_FILE_ROOTS=str(feed),
            AQI_SENSOR_5MIN_INTERVAL_S=str(args.interval),
        )
        deployment = Deployment(
            state_dir=root / "prod", env=env, code_port=free_port(), web_port=free_port(), dev=dev
        )
        deployment.prepare()
        started = time.monotonic()
        deployment.start(timeout_s=300)
        startup_s = time.monotonic() - started
        try:
            time.sleep(5)  # let start-up work settle before measuring idle memory
            memory = {name: round(rss / 2**20) for name, rss in deployment.rss_bytes().items()}
            if cluster is not None:
                memory["postgres"] = round(_postgres_rss(cluster.postmaster_pid()) / 2**20)
            saved = {name: os.environ.get(name) for name in (*pg_env, "DAGSTER_COMPUTE_LOG_DIR")}
            os.environ.update({name: deployment.env[name] for name in saved})
            try:
                with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
                    deployment.start_sensor(SENSOR)
                    time.sleep(args.interval + 2)  # the first tick sees the empty feed
                    latencies = []
                    breakdown: dict[str, list[float]] = {}
                    first_at = time.time() + rng.uniform(0, args.interval)  # a random phase of the interval
                    for number in range(1, args.snapshots + 1):
                        if args.cadence > 0:  # the server's schedule: the next file a cadence after the last
                            time.sleep(max(0.0, first_at + (number - 1) * args.cadence - time.time()))
                        else:
                            time.sleep(rng.uniform(0, args.interval))
                        body = generate_snapshot(
                            args.records,
                            seed=number,
                            at=BASE_TIME + timedelta(minutes=number),
                            quirks=Quirks.clean(),
                            first_sensor_id=number * 100_000,
                        )
                        partial = feed / f".data.json.{number}"
                        partial.write_bytes(body)
                        os.replace(partial, snapshot)
                        appeared = snapshot.stat().st_mtime
                        try:
                            landed, _, stages = _ingested_at(instance, appeared, timeout_s=300)
                        except TimeoutError as error:
                            ticks = deployment.graphql(_TICKS, {"s": _selector()})
                            daemon_log = deployment.log_path("daemon").read_text().splitlines()[-20:]
                            raise TimeoutError(f"{error}; sensor ticks: {ticks}; daemon log: {daemon_log}") from None
                        latencies.append(landed - appeared)
                        for stage, seconds in stages.items():
                            breakdown.setdefault(stage, []).append(seconds)
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
        finally:
            deployment.stop()
        with duckdb.connect(str(root / "data" / "aqi.duckdb"), read_only=True) as history:
            per_snapshot = history.execute(
                "SELECT sensor_id // 100000 AS n, count(*) FROM aqi_readings GROUP BY n ORDER BY n"
            ).fetchall()
    complete = all(count == args.records for _, count in per_snapshot) and len(per_snapshot) == args.snapshots
    return {
        "benchmark": "deployment",
        "topology": "dagster dev (SQLite instance)" if dev else "production (PostgreSQL, separate processes)",
        "snapshots": args.snapshots,
        "records_per_snapshot": args.records,
        "sensor_interval_s": args.interval,
        "snapshot_cadence_s": args.cadence,
        "latency_p50_s": _percentile(latencies, 0.5),
        "latency_p95_s": _percentile(latencies, 0.95),
        "latency_max_s": round(max(latencies), 2),
        "latency_mean_s": round(statistics.fmean(latencies), 2),
        "latencies_s": [round(value, 2) for value in latencies],
        "stages_p50_p95_s": {
            stage: [_percentile(values, 0.5), _percentile(values, 0.95)] for stage, values in breakdown.items()
        },
        "startup_s": round(startup_s, 1),
        "idle_rss_mb": memory,
        "idle_rss_total_mb": sum(memory.values()),
        "all_rows_in_duckdb": complete,
    }
