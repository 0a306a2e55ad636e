"""The official indices, computed from the history: hourly NowCast and 24-hour DAQI, daily US AQI and DAQI.

`aqi_readings` holds 5-minute readings, on which every index is indicative only. The agencies define them on
longer means, and on rules for which hours and which day count (facts: the aqi-standards reference):

- Valid hours: an hour's mean of a pollutant counts only with >= 75 % data capture (EU practice: 45 minutes of
  the hour), here >= 9 of its twelve 5-minute slots holding a reading of that pollutant (slot k of hour H: readings
  stamped in [H + 5k min, H + 5(k+1) min)). Every mean below uses valid hours only.
- Feeds combined by coverage: where several periods feeding the indices (`index_sources()`: the archive, the
  5-minute feed) hold an hour of a sensor, each pollutant's hourly mean comes from the period covering more of its
  slots, the most preferred (`index_rank`) on a tie; a period lacking a pollutant never blanks it. The rolling
  `24h` feed never enters.
- US EPA NowCast (the hourly "current" AQI): the 12 hourly means ending with the hour, weighted w^(hours ago)
  with w = 1 - (max - min) / max clamped to [0.5, 1]; it exists when 2 of the 3 most recent hours are valid, the
  current hour included or not (AirNow), so hours without readings of their own get a row when it exists;
  truncated (PM2.5 to 0.1, PM10 to 1 µg/m³) as exact decimals, then converted with the 2024 table.
- US EPA daily AQI: the mean of the hourly means from midnight to midnight **local standard time** (no daylight
  saving, as EPA and AirNow compute it), valid with >= 18 valid hours; the zone comes from the sensor's
  coordinates (`local_time`), UTC for a sensor without them (column `day_basis`). Partition D holds every
  sensor's local day D: it reads UTC [D - 14 h, D + 36 h), the span of the local days D from UTC+14 to UTC-12.
- UK DAQI for PM: on the trailing 24-hour mean of hourly means (valid with >= 18 of the 24 hours); the day's DAQI
  (`daqi_daily`) is the highest hourly value of that running mean in the day, as UK-AIR reports a day; the index
  of the day's own mean is `daqi_daily_mean`.
- Outdoor air only: readings flagged indoor never enter (air-quality standards are for ambient air).

Design: one SQL pass over the history (a time-bounded WHERE on "timestamp", so DuckDB's zone maps skip every
older row group and the cost of a partition does not grow with the history) computes, per sensor, hour and
period, the hourly means and each pollutant's covered slots (a 12-bit OR of slot bits) of a range of hours *and
its 23 hours of lookback*; the feed choice and the windows (NowCast, 24-hour means) then run in NumPy on dense
(sensor × hour) matrices, far faster than SQL window functions over thousands of tiny partitions, and the index
lookups reuse the vectorised functions of `indices.py`. Long ranges are cut into chunks of at most `CHUNK` so
memory stays bounded. Only mass-concentration PM sensors count; values quarantined upstream are already NULL and
never count. An hour holds the readings with hour <= timestamp < hour + 1 h.

The history is read through `aqi_readings_all` (`lib.readings.history`): the hot rows in DuckDB plus the days
retention moved to the Parquet tier, so recomputing a pruned day gives the same rows. The caller attaches it on
the same connection (`attach_history`, a TEMP view, bounded by `history_window`); without it these functions fail
(`require_attached`) rather than read `aqi_readings` alone, which would silently drop every pruned day.

The results are stored by the aggregates IO manager as `<schema>.aqi_hourly` / `<schema>.aqi_daily`, the schema
`AGGREGATES_SCHEMA` unless configured otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from aqi_assets.lib.air_quality.indices import (
    daqi_band,
    daqi_sub_index,
    epa_category,
    epa_sub_index,
    overall,
    truncate_decimal,
)
from aqi_assets.lib.air_quality.local_time import LocalZone, local_zones
from aqi_assets.lib.air_quality.sensor_types import is_mass_concentration_sql
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.history import HISTORY_VIEW, require_attached
from aqi_assets.lib.readings.periods import ARCHIVE, index_sources, sql_list

# Where the aggregates IO manager stores the tables unless configured otherwise (its `db_schema`); the checks,
# the benchmarks and the tests name it from here.
AGGREGATES_SCHEMA = "aggregates"
# The aggregates' names: asset keys in Dagster, table names in that schema.
AQI_HOURLY = "aqi_hourly"
AQI_DAILY = "aqi_daily"

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SLOT = timedelta(minutes=5)
SLOTS_PER_HOUR = 12
MIN_SLOTS_FOR_HOUR = 9  # >= 75 % data capture (45 minutes of the hour)
NOWCAST_HOURS = 12
NOWCAST_RECENT_HOURS = 3  # of which at least NOWCAST_MIN_RECENT must be valid
NOWCAST_MIN_RECENT = 2
NOWCAST_MIN_WEIGHT = 0.5
MEAN_HOURS = 24  # trailing mean (DAQI) and the day (daily AQI)
MIN_HOURS_FOR_MEAN = 18
LOOKBACK = (MEAN_HOURS - 1) * HOUR  # the 24-hour mean of hour H needs hours H-23 .. H
# Local standard time runs from UTC-12 to UTC+14: the local days D of every zone span UTC [D - 14 h, D + 36 h).
EARLIEST_ZONE_AHEAD = 14 * HOUR
LATEST_ZONE_BEHIND = 12 * HOUR
# Longest range computed at once: a 7-day backfill in one piece peaked at 3.1 GB at 15,000 sensors, in day-long
# pieces it stays near 1 GB (each piece re-reads 23 hours of lookback: hourly backfills pay ~20 % for it).
CHUNK = timedelta(days=1)
# DuckDB's memory while an aggregate is computed: its default (80 % of RAM) keeps every block a long backfill
# read in its cache (1.5 GB for 7 days at 15,000 sensors); a day's piece needs far less.
COMPUTE_MEMORY_LIMIT = "1GB"
POLLUTANTS = ("pm25", "pm10")
TRUNCATION_DIGITS = {"pm25": 1, "pm10": 0}  # EPA: PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³
# Means are sums of floats: 5.0 may come out as 4.9999999999999991. Rounded to this many decimals first, they
# truncate as the exact decimal they stand for (no measurement carries nine decimals).
EXACT_DECIMALS = 9
DAY_BASIS_LOCAL = "local standard time"
DAY_BASIS_UTC = "UTC: the sensor has no coordinates"
DAY_BASIS_NO_ZONE = "UTC: no time zone at the sensor's coordinates"

LOCATION_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("country", pa.string()),
    ("latitude", pa.float64()),
    ("longitude", pa.float64()),
    ("indoor", pa.bool_()),
    ("sensor_type", pa.string()),
)

HOURLY_SCHEMA = pa.schema(
    [
        ("sensor_id", pa.int64()),
        ("hour", pa.timestamp("us")),
        *LOCATION_FIELDS,
        ("readings", pa.int32()),
        ("pm25_slots", pa.int8()),
        ("pm10_slots", pa.int8()),
        ("pm25_source", pa.string()),
        ("pm10_source", pa.string()),
        ("pm25_mean", pa.float64()),
        ("pm10_mean", pa.float64()),
        ("pm25_nowcast", pa.float64()),
        ("pm10_nowcast", pa.float64()),
        ("aqi_us_nowcast_pm25", pa.int16()),
        ("aqi_us_nowcast_pm10", pa.int16()),
        ("aqi_us_nowcast", pa.int16()),
        ("aqi_us_nowcast_category", pa.string()),
        ("aqi_us_nowcast_beyond", pa.bool_()),
        ("pm25_24h", pa.float64()),
        ("pm10_24h", pa.float64()),
        ("pm25_hours_24h", pa.int8()),
        ("pm10_hours_24h", pa.int8()),
        ("daqi_24h_pm25", pa.int8()),
        ("daqi_24h_pm10", pa.int8()),
        ("daqi_24h", pa.int8()),
        ("daqi_24h_band", pa.string()),
    ]
)

DAILY_SCHEMA = pa.schema(
    [
        ("sensor_id", pa.int64()),
        ("day", pa.date32()),
        *LOCATION_FIELDS,
        ("time_zone", pa.string()),
        ("utc_offset_hours", pa.int8()),
        ("day_basis", pa.string()),
        ("hours", pa.int8()),
        ("archive_hours", pa.int8()),  # of those, hours with a mean from archived measurements
        ("pm25_hours", pa.int8()),
        ("pm10_hours", pa.int8()),
        ("pm25_mean", pa.float64()),
        ("pm10_mean", pa.float64()),
        ("aqi_us_daily_pm25", pa.int16()),
        ("aqi_us_daily_pm10", pa.int16()),
        ("aqi_us_daily", pa.int16()),
        ("aqi_us_daily_category", pa.string()),
        ("aqi_us_daily_beyond", pa.bool_()),
        ("daqi_daily", pa.int8()),
        ("daqi_daily_band", pa.string()),
        ("daqi_daily_mean", pa.int8()),
        ("daqi_daily_mean_band", pa.string()),
    ]
)


def sources_text() -> str:
    """How an hour's means are chosen, in words, from the registry (for descriptions)."""
    names = ", ".join(f"'{name}'" for name in index_sources())
    return (f"each pollutant's mean from whichever of {names} (the periods feeding the indices) covers more of "
            f"the hour's 5-minute slots, the first named on a tie; valid with >= {MIN_SLOTS_FOR_HOUR} of "
            f"{SLOTS_PER_HOUR} slots")


