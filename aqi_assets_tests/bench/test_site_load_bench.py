"""The site-load benchmark end to end on a tiny site: real build, real nginx, a real (short) Locust run."""

from __future__ import annotations

import json

import pytest

from aqi_assets.bench.__main__ import main

pytestmark = pytest.mark.server


def test_site_load_bench_reports_per_file_percentiles_and_no_errors(capsys) -> None:
    assert main(["site-load", "--sensors", "60", "--history-hours", "3", "--phases", "3:2,3:4", "--no-browser"]) == 0

    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "site-load" and result["sensors_on_map"] > 30
    assert result["indices"] == "aggregates.aqi_hourly", "the hourly build reads the official indices"
    assert result["build"]["hourly_history_files_written"] > 0 and len(result["build"]["hourly_seconds"]) == 3
    assert result["build"]["rebuild_history_files_written"] == 0, "a 5-minute rebuild keeps the week's files"
    sizes = result["history_file_bytes_mean"]
    assert sizes["files"] == result["build"]["hourly_history_files_written"] and sizes["gzip"] < sizes["raw"]
    assert result["latest_geojson"]["gzip_bytes"] < result["latest_geojson"]["raw_bytes"]
    load = result["load"]
    for phase in ("phase_1", "phase_2"):
        assert load[phase]["errors"] == 0, load[phase]["error_examples"]
        assert load[phase]["requests"] > 0
        per_file = load[phase]["per_file"]
        assert {"index.html", "app.js", "leaflet.js", "current.json", "latest.geojson", "history.json"} <= set(per_file)
        assert all(v["p99_ms"] >= v["p50_ms"] > 0 for v in per_file.values())
    assert load["targets"] == {"p95_ms": 75.0, "p99_ms": 100.0, "errors": 0}
