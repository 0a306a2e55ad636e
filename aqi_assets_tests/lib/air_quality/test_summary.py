"""The summary metadata of `aqi_readings`: the current picture, per period, outdoor, latest reading per sensor."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aqi_assets.lib.air_quality.normalise import merge_snapshot
from aqi_assets.lib.air_quality.summary import NO_INDEX, readings_summary
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.lib.air_quality.test_normalise import record, write_snapshot

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def reading(sensor_id: int, at: datetime, values: list[tuple[str, object]], sensor_type: str = "SDS011",
            indoor: int = 0) -> dict:
    entry = record(sensor_id, at.strftime("%Y-%m-%d %H:%M:%S"), values,
                   location={"id": sensor_id, "latitude": "48.1", "longitude": "11.5", "indoor": indoor})
    entry["sensor"]["sensor_type"]["name"] = sensor_type
    return entry


@pytest.fixture
def history(tmp_path: Path):
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        yield connection


def merge(connection, directory: Path, name: str, period: str, at: datetime, records: list[dict]) -> None:
    path = write_snapshot(directory, f"{name}.json.gz", records)
    merge_snapshot(connection, path, period, now=at + timedelta(minutes=5))


def test_band_counts_are_the_current_picture_per_period(history, tmp_path) -> None:
    # A 24-hour reading merged 30 hours before the newest 24-hour merge: outside the merges looked at.
    merge(history, tmp_path, "old-24h", "24h", T0 - timedelta(hours=30), [reading(7, T0 - timedelta(hours=30),
                                                                                   [("P2", "90")])])
    # A sensor that went quiet two hours ago (merged today): not part of the current 5-minute picture.
    merge(history, tmp_path, "quiet", "5min", T0 - timedelta(hours=2), [reading(6, T0 - timedelta(hours=2),
                                                                                 [("P2", "90")])])
    for step, pm25 in enumerate(["10", "20", "50"]):  # sensor 1 every 5 minutes: only its latest counts
        at = T0 + timedelta(minutes=5 * step)
        merge(history, tmp_path, f"5min-{step}", "5min", at, [
            reading(1, at, [("P1", "60"), ("P2", pm25)]),
            reading(2, at, [("P1", "100"), ("P2", "80")]),
            reading(3, at, [("P1", "100"), ("P2", "80")], indoor=1),  # indoor: not on the map
            reading(4, at, [("temperature", "4.5"), ("humidity", "80")], sensor_type="DHT22"),  # no PM
            reading(5, at, [("P1", "260.5"), ("P2", "88.1")], sensor_type="PPD42NS"),  # particle counts
        ])
    merge(history, tmp_path, "24h-now", "24h", T0, [reading(1, T0, [("P1", "40"), ("P2", "30")])])
    # A replayed 5-minute snapshot from three hours ago, merged last: its sensor is not current.
    merge(history, tmp_path, "replayed", "5min", T0 + timedelta(minutes=15), [reading(8, T0 - timedelta(hours=3),
                                                                                      [("P2", "90")])])

    summary = readings_summary(history)
    assert summary.total_rows == 19
    assert summary.rows_per_period == {"24h": 2, "5min": 17}
    assert summary.daqi_band_counts == {
        "5min": {"Low": 0, "Moderate": 1, "High": 0, "Very High": 1, NO_INDEX: 1},  # sensors 1 (PM2.5 50), 2, 5
        "24h": {"Low": 1, "Moderate": 0, "High": 0, "Very High": 0, NO_INDEX: 0},  # sensor 1 (PM2.5 30)
    }
    assert summary.aqi_us_category_counts["5min"] == {
        "Good": 0, "Moderate": 0, "Unhealthy for Sensitive Groups": 1, "Unhealthy": 1, "Very Unhealthy": 0,
        "Hazardous": 0, NO_INDEX: 1,
    }
    assert summary.aqi_us_category_counts["24h"]["Moderate"] == 1
    assert sum(summary.aqi_us_category_counts["24h"].values()) == 1


def test_an_empty_history_has_zero_counts_for_every_period(history) -> None:
    summary = readings_summary(history)
    assert summary.total_rows == 0 and summary.rows_per_period == {}
    assert set(summary.daqi_band_counts) == {"5min", "24h"}
    assert all(count == 0 for counts in summary.daqi_band_counts.values() for count in counts.values())