HOURLY_DESCRIPTIONS: dict[str, str] = {
    "sensor_id": "Sensor.Community sensor id (outdoor mass-concentration PM sensors only)",
    "hour": "start of the hour, UTC (readings with hour <= timestamp < hour + 1 h)",
    "readings": "outdoor readings with a PM value in the hour of the feed(s) its means come from (0: a row kept "
    "for its NowCast or 24-hour mean only)",
    "pm25_slots": f"5-minute slots of the hour covered by the PM2.5 source's readings (valid with >= "
    f"{MIN_SLOTS_FOR_HOUR} of {SLOTS_PER_HOUR})",
    "pm10_slots": f"5-minute slots of the hour covered by the PM10 source's readings (valid with >= "
    f"{MIN_SLOTS_FOR_HOUR})",
    "pm25_source": "the period the hour's PM2.5 comes from: " + sources_text(),
    "pm10_source": "the period the hour's PM10 comes from (chosen like pm25_source)",
    "pm25_mean": "mean PM2.5 of the hour, µg/m³; NULL unless the hour is valid",
    "pm10_mean": "mean PM10 of the hour, µg/m³; NULL unless the hour is valid",
    "pm25_nowcast": "EPA NowCast PM2.5 over the 12 hours ending with this one (>= 2 of the latest 3 valid), "
    "truncated to 0.1 µg/m³",
    "pm10_nowcast": "EPA NowCast PM10, truncated to 1 µg/m³",
    "aqi_us_nowcast": "US AQI (2024 table) of the NowCast: the hourly 'current' AQI",
    "aqi_us_nowcast_category": "Good … Hazardous",
    "aqi_us_nowcast_beyond": "NowCast above the top breakpoint (AQI reported as 500)",
    "pm25_24h": "trailing 24-hour mean of valid hourly PM2.5 means (>= 18 valid hours)",
    "pm10_24h": "trailing 24-hour mean of valid hourly PM10 means (>= 18 valid hours)",
    "pm25_hours_24h": "valid PM2.5 hours among the 24 ending with this one",
    "pm10_hours_24h": "valid PM10 hours among the 24 ending with this one",
    "daqi_24h": "UK DAQI on the trailing 24-hour means (as Defra defines it for PM)",
    "daqi_24h_band": "Low 1–3, Moderate 4–6, High 7–9, Very High 10",
}

