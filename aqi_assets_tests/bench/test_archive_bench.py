"""The archive benchmark runs end to end on a small generated day (the figures themselves are not asserted)."""

from __future__ import annotations

import json

from aqi_assets.bench.__main__ import main


def test_archive_bench_merges_every_generated_measurement(capsys) -> None:
    assert main(["archive", "--sensors", "5", "--rows", "40", "--history-days", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["files"], result["measurements"], result["rows"]) == (5, 200, 200)
    assert result["history_rows_before_timed_day"] == 400  # two days merged before the timed third
    assert result["seconds"] > 0 and result["cpu_seconds"] > 0 and result["peak_rss_mb"] > 0
