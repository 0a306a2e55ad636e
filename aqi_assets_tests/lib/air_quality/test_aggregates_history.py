"""The official indices read the whole history: a day pruned to the Parquet tier recomputes to the same rows, the
checks read it too, and without the history view attached on the connection every entry point fails loudly instead
of reading DuckDB alone (or a stored view that may predate the last prune).

The tier is the real one (`export_day`, `verify_day`, `prune_hot_tier` on a local directory)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from aqi_assets.lib.air_quality.aggregate_checks import check_daily_partition, check_hourly_partition
from aqi_assets.lib.air_quality.aggregates import (
    AGGREGATES_SCHEMA,
    AQI_DAILY,
    AQI_HOURLY,
    daily_indices,
    hourly_indices,
    source_periods,
)
from aqi_assets.lib.common.duckdb_tables import replace_partition
from aqi_assets.lib.common.location import open_location
from aqi_assets.lib.readings.history import HISTORY_VIEW, HistoryError, attach_history
from aqi_assets.lib.readings.periods import ARCHIVE, PERIODS, Feed, Period
from aqi_assets.lib.readings.schema import ensure_schema
from aqi_assets.lib.tiers.parquet_tier import export_day, verify_day
from aqi_assets.lib.tiers.retention import prune_hot_tier
from aqi_assets_tests.lib.air_quality.test_aggregates import add_hours

LOOKBACK_DAY = date(2025, 3, 10)  # holds the lookback of the day under test
DAY = date(2025, 3, 11)  # the day whose indices are recomputed after pruning
NEXT_DAY = date(2025, 3, 12)  # stays hot: its indices mix hot rows with the pruned lookback
START = datetime(2025, 3, 10)


def midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def quarter(value: float) -> float:
    """Values on a 0.25 grid: sums of a few of them are exact in any order, so DuckDB's scan order of hot rows
    and of Parquet files cannot change a mean in its last bit."""
    return round(value * 4) / 4


def fill_history(connection: duckdb.DuckDBPyConnection) -> None:
    """Three days: 5-minute readings all along, archived measurements covering part of the lookback day and all of
    DAY (where they win over 5-minute readings of the same hours), 24-hour averages, a counting sensor."""
    hours = range(72)
    add_hours(connection, 1, {h: quarter(8 + (h * 7) % 40) for h in hours}, pm10=30.5)
    add_hours(connection, 2, {h: quarter(12 + (h * 5) % 30) for h in range(12, 48)}, pm10=41.25,
              period=ARCHIVE, start=START)
    # 5-minute readings of sensor 2: covering no more slots than the archived hours, they lose to them (the
    # archive wins a tie); used in the hours after them.
    add_hours(connection, 2, {h: 300.0 for h in range(34, 40)}, start=START)
    add_hours(connection, 2, {h: quarter(20 + h % 9) for h in range(48, 60)}, start=START)
    add_hours(connection, 3, {h: 15.5 for h in range(0, 72, 24)}, period="24h", start=START)  # never an input
    add_hours(connection, 4, {h: 60.0 for h in hours}, sensor_type="PPD42NS", start=START)  # counts, not µg/m³
    add_hours(connection, 5, {h: quarter(3 + h % 11) for h in hours if h % 5}, pm10=9.75)


def sorted_table(table: pa.Table, time_column: str) -> pa.Table:
    return table.sort_by([("sensor_id", "ascending"), (time_column, "ascending")])


@pytest.fixture
def connection(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    with duckdb.connect(str(tmp_path / "aqi.duckdb")) as conn:
        ensure_schema(conn)
        yield conn


def test_a_pruned_day_recomputes_to_the_same_indices_from_the_parquet_tier(
    connection: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    fill_history(connection)
    attach_history(connection, None)
    hours = (midnight(DAY), midnight(NEXT_DAY) + timedelta(days=1))
    hourly_before = hourly_indices(connection, *hours)
    daily_before = daily_indices(connection, *hours)
    # The day under test holds both sources: sensor 2's hours are archived ones, sensor 1's 5-minute ones.
    day_end = midnight(NEXT_DAY)
    sources = {(row["sensor_id"], row["pm25_source"]) for row in hourly_before.to_pylist() if row["hour"] < day_end}
    assert {(1, "5min"), (2, ARCHIVE), (5, "5min")} <= sources and (2, "5min") not in sources
    assert {row["sensor_id"] for row in hourly_before.to_pylist()} == {1, 2, 5}
    day_rows = {row["sensor_id"]: row for row in daily_before.to_pylist() if row["day"] == DAY}
    assert day_rows[2]["archive_hours"] == 24 and day_rows[1]["archive_hours"] == 0
    assert day_rows[2]["pm25_mean"] < 300  # the archived hours win over the 5-minute readings at 300

    location = open_location(str(tmp_path / "parquet"))
    for day in (LOOKBACK_DAY, DAY):
        export_day(connection, location, day)
        assert verify_day(connection, location, day).ok
    report = prune_hot_tier(connection, location, today=NEXT_DAY, hot_days=0)
    assert report.days_pruned == [LOOKBACK_DAY, DAY]
    left = connection.execute(
        'SELECT period, count(*) FROM aqi_readings WHERE "timestamp" < ? GROUP BY period', [midnight(NEXT_DAY)]
    ).fetchall()
    assert left == []  # every period of both days (archive and 24-hour rows too) lives only in Parquet now

    # A history that cannot reach the pruned days is refused, never read as DuckDB alone.
    with pytest.raises(HistoryError, match="AQI_PARQUET_URI"):
        attach_history(connection, None)
    view = attach_history(connection, location)
    assert view.cold_days == 2 and set(view.pruned) >= {"5min", ARCHIVE, "24h"}

    hourly_after = hourly_indices(connection, *hours)
    daily_after = daily_indices(connection, *hours)
    assert hourly_after.num_rows == hourly_before.num_rows > 0
    assert sorted_table(hourly_after, "hour").equals(sorted_table(hourly_before, "hour"))
    assert daily_after.num_rows == daily_before.num_rows > 0
    assert sorted_table(daily_after, "day").equals(sorted_table(daily_before, "day"))

    # The partition checks recompute their reference from the same view: the stored partitions pass.
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, hourly_after, "hour", hours)
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_DAILY, daily_after, "day", hours)
    for outcomes in (check_hourly_partition(connection, *hours), check_daily_partition(connection, *hours)):
        assert {name: outcome.passed for name, outcome in outcomes.items()} == dict.fromkeys(outcomes, True)
        assert all(outcome.checked_rows > 0 for outcome in outcomes.values())


def test_every_entry_point_fails_without_the_history_view(connection: duckdb.DuckDBPyConnection) -> None:
    add_hours(connection, 1, {h: 10.0 for h in range(24)})  # readings are there: reading them would "work"
    day = (START, START + timedelta(days=1))
    calls = [
        lambda: hourly_indices(connection, *day),
        lambda: daily_indices(connection, *day),
        lambda: check_hourly_partition(connection, *day),
        lambda: check_daily_partition(connection, *day),
    ]

    def all_refused() -> None:
        for call in calls:
            with pytest.raises(HistoryError, match=r"call aqi_assets\.lib\.readings\.history\.attach_history"):
                call()

    all_refused()
    # A view stored in the file (`persist=True`, for the duckdb shell) is not this connection's attachment: it may
    # predate the last prune, so it is refused too.
    attach_history(connection, None, persist=True)
    assert connection.execute(f"SELECT count(*) FROM {HISTORY_VIEW}").fetchall()[0][0] == 24 * 12
    all_refused()
    attach_history(connection, None)
    hourly = hourly_indices(connection, *day)
    assert hourly.num_rows == 24
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, hourly, "hour", day)
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_DAILY, daily_indices(connection, *day), "day", day)
    for check in (check_hourly_partition, check_daily_partition):
        assert all(outcome.passed and outcome.checked_rows for outcome in check(connection, *day).values())


def test_the_sources_are_read_from_the_registry_at_call_time(
    connection: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A period registered later with the best rank wins a tie of covered slots over the 5-minute readings."""
    add_hours(connection, 1, {0: 10.0, 1: 10.0}, start=START)
    add_hours(connection, 1, {1: 50.0}, period="1min", start=START)
    attach_history(connection, None)
    hour = (START + timedelta(hours=1), START + timedelta(hours=2))
    assert hourly_indices(connection, *hour).to_pylist()[0]["pm25_source"] == "5min"  # '1min' unknown: not an input
    monkeypatch.setitem(PERIODS, "1min", Period(name="1min", source="a test feed", averaging="1 minute",
                                                feeds=frozenset(Feed), index_rank=0))
    assert source_periods()[0] == "1min"
    [row] = hourly_indices(connection, *hour).to_pylist()
    assert row["pm25_source"] == "1min" and row["pm25_mean"] == pytest.approx(50.0)
