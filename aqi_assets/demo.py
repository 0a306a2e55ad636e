"""`make demo`: the whole platform on the real samples shipped in the repository, without network.

`python -m aqi_assets.demo [--data-dir data/demo] [--site-port 8080] [--ui-port 3000] [--no-serve]`

1. serves the samples from a local web server on 127.0.0.1, laid out like data.sensor.community and
   archive.sensor.community: the real 243-record snapshot fragment (2019-04-16) as `data.json`, and the real
   archive day 2025-10-15 of an SDS011 (PM) and a BME280 (climate) sensor;
2. runs the real code against it, in its own data directory and Dagster instance: the snapshot ingest job, the
   archive backfill of that day, the official indices (`aqi_hourly` for the day's 24 hours, `aqi_daily`) with their
   blocking checks, the Parquet tier's export of the day and the public site;
3. serves the site with nginx and the Dagster UI (`dagster dev`, the same instance: the lineage shows every
   materialisation of step 2) until Ctrl-C.

The official indices come from the archive day: a single snapshot fills one 5-minute slot of its hour, and an hour
needs 9 of 12 to count (docs: official indices), so the 2019 snapshot's sensors show their readings, labelled.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg

SAMPLES = Path("aqi_assets_tests/data/sensor-community")  # relative to the repository (make runs from there)
SNAPSHOT_SAMPLE = "v1-data-json_2019-04-16T142252Z_fragment_243-records.jsonfrag.gz"
ARCHIVE_DAY = date(2025, 10, 15)
ARCHIVE_SAMPLES = {  # sample file → the archive's own file name
    "archive_2025-10-15_sds011_sensor_82312.csv": "2025-10-15_sds011_sensor_82312.csv",
    "archive_2025-10-15_bme280_sensor_82313.csv": "2025-10-15_bme280_sensor_82313.csv",
}
ARCHIVE_SENSORS = "82312,82313"
HOUR_KEY = "%Y-%m-%d-%H:%M"


def console_log(verbose: bool) -> dict:
    """Run config setting Dagster's console log: DEBUG on request, warnings and errors otherwise."""
    return {"loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "WARNING"}}}}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def sample_server(mirror: Path) -> Iterator[str]:
    """A web server on 127.0.0.1 (a free port) serving ``mirror``; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(mirror)))
    thread = threading.Thread(target=server.serve_forever, name="demo-samples", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def build_mirror(samples: Path, mirror: Path) -> None:
    """The samples in the layout of the two sites: `static/v2/data.json` (the fragment, a JSON array) and the
    archive day's folder with the files under their archive names."""
    missing = [name for name in (SNAPSHOT_SAMPLE, *ARCHIVE_SAMPLES) if not (samples / name).is_file()]
    if missing:
        raise FileNotFoundError(f"samples missing in {samples}: {', '.join(missing)} (run from the repository root)")
    snapshot_dir = mirror / "static" / "v2"
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    fragment = gzip.decompress((samples / SNAPSHOT_SAMPLE).read_bytes()).decode().strip().rstrip(",")
    # The fragment is the records of a data.json array without its brackets.
    (snapshot_dir / "data.json").write_text(fragment if fragment.startswith("[") else f"[{fragment}]")
    day_dir = mirror / ARCHIVE_DAY.isoformat()
    day_dir.mkdir(parents=True, exist_ok=True)
    for sample, name in ARCHIVE_SAMPLES.items():
        shutil.copyfile(samples / sample, day_dir / name)


def demo_environment(data_dir: Path, base_url: str) -> dict[str, str]:
    """The settings of the demo: its own data directory and instance, the local samples as the two sites."""
    return {
        "AQI_DATA_DIR": str(data_dir),
        "AQI_DUCKDB_PATH": str(data_dir / "aqi.duckdb"),
        "AQI_SITE_DIR": str(data_dir / "site"),
        "AQI_PARQUET_URI": str(data_dir / "parquet"),
        "AQI_SNAPSHOT_5MIN_URL": f"{base_url}/static/v2/data.json",
        "AQI_SNAPSHOT_24H_URL": f"{base_url}/static/v2/data.json",
        "AQI_ARCHIVE_URL": base_url,
        "AQI_ARCHIVE_SENSORS": ARCHIVE_SENSORS,
        "AQI_ARCHIVE_START": ARCHIVE_DAY.replace(day=1).isoformat(),
        "AQI_PARTITIONS_START": ARCHIVE_DAY.replace(day=1).isoformat(),
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
    }


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, key: str, partition: str | None = None,
                 tags: dict[str, str] | None = None, verbose: bool = False) -> dg.ExecuteInProcessResult:
    result = dg.materialize([*defs.assets, *defs.asset_checks], selection=[dg.AssetKey(key)],
                            partition_key=partition, tags=tags, resources=defs.resources, instance=instance,
                            raise_on_error=False, run_config=console_log(verbose))
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    if not result.success or failed:
        raise RuntimeError(f"{key} {partition or ''}: run {result.run_id} failed (checks failed: {failed or 'none'})")
    return result


