"""What the public site shows, read from DuckDB: the latest reading per outdoor sensor, 7-day hourly histories
and per-country summaries.

Two sources of indices, chosen per sensor:
- `aggregates.aqi_hourly` (the official methods: US AQI NowCast, UK DAQI on the 24-hour mean) when that table
  exists and has a recent row for the sensor;
- otherwise the indicative per-reading indices stored with each `aqi_readings` row (one 5-minute mean fed into
  the bands), labelled as indicative.
Everything returned is plain Python (None for a missing value, never NaN), ready for `json.dumps(allow_nan=False)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import numpy as np

from aqi_assets.lib.air_quality.indices import compute_indices

# The window of the map: the latest reading per sensor within this long before the newest reading.
LATEST_WINDOW = timedelta(hours=1)
HISTORY_DAYS = 7
# A reading stamped further ahead than this of the build's clock is ignored (a sensor with a wrong clock).
FUTURE_TOLERANCE = timedelta(minutes=10)
# An hourly aggregate older than this before the newest reading is not shown as the sensor's current index.
HOURLY_MAX_AGE = timedelta(hours=2)

HOURLY_TABLE = ("aggregates", "aqi_hourly")
# Columns of aggregates.aqi_hourly this module reads; the first two are required to use the table at all.
HOURLY_KEY_COLUMNS = ("sensor_id", "hour")
HOURLY_VALUE_COLUMNS = (
    "pm25_mean",
    "pm10_mean",
    "aqi_us_nowcast",
    "aqi_us_nowcast_category",
    "daqi_24h",
    "daqi_24h_band",
)

# Basis labels written with every index (the page shows them next to the value).
US_NOWCAST = "nowcast"  # US AQI NowCast from hourly means (official real-time method)
UK_24H = "24h"  # DAQI on the 24-hour running mean (official method)
READING = "reading"  # indicative: one 5-minute reading fed into the bands
HOURLY_MEAN = "hourly"  # indicative: one hourly mean fed into the bands

# Plantower sensors report whole µg/m³; the others (SDS011, SPS30, ...) resolve 0.1 µg/m³.
WHOLE_UNIT_PREFIXES = ("PMS",)


def pm_digits(sensor_type: str | None) -> int:
    """Decimals a sensor type can resolve (the PM values are rounded to it)."""
    return 0 if (sensor_type or "").strip().upper().startswith(WHOLE_UNIT_PREFIXES) else 1


def clean_number(value: Any, digits: int | None = None) -> float | int | None:
    """A JSON-safe number: None for NULL/NaN/inf, rounded to `digits` (an int when digits == 0)."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    if digits is None:
        return int(number) if number.is_integer() else number
    rounded = round(number, digits)
    return int(rounded) if digits == 0 else rounded


