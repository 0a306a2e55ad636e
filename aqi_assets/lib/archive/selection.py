"""Which sensors to backfill: `AQI_ARCHIVE_SENSORS`, e.g. `82312, DE, bbox:5.9,47.3,15.0,55.1, type:sds011` or `all`.

An integer is a sensor id, a two-letter code a country, `bbox:minlon,minlat,maxlon,maxlat` a box,
`type:<name>` every sensor of that type (e.g. `type:sds011`), `all` the whole network. Items add up. Countries
and boxes are resolved to sensor ids from the locations the history knows recently (the archive files carry no
country, and the archive has no search): the readings of the last LOCATION_LOOKBACK, hot or already pruned to
the Parquet tier. A fresh history knows none, and the result says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.history import HISTORY_VIEW, require_attached

# The locations the history knows recently: each `raw_archive_day` partition reads this window of the history
# (`location_window`), so resolving a selection costs the same whatever the history holds. A sensor not heard
# from in this long is not found by country or box (its id still selects it). A table of the whole network's
# locations, refreshed from the live feed, would lift that limit: future work.
LOCATION_LOOKBACK = timedelta(days=30)

BBOX = re.compile(r"^bbox:(?P<values>[^:]+)$", re.IGNORECASE)
SENSOR_TYPE = re.compile(r"^type:(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)$", re.IGNORECASE)
EVERYTHING = "all"
# A box keeps its own commas (four numbers); every other item ends at a comma or blank.
TOKEN = re.compile(r"(?i)bbox:[^,\s]*(?:\s*,\s*[^,\s]+){3}|[^,\s]+")


class SelectionError(ValueError):
    """The selection text cannot be understood; the message names the part."""


@dataclass(frozen=True)
class Box:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def __str__(self) -> str:
        return f"bbox:{self.min_lon:g},{self.min_lat:g},{self.max_lon:g},{self.max_lat:g}"


@dataclass(frozen=True)
class Selection:
    sensor_ids: frozenset[int] = frozenset()
    countries: frozenset[str] = frozenset()
    boxes: tuple[Box, ...] = ()
    sensor_types: frozenset[str] = frozenset()  # lower case, as in the archive's paths
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not (self.sensor_ids or self.countries or self.boxes or self.sensor_types or self.everything)

    def describe(self) -> str:
        if self.everything:
            return EVERYTHING
        parts = [str(i) for i in sorted(self.sensor_ids)] + sorted(self.countries) + [str(b) for b in self.boxes]
        return ", ".join(parts + [f"type:{t}" for t in sorted(self.sensor_types)])


@dataclass(frozen=True)
class ResolvedSelection:
    """The sensors a selection stands for: listed ids, plus whole types, or everything."""

    sensor_ids: frozenset[int]
    notes: list[str] = field(default_factory=list)
    sensor_types: frozenset[str] = frozenset()  # every sensor of these types (lower case)
    everything: bool = False

    def matches(self, sensor_id: int, sensor_type: str) -> bool:
        return self.everything or sensor_type.lower() in self.sensor_types or sensor_id in self.sensor_ids

    @property
    def empty(self) -> bool:
        return not (self.everything or self.sensor_types or self.sensor_ids)

    def types_to_fetch(self) -> frozenset[str] | None:
        """The sensor types whose monthly files hold the selection (None: every type, for listed sensors may be
        of any type)."""
        return None if self.everything or self.sensor_ids else self.sensor_types

    def ids_within(self, sensor_type: str) -> frozenset[int] | None:
        """The sensors to keep from a file of ``sensor_type`` (None: all of them)."""
        return None if self.everything or sensor_type.lower() in self.sensor_types else self.sensor_ids

    def describe(self) -> str:
        if self.everything:
            return "every sensor"
        parts = [f"{len(self.sensor_ids)} sensor ids"] if self.sensor_ids else []
        return ", ".join(parts + [f"type:{t}" for t in sorted(self.sensor_types)]) or "no sensor"


def parse_selection(text: str | None) -> Selection:
    """Parse a selection; empty or unset text gives an empty selection (the backfill is disabled)."""
    ids: set[int] = set()
    countries: set[str] = set()
    boxes: list[Box] = []
    types: set[str] = set()
    everything = False
    for raw in TOKEN.findall(text or ""):
        part = raw.strip()
        if not part:
            continue
        box = BBOX.match(part)
        sensor_type = SENSOR_TYPE.match(part)
        if box:
            boxes.append(_box(box["values"], part))
        elif part.lower() == EVERYTHING:
            everything = True
        elif sensor_type:
            types.add(sensor_type["name"].lower())
        elif part.isdigit():
            ids.add(int(part))
        elif re.fullmatch(r"[A-Za-z]{2}", part):
            countries.add(part.upper())
        else:
            raise SelectionError(
                f"cannot read {part!r} in the archive selection: use sensor ids, two-letter country codes, "
                "bbox:minlon,minlat,maxlon,maxlat, type:<sensor type> (e.g. type:sds011) or all"
            )
    return Selection(frozenset(ids), frozenset(countries), tuple(boxes), frozenset(types), everything)


def _box(values: str, part: str) -> Box:
    try:
        min_lon, min_lat, max_lon, max_lat = (float(v) for v in values.split(","))
    except ValueError:
        raise SelectionError(f"{part!r}: a box is bbox:minlon,minlat,maxlon,maxlat (four numbers)") from None
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise SelectionError(f"{part!r}: need -180 ≤ minlon ≤ maxlon ≤ 180 and -90 ≤ minlat ≤ maxlat ≤ 90")
    return Box(min_lon, min_lat, max_lon, max_lat)


def location_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) (naive UTC) of the readings the locations are taken from: the LOCATION_LOOKBACK before
    `now`. Attach the history over it (`attach_history(connection, location, window=location_window())`)."""
    end = naive_utc(now)
    return end - LOCATION_LOOKBACK, end


