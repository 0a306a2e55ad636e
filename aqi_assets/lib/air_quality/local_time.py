"""Each sensor location's time zone and its standard UTC offset, for daily indices on the local standard day.

US EPA / AirNow compute the daily AQI over the *local standard time* day: daylight saving is never counted, so a
day is always 24 hourly means long. Here:

- **Zone**: the IANA name from the coordinates, looked up offline with `tzfpy` (timezone-boundary-builder
  polygons, oceans included as ``Etc/GMT±N``). A location without usable coordinates (NaN, None, ±inf, or out
  of −90..90 / −180..180), or one that no zone covers, gets ``LocalZone(None, 0, 0)``: the UTC day.
- **Standard offset of a zone on a date** = the smallest UTC offset the zone has in that date's calendar year.
  Daylight saving always moves clocks *forward* of standard time, in both hemispheres (Sydney's summer is in
  January, Berlin's in July: the year holds both), so the smallest offset of the year is the standard one. This
  also gives Europe/Dublin its winter GMT as standard time, although tzdata models Irish time as standard IST
  (+1) with a *negative* DST in winter; by the same rule Africa/Casablanca and Africa/El_Aaiun get +00 (tzdata's
  +01 "standard" with a negative DST during Ramadan). A zone that changed its standard offset during the year
  gets the smaller of the two, the same for the whole year.
  The offsets are sampled with `zoneinfo` at noon UTC on *every* day of the year, not once a month: a spell
  shorter than a month is then still seen (in 2013 Asia/Amman returned from its year-long summer time to +02
  only on 20 December, which samples on the 15th of each month miss: they would give +03).
- **Offsets that are not whole hours** (Asia/Kolkata +5:30, Asia/Kathmandu +5:45, America/St_Johns −3:30):
  the hourly means are on UTC hours, so the local day is taken from the first whole UTC hour at or after local
  midnight: ``standard_offset_hours = floor(minutes / 60)`` (Kolkata → +5, St John's → −4). The exact offset is
  kept in ``standard_offset_minutes``.
- **Range check**: a standard offset outside −12..+14 hours raises ValueError: no zone in use has one, so it
  would mean a bad zone (or a date before standard time, when tzdata gives local mean time).

Both look-ups are cached (`functools.lru_cache`): the zone per (latitude, longitude) and the offset per
(zone, year). `local_zones` looks up each distinct location once per call, so one row per sensor costs one
polygon look-up per distinct place, and each distinct zone's offset is computed once per year.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from tzfpy import get_tz

# Time zones in use range from UTC−12 (Baker Island, Etc/GMT+12) to UTC+14 (Line Islands).
MIN_STANDARD_OFFSET_MINUTES = -12 * 60
MAX_STANDARD_OFFSET_MINUTES = 14 * 60
# Bounded: a long-running process meets each sensor's location again and again, but not without end.
ZONE_CACHE_SIZE = 1 << 17


@dataclass(frozen=True)
class LocalZone:
    time_zone: str | None  # IANA name from the coordinates; None without coordinates
    standard_offset_hours: int  # whole hours added to UTC for the local standard day (0 without coordinates)
    standard_offset_minutes: int  # the zone's exact standard offset in minutes (e.g. 330 for Asia/Kolkata)


NO_ZONE = LocalZone(None, 0, 0)


@lru_cache(maxsize=ZONE_CACHE_SIZE)
def zone_at(latitude: float, longitude: float) -> str | None:
    """The IANA zone covering a point, or None where none does (tzfpy answers "")."""
    return get_tz(longitude, latitude) or None  # tzfpy takes longitude first


@lru_cache(maxsize=4096)  # about 450 zones, a few years each
def _standard_offset_minutes_in_year(time_zone: str, year: int) -> int:
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"time zone {time_zone!r} is not in this zoneinfo database (tzdata older than tzfpy's boundaries?)"
        ) from error
    first_noon = datetime.datetime(year, 1, 1, 12, tzinfo=datetime.timezone.utc)
    days = 366 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 365
    smallest = min((first_noon + datetime.timedelta(days=day)).astimezone(zone).utcoffset() for day in range(days))
    minutes = round(smallest.total_seconds() / 60)
    if not MIN_STANDARD_OFFSET_MINUTES <= minutes <= MAX_STANDARD_OFFSET_MINUTES:
        raise ValueError(f"{time_zone} has standard offset {minutes} min in {year}: outside UTC−12..UTC+14")
    return minutes


def standard_offset_minutes(time_zone: str, on: datetime.date) -> int:
    """The zone's standard offset on that date: DST never counted (the smallest offset of the date's year)."""
    return _standard_offset_minutes_in_year(time_zone, on.year)


def _local_zone(time_zone: str | None, on: datetime.date) -> LocalZone:
    if time_zone is None:
        return NO_ZONE
    minutes = standard_offset_minutes(time_zone, on)
    # Floor, not round: the day starts at the first whole UTC hour at or after local midnight.
    return LocalZone(time_zone, math.floor(minutes / 60), minutes)


def local_zones(latitudes: np.ndarray, longitudes: np.ndarray, on: datetime.date) -> list[LocalZone]:
    """One LocalZone per location; NaN/None coordinates → LocalZone(None, 0, 0). Looks up each DISTINCT
    (lat, lon) once (the caller passes one row per sensor; many sensors share zones), and each distinct zone's
    standard offset once per date."""
    lat = np.asarray(latitudes, dtype=float).reshape(-1)  # None in an object array becomes NaN
    lon = np.asarray(longitudes, dtype=float).reshape(-1)
    if lat.shape != lon.shape:
        raise ValueError(f"{lat.size} latitudes but {lon.size} longitudes")
    usable = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    result = [NO_ZONE] * lat.size
    if not usable.any():
        return result
    places, place_of_row = np.unique(np.column_stack([lat[usable], lon[usable]]), axis=0, return_inverse=True)
    local_zone_by_name: dict[str | None, LocalZone] = {}  # one object per distinct zone, shared by its places
    place_zones: list[LocalZone] = []
    for place_latitude, place_longitude in places.tolist():
        time_zone = zone_at(place_latitude, place_longitude)
        if time_zone not in local_zone_by_name:
            local_zone_by_name[time_zone] = _local_zone(time_zone, on)
        place_zones.append(local_zone_by_name[time_zone])
    for row, place in zip(np.flatnonzero(usable).tolist(), place_of_row.reshape(-1).tolist(), strict=True):
        result[row] = place_zones[place]
    return result