DAILY_DESCRIPTIONS: dict[str, str] = {
    "sensor_id": "Sensor.Community sensor id (outdoor mass-concentration PM sensors only)",
    "day": "the sensor's local day: midnight to midnight local standard time (no daylight saving), UTC without "
    "coordinates",
    "time_zone": "IANA time zone of the sensor's coordinates (NULL without coordinates)",
    "utc_offset_hours": "hours added to UTC for the day's local standard time (zones off the whole hour: the day "
    "starts at the first whole UTC hour after local midnight)",
    "day_basis": f"'{DAY_BASIS_LOCAL}', '{DAY_BASIS_UTC}' or '{DAY_BASIS_NO_ZONE}'",
    "hours": "valid hours of the day (either pollutant)",
    "archive_hours": f"of those, hours with a mean from the period '{ARCHIVE}' (archived measurements)",
    "pm25_hours": "valid PM2.5 hours of the day",
    "pm10_hours": "valid PM10 hours of the day",
    "pm25_mean": "mean of the day's valid hourly PM2.5 means (>= 18 valid hours), µg/m³",
    "pm10_mean": "mean of the day's valid hourly PM10 means (>= 18 valid hours), µg/m³",
    "aqi_us_daily": "US EPA daily AQI (2024 table) on the daily means",
    "aqi_us_daily_category": "Good … Hazardous",
    "daqi_daily": "UK DAQI of the day as UK-AIR reports it: the highest hourly DAQI of the day on the trailing "
    "24-hour running means",
    "daqi_daily_band": "Low 1–3, Moderate 4–6, High 7–9, Very High 10",
    "daqi_daily_mean": "UK DAQI of the day's own mean (>= 18 valid hours)",
    "daqi_daily_mean_band": "Low 1–3, Moderate 4–6, High 7–9, Very High 10",
}


