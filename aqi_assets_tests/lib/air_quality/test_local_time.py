"""Time zone and standard (no-DST) UTC offset of sensor locations, for the local-standard-time day."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from aqi_assets.lib.air_quality import local_time
from aqi_assets.lib.air_quality.local_time import LocalZone, local_zones, standard_offset_minutes

JANUARY = datetime.date(2025, 1, 15)
JULY = datetime.date(2025, 7, 15)


def zone_at(latitude: float | None, longitude: float | None, on: datetime.date) -> LocalZone:
    (zone,) = local_zones(np.array([latitude], dtype=object), np.array([longitude], dtype=object), on)
    return zone


@pytest.mark.parametrize("on", [JANUARY, JULY])
def test_los_angeles_is_utc_minus_8_in_summer_and_winter(on: datetime.date) -> None:
    assert zone_at(34.05, -118.24, on) == LocalZone("America/Los_Angeles", -8, -480)


def test_london_is_utc_in_summer() -> None:
    assert zone_at(51.5, -0.12, JULY) == LocalZone("Europe/London", 0, 0)


def test_berlin_is_utc_plus_1_in_summer() -> None:
    assert zone_at(52.52, 13.405, JULY) == LocalZone("Europe/Berlin", 1, 60)


def test_tokyo_is_utc_plus_9() -> None:
    assert zone_at(35.68, 139.69, JULY) == LocalZone("Asia/Tokyo", 9, 540)


@pytest.mark.parametrize("on", [JANUARY, JULY])
def test_sydney_southern_summer_time_not_counted(on: datetime.date) -> None:
    # Sydney is on +11 in January (its summer) and +10 in July.
    assert zone_at(-33.87, 151.21, on) == LocalZone("Australia/Sydney", 10, 600)


def test_dublin_standard_time_is_winter_gmt() -> None:
    # tzdata models Irish time as IST (+1) standard with a negative DST in winter; the smallest offset is GMT.
    assert zone_at(53.35, -6.26, JULY) == LocalZone("Europe/Dublin", 0, 0)
    assert zone_at(53.35, -6.26, JANUARY) == LocalZone("Europe/Dublin", 0, 0)


def test_half_hour_offsets_take_the_first_whole_utc_hour_after_local_midnight() -> None:
    assert zone_at(28.61, 77.21, JULY) == LocalZone("Asia/Kolkata", 5, 330)
    assert zone_at(47.56, -52.71, JULY) == LocalZone("America/St_Johns", -4, -210)
    assert zone_at(27.7, 85.32, JULY) == LocalZone("Asia/Kathmandu", 5, 345)


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [
        (None, None),
        (float("nan"), 13.4),
        (52.5, float("nan")),
        (None, 13.4),
        (float("inf"), 0.0),
        (95.0, 13.4),
        (52.5, 181.0),
    ],
)
def test_without_usable_coordinates_the_day_is_utc(latitude: float | None, longitude: float | None) -> None:
    assert zone_at(latitude, longitude, JULY) == LocalZone(None, 0, 0)


def test_rows_keep_their_order_and_missing_rows_mixed_in() -> None:
    latitudes = np.array([35.68, np.nan, 34.05, 35.68, 52.52])
    longitudes = np.array([139.69, 1.0, -118.24, 139.69, 13.405])
    zones = local_zones(latitudes, longitudes, JULY)
    assert [(z.time_zone, z.standard_offset_hours) for z in zones] == [
        ("Asia/Tokyo", 9),
        (None, 0),
        ("America/Los_Angeles", -8),
        ("Asia/Tokyo", 9),
        ("Europe/Berlin", 1),
    ]
    assert local_zones(np.array([]), np.array([]), JULY) == []


def test_standard_offset_ignores_dst_on_any_date() -> None:
    for day in (JANUARY, JULY):
        assert standard_offset_minutes("America/New_York", day) == -300
        assert standard_offset_minutes("Pacific/Auckland", day) == 720
        assert standard_offset_minutes("America/Sao_Paulo", day) == -180
    # Jordan went back to standard time only on 2013-12-20: a short spell the daily samples still see.
    assert standard_offset_minutes("Asia/Amman", datetime.date(2013, 6, 1)) == 120


def test_bad_zones_raise() -> None:
    with pytest.raises(ValueError, match="not in this zoneinfo database"):
        standard_offset_minutes("Mars/Olympus_Mons", JULY)
    # Before standard time Manila kept local mean time of the Americas side, −15:56: outside −12..+14.
    with pytest.raises(ValueError, match="outside"):
        standard_offset_minutes("Asia/Manila", datetime.date(1800, 6, 1))


def test_20000_rows_look_up_each_distinct_location_once(monkeypatch: pytest.MonkeyPatch) -> None:
    polygon_lookups: list[tuple[float, float]] = []
    real_get_tz = local_time.get_tz

    def counting_get_tz(longitude: float, latitude: float) -> str:
        polygon_lookups.append((latitude, longitude))
        return real_get_tz(longitude, latitude)

    monkeypatch.setattr(local_time, "get_tz", counting_get_tz)
    rng = np.random.default_rng(7)
    distinct = 2_000
    place_latitudes = np.round(rng.uniform(36.0, 60.0, distinct), 3)
    place_longitudes = np.round(rng.uniform(-9.0, 30.0, distinct), 3)
    distinct_places = len(set(zip(place_latitudes.tolist(), place_longitudes.tolist(), strict=True)))
    rows = rng.integers(0, distinct, 20_000)
    latitudes, longitudes = place_latitudes[rows], place_longitudes[rows]
    local_time.zone_at.cache_clear()
    local_time._standard_offset_minutes_in_year.cache_clear()

    zones = local_zones(latitudes, longitudes, JULY)

    assert len(zones) == 20_000
    assert local_time.zone_at.cache_info().misses == distinct_places
    assert local_time.zone_at.cache_info().hits == 0
    assert len(polygon_lookups) == len(set(polygon_lookups)) == distinct_places
    distinct_zones = {zone.time_zone for zone in zones}
    assert local_time._standard_offset_minutes_in_year.cache_info().misses == len(distinct_zones)
    assert {"Europe/Berlin", "Europe/Paris", "Europe/London"} <= distinct_zones
    for row in rng.integers(0, 20_000, 50).tolist():  # each row got its own location's zone
        assert zones[row].time_zone == real_get_tz(float(longitudes[row]), float(latitudes[row]))

    # A second date in the same year: every location from the cache, no polygon look-up.
    local_zones(latitudes, longitudes, JANUARY)
    assert len(polygon_lookups) == distinct_places
    assert local_time.zone_at.cache_info().hits == distinct_places
    assert local_time._standard_offset_minutes_in_year.cache_info().misses == len(distinct_zones)
