"""Benchmark: the InfluxDB writer against a local `influxd` (Debian's InfluxDB 1.6, v1 API) or a configured URL.

`python -m aqi_assets.bench influxdb --records 20000` fills a temporary DuckDB with synthetic readings,
starts `influxd` on a free 127.0.0.1 port with its data in a temporary directory (unless `--url` is given),
syncs, counts the points back with `/query`, syncs again (must send nothing) and returns one dict.

`LocalInfluxd` is also what the tests use to get a real server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from aqi_assets.bench.sync_common import add_sync_arguments, bench_database, free_port, timed_syncs, timing_figures

INFLUXD = "influxd"


def influxd_binary() -> str | None:
    return shutil.which(INFLUXD)


class LocalInfluxd:
    """`influxd` on 127.0.0.1 with a generated config and every directory under `workdir`."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        self.binary = binary or influxd_binary()
        if self.binary is None:
            raise FileNotFoundError("influxd not found on PATH (Debian package `influxdb`)")
        self.workdir = Path(workdir)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def _config(self, http_port: int, rpc_port: int) -> Path:
        root = self.workdir
        config = root / "influxdb.conf"
        config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root / "meta"}"
[data]
  dir = "{root / "data"}"
  wal-dir = "{root / "wal"}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
"""
        )
        return config

    def start(self, timeout_s: float = 30.0, attempts: int = 3) -> str:
        # A free port can be taken between probing and binding: try a few times.
        last_error = ""
        for _ in range(attempts):
            http_port, rpc_port = free_port(), free_port()
            config = self._config(http_port, rpc_port)
            log = open(self.workdir / "influxd.log", "ab")  # noqa: SIM115 - handed to the child process
            self.process = subprocess.Popen([self.binary, "-config", str(config)], stdout=log, stderr=log)
            log.close()
            self.url = f"http://127.0.0.1:{http_port}"
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                        if response.status == 204:
                            return self.url
                except OSError:
                    time.sleep(0.1)
            last_error = (self.workdir / "influxd.log").read_text(errors="replace")[-2000:]
            self.stop()
        raise RuntimeError(f"influxd did not answer /ping: {last_error}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # its own pid only
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def query(self, database: str, q: str) -> dict[str, Any]:
        params = urllib.parse.urlencode({"db": database, "q": q, "epoch": "ms"})
        with urllib.request.urlopen(f"{self.url}/query?{params}", timeout=30) as response:
            return json.loads(response.read())

    def create_database(self, database: str) -> None:
        quoted = '"' + database.replace("\\", "\\\\").replace('"', '\\"') + '"'
        body = urllib.parse.urlencode({"q": f"CREATE DATABASE {quoted}"}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=body, timeout=30) as response:
            response.read()

    def __enter__(self) -> LocalInfluxd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def count_points(server_url: str, database: str, measurement: str = "air_quality") -> int:
    params = urllib.parse.urlencode({"db": database, "q": f'SELECT count("latitude") FROM "{measurement}"'})
    with urllib.request.urlopen(f"{server_url}/query?{params}", timeout=60) as response:
        result = json.loads(response.read())["results"][0]
    series = result.get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sync_arguments(parser, concurrency=4, concurrency_help="write requests in flight")
    parser.add_argument("--batch-lines", type=int, default=5000, help="lines per write request")
    parser.add_argument("--url", default=None, help="InfluxDB URL, v1 API (default: a local influxd)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from aqi_assets.lib.sinks.influx_writer import InfluxWriter, V1Sender, sync_to_influxdb

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aqi-bench-influx-")))
        connect = bench_database(workdir, args.records, args.seed)
        if args.url:
            url, server = args.url, "configured URL"
        else:
            (workdir / "influxd").mkdir()
            url = stack.enter_context(LocalInfluxd(workdir / "influxd")).url
            server = "influxd 1.6 (local)"
        sender = V1Sender(url, args.database, "ms", pool_size=max(4, args.concurrency))
        stack.callback(sender.close)
        sender.create_database()
        writer = InfluxWriter(sender, batch_lines=args.batch_lines, max_workers=args.concurrency)
        first, second, end_to_end = timed_syncs(lambda: sync_to_influxdb(connect, writer))
        points = count_points(url, args.database)

    return {
        "target": "influxdb",
        "api": "v1",
        "server": server,
        "records": args.records,
        "records_sent": first.sent,
        "records_accepted": first.accepted,
        "records_rejected": first.rejected,
        "records_failed": first.failed,
        "points_read_back": points,
        "requests": first.requests,
        "batch_lines": args.batch_lines,
        "concurrency": args.concurrency,
        **timing_figures(first, second, end_to_end),
    }