def iso_utc(moment: datetime | None) -> str | None:
    """ISO-8601 with a Z (the DuckDB columns hold naive UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds") + "Z"


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


@dataclass
class HourlySource:
    """`aggregates.aqi_hourly` when present and usable; `columns` are the optional ones it has."""

    available: bool
    columns: tuple[str, ...] = ()
    reason: str = ""


def hourly_source(connection: duckdb.DuckDBPyConnection) -> HourlySource:
    schema, table = HOURLY_TABLE
    names = {
        row[0]
        for row in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        ).fetchall()
    }
    if not names:
        return HourlySource(False, reason=f"{schema}.{table} does not exist")
    missing = [c for c in HOURLY_KEY_COLUMNS if c not in names]
    if missing:
        return HourlySource(False, reason=f"{schema}.{table} lacks {', '.join(missing)}")
    return HourlySource(True, tuple(c for c in HOURLY_VALUE_COLUMNS if c in names))


@dataclass
class SiteData:
    """Everything one build of the site writes."""

    anchor: datetime | None  # the newest reading (naive UTC); None when there is no reading at all
    features: list[dict[str, Any]]
    histories: dict[int, dict[str, Any]]
    countries: list[dict[str, Any]]
    hourly: HourlySource
    notes: list[str] = field(default_factory=list)


def newest_reading(connection: duckdb.DuckDBPyConnection, now: datetime) -> datetime | None:
    limit = _naive_utc(now) + FUTURE_TOLERANCE
    return connection.execute(
        """SELECT max("timestamp") FROM aqi_readings WHERE period = '5min' AND "timestamp" <= ?""", [limit]
    ).fetchone()[0]


def latest_readings(connection: duckdb.DuckDBPyConnection, anchor: datetime) -> list[tuple]:
    """The latest valid, indexed PM reading per outdoor sensor with coordinates, within the window."""
    return connection.execute(
        """
        SELECT sensor_id, "timestamp", country, latitude, longitude, sensor_type, pm25, pm10,
               aqi_us, aqi_us_category, daqi, daqi_band
        FROM aqi_readings
        WHERE period = '5min'
          AND "timestamp" > $start AND "timestamp" <= $anchor
          AND indoor IS NOT TRUE
          AND latitude IS NOT NULL AND longitude IS NOT NULL
          AND (aqi_us IS NOT NULL OR daqi IS NOT NULL)
        QUALIFY row_number() OVER (PARTITION BY sensor_id ORDER BY "timestamp" DESC) = 1
        ORDER BY sensor_id
        """,
        {"start": anchor - LATEST_WINDOW, "anchor": anchor},
    ).fetchall()


def _hourly_select(source: HourlySource) -> str:
    return ", ".join(f"h.{c}" if c in source.columns else f"NULL AS {c}" for c in HOURLY_VALUE_COLUMNS)


def latest_hourly(
    connection: duckdb.DuckDBPyConnection, source: HourlySource, anchor: datetime
) -> dict[int, tuple[Any, ...]]:
    """sensor_id → (hour, pm25_mean, pm10_mean, nowcast, nowcast category, daqi_24h, band) of its latest hour."""
    if not source.available:
        return {}
    rows = connection.execute(
        f"""
        SELECT h.sensor_id, h.hour, {_hourly_select(source)}
        FROM aggregates.aqi_hourly h
        WHERE h.hour > $start AND h.hour <= $anchor
        QUALIFY row_number() OVER (PARTITION BY h.sensor_id ORDER BY h.hour DESC) = 1
        """,
        {"start": anchor - HOURLY_MAX_AGE, "anchor": anchor},
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def build_features(rows: list[tuple], hourly: dict[int, tuple[Any, ...]]) -> list[dict[str, Any]]:
    features = []
    for sensor_id, ts, country, lat, lon, sensor_type, pm25, pm10, aqi_us, us_cat, daqi, band in rows:
        digits = pm_digits(sensor_type)
        properties: dict[str, Any] = {
            "id": sensor_id,
            "type": sensor_type,
            "country": country,
            "time": iso_utc(ts),
            "pm25": clean_number(pm25, digits),
            "pm10": clean_number(pm10, digits),
            "us": clean_number(aqi_us),
            "us_cat": us_cat,
            "us_basis": READING,
            "uk": clean_number(daqi),
            "uk_band": band,
            "uk_basis": READING,
        }
        official = hourly.get(sensor_id)
        if official is not None:
            hour, _pm25_mean, _pm10_mean, nowcast, nowcast_cat, daqi_24h, daqi_24h_band = official
            if clean_number(nowcast) is not None:
                properties.update(us=clean_number(nowcast), us_cat=nowcast_cat, us_basis=US_NOWCAST)
                properties["us_hour"] = iso_utc(hour)
            if clean_number(daqi_24h) is not None:
                properties.update(uk=clean_number(daqi_24h), uk_band=daqi_24h_band, uk_basis=UK_24H)
                properties["uk_hour"] = iso_utc(hour)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round(float(lon), 5), round(float(lat), 5)]},
                "properties": properties,
            }
        )
    return features


def _history_rows(
    connection: duckdb.DuckDBPyConnection, source: HourlySource, sensors: list[int], first: datetime, end: datetime
) -> tuple[list[tuple], str, str]:
    """(sensor_id, hour, pm25, pm10, us, uk) for complete hours in [first, end), and the two index bases."""
    connection.register("site_sensors", _sensor_table(sensors))
    try:
        if source.available:
            rows = connection.execute(
                f"""
                SELECT h.sensor_id, h.hour, {_hourly_select(source)}
                FROM aggregates.aqi_hourly h SEMI JOIN site_sensors s ON h.sensor_id = s.sensor_id
                WHERE h.hour >= $first AND h.hour < $end
                ORDER BY h.sensor_id, h.hour
                """,
                {"first": first, "end": end},
            ).fetchall()
            # (sensor, hour, pm25_mean, pm10_mean, nowcast, category, daqi_24h, band) → the chart's columns
            return [(r[0], r[1], r[2], r[3], r[4], r[6]) for r in rows], US_NOWCAST, UK_24H
        rows = connection.execute(
            """
            SELECT r.sensor_id, date_trunc('hour', r."timestamp") AS hour, avg(r.pm25), avg(r.pm10)
            FROM aqi_readings r SEMI JOIN site_sensors s ON r.sensor_id = s.sensor_id
            WHERE r.period = '5min' AND r."timestamp" >= $first AND r."timestamp" < $end
              AND (r.aqi_us IS NOT NULL OR r.daqi IS NOT NULL)
            GROUP BY ALL
            ORDER BY 1, 2
            """,
            {"first": first, "end": end},
        ).fetchall()
    finally:
        connection.unregister("site_sensors")
    if not rows:
        return [], HOURLY_MEAN, HOURLY_MEAN
    pm25 = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64)
    pm10 = np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=np.float64)
    indices = compute_indices(pm25, pm10)
    return (
        [(r[0], r[1], r[2], r[3], us, uk) for r, us, uk in zip(rows, indices["aqi_us"], indices["daqi"], strict=True)],
        HOURLY_MEAN,
        HOURLY_MEAN,
    )


def _sensor_table(sensors: list[int]) -> Any:
    import pyarrow as pa

    return pa.table({"sensor_id": pa.array(sensors, pa.int64())})


def build_histories(
    connection: duckdb.DuckDBPyConnection,
    source: HourlySource,
    features: list[dict[str, Any]],
    anchor: datetime,
) -> dict[int, dict[str, Any]]:
    """sensor_id → its last 7 days of complete hours: columnar arrays (one entry per hour, null for a gap)."""
    end = anchor.replace(minute=0, second=0, microsecond=0)  # the hour holding the anchor is not complete
    first = end - timedelta(days=HISTORY_DAYS)
    types = {f["properties"]["id"]: f["properties"]["type"] for f in features}
    rows, us_basis, uk_basis = _history_rows(connection, source, sorted(types), first, end)
    hours = int((end - first) / timedelta(hours=1))
    histories: dict[int, dict[str, Any]] = {}
    for sensor_id in types:
        histories[sensor_id] = {
            "id": sensor_id,
            "start": iso_utc(first),
            "step_s": 3600,
            "us_basis": us_basis,
            "uk_basis": uk_basis,
            "pm25": [None] * hours,
            "pm10": [None] * hours,
            "us": [None] * hours,
            "uk": [None] * hours,
        }
    for sensor_id, hour, pm25, pm10, us, uk in rows:
        history = histories[sensor_id]
        slot = int((hour - first) / timedelta(hours=1))
        if not 0 <= slot < hours:
            continue
        digits = pm_digits(types[sensor_id])
        history["pm25"][slot] = clean_number(pm25, digits)
        history["pm10"][slot] = clean_number(pm10, digits)
        history["us"][slot] = clean_number(us, 0)
        history["uk"][slot] = clean_number(uk, 0)
    return histories


def build_countries(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per country: sensors shown, median PM, how many sensors per US category and DAQI band, the worst sensor."""
    by_country: dict[str, list[dict[str, Any]]] = {}
    for feature in features:
        properties = feature["properties"]
        by_country.setdefault(properties["country"] or "??", []).append(properties)
    summaries = []
    for country, sensors in sorted(by_country.items()):
        pm25 = [s["pm25"] for s in sensors if s["pm25"] is not None]
        pm10 = [s["pm10"] for s in sensors if s["pm10"] is not None]
        worst = max((s for s in sensors if s["us"] is not None), key=lambda s: s["us"], default=None)
        us_categories: dict[str, int] = {}
        uk_bands: dict[str, int] = {}
        for s in sensors:
            if s["us_cat"]:
                us_categories[s["us_cat"]] = us_categories.get(s["us_cat"], 0) + 1
            if s["uk_band"]:
                uk_bands[s["uk_band"]] = uk_bands.get(s["uk_band"], 0) + 1
        summaries.append(
            {
                "country": country,
                "sensors": len(sensors),
                "pm25_median": clean_number(float(np.median(pm25)), 1) if pm25 else None,
                "pm10_median": clean_number(float(np.median(pm10)), 1) if pm10 else None,
                "us_categories": us_categories,
                "uk_bands": uk_bands,
                "worst_sensor": None if worst is None else {"id": worst["id"], "us": worst["us"]},
            }
        )
    return summaries


def site_data(connection: duckdb.DuckDBPyConnection, now: datetime | None = None) -> SiteData:
    """Read everything one build needs (one consistent read: the caller holds one connection)."""
    now = now or datetime.now(timezone.utc)
    source = hourly_source(connection)
    anchor = newest_reading(connection, now)
    if anchor is None:
        return SiteData(None, [], {}, [], source, ["no 5-minute reading in aqi_readings yet"])
    features = build_features(latest_readings(connection, anchor), latest_hourly(connection, source, anchor))
    histories = build_histories(connection, source, features, anchor)
    notes = [] if source.available else [f"indicative indices only: {source.reason}"]
    return SiteData(anchor, features, histories, build_countries(features), source, notes)