def history_window(unit: timedelta, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The span of the history a partition [start, end) of `aqi_hourly` (unit HOUR) or `aqi_daily` (DAY) reads:
    its hours and their 23-hour lookback; for days, the local days of every zone."""
    start, end = naive_utc(start), naive_utc(end)
    if unit == HOUR:
        return start - LOOKBACK, end
    if unit == DAY:
        return start - EARLIEST_ZONE_AHEAD - LOOKBACK, end + LATEST_ZONE_BEHIND
    raise ValueError(f"partition unit must be an hour or a day, not {unit}")


def _hours_between(start: datetime, end: datetime) -> int:
    return int((end - start) / HOUR)


def _check_hour_range(start: datetime, end: datetime) -> None:
    if start.minute or start.second or start.microsecond or end.minute or end.second or end.microsecond:
        raise ValueError(f"hour range must start and end on the hour: {start} .. {end}")
    if end <= start:
        raise ValueError(f"empty hour range {start} .. {end}")


# ---------------------------------------------------------------------------------------------------------
# NumPy kernels (pure, tested against literal oracles)


def nowcast(windows: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """EPA NowCast per row of ``windows`` (shape (n, 12): valid hourly means, column i = i hours ago, NaN = none).

    Untruncated; NaN where fewer than 2 of the 3 most recent hours are valid.
    """
    c = np.asarray(windows, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != NOWCAST_HOURS:
        raise ValueError(f"expected shape (n, {NOWCAST_HOURS}), got {c.shape}")
    present = ~np.isnan(c)
    recent = present[:, :NOWCAST_RECENT_HOURS].sum(axis=1)
    c_max = np.where(present, c, -np.inf).max(axis=1)
    c_min = np.where(present, c, np.inf).min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # c_max = 0 (every hour zero): no variation, w = 1 and the NowCast is 0.
        w = np.where(c_max > 0, 1.0 - (c_max - c_min) / c_max, 1.0)
    w = np.clip(w, NOWCAST_MIN_WEIGHT, 1.0)
    weights = np.where(present, w[:, None] ** np.arange(NOWCAST_HOURS, dtype=np.float64), 0.0)
    filled = np.where(present, c, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = (weights * filled).sum(axis=1) / weights.sum(axis=1)
    result[recent < NOWCAST_MIN_RECENT] = np.nan
    return result


def exact(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Float means as the decimals they stand for (see EXACT_DECIMALS); NaN stays NaN."""
    return np.round(np.asarray(values, dtype=np.float64), EXACT_DECIMALS)


def truncated(values: npt.ArrayLike, pollutant: str) -> npt.NDArray[np.float64]:
    """Concentrations truncated as EPA reports them (PM2.5 to 0.1, PM10 to 1 µg/m³), as exact decimals (a
    weighted mean of 5.0 that floats to 4.9999999999 is 5.0); NaN stays NaN."""
    v = exact(values)
    digits = TRUNCATION_DIGITS[pollutant]
    valid = ~np.isnan(v)
    units = truncate_decimal(np.where(valid, v, 0.0), digits).astype(np.float64)
    return np.where(valid, units / 10.0**digits, np.nan)


def mean_with_coverage(windows: npt.ArrayLike, min_hours: int = MIN_HOURS_FOR_MEAN) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each row's non-NaN values (NaN with fewer than ``min_hours`` of them), as an exact decimal (see
    `exact`), and their count."""
    c = np.asarray(windows, dtype=np.float64)
    present = ~np.isnan(c)
    count = present.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(present, c, 0.0).sum(axis=-1) / count
    return np.where(count >= min_hours, exact(mean), np.nan), count


def epa_columns(prefix: str, pm25: np.ndarray, pm10: np.ndarray) -> dict[str, np.ndarray]:
    """US AQI sub-indices, overall, category and the beyond-the-AQI flag from PM2.5 / PM10 concentrations."""
    aqi_pm25, beyond_pm25 = epa_sub_index(pm25, "pm25")
    aqi_pm10, beyond_pm10 = epa_sub_index(pm10, "pm10")
    aqi = overall(aqi_pm25, aqi_pm10)
    has_aqi = ~np.isnan(aqi)
    return {
        f"{prefix}_pm25": aqi_pm25,
        f"{prefix}_pm10": aqi_pm10,
        prefix: aqi,
        f"{prefix}_category": epa_category(aqi),
        f"{prefix}_beyond": np.where(has_aqi, beyond_pm25 | beyond_pm10, None),
    }


def daqi_columns(prefix: str, pm25: np.ndarray, pm10: np.ndarray) -> dict[str, np.ndarray]:
    daqi_pm25 = daqi_sub_index(pm25, "pm25")
    daqi_pm10 = daqi_sub_index(pm10, "pm10")
    daqi = overall(daqi_pm25, daqi_pm10)
    return {f"{prefix}_pm25": daqi_pm25, f"{prefix}_pm10": daqi_pm10, prefix: daqi, f"{prefix}_band": daqi_band(daqi)}


def choose_by_coverage(
    slots: list[np.ndarray], means: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell, the feed covering more slots (feeds in preference order: the earlier wins a tie): its slots, its
    mean (NaN unless >= MIN_SLOTS_FOR_HOUR slots) and its code (1 = the first feed; 0 = no feed has the
    pollutant). A feed without the pollutant in a cell has 0 slots there and never blanks another's."""
    best_slots = np.zeros_like(slots[0])
    best_mean = np.full(slots[0].shape, np.nan)
    best_code = np.zeros(slots[0].shape, dtype=np.int8)
    for code, (feed_slots, feed_mean) in enumerate(zip(slots, means, strict=True), start=1):
        better = feed_slots > best_slots
        best_slots = np.where(better, feed_slots, best_slots)
        best_mean = np.where(better, feed_mean, best_mean)
        best_code = np.where(better, np.int8(code), best_code)
    valid = best_slots >= MIN_SLOTS_FOR_HOUR
    return best_slots, np.where(valid, best_mean, np.nan), best_code


