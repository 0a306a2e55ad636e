"""Adding a period is one edit: a period registered in a fixture flows through the sinks, the Parquet export, its
verification, retention (with its sync guard) and the history accessor, with no other change anywhere."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.lib.common.location import open_location
from aqi_assets.lib.readings.history import HISTORY_VIEW, attach_history, day_path
from aqi_assets.lib.readings.periods import PERIODS, Feed, Period
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers.parquet_tier import export_day, verify_day
from aqi_assets.lib.tiers.retention import prune_hot_tier
from aqi_assets_tests.lib.sinks.test_contract import dimensions, sync_both, tags_of

EXTRA = "1h"


@pytest.fixture
def extra_period(monkeypatch: pytest.MonkeyPatch) -> str:
    """The one edit: an entry in the registry (hourly means from some new feed, synced and tiered)."""
    monkeypatch.setitem(
        PERIODS, EXTRA,
        Period(name=EXTRA, source="a new feed", averaging="1 hour", feeds=frozenset({Feed.SINKS, Feed.TIER})),
    )  # fmt: skip
    return EXTRA


def test_a_registered_period_flows_through_sinks_tier_retention_and_the_accessor(
    extra_period: str, tmp_path: Path
) -> None:
    db_path = tmp_path / "aqi.duckdb"
    location = open_location(str(tmp_path / "parquet"))
    # Noon of a recent day: every reading on one day whatever the clock says (and in Timestream's window).
    now = (datetime.now(timezone.utc) - timedelta(hours=12)).replace(hour=12, minute=0, second=0, microsecond=0)
    day = now.date()
    five_min = synthetic_readings(6, now=now, per_sensor=2, seed=1)
    extra = [{**row, "period": extra_period} for row in synthetic_readings(8, now=now, per_sensor=2, seed=2)]
    with readings_connection(db_path) as connection:
        insert_readings(connection, five_min + extra)
        # Exported and verified like the built-in periods.
        export = export_day(connection, location, day)
        assert export.rows[extra_period] == len(extra)
        assert location.files_under(day_path(location, extra_period, day))
        verification = verify_day(connection, location, day)
        assert verification.ok and verification.parquet[extra_period].rows == len(extra)
        # Retention waits for the sinks: the extra period's readings are pending like any other.
        held = prune_hot_tier(connection, location, today=day + timedelta(days=2), hot_days=0,
                              enabled_sinks=["timestream", "influxdb"])
        assert held.days_pruned == [] and "not yet synced" in held.skipped[day.isoformat()]

    timestream, influx = sync_both(db_path)
    assert sorted(dimensions(r)["period"] for r in timestream.records if dimensions(r)["period"] == extra_period) \
        == [extra_period] * len(extra)
    assert sum(tags_of(line)["period"] == extra_period for line in influx.lines) == len(extra)

    with readings_connection(db_path) as connection:
        report = prune_hot_tier(connection, location, today=day + timedelta(days=2), hot_days=0,
                                enabled_sinks=["timestream", "influxdb"])
        assert report.days_pruned == [day]
        assert report.rows_deleted_per_period == {"5min": len(five_min), extra_period: len(extra)}
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchall() == [(0,)]
        attach_history(connection, location)
        back = connection.execute(
            f'SELECT sensor_id, "timestamp", pm25 FROM {HISTORY_VIEW} WHERE period = ? ORDER BY ALL', [extra_period]
        ).fetchall()
    assert back == sorted((r["sensor_id"], r["timestamp"], r["pm25"]) for r in extra)
