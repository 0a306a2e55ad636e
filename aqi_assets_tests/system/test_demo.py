"""`make demo` from a fresh clone, without network: the real samples through the whole platform, then a served map
with features and the Dagster UI on the same instance; Ctrl-C stops both servers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aqi_assets_tests.support.samples import PROJECT_ROOT
from aqi_assets_tests.support.site_data import world_readable_dir

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _wait_for(read, what: str, process: subprocess.Popen, log: Path, timeout_s: float = 240) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the demo exited ({process.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        body = read()
        if body is not None:
            return body
        time.sleep(1)
    raise AssertionError(f"{what} not served within {timeout_s:.0f} s")


def test_the_demo_serves_a_map_with_real_data_and_the_ui(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{PROJECT_ROOT}", str(clone)], check=True)
    site_port, ui_port = _free_port(), _free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AQI_", "DAGSTER_"))}
    env["PYTHONPATH"] = str(clone)  # the clone's code, with this environment's installed dependencies
    log_path = tmp_path / "demo.log"  # a file, not a pipe: dagster dev's log would fill a pipe nobody reads yet
    log = log_path.open("w")
    # nginx's workers (user nobody when the tests run as root) must be able to enter the site's directories.
    data_dir = world_readable_dir("aqi-demo-") / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "aqi_assets.demo", "--data-dir", str(data_dir), "--site-port",
         str(site_port), "--ui-port", str(ui_port)],
        cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        site = f"http://127.0.0.1:{site_port}"
        pointer = json.loads(_wait_for(lambda: _get(f"{site}/current.json"), "the map's pointer", process, log_path))
        latest = json.loads(_wait_for(lambda: _get(f"{site}/{pointer['latest']}"), "the map's features", process,
                                    log_path))
        assert pointer["features"] == len(latest["features"]) > 100  # the 2019 snapshot's PM sensors
        assert b"leaflet" in (_get(f"{site}/") or b"").lower()
        info = json.loads(_wait_for(lambda: _get(f"http://127.0.0.1:{ui_port}/server_info"), "the UI", process,
                                     log_path))
        assert "dagster_webserver_version" in info
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the demo stops nginx and dagster dev
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]
    lines = output.splitlines()
    for step in ("ingest", "archive", "indices", "tier", "site", "map", "ui"):
        assert any(line.startswith(f"{step} ") for line in lines), (step, output[-3000:])
    with_indices = [line for line in lines if line.startswith("indices ")]
    assert "checks passed" in with_indices[0]