def _arrow_column(values: object, data_type: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.cast(data_type)
    array = np.asarray(values)
    if pa.types.is_integer(data_type) and array.dtype.kind == "f":
        mask = np.isnan(array)
        return pa.array(np.where(mask, 0, array).astype(data_type.to_pandas_dtype()), data_type, mask=mask)
    return pa.array(array, data_type, from_pandas=True)  # NaN → NULL for floats, None → NULL for objects


def _table(columns: dict[str, object], schema: pa.Schema) -> pa.Table:
    return pa.table([_arrow_column(columns[f.name], f.type) for f in schema], schema=schema)


# ---------------------------------------------------------------------------------------------------------
# SQL: per sensor, hour and feed, the means and covered slots of a range of hours (with the lookback)


def source_periods() -> tuple[str, ...]:
    """The periods the hourly means come from, most preferred first (read from the registry at call time: a
    period may be registered later)."""
    return index_sources()


def source_codes() -> dict[str, int]:
    """period → its code in the (sensor × hour) source matrices (1 = most preferred; 0 = no data)."""
    return {period: code for code, period in enumerate(source_periods(), start=1)}


def source_names(codes: np.ndarray) -> list[str | None]:
    names = np.array([None, *source_periods()], dtype=object)  # code 0 = no data; codes count from 1
    return names[np.asarray(codes).ravel()].tolist()


# A reading's 5-minute slot since the epoch: its hour is slot // 12, its slot within the hour slot % 12.
SLOT_SQL = f'(epoch_us("timestamp") // {int(SLOT / timedelta(microseconds=1))})'


def _period_code_sql() -> str:
    """The period as its `source_codes()` number: grouping by a small integer, not by text."""
    return "CASE period " + " ".join(f"WHEN '{p}' THEN {c}" for p, c in source_codes().items()) + " END::TINYINT"


def outdoor_pm_sql() -> str:
    """The readings that can enter an index: a period feeding the indices, a PM value, not flagged indoor (an
    unknown flag is not indoor: the archive holds outdoor sensors only and says so)."""
    return (f"period IN {sql_list(source_periods())} AND (pm25 IS NOT NULL OR pm10 IS NOT NULL) "
            "AND NOT coalesce(indoor, false)")  # IS NOT TRUE is not pushed into the scan: 25 % slower


def _hourly_feed_means_sql() -> str:
    """Per sensor, hour and period: readings, each pollutant's mean and covered slots, and the time of the
    hour's last reading (to look its location up). The sensor-type filter and the location are applied to the
    output rows only: per-row string work and `arg_max` over every reading cost several times the aggregation."""
    slots = ", ".join(
        f"bit_count(coalesce(bit_or(bit) FILTER (WHERE {p} IS NOT NULL), 0))::TINYINT AS {p}_slots"
        for p in POLLUTANTS
    )
    return f"""
        SELECT sensor_id, hour_index, code, count(*)::INTEGER AS readings, {slots},
               avg(pm25) AS pm25_mean, avg(pm10) AS pm10_mean, epoch_us(max("timestamp")) AS last_us
        FROM (
            SELECT sensor_id, {_period_code_sql()} AS code, "timestamp", pm25, pm10,
                   (slot // {SLOTS_PER_HOUR} - $base_hour)::INTEGER AS hour_index,
                   (1 << (slot % {SLOTS_PER_HOUR})::INTEGER) AS bit
            FROM (SELECT *, {SLOT_SQL} AS slot FROM {HISTORY_VIEW}
                  WHERE {outdoor_pm_sql()} AND "timestamp" >= $lookback AND "timestamp" < $end)
        )
        GROUP BY ALL"""


def _locations(
    connection: duckdb.DuckDBPyConnection, sensor_ids: np.ndarray, last_us: np.ndarray, sources: np.ndarray
) -> pa.Table:
    """Location fields and a mass-concentration flag of the readings (sensor, timestamp, source), in input
    order."""
    wanted = pa.table({
        "position": pa.array(np.arange(len(sensor_ids), dtype=np.int64)),
        "sensor_id": pa.array(np.asarray(sensor_ids, dtype=np.int64)),
        "ts": pa.array(np.asarray(last_us, dtype=np.int64)).cast(pa.timestamp("us")),
        "period": pa.array(source_names(sources)),
    })
    if len(wanted) == 0:
        return pa.table({"mass_pm": pa.array([], pa.bool_()),
                         **{name: pa.array([], data_type) for name, data_type in LOCATION_FIELDS}})
    names = ", ".join(f"r.{name}" for name, _ in LOCATION_FIELDS)
    connection.register("wanted_locations", wanted)
    try:
        found = connection.sql(
            f"""
            SELECT w.position, {names}, {is_mass_concentration_sql("r.sensor_type")} AS mass_pm
            FROM wanted_locations w
            JOIN {HISTORY_VIEW} r ON r.sensor_id = w.sensor_id AND r."timestamp" = w.ts AND r.period = w.period
            WHERE r."timestamp" >= $lo AND r."timestamp" <= $hi AND NOT coalesce(r.indoor, false)
              AND (r.pm25 IS NOT NULL OR r.pm10 IS NOT NULL)
            QUALIFY row_number() OVER (PARTITION BY w.position) = 1
            ORDER BY w.position
            """,
            params={"lo": pc.min(wanted.column("ts")).as_py(), "hi": pc.max(wanted.column("ts")).as_py()},
        ).to_arrow_table()
    finally:
        connection.unregister("wanted_locations")
    if found.num_rows != len(wanted):
        raise RuntimeError(f"found {found.num_rows} of {len(wanted)} location readings (history changed?)")
    return found


@dataclass
class HourlyMatrix:
    """Hourly values as dense (sensor × hour) matrices; hour column j is ``origin + j`` hours."""

    origin: datetime
    sensor_ids: np.ndarray  # (S,)
    readings: np.ndarray  # (S, T) int: outdoor PM readings of the feeds the means come from (0 = none)
    slots: dict[str, np.ndarray]  # pollutant → (S, T) int8: slots covered by the chosen feed
    means: dict[str, np.ndarray]  # pollutant → (S, T) float: the chosen feed's mean, NaN unless the hour is valid
    sources: dict[str, np.ndarray]  # pollutant → (S, T) int8: `source_codes()` of the chosen feed (0 = none)
    last_us: np.ndarray  # (S, T) int64: epoch µs of the last reading of each hour's PM2.5 feed (else its PM10
    # feed), carried forward over hours without readings
    last_source: np.ndarray  # (S, T) int8: that feed's code (0 = no reading yet)
    first_target: int  # hour column of the first target hour

    @property
    def hours(self) -> int:
        return self.readings.shape[1]


def hourly_matrix(connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> HourlyMatrix:
    """Hourly values of [start - 23 h, end) as dense (sensor × hour) matrices, for the sensors with outdoor PM
    readings anywhere in that span (a NowCast or 24-hour mean may exist in a target hour without readings)."""
    start, end = naive_utc(start), naive_utc(end)
    _check_hour_range(start, end)
    require_attached(connection)
    origin = start - LOOKBACK
    base_hour = int((origin - datetime(1970, 1, 1)) / HOUR)
    table = connection.sql(
        _hourly_feed_means_sql(), params={"end": end, "lookback": origin, "base_hour": base_hour}
    ).to_arrow_table()
    sensor_column = table.column("sensor_id").to_numpy()
    hour_index = table.column("hour_index").to_numpy()
    sensor_ids = np.unique(sensor_column)
    sensor_index = np.searchsorted(sensor_ids, sensor_column)
    shape = (len(sensor_ids), _hours_between(origin, end))
    feed_readings: list[np.ndarray] = []
    feed_last_us: list[np.ndarray] = []
    feed_slots: dict[str, list[np.ndarray]] = {p: [] for p in POLLUTANTS}
    feed_means: dict[str, list[np.ndarray]] = {p: [] for p in POLLUTANTS}
    code_column = table.column("code").to_numpy()
    row_last_us = table.column("last_us").to_numpy()
    for code in source_codes().values():  # in code order: feed lists are indexed by code - 1
        is_period = code_column == code
        rows, cols = sensor_index[is_period], hour_index[is_period]
        counts = np.zeros(shape, dtype=np.int32)
        counts[rows, cols] = table.column("readings").to_numpy()[is_period]
        feed_readings.append(counts)
        last = np.zeros(shape, dtype=np.int64)
        last[rows, cols] = row_last_us[is_period]
        feed_last_us.append(last)
        for pollutant in POLLUTANTS:
            slots = np.zeros(shape, dtype=np.int8)
            slots[rows, cols] = table.column(f"{pollutant}_slots").to_numpy()[is_period]
            mean = np.full(shape, np.nan)
            mean[rows, cols] = table.column(f"{pollutant}_mean").to_numpy(zero_copy_only=False)[is_period]
            feed_slots[pollutant].append(slots)
            feed_means[pollutant].append(mean)
    chosen = {p: choose_by_coverage(feed_slots[p], feed_means[p]) for p in POLLUTANTS}
    # The readings of the feeds the hour's means come from: a feed that lost on both pollutants adds none. The
    # hour's location is that of the last reading of its PM2.5 feed (else its PM10 feed): a feed that lost never
    # moves a sensor or blanks its country.
    readings = np.zeros(shape, dtype=np.int32)
    last_source = np.where(chosen["pm25"][2] > 0, chosen["pm25"][2], chosen["pm10"][2]).astype(np.int8)
    last_us = np.zeros(shape, dtype=np.int64)
    for code, (counts, last) in enumerate(zip(feed_readings, feed_last_us, strict=True), start=1):
        readings += np.where((chosen["pm25"][2] == code) | (chosen["pm10"][2] == code), counts, 0)
        last_us = np.where(last_source == code, last, last_us)
    # Carry each sensor's last reading forward over hours without one: rows kept for their NowCast or 24-hour
    # mean take the location of the sensor's latest reading before them.
    latest = np.maximum.accumulate(np.where(last_source > 0, np.arange(shape[1]), 0), axis=1)
    rows = np.arange(shape[0])[:, None]
    return HourlyMatrix(
        origin, sensor_ids, readings,
        slots={p: chosen[p][0] for p in POLLUTANTS},
        means={p: chosen[p][1] for p in POLLUTANTS},
        sources={p: chosen[p][2] for p in POLLUTANTS},
        last_us=last_us[rows, latest], last_source=last_source[rows, latest],
        first_target=_hours_between(origin, start),
    )  # fmt: skip


def _trailing_windows(matrix: np.ndarray, rows: np.ndarray, columns: np.ndarray, length: int) -> np.ndarray:
    """(n, length) windows: column i holds ``matrix[row, column - i]`` (i hours ago)."""
    return matrix[rows[:, None], columns[:, None] - np.arange(length)]


def _cell_indices(hourly: HourlyMatrix, rows: np.ndarray, columns: np.ndarray,
                  with_nowcast: bool) -> dict[str, np.ndarray]:
    """Means, 24-hour means (and NowCasts) with their indices for the given (sensor, hour) cells."""
    out: dict[str, np.ndarray] = {}
    for pollutant in POLLUTANTS:
        matrix = hourly.means[pollutant]
        out[f"{pollutant}_mean"] = matrix[rows, columns]
        mean, count = mean_with_coverage(_trailing_windows(matrix, rows, columns, MEAN_HOURS))
        out[f"{pollutant}_24h"] = mean
        out[f"{pollutant}_hours_24h"] = count
        if with_nowcast:
            raw = nowcast(_trailing_windows(matrix, rows, columns, NOWCAST_HOURS))
            out[f"{pollutant}_nowcast"] = truncated(raw, pollutant)
    if with_nowcast:
        out.update(epa_columns("aqi_us_nowcast", out["pm25_nowcast"], out["pm10_nowcast"]))
    out.update(daqi_columns("daqi_24h", out["pm25_24h"], out["pm10_24h"]))
    return out


def _hourly_rows(hourly: HourlyMatrix) -> dict[str, np.ndarray]:
    """Every column of the target range's rows: cells with readings, and cells without whose NowCast or 24-hour
    mean exists, in hour order."""
    # Hour-major order, so the table is written in time order (zone maps on "hour").
    hour_offset, rows = np.indices((hourly.hours - hourly.first_target, len(hourly.sensor_ids))).reshape(2, -1)
    columns = hour_offset + hourly.first_target
    cells = _cell_indices(hourly, rows, columns, with_nowcast=True)
    keep = hourly.readings[rows, columns] > 0
    for pollutant in POLLUTANTS:
        keep |= ~np.isnan(cells[f"{pollutant}_nowcast"]) | ~np.isnan(cells[f"{pollutant}_24h"])
    rows, columns = rows[keep], columns[keep]
    out: dict[str, np.ndarray] = {name: values[keep] for name, values in cells.items()}
    out.update({
        "sensor_index": rows,
        "hour_index": columns,
        "sensor_id": hourly.sensor_ids[rows],
        "readings": hourly.readings[rows, columns],
    })
    for pollutant in POLLUTANTS:
        out[f"{pollutant}_slots"] = hourly.slots[pollutant][rows, columns]
        out[f"{pollutant}_source"] = source_names(hourly.sources[pollutant][rows, columns])
    return out


def _chunks(start: datetime, end: datetime, step: timedelta = CHUNK) -> Iterator[tuple[datetime, datetime]]:
    while start < end:
        yield start, min(start + step, end)
        start += step


def _with_location(connection: duckdb.DuckDBPyConnection, columns: dict[str, object], hourly: HourlyMatrix,
                   rows: np.ndarray, hour_index: np.ndarray, schema: pa.Schema) -> pa.Table:
    """The output table: ``columns`` plus the location of each row's latest reading at or before (row sensor,
    hour), keeping only the rows of mass-concentration PM sensors."""
    location = _locations(
        connection, hourly.sensor_ids[rows], hourly.last_us[rows, hour_index], hourly.last_source[rows, hour_index]
    )
    for name, _ in LOCATION_FIELDS:
        columns[name] = location.column(name)
    return _table(columns, schema).filter(location.column("mass_pm"))


def hourly_indices(connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pa.Table:
    """Rows of `aqi_hourly` for the hours in [start, end): one per (sensor, hour) with readings, or with a
    NowCast or a 24-hour mean."""
    start, end = naive_utc(start), naive_utc(end)
    _check_hour_range(start, end)
    require_attached(connection)
    parts = []
    for chunk_start, chunk_end in _chunks(start, end):
        hourly = hourly_matrix(connection, chunk_start, chunk_end)
        rows = _hourly_rows(hourly)
        columns: dict[str, object] = {**rows, "hour": _hour_timestamps(hourly.origin, rows["hour_index"])}
        parts.append(_with_location(connection, columns, hourly, rows["sensor_index"], rows["hour_index"],
                                    HOURLY_SCHEMA))
    return pa.concat_tables(parts) if parts else HOURLY_SCHEMA.empty_table()


def _hour_timestamps(origin: datetime, hour_index: np.ndarray) -> np.ndarray:
    return np.datetime64(origin, "us") + hour_index.astype("timedelta64[h]").astype("timedelta64[us]")


def day_range(first: date, end: date) -> tuple[datetime, datetime]:
    return datetime.combine(first, datetime.min.time()), datetime.combine(end, datetime.min.time())


def daily_indices(connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pa.Table:
    """Rows of `aqi_daily` for the days in [start, end) (midnights): one per (sensor, local day) with outdoor PM
    readings in that day."""
    start, end = naive_utc(start), naive_utc(end)
    if start.time() != datetime.min.time() or end.time() != datetime.min.time():
        raise ValueError(f"day range must start and end at midnight: {start} .. {end}")
    require_attached(connection)
    parts = []
    for day_start, _ in _chunks(start, end, DAY):
        parts.extend(_local_days(connection, day_start))
    return pa.concat_tables(parts) if parts else DAILY_SCHEMA.empty_table()


def _zones(
    connection: duckdb.DuckDBPyConnection, hourly: HourlyMatrix, day: date, zone_column: int
) -> tuple[list[LocalZone], pa.Table]:
    """Each sensor's zone, and the location fields the daily row shows: those of its latest reading before the
    hour column ``zone_column`` + 1 (the end of UTC day D: a sensor moved after its day keeps the zone of its day),
    or of its latest reading at all if it had none by then. A reading without coordinates does not make a located
    sensor a UTC one: its latest located reading in the span read gives the zone then."""
    sensors = np.arange(len(hourly.sensor_ids))
    columns = np.where(hourly.last_source[:, zone_column] > 0, zone_column, hourly.hours - 1)
    location = _locations(connection, hourly.sensor_ids, hourly.last_us[sensors, columns],
                          hourly.last_source[sensors, columns])
    latitudes = np.asarray(location.column("latitude").to_numpy(zero_copy_only=False), dtype=np.float64)
    longitudes = np.asarray(location.column("longitude").to_numpy(zero_copy_only=False), dtype=np.float64)
    unlocated = np.isnan(latitudes) | np.isnan(longitudes)
    if unlocated.any():  # rare: one query for those sensors only, instead of an arg_max over every reading
        origin_us = int((hourly.origin - datetime(1970, 1, 1)) / timedelta(microseconds=1))
        found = connection.execute(
            f"""
            SELECT sensor_id, arg_max(latitude, "timestamp"), arg_max(longitude, "timestamp")
            FROM {HISTORY_VIEW}
            WHERE sensor_id IN (SELECT unnest($ids)) AND {outdoor_pm_sql()}
              AND latitude IS NOT NULL AND longitude IS NOT NULL
              AND "timestamp" >= make_timestamp($origin_us) AND "timestamp" < make_timestamp($end_us)
            GROUP BY sensor_id
            """,
            {"ids": hourly.sensor_ids[unlocated].tolist(), "origin_us": origin_us,
             "end_us": origin_us + hourly.hours * 3_600_000_000},
        ).fetchall()
        index = {sensor: i for i, sensor in enumerate(hourly.sensor_ids.tolist())}
        for sensor, latitude, longitude in found:
            latitudes[index[sensor]], longitudes[index[sensor]] = latitude, longitude
    return local_zones(latitudes, longitudes, day), location


def _local_days(connection: duckdb.DuckDBPyConnection, day_start: datetime) -> list[pa.Table]:
    """`aqi_daily` rows of the local day starting ``day_start`` (a midnight) in every sensor's zone."""
    hourly = hourly_matrix(connection, day_start - EARLIEST_ZONE_AHEAD, day_start + DAY + LATEST_ZONE_BEHIND)
    if not len(hourly.sensor_ids):
        return []
    utc_midnight = hourly.first_target + int(EARLIEST_ZONE_AHEAD / HOUR)  # the column of UTC D 00:00
    zones, location = _zones(connection, hourly, day_start.date(), zone_column=utc_midnight + MEAN_HOURS - 1)
    offsets = np.array([zone.standard_offset_hours for zone in zones], dtype=np.int64)
    # The local day of an offset o starts at UTC midnight - o.
    first = utc_midnight - offsets
    sensors = np.arange(len(hourly.sensor_ids))
    day_columns = first[:, None] + np.arange(MEAN_HOURS)  # (S, 24)

    def by_day(matrix: np.ndarray) -> np.ndarray:
        return matrix[sensors[:, None], day_columns]

    with_readings = by_day(hourly.readings) > 0
    (sensor_index,) = np.nonzero(with_readings.any(axis=1))
    valid = {p: ~np.isnan(by_day(hourly.means[p])) for p in POLLUTANTS}
    valid_hour = valid["pm25"] | valid["pm10"]
    archive_code = source_codes().get(ARCHIVE, -1)  # a registry without the archive: 0 archive hours is the truth
    from_archive = np.zeros_like(valid_hour)
    for pollutant in POLLUTANTS:
        from_archive |= valid[pollutant] & (by_day(hourly.sources[pollutant]) == archive_code)
    columns: dict[str, object] = {
        "sensor_id": hourly.sensor_ids[sensor_index],
        "day": np.full(len(sensor_index), np.datetime64(day_start.date(), "D")),
        "time_zone": [zones[i].time_zone for i in sensor_index],
        "utc_offset_hours": offsets[sensor_index],
        "day_basis": [_day_basis(zones[i], location, i) for i in sensor_index],
        "hours": valid_hour.sum(axis=1)[sensor_index],
        "archive_hours": from_archive.sum(axis=1)[sensor_index],
    }
    for pollutant in POLLUTANTS:
        mean, count = mean_with_coverage(by_day(hourly.means[pollutant])[sensor_index])
        columns[f"{pollutant}_mean"] = mean
        columns[f"{pollutant}_hours"] = count
    columns.update(epa_columns("aqi_us_daily", columns["pm25_mean"], columns["pm10_mean"]))
    # The UK DAQI of the day's own mean (the sub-indices stay out of the table).
    columns.update(daqi_columns("daqi_daily_mean", columns["pm25_mean"], columns["pm10_mean"]))
    # The day's DAQI: the highest hourly DAQI (on trailing 24-hour means) among the local day's hours.
    cell_rows = np.repeat(sensor_index, MEAN_HOURS)
    cell_columns = day_columns[sensor_index].ravel()
    hourly_daqi = _cell_indices(hourly, cell_rows, cell_columns, with_nowcast=False)["daqi_24h"]
    hourly_daqi = np.asarray(hourly_daqi, dtype=np.float64).reshape(len(sensor_index), MEAN_HOURS)
    has_daqi = ~np.isnan(hourly_daqi)
    daqi = np.where(has_daqi, hourly_daqi, -np.inf).max(axis=1) if len(sensor_index) else np.zeros(0)
    daqi[~has_daqi.any(axis=1)] = np.nan
    columns["daqi_daily"] = daqi
    columns["daqi_daily_band"] = daqi_band(daqi)
    # Location: the reading that set the sensor's zone (see `_zones`); mass-concentration PM sensors only.
    chosen = location.take(pa.array(sensor_index, pa.int64()))
    for name, _ in LOCATION_FIELDS:
        columns[name] = chosen.column(name)
    return [_table(columns, DAILY_SCHEMA).filter(chosen.column("mass_pm"))]


def _day_basis(zone: LocalZone, location: pa.Table, index: int) -> str:
    if zone.time_zone:
        return DAY_BASIS_LOCAL
    located = location.column("latitude")[index].is_valid and location.column("longitude")[index].is_valid
    return DAY_BASIS_NO_ZONE if located else DAY_BASIS_UTC
