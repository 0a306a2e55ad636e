"""Benchmark: the Timestream writer against a local moto server (or a configured endpoint).

`python -m aqi_assets.bench timestream --records 20000` fills a temporary DuckDB `aqi_readings` table with
synthetic readings, starts `moto_server` in a subprocess on 127.0.0.1 (unless `--endpoint-url` is given),
runs the full sync (pending query, records, WriteRecords on a thread pool, watermark save) and a second
sync that must send nothing, and returns one JSON-able dict.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aqi_assets.bench.sync_common import (
    add_sync_arguments,
    bench_database,
    free_port,
    timed_syncs,
    timing_figures,
)


@contextlib.contextmanager
def moto_subprocess(timeout_s: float = 30.0) -> Iterator[str]:
    """`moto_server` in its own process on a free loopback port (so the server does not compete with the
    writer for this process's GIL); stopped by its own pid."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {endpoint}") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sync_arguments(parser, concurrency=8, concurrency_help="WriteRecords calls in flight")
    parser.add_argument("--endpoint-url", default=None, help="Timestream endpoint (default: a local moto server)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--table", default="readings")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    from aqi_assets.lib.sinks.timestream_records import TableWindow
    from aqi_assets.lib.sinks.timestream_writer import TimestreamWriter, sync_to_timestream, timestream_client_config

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aqi-bench-ts-")))
        connect = bench_database(workdir, args.records, args.seed)

        if args.endpoint_url:
            endpoint, session = args.endpoint_url, boto3.session.Session(region_name=args.region)
            server = "configured endpoint"
        else:
            endpoint = stack.enter_context(moto_subprocess())
            # moto accepts any credentials; explicit dummies keep the real credential chain out of it.
            session = boto3.session.Session(
                region_name=args.region, aws_access_key_id="bench", aws_secret_access_key="bench"
            )
            server = "moto_server (local subprocess)"
        client = session.client(
            "timestream-write",
            endpoint_url=endpoint,
            config=timestream_client_config(10, max_pool_connections=max(10, 2 * args.concurrency)),
        )
        stack.callback(client.close)
        per_call: list[int] = []
        client.meta.events.register(
            "before-parameter-build.timestream-write.WriteRecords",
            lambda params, **_: per_call.append(len(params.get("Records", []))),
        )
        with contextlib.suppress(client.exceptions.ConflictException):
            client.create_database(DatabaseName=args.database)
        with contextlib.suppress(client.exceptions.ConflictException):
            client.create_table(DatabaseName=args.database, TableName=args.table)
        window = TableWindow.from_description(
            client.describe_table(DatabaseName=args.database, TableName=args.table)["Table"]
        )
        writer = TimestreamWriter(client, args.database, args.table, max_workers=args.concurrency)
        first, second, end_to_end = timed_syncs(lambda: sync_to_timestream(connect, writer, window))

    return {
        "target": "timestream",
        "server": server,
        "records": args.records,
        "records_sent": first.sent,
        "records_accepted": first.accepted,
        "records_rejected": first.rejected,
        "records_skipped": first.skipped,
        "records_failed": first.failed,
        "requests": first.requests,
        "max_records_per_request": max(per_call, default=0),
        "concurrency": args.concurrency,
        **timing_figures(first, second, end_to_end),
    }
