"""The history benchmark end to end on a small history: it builds a synced history, and its sync scan finds
exactly the snapshot merged on top (the figures themselves are for the README, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_history_bench_on_a_small_synced_history() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aqi_assets.bench", "history", "--rows", "45000", "--records", "1000"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout)
    for step in ("merge", "checks", "summary", "sync_scan"):
        assert result[step]["seconds"] > 0 and result[step]["peak_rss_mb"] > 0, step
    merged = result["merge"]["rows_merged"]
    assert 950 < merged <= 1000
    assert all(result["checks"]["passed"].values())
    assert result["summary"]["total_rows"] == 45000 + merged
    # The history counts as synced: only the new snapshot's readings (those with a value) are pending.
    assert 0.95 * merged < result["sync_scan"]["pending"] <= merged
