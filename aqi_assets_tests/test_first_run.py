"""`make run` (`python -m aqi_assets.first_run`): a quiet run that says what landed and what to do next, and without
network a failure within seconds, in one line naming the offline path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aqi_assets.first_run import Unreachable, check_reachable
from aqi_assets_tests.support.http import local_http_server
from aqi_assets_tests.support.samples import PROJECT_ROOT, fragment_records


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AQI_")}
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((PROJECT_ROOT / ".dagster" / "dagster.yaml").read_text())
    return {**env, "DAGSTER_HOME": str(home), "AQI_DATA_DIR": str(tmp_path / "data"),
            "AQI_DUCKDB_PATH": str(tmp_path / "data" / "aqi.duckdb"), "AQI_SNAPSHOT_5MIN_URL": url}


def _run(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    completed = subprocess.run([sys.executable, "-m", "aqi_assets.first_run"], env=env, capture_output=True,
                               text=True, timeout=300, cwd=PROJECT_ROOT)
    return completed, time.monotonic() - started


def test_a_run_says_what_landed_and_what_next(tmp_path: Path) -> None:
    records = fragment_records()
    with local_http_server() as server:
        server.expect_request("/data.json").respond_with_data(json.dumps(records), content_type="application/json")
        completed, _ = _run(_env(tmp_path, server.url_for("/data.json")))
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert f"snapshot      {len(records)} records" in out
    assert "readings      " in out and "values quarantined" in out
    assert "checks        " in out and " 0 failed" in out
    assert str(tmp_path / "data" / "aqi.duckdb") in out
    assert "make dev" in out and "make site" in out
    # Quiet: no Dagster DEBUG/INFO lines, no Beta/Preview/Supersession warnings before the summary.
    noise = [line for line in (completed.stdout + completed.stderr).splitlines()
             if " - DEBUG - " in line or " - INFO - " in line or "Warning" in line]
    assert noise == []


def test_without_a_reachable_host_it_fails_fast_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    completed, seconds = _run(_env(tmp_path, f"http://127.0.0.1:{port}/static/v2/data.json"))
    assert completed.returncode == 2 and seconds < 30
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("offline: cannot connect to 127.0.0.1") and "make demo" in lines[0]
    assert not (tmp_path / "data" / "aqi.duckdb").exists()  # nothing fetched, nothing merged


def test_a_resolver_that_fails_or_never_answers_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*_args: object, **_kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(Unreachable, match=r"cannot resolve data\.sensor\.community"):
        check_reachable("https://data.sensor.community/static/v2/data.json")

    def silent(*_args: object, **_kwargs: object) -> None:
        time.sleep(3)

    monkeypatch.setattr(socket, "getaddrinfo", silent)
    started = time.monotonic()
    with pytest.raises(Unreachable, match="no DNS answer"):
        check_reachable("https://data.sensor.community/static/v2/data.json", timeout_s=0.5)
    assert time.monotonic() - started < 3.5
    check_reachable("file:///tmp/data.json")  # a file URL needs no network
