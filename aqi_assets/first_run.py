"""`make run`: fetch one snapshot and merge it, quietly, then say what landed and what to do next.

`python -m aqi_assets.first_run [--period 5min|24h] [--verbose]` runs the period's ingest job (the same job the
schedule and `dagster job execute -j ingest_5min_job` run) on the persistent instance (`DAGSTER_HOME`), with
Dagster's console log at WARNING unless `--verbose`. Before that it checks that the snapshot's host can be reached at
all: without network the job would spend minutes in step retries; here it fails within seconds, in one line that
names the offline path (`make demo`).
"""

from __future__ import annotations

import argparse
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import dagster as dg

from aqi_assets.defs.air_quality.resources import SNAPSHOT_SOURCE_ENV, SnapshotSource
from aqi_assets.defs.common.env import from_env
from aqi_assets.defs.common.storage import STORAGE_ENV, AqiStorage
from aqi_assets.lib.readings.periods import snapshot_period, snapshot_periods

REACH_TIMEOUT_S = 8.0  # DNS lookup and TCP connect, each: well inside the 30 s a newcomer waits for an answer
OFFLINE_HINT = "without network, `make demo` runs the platform on the samples shipped in the repository"


class Unreachable(RuntimeError):
    """The snapshot's host cannot be reached: no DNS answer or no TCP connection."""


def check_reachable(url: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Raise `Unreachable` unless ``url``'s host resolves and accepts a TCP connection (file:// URLs pass)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    # getaddrinfo has no timeout of its own: a resolver that never answers must not hang the first run, so the
    # lookup runs in a daemon thread that is abandoned (not joined, not even at exit) after the timeout.
    answers: queue.Queue[list | OSError] = queue.Queue()

    def lookup() -> None:
        try:
            answers.put(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as error:
            answers.put(error)

    threading.Thread(target=lookup, name="first-run-dns", daemon=True).start()
    try:
        addresses = answers.get(timeout=timeout_s)
    except queue.Empty:
        raise Unreachable(f"no DNS answer for {host} within {timeout_s:g} s") from None
    if isinstance(addresses, OSError):
        raise Unreachable(f"cannot resolve {host} ({addresses.strerror or addresses})")
    family, kind, proto, _, address = addresses[0]
    try:
        with socket.socket(family, kind, proto) as connection:
            connection.settimeout(timeout_s)
            connection.connect(address)
    except OSError as error:
        raise Unreachable(f"cannot connect to {host}:{port} ({error.strerror or error})") from None


@dataclass
class RunSummary:
    success: bool
    lines: list[str]


def _metadata_value(event_metadata: dict, key: str) -> object:
    entry = event_metadata.get(key)
    return getattr(entry, "value", entry)


def summarise(result: dg.ExecuteInProcessResult, period: str, duckdb_path: str, seconds: float) -> RunSummary:
    """What landed, from the run's own events: the snapshot, the merge, the checks, where the data is."""
    lines = []
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        key, metadata = materialization.asset_key.to_user_string(), materialization.metadata
        if key == f"raw_snapshot_{period}":
            lines.append(f"snapshot      {_metadata_value(metadata, 'records')} records, "
                         f"{_metadata_value(metadata, 'bytes'):,} bytes → {_metadata_value(metadata, 'path')}")
        elif key == "aqi_readings":
            lines.append(f"readings      {_metadata_value(metadata, 'rows_inserted'):,} merged "
                         f"({_metadata_value(metadata, 'rows_already_known'):,} already known), "
                         f"{_metadata_value(metadata, 'values_quarantined'):,} values quarantined "
                         "(rejected_values says why)")
    evaluations = result.get_asset_check_evaluations()
    failed = sorted(e.check_name for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR)
    warned = sorted(e.check_name for e in evaluations if not e.passed and e.severity != dg.AssetCheckSeverity.ERROR)
    lines.append(f"checks        {len(evaluations) - len(failed) - len(warned)} passed, {len(failed)} failed"
                 + (f" ({', '.join(failed)})" if failed else "") + f", {len(warned)} warned"
                 + (f" ({', '.join(warned)})" if warned else ""))
    lines.append(f"history       {duckdb_path}")
    if not result.success:
        failures = [event.message or "" for event in result.all_events if event.is_step_failure]
        lines.append("failed        " + (failures[0].splitlines()[0] if failures else "see `--verbose`"))
    lines.append(f"took          {seconds:.1f} s")
    lines += [
        "",
        "next:  make dev    the Dagster UI on http://127.0.0.1:3000 (lineage, runs, checks, the schedules)",
        "       make site   the public map of this history on http://127.0.0.1:8080",
    ]
    return RunSummary(result.success, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aqi_assets.first_run", description=__doc__.splitlines()[0])
    parser.add_argument("--period", default="5min", choices=list(snapshot_periods()))
    parser.add_argument("--verbose", action="store_true", help="Dagster's DEBUG log on the console")
    args = parser.parse_args(argv)
    spec = snapshot_period(args.period)
    # The resources as the code location configures them, their environment variables resolved.
    source = from_env(SnapshotSource, SNAPSHOT_SOURCE_ENV).process_config_and_initialize()
    storage = from_env(AqiStorage, STORAGE_ENV).process_config_and_initialize()
    url = source.url_for(args.period)
    try:
        check_reachable(url)
    except Unreachable as error:
        print(f"offline: {error}; nothing was fetched ({url}); {OFFLINE_HINT}", file=sys.stderr)
        return 2
    from aqi_assets.definitions import defs

    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        result = defs().resolve_job_def(spec.job_name).execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "DEBUG" if args.verbose else "WARNING"}}}},
        )
    summary = summarise(result, args.period, storage.duckdb_path, time.monotonic() - started)
    print("\n".join(summary.lines))
    return 0 if summary.success else 1


if __name__ == "__main__":
    sys.exit(main())
