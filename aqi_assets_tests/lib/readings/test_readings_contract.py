"""The readings contract: the period registry, the columns and their DDL, and the history accessor across tiers."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.lib.common.location import open_location
from aqi_assets.lib.readings import periods
from aqi_assets.lib.readings.history import HISTORY_VIEW, HistoryError, attach_history, cold_filter, pruned
from aqi_assets.lib.readings.periods import PERIODS, Feed, Period
from aqi_assets.lib.readings.schema import (
    AQI_READINGS_DDL,
    COLUMN_DESCRIPTIONS,
    READINGS_COLUMNS,
    column_names,
    ensure_schema,
    readings_connection,
)
from aqi_assets.lib.tiers.parquet_tier import export_day
from aqi_assets.lib.tiers.retention import prune_hot_tier

OLD, OTHER = date(2016, 3, 1), date(2016, 3, 2)


def test_the_registry_says_what_each_period_feeds() -> None:
    assert set(PERIODS) == {"5min", "24h", "archive"}
    assert periods.index_sources() == ("archive", "5min")  # every measurement wins over 5-minute means
    assert "24h" not in periods.period_names(Feed.INDICES)  # a running 24-hour mean is no hourly input
    assert periods.period_names(Feed.TIER) == tuple(PERIODS)  # the tier takes every period
    assert set(periods.snapshot_periods()) == {"5min", "24h"}
    assert periods.snapshot_period("5min").job_name == "ingest_5min_job"
    with pytest.raises(ValueError, match="not fetched as a snapshot"):
        periods.snapshot_period("archive")
    with pytest.raises(ValueError, match="unknown period 'hourly'"):
        periods.period("hourly")


def test_a_period_is_checked_when_declared_and_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="index_rank exactly when"):
        Period(name="x", source="s", averaging="a", feeds=frozenset({Feed.INDICES}))
    monkeypatch.setitem(PERIODS, "1h", Period(name="1h", source="s", averaging="1 hour",
                                              feeds=frozenset({Feed.INDICES, Feed.TIER}), index_rank=0))
    assert periods.index_sources() == ("1h", "archive", "5min")
    assert "1h" in periods.period_names(Feed.TIER) and "1h" not in periods.period_names(Feed.SINKS)
    assert periods.sql_list(("1h", "5min")) == "('1h', '5min')"
    monkeypatch.setitem(PERIODS, "2h", PERIODS["1h"])  # filed under another name: refused wherever it is read
    with pytest.raises(ValueError, match=r"another name than their period's: \['2h'\]"):
        periods.period_names()
    with pytest.raises(ValueError, match="not a plain word"):
        periods.sql_list(("x'; DROP TABLE aqi_readings; --",))


def test_the_table_is_made_from_the_columns_in_order(tmp_path: Path) -> None:
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        described = connection.execute("DESCRIBE aqi_readings").fetchall()
    assert [(row[0], row[1]) for row in described] == [(c.name, c.sql_type) for c in READINGS_COLUMNS]
    assert {row[0] for row in described if row[2] == "NO"} == {c.name for c in READINGS_COLUMNS if c.not_null}
    assert set(COLUMN_DESCRIPTIONS) == set(column_names()) and all(COLUMN_DESCRIPTIONS.values())
    assert 'PRIMARY KEY ("period", "sensor_id", "timestamp")' in AQI_READINGS_DDL


def test_a_file_of_an_older_release_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as connection:  # the first release's table: no ingest_seq, no no_index_reason
        old = [c for c in READINGS_COLUMNS if c.name not in ("ingest_seq", "no_index_reason")]
        connection.execute("CREATE TABLE aqi_readings (" + ", ".join(f'"{c.name}" {c.sql_type}' for c in old) + ")")
        connection.execute("INSERT INTO aqi_readings (period, sensor_id, \"timestamp\", snapshot, ingested_at) "
                           "VALUES ('5min', 1, TIMESTAMP '2020-01-01 00:00:00', 's', TIMESTAMP '2020-01-01')")
    with readings_connection(path) as connection:
        names = [row[0] for row in connection.execute("DESCRIBE aqi_readings").fetchall()]
        assert {"ingest_seq", "no_index_reason"} <= set(names)
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchall() == [(1,)]
    with duckdb.connect(str(path), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM snapshot_log").fetchall() == [(0,)]  # created by the migration


def _two_pruned_days(tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, list[dict], object]:
    location = open_location(str(tmp_path / "parquet"))
    connection = duckdb.connect(str(tmp_path / "aqi.duckdb"))
    ensure_schema(connection)
    rows = []
    for day in (OLD, OTHER):
        day_rows = synthetic_readings(20, now=datetime.combine(day, datetime.min.time()) + timedelta(hours=12),
                                      seed=day.toordinal(), per_sensor=5)
        for row in day_rows:
            row["ingest_seq"] = 1
        rows += day_rows
    insert_readings(connection, rows)
    for day in (OLD, OTHER):
        export_day(connection, location, day)
    assert prune_hot_tier(connection, location, today=date(2016, 4, 1), hot_days=7).days_pruned == [OLD, OTHER]
    return connection, rows, location


def test_the_view_spans_both_tiers_and_fails_when_the_tier_is_missing_or_moved(tmp_path: Path) -> None:
    connection, rows, location = _two_pruned_days(tmp_path)
    with connection:
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchall() == [(0,)]
        assert pruned(connection) == {"5min": [OLD, OTHER]}
        with pytest.raises(HistoryError, match="needs the tier's location"):
            attach_history(connection, None)
        with pytest.raises(HistoryError, match="exported outside the tier"):
            attach_history(connection, open_location(str(tmp_path / "elsewhere")))
        view = attach_history(connection, location)
        assert view.cold_days == 2
        stored = connection.execute(
            f'SELECT sensor_id, "timestamp", pm25, pm10 FROM {HISTORY_VIEW} ORDER BY sensor_id, "timestamp"'
        ).fetchall()
        expected = sorted((r["sensor_id"], r["timestamp"], r["pm25"], r["pm10"]) for r in rows)
        assert stored == expected


def test_a_window_limits_both_tiers_alike(tmp_path: Path) -> None:
    connection, rows, location = _two_pruned_days(tmp_path)
    with connection:
        # One hot row on OTHER, beside its pruned ones: the window must not show it either when outside.
        late = synthetic_readings(1, now=datetime.combine(OTHER, datetime.min.time()) + timedelta(hours=20), seed=3,
                                  per_sensor=1)
        for row in late:
            row["period"] = "24h"
        insert_readings(connection, late)
        start = datetime.combine(OLD, datetime.min.time())
        view = attach_history(connection, location, window=(start, start + timedelta(days=1)))
        assert view.pruned == {"5min": [OLD]}  # OTHER's files are not even opened
        seen = connection.execute(f'SELECT DISTINCT CAST("timestamp" AS DATE) FROM {HISTORY_VIEW}').fetchall()
        assert seen == [(OLD,)]
        assert connection.execute(f"SELECT count(*) FROM {HISTORY_VIEW}").fetchall() == [
            (sum(r["timestamp"].date() == OLD for r in rows),)
        ]
        whole = attach_history(connection, location)
        assert whole.cold_days == 2
        assert connection.execute(f"SELECT count(*) FROM {HISTORY_VIEW}").fetchall() == [(len(rows) + 1,)]
        with pytest.raises(ValueError, match="no window"):
            attach_history(connection, location, persist=True, window=(start, start + timedelta(days=1)))


def test_the_cold_filter_keeps_exactly_the_pruned_pairs() -> None:
    days = {"archive": [date(2016, 3, 1), date(2016, 3, 3)], "5min": [date(2016, 3, 2)]}
    with duckdb.connect() as connection:
        connection.execute("CREATE TABLE t AS SELECT p AS period, DATE '2016-03-01' + d::INTEGER AS date "
                           "FROM (VALUES ('archive'), ('5min'), ('24h')) v(p), range(4) r(d)")
        kept = connection.execute(f"SELECT period, date FROM t WHERE {cold_filter(days)} ORDER BY ALL").fetchall()
    assert kept == [("5min", date(2016, 3, 2)), ("archive", date(2016, 3, 1)), ("archive", date(2016, 3, 3))]
    assert cold_filter({}) == "FALSE"
