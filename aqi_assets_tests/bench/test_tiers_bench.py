"""The tiers benchmark's backfilled-month mode runs end to end on a small month (the timings are not asserted)."""

from __future__ import annotations

import json

from aqi_assets.bench.__main__ import main


def test_a_backfilled_month_is_exported_verified_and_pruned(capsys) -> None:
    args = ["tiers", "--backfilled-month", "--archive-days", "3", "--archive-sensors", "4",
            "--archive-interval-s", "1440", "--snapshot-days", "2"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    archived = 3 * 4 * 60  # days × sensors × one measurement every 24 minutes
    five_minute = 2 * 4 * 288
    assert result["rows_per_period"] == {"archive": archived, "5min": five_minute}
    assert result["rows_exported_per_period"] == {"5min": five_minute, "24h": 0, "archive": archived}
    assert result["all_verified"] is True and result["parquet_bytes"] > 0
    # The hot window is the snapshot days: the whole month goes, the five-minute days stay.
    assert result["days_pruned"] == 3 and result["days_kept_hot"] == {}
    assert result["rows_deleted_per_period"] == {"archive": archived}
    assert result["rows_left_hot"] == {"5min": five_minute}
    assert result["rows_across_tiers"] == {"archive": archived, "5min": five_minute}
    assert all(mb > 0 for mb in result["peak_rss_mb"].values())