def run_pipeline(data_dir: Path, verbose: bool = False) -> list[str]:
    """Step 2 (the environment already set): returns one summary line per step."""
    from aqi_assets.definitions import defs as load_defs

    defs = load_defs()
    day = ARCHIVE_DAY.isoformat()
    first_hour = datetime.combine(ARCHIVE_DAY, datetime.min.time())
    lines = []
    with dg.DagsterInstance.get() as instance:
        ingest = defs.resolve_job_def("ingest_5min_job").execute_in_process(
            instance=instance, raise_on_error=False, run_config=console_log(verbose)
        )
        if not ingest.success:
            raise RuntimeError(f"ingest_5min_job failed (run {ingest.run_id})")
        lines.append("ingest        the 2019 snapshot sample merged into aqi_readings")
        for key in ("raw_archive_day", "archive_readings"):
            _materialize(defs, instance, key, day, verbose=verbose)
        lines.append(f"archive       {day}: SDS011 82312 and BME280 82313 merged")
        hours = {"dagster/asset_partition_range_start": first_hour.strftime(HOUR_KEY),
                 "dagster/asset_partition_range_end": (first_hour + timedelta(hours=23)).strftime(HOUR_KEY)}
        _materialize(defs, instance, "aqi_hourly", tags=hours, verbose=verbose)
        _materialize(defs, instance, "aqi_daily", day, verbose=verbose)
        lines.append(f"indices       aqi_hourly ({day}, 24 hours, one run) and aqi_daily ({day}), checks passed")
        _materialize(defs, instance, "aqi_readings_parquet", day, verbose=verbose)
        lines.append(f"tier          {day} exported to {data_dir / 'parquet'} and verified")
        _materialize(defs, instance, "public_site", verbose=verbose)
        lines.append(f"site          built in {data_dir / 'site'}")
    return lines


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _interruptible() -> None:
    """In each server's process, before it starts: Ctrl-C (SIGINT) stops it even when the demo itself was started
    with SIGINT ignored (a background job of a script), so the demo can always stop it as Ctrl-C would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _serve(data_dir: Path, env: dict[str, str], site_port: int, ui_port: int) -> int:
    """Step 3: nginx for the site and `dagster dev` for the UI, until Ctrl-C (or either exits)."""
    bin_dir = Path(sys.executable).parent
    processes = [
        subprocess.Popen([sys.executable, "-m", "aqi_assets.lib.public_site.nginx", "--root", str(data_dir / "site"),
                          "--port", str(site_port)], env=env, preexec_fn=_interruptible),
        subprocess.Popen([str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p",
                          str(ui_port)], env=env, preexec_fn=_interruptible),
    ]
    print(f"map           http://127.0.0.1:{site_port}/\nui            http://127.0.0.1:{ui_port}/ "
          "(Ctrl-C stops both)", flush=True)
    interrupted = False
    signal.signal(signal.SIGTERM, _stop)  # `kill` stops the demo as Ctrl-C does
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the shutdown short
            signal.signal(signum, signal.SIG_IGN)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # what Ctrl-C sends: dagster dev stops its webserver and daemon
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if interrupted:
        return 0
    print("stopped: a server exited on its own (its error is above); the other was stopped", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aqi_assets.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data/demo"))
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--site-port", type=int, default=8080)
    parser.add_argument("--ui-port", type=int, default=3000)
    parser.add_argument("--no-serve", action="store_true", help="build everything, serve nothing")
    parser.add_argument("--verbose", action="store_true", help="Dagster's DEBUG log on the console")
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    if data_dir.exists():  # a demo starts from nothing, every time
        shutil.rmtree(data_dir)
    (data_dir / "dagster_home").mkdir(parents=True)
    instance_config = Path(".dagster/dagster.yaml")
    if instance_config.is_file():
        shutil.copyfile(instance_config, data_dir / "dagster_home" / "dagster.yaml")
    build_mirror(args.samples, data_dir / "mirror")
    started = time.monotonic()
    with sample_server(data_dir / "mirror") as base_url:
        env = demo_environment(data_dir, base_url)
        os.environ.update(env)
        for line in run_pipeline(data_dir, args.verbose):
            print(line, flush=True)
        print(f"took          {time.monotonic() - started:.1f} s (history: {data_dir / 'aqi.duckdb'})", flush=True)
        if args.no_serve:
            return 0
        return _serve(data_dir, {**os.environ, **env}, args.site_port, args.ui_port)


if __name__ == "__main__":
    sys.exit(main())
