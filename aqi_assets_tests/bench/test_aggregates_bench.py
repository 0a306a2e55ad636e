"""The aggregates benchmark end to end on a small generated history: each timed step (in a process of its
own) writes the partitions it computed (the figures themselves are for the README, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_aggregates_bench_on_a_small_history() -> None:
    sensors, days = 40, 2
    out = subprocess.run(
        [sys.executable, "-m", "aqi_assets.bench", "aggregates", "--sensors", str(sensors), "--days", str(days),
         "--backfill-days", str(days)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout)
    assert result["history_rows"] > 0.9 * sensors * days * 1440  # a few hours offline, by design
    # Every outdoor sensor (the generator puts every 50th indoors) reports in the last hour and day, apart from
    # the generator's offline hours.
    outdoor = sum(1 for s in range(sensors) if s % 50)
    assert 0.8 * outdoor <= result["hourly_partition"]["rows"] <= outdoor
    assert result["daily_partition"]["rows"] == outdoor
    assert result[f"daily_backfill_{days}d"]["rows"] == outdoor * days
    steps = [result["hourly_partition"], result["daily_partition"], result[f"daily_backfill_{days}d"]]
    assert all(step["peak_rss_mb"] > 0 and step["seconds"] > 0 for step in steps)
    assert result["peak_rss_mb"] == max(step["peak_rss_mb"] for step in steps)
