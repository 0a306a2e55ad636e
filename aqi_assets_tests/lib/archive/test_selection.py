"""The archive selection: parsing `AQI_ARCHIVE_SENSORS`, and countries and boxes resolved from the locations of
the history's recent readings (LOCATION_LOOKBACK), hot or pruned to the Parquet tier, read through the attached
accessor only."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.lib.archive.selection import (
    LOCATION_LOOKBACK,
    Box,
    SelectionError,
    location_window,
    parse_selection,
    resolve_selection,
)
from aqi_assets.lib.common.location import open_location
from aqi_assets.lib.readings.history import HistoryError, attach_history
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers.parquet_tier import export_day
from aqi_assets.lib.tiers.retention import prune_hot_tier

NOW = datetime(2026, 3, 1, 9, 30)  # naive UTC


def test_ids_countries_and_boxes_parse_and_bad_parts_are_named() -> None:
    selection = parse_selection(" 82312, de bbox:5.9, 47.3,15,55.1 ,7")
    assert selection.sensor_ids == {82312, 7} and selection.countries == {"DE"}
    assert selection.boxes == (Box(5.9, 47.3, 15.0, 55.1),)
    assert parse_selection(None).empty and parse_selection(" , ").empty
    with pytest.raises(SelectionError, match="'Germany'"):
        parse_selection("82312, Germany")
    with pytest.raises(SelectionError, match="four numbers"):
        parse_selection("bbox:1,2,3,x")
    with pytest.raises(SelectionError, match="minlon ≤ maxlon"):
        parse_selection("bbox:10,40,5,50")


def test_the_location_window_is_the_lookback_before_now() -> None:
    assert location_window(NOW) == (NOW - LOCATION_LOOKBACK, NOW)
    aware = datetime(2026, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    assert location_window(aware) == (NOW - LOCATION_LOOKBACK, NOW), "an aware moment is converted to UTC"
    start, end = location_window()
    assert end - start == LOCATION_LOOKBACK and end.tzinfo is None


def _readings(connection, day, located: dict[int, tuple[str, float, float]], seed: int) -> None:
    rows = synthetic_readings(len(located), now=datetime.combine(day, time(12)), seed=seed, per_sensor=1)
    for row, (sensor, (country, lat, lon)) in zip(rows, located.items(), strict=True):
        row.update(sensor_id=sensor, country=country, latitude=lat, longitude=lon, ingest_seq=1)
    insert_readings(connection, rows)


def test_countries_and_boxes_resolve_from_recent_readings_hot_and_cold(tmp_path: Path) -> None:
    """Sensor 1 was heard 10 days ago (that day pruned to Parquet), sensor 2 yesterday (hot), sensor 3 only
    40 days ago (pruned too): 1 and 2 are found by country and box, 3 only by its id."""
    location = open_location(str(tmp_path / "parquet"))
    today = NOW.date()
    recent, yesterday = today - timedelta(days=10), today - timedelta(days=1)
    old = (NOW - LOCATION_LOOKBACK).date() - timedelta(days=10)
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        _readings(connection, recent, {1: ("DE", 52.5, 13.4), 10: ("FR", 48.9, 2.3)}, seed=1)
        _readings(connection, yesterday, {2: ("DE", 48.1, 11.6)}, seed=2)
        _readings(connection, old, {3: ("DE", 50.1, 8.7)}, seed=3)
        for day in (old, recent):
            export_day(connection, location, day)
        assert prune_hot_tier(connection, location, today=today, hot_days=7).days_pruned == [old, recent]

        selection = parse_selection("DE, bbox:8,49,14,53, 3, PL, bbox:-10,-10,-9,-9")
        with pytest.raises(HistoryError, match="not attached"):
            resolve_selection(connection, selection)
        view = attach_history(connection, location, window=location_window(NOW))
        assert view.cold_days == 1, "only the pruned day inside the lookback is read"
        resolved = resolve_selection(connection, selection)
    assert resolved.sensor_ids == {1, 2, 3}, "1 and 2 by country, 1 by box, 3 by its id only"
    assert resolved.notes == [
        "the history knows no sensor in country PL",
        "the history knows no sensor in bbox:-10,-10,-9,-9",
    ]


def test_without_recent_readings_countries_resolve_to_nothing_and_say_why(tmp_path: Path) -> None:
    """No history at all, or one whose readings all predate the lookback: the ids stay, countries find nothing."""
    selection = parse_selection("DE, 82312")
    note = (
        f"the history holds no readings of the last {LOCATION_LOOKBACK.days} days (where the locations come "
        "from), so countries and boxes resolve to no sensor"
    )
    fresh = resolve_selection(None, selection)
    assert (fresh.sensor_ids, fresh.notes) == ({82312}, [note])
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        _readings(connection, (NOW - LOCATION_LOOKBACK).date() - timedelta(days=1), {5: ("DE", 52.5, 13.4)}, 4)
        attach_history(connection, None, window=location_window(NOW))
        stale = resolve_selection(connection, selection)
    assert (stale.sensor_ids, stale.notes) == ({82312}, [note])