def resolve_selection(connection: duckdb.DuckDBPyConnection | None, selection: Selection) -> ResolvedSelection:
    """Sensor ids of the selection; countries and boxes from the locations in the history (`aqi_readings_all`,
    attached by the caller over `location_window()`).

    ``connection`` may be None (no history yet): countries and boxes then resolve to nothing, with a note.
    """
    ids = set(selection.sensor_ids)
    notes: list[str] = []
    if selection.everything:
        return ResolvedSelection(frozenset(), notes, everything=True)
    if selection.countries or selection.boxes:
        known = _known_locations(connection)
        if known is None:
            notes.append(
                f"the history holds no readings of the last {LOCATION_LOOKBACK.days} days (where the locations "
                "come from), so countries and boxes resolve to no sensor"
            )
        for country in sorted(selection.countries):
            found = {sensor for sensor, c, _, _ in known or [] if c == country}
            if not found and known is not None:
                notes.append(f"the history knows no sensor in country {country}")
            ids |= found
        for box in selection.boxes:
            found = {
                sensor
                for sensor, _, lat, lon in known or []
                if lat is not None and lon is not None
                and box.min_lat <= lat <= box.max_lat and box.min_lon <= lon <= box.max_lon
            }
            if not found and known is not None:
                notes.append(f"the history knows no sensor in {box}")
            ids |= found
    return ResolvedSelection(frozenset(ids), notes, sensor_types=selection.sensor_types)


def _known_locations(
    connection: duckdb.DuckDBPyConnection | None,
) -> list[tuple[int, str | None, float | None, float | None]] | None:
    """Each sensor's latest country and coordinates in the attached history, or None when it holds no reading.
    Read through the history accessor (`aqi_readings_all`, attached by the caller over `location_window()`),
    so a sensor whose recent readings were pruned to the Parquet tier is still known."""
    if connection is None:
        return None
    exists = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'aqi_readings'"
    ).fetchone()[0]
    if not exists:
        return None
    require_attached(connection)
    rows = connection.execute(
        f"""
        SELECT sensor_id, arg_max(country, "timestamp") FILTER (WHERE country IS NOT NULL),
               arg_max(latitude, "timestamp") FILTER (WHERE latitude IS NOT NULL),
               arg_max(longitude, "timestamp") FILTER (WHERE longitude IS NOT NULL)
        FROM {HISTORY_VIEW} GROUP BY sensor_id
        """
    ).fetchall()
    return rows or None
