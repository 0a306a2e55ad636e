"""The official indices, computed from the history: hourly NowCast and 24-hour DAQI, daily US AQI.

`aqi_readings` holds 5-minute readings, on which every index is indicative only. The agencies define them on
longer means (facts: docs of the aqi-standards reference):

- US EPA NowCast (the hourly "current" AQI): the 12 hourly means ending with the hour, weighted w^(hours ago)
  with w = 1 - (max - min) / max clamped to [0.5, 1]; valid only when 2 of the 3 most recent hours have data;
  truncated (PM2.5 to 0.1, PM10 to 1 µg/m³), then converted with the 2024 table.
- US EPA daily AQI: the midnight-to-midnight (UTC) mean of hourly means, valid with >= 18 of the 24 hours.
- UK DAQI for PM: on the trailing 24-hour mean of hourly means (valid with >= 18 of the 24 hours); the day's
  DAQI is the highest hourly value of that running mean.

Design: one SQL pass over the history (a time-bounded WHERE on "timestamp", so DuckDB's zone maps skip every
older row group and the cost of a partition does not grow with the history) computes the hourly means of a
range of hours *and its 23 hours of lookback*; the windows (NowCast, 24-hour means) then run in NumPy on a dense
(sensor × hour) matrix, which is far faster than SQL window functions over thousands of tiny partitions, and
the index lookups reuse the vectorised functions of `indices.py`. Long ranges are cut into chunks of at most
`CHUNK` so memory stays bounded. Only the periods feeding the indices count (`index_sources()`, most
preferred first: per sensor-hour the first of them with readings makes the hour), and only mass-concentration PM
sensors; values quarantined upstream are already NULL and never count. An hour holds the readings with
hour <= timestamp < hour + 1 h (the partition's own time window).

The history is read through `aqi_readings_all` (`lib.readings.history`): the hot rows in DuckDB plus the days
retention moved to the Parquet tier, so recomputing a pruned day gives the same rows. The caller attaches it on
the same connection (`attach_history`, a TEMP view); without it these functions fail (`require_attached`) rather
than read `aqi_readings` alone, which would silently drop every pruned day, or a view stored in the file, which
may predate the last prune.

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
NOWCAST_HOURS = 12
NOWCAST_RECENT_HOURS = 3  # of which at least NOWCAST_MIN_RECENT must have data
NOWCAST_MIN_RECENT = 2
NOWCAST_MIN_WEIGHT = 0.5
MEAN_HOURS = 24  # trailing mean (DAQI) and the day (daily AQI)
MIN_HOURS_FOR_MEAN = 18
LOOKBACK = (MEAN_HOURS - 1) * HOUR  # the 24-hour mean of hour H needs hours H-23 .. H
# Longest range computed at once: a 7-day backfill in one piece peaked at 3.1 GB at 15,000 sensors, in day-long
# pieces it stays near 1 GB (each piece re-reads 23 hours of lookback: hourly backfills pay ~20 % for it).
CHUNK = timedelta(days=1)
# DuckDB's memory while an aggregate is computed: its default (80 % of RAM) keeps every block a long backfill
# read in its cache (1.5 GB for 7 days at 15,000 sensors); a day's piece needs far less.
COMPUTE_MEMORY_LIMIT = "1GB"
POLLUTANTS = ("pm25", "pm10")
TRUNCATION_DIGITS = {"pm25": 1, "pm10": 0}  # EPA: PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³

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
        ("source", pa.string()),  # the period whose readings made this hour (see `source_periods`)
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
        ("hours", pa.int8()),
        ("archive_hours", pa.int8()),  # of those, hours made from archived measurements
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
    ]
)


def sources_text() -> str:
    """The sources of an hour's means in words, from the registry (for descriptions): "the first of 'a', 'b' (most
    preferred first) with readings in the hour"."""
    names = ", ".join(f"'{name}'" for name in index_sources())
    return f"the first of {names} (the periods feeding the indices, most preferred first) with readings in the hour"


HOURLY_DESCRIPTIONS: dict[str, str] = {
    "sensor_id": "Sensor.Community sensor id (mass-concentration PM sensors only)",
    "hour": "start of the hour, UTC (readings with hour <= timestamp < hour + 1 h)",
    "readings": "readings of the hour's source with a PM value in the hour",
    "source": "the period the hour's means come from: " + sources_text(),
    "pm25_mean": "mean PM2.5 of the hour, µg/m³",
    "pm10_mean": "mean PM10 of the hour, µg/m³",
    "pm25_nowcast": "EPA NowCast PM2.5 over the 12 hours ending with this one, truncated to 0.1 µg/m³",
    "pm10_nowcast": "EPA NowCast PM10, truncated to 1 µg/m³",
    "aqi_us_nowcast": "US AQI (2024 table) of the NowCast: the hourly 'current' AQI",
    "aqi_us_nowcast_category": "Good … Hazardous",
    "aqi_us_nowcast_beyond": "NowCast above the top breakpoint (AQI reported as 500)",
    "pm25_24h": "trailing 24-hour mean of hourly PM2.5 means (>= 18 hours with data)",
    "pm10_24h": "trailing 24-hour mean of hourly PM10 means (>= 18 hours with data)",
    "pm25_hours_24h": "hours with PM2.5 data among the 24 ending with this one",
    "pm10_hours_24h": "hours with PM10 data among the 24 ending with this one",
    "daqi_24h": "UK DAQI on the trailing 24-hour means (as Defra defines it for PM)",
    "daqi_24h_band": "Low 1–3, Moderate 4–6, High 7–9, Very High 10",
}

DAILY_DESCRIPTIONS: dict[str, str] = {
    "sensor_id": "Sensor.Community sensor id (mass-concentration PM sensors only)",
    "day": "UTC day (midnight to midnight)",
    "hours": "hours of the day with PM data",
    "archive_hours": f"of those, hours whose means come from the period '{ARCHIVE}' (archived measurements)",
    "pm25_mean": "mean of the day's hourly PM2.5 means (>= 18 hours with data), µg/m³",
    "pm10_mean": "mean of the day's hourly PM10 means (>= 18 hours with data), µg/m³",
    "aqi_us_daily": "US EPA daily AQI (2024 table) on the daily means",
    "aqi_us_daily_category": "Good … Hazardous",
    "daqi_daily": "UK DAQI of the day: the highest hourly DAQI on the trailing 24-hour means",
    "daqi_daily_band": "Low 1–3, Moderate 4–6, High 7–9, Very High 10",
}


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
    """EPA NowCast per row of ``windows`` (shape (n, 12): hourly means, column i = i hours ago, NaN = none).

    Untruncated; NaN where fewer than 2 of the 3 most recent hours have data.
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


def truncated(values: npt.ArrayLike, pollutant: str) -> npt.NDArray[np.float64]:
    """Concentrations truncated as EPA reports them (PM2.5 to 0.1, PM10 to 1 µg/m³); NaN stays NaN."""
    v = np.asarray(values, dtype=np.float64)
    digits = TRUNCATION_DIGITS[pollutant]
    valid = ~np.isnan(v)
    units = truncate_decimal(np.where(valid, v, 0.0), digits).astype(np.float64)
    return np.where(valid, units / 10.0**digits, np.nan)


def mean_with_coverage(windows: npt.ArrayLike, min_hours: int = MIN_HOURS_FOR_MEAN) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each row's non-NaN values (NaN with fewer than ``min_hours`` of them) and their count."""
    c = np.asarray(windows, dtype=np.float64)
    present = ~np.isnan(c)
    count = present.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(present, c, 0.0).sum(axis=-1) / count
    return np.where(count >= min_hours, mean, np.nan), count


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
# SQL: hourly means of a range of hours (with the lookback the windows need)


# The hourly values of a sensor-hour come from ONE source: the most preferred period of `index_sources()` the
# history holds for that sensor and hour (by `index_rank`, e.g. every measurement the sensor sent before averages
# of them). Never two, and never a period that does not feed the indices. `source` records the choice. Read
# from the registry at call time: a period may be registered later.


def source_periods() -> tuple[str, ...]:
    """The periods the hourly means come from, most preferred first."""
    return index_sources()


def source_codes() -> dict[str, int]:
    """period → its code in the (sensor × hour) source matrix (1 = most preferred; 0 = no data)."""
    return {period: code for code, period in enumerate(source_periods(), start=1)}


def _source_pm_sql() -> str:
    return f"period IN {sql_list(source_periods())} AND (pm25 IS NOT NULL OR pm10 IS NOT NULL)"


def _hour_index_sql() -> str:
    return '(epoch_us("timestamp") // 3600000000 - $base_hour)::INTEGER'


def source_choice_sql() -> str:
    """`QUALIFY` clause keeping one source per (sensor_id, hour) group of a query grouped by period."""
    codes = source_codes()
    sql_list(tuple(codes))  # the names go into SQL: plain words only
    order = " ".join(f"WHEN '{period}' THEN {code}" for period, code in codes.items())
    return f"QUALIFY row_number() OVER (PARTITION BY sensor_id, {{hour}} ORDER BY CASE period {order} END) = 1"


def _hourly_means_sql(choose_source: bool = True) -> str:
    """Hourly means of every sensor with PM values over the target range and its lookback (one source per
    sensor-hour, see `source_periods`), and the time of each hour's last reading (to look its location up). The
    sensor-type filter and the location are applied to the output rows only: per-row string work and `arg_max`
    over every reading cost several times the whole aggregation. Without `choose_source` (the range holds one
    source only) the per-hour choice, a window over every sensor-hour, is left out."""
    means = f"""
            SELECT sensor_id, {_hour_index_sql()} AS hour_index, period,
                   count(*)::INTEGER AS readings, avg(pm25) AS pm25_mean, avg(pm10) AS pm10_mean,
                   epoch_us(max("timestamp")) AS last_us
            FROM {HISTORY_VIEW}
            WHERE {_source_pm_sql()} AND "timestamp" >= $lookback AND "timestamp" < $end
            GROUP BY ALL"""
    if not choose_source:
        return means
    return f"SELECT * FROM ({means}) {source_choice_sql().format(hour='hour_index')}"


def _sources_in_range(connection: duckdb.DuckDBPyConnection, lookback: datetime, end: datetime) -> int:
    """How many of the source periods have readings in [lookback, end): usually one (archive days are backfilled
    far behind the clock), and the `period` statistics of the row groups answer that without reading them."""
    return sum(
        bool(connection.execute(
            f'SELECT EXISTS (SELECT 1 FROM {HISTORY_VIEW} WHERE period = $period AND "timestamp" >= $lookback '
            'AND "timestamp" < $end)',
            {"period": period, "lookback": lookback, "end": end},
        ).fetchall()[0][0])
        for period in source_periods()
    )


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
            WHERE r."timestamp" >= $lo AND r."timestamp" <= $hi
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
    """Hourly means as dense (sensor × hour) matrices; hour column j is ``origin + j`` hours."""

    origin: datetime
    sensor_ids: np.ndarray  # (S,)
    readings: np.ndarray  # (S, T) int, 0 = no data
    means: dict[str, np.ndarray]  # pollutant → (S, T) float, NaN = no data
    last_us: np.ndarray  # (S, T) int64: epoch µs of each hour's last reading (0 = no data)
    sources: np.ndarray  # (S, T) int8: `source_codes()` of each hour's source (0 = no data)
    first_target: int  # hour column of the first target hour

    @property
    def hours(self) -> int:
        return self.readings.shape[1]


def hourly_matrix(connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> HourlyMatrix:
    """Hourly means of [start - 23 h, end) as dense (sensor × hour) matrices, for the sensors with data in
    the target range [start, end)."""
    start, end = naive_utc(start), naive_utc(end)
    _check_hour_range(start, end)
    require_attached(connection)
    origin = start - LOOKBACK
    base_hour = int((origin - datetime(1970, 1, 1)) / HOUR)
    first_target = _hours_between(origin, start)
    table = connection.sql(
        _hourly_means_sql(choose_source=_sources_in_range(connection, origin, end) > 1),
        params={"end": end, "lookback": origin, "base_hour": base_hour},
    ).to_arrow_table()
    sensor_column = table.column("sensor_id").to_numpy()
    hour_index = table.column("hour_index").to_numpy()
    sensor_ids = np.unique(sensor_column[hour_index >= first_target])
    keep = np.isin(sensor_column, sensor_ids)
    sensor_index = np.searchsorted(sensor_ids, sensor_column[keep])
    hour_index = hour_index[keep]
    shape = (len(sensor_ids), _hours_between(origin, end))
    readings = np.zeros(shape, dtype=np.int32)
    readings[sensor_index, hour_index] = table.column("readings").to_numpy()[keep]
    last_us = np.zeros(shape, dtype=np.int64)
    last_us[sensor_index, hour_index] = table.column("last_us").to_numpy()[keep]
    sources = np.zeros(shape, dtype=np.int8)
    period_column = table.column("period")
    for period, code in source_codes().items():
        is_period = pc.equal(period_column, period).to_numpy(zero_copy_only=False)[keep]
        sources[sensor_index[is_period], hour_index[is_period]] = code
    means = {}
    for pollutant in POLLUTANTS:
        matrix = np.full(shape, np.nan)
        matrix[sensor_index, hour_index] = table.column(f"{pollutant}_mean").to_numpy(zero_copy_only=False)[keep]
        means[pollutant] = matrix
    return HourlyMatrix(origin, sensor_ids, readings, means, last_us, sources, first_target)


def _trailing_windows(matrix: np.ndarray, rows: np.ndarray, columns: np.ndarray, length: int) -> np.ndarray:
    """(n, length) windows: column i holds ``matrix[row, column - i]`` (i hours ago)."""
    return matrix[rows[:, None], columns[:, None] - np.arange(length)]


def _hourly_rows(hourly: HourlyMatrix, with_nowcast: bool) -> dict[str, np.ndarray]:
    """Every index column for the (sensor, hour) cells of the target range that have data, in hour order."""
    target = hourly.readings[:, hourly.first_target :]
    # Hour-major order, so the table is written in time order (zone maps on "hour").
    hour_offset, rows = np.nonzero(target.T > 0)
    columns = hour_offset + hourly.first_target
    out: dict[str, np.ndarray] = {
        "sensor_index": rows,
        "hour_index": columns,
        "sensor_id": hourly.sensor_ids[rows],
        "readings": hourly.readings[rows, columns],
        "source": source_names(hourly.sources[rows, columns]),
    }
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


def _chunks(start: datetime, end: datetime, step: timedelta = CHUNK) -> Iterator[tuple[datetime, datetime]]:
    while start < end:
        yield start, min(start + step, end)
        start += step


def _with_location(connection: duckdb.DuckDBPyConnection, columns: dict[str, object], hourly: HourlyMatrix,
                   rows: np.ndarray, hour_index: np.ndarray, schema: pa.Schema) -> pa.Table:
    """The output table: ``columns`` plus the location of each row's reading at (row sensor, hour), keeping
    only the rows of mass-concentration PM sensors."""
    location = _locations(
        connection, hourly.sensor_ids[rows], hourly.last_us[rows, hour_index], hourly.sources[rows, hour_index]
    )
    for name, _ in LOCATION_FIELDS:
        columns[name] = location.column(name)
    return _table(columns, schema).filter(location.column("mass_pm"))


def hourly_indices(connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pa.Table:
    """Rows of `aqi_hourly` for the hours in [start, end): one per (sensor, hour) with PM data."""
    start, end = naive_utc(start), naive_utc(end)
    _check_hour_range(start, end)
    require_attached(connection)
    parts = []
    for chunk_start, chunk_end in _chunks(start, end):
        hourly = hourly_matrix(connection, chunk_start, chunk_end)
        rows = _hourly_rows(hourly, with_nowcast=True)
        columns: dict[str, object] = {**rows, "hour": _hour_timestamps(hourly.origin, rows["hour_index"])}
        parts.append(_with_location(connection, columns, hourly, rows["sensor_index"], rows["hour_index"],
                                    HOURLY_SCHEMA))
    return pa.concat_tables(parts) if parts else HOURLY_SCHEMA.empty_table()


def source_names(codes: np.ndarray) -> list[str | None]:
    names = np.array([None, *source_periods()], dtype=object)  # code 0 = no data; codes count from 1
    return names[np.asarray(codes).ravel()].tolist()


def _hour_timestamps(origin: datetime, hour_index: np.ndarray) -> np.ndarray:
    return np.datetime64(origin, "us") + hour_index.astype("timedelta64[h]").astype("timedelta64[us]")


def day_range(first: date, end: date) -> tuple[datetime, datetime]:
    return datetime.combine(first, datetime.min.time()), datetime.combine(end, datetime.min.time())


def daily_indices(connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pa.Table:
    """Rows of `aqi_daily` for the UTC days in [start, end) (midnights): one per (sensor, day) with PM data."""
    start, end = naive_utc(start), naive_utc(end)
    if start.time() != datetime.min.time() or end.time() != datetime.min.time():
        raise ValueError(f"day range must start and end at midnight: {start} .. {end}")
    require_attached(connection)
    parts = []
    for chunk_start, chunk_end in _chunks(start, end):
        hourly = hourly_matrix(connection, chunk_start, chunk_end)
        rows = _hourly_rows(hourly, with_nowcast=False)
        parts.append(_daily_from_hourly(connection, hourly, rows, chunk_start))
    return pa.concat_tables(parts) if parts else DAILY_SCHEMA.empty_table()


def _daily_from_hourly(
    connection: duckdb.DuckDBPyConnection, hourly: HourlyMatrix, rows: dict[str, np.ndarray], chunk_start: datetime
) -> pa.Table:
    days = (hourly.hours - hourly.first_target) // MEAN_HOURS
    sensors = len(hourly.sensor_ids)
    # (S, days, 24) views of the chunk's own hours.
    def by_day(matrix: np.ndarray) -> np.ndarray:
        return matrix[:, hourly.first_target :].reshape(sensors, days, MEAN_HOURS)

    has_data = by_day(hourly.readings) > 0
    hours = has_data.sum(axis=2)
    day_index, sensor_index = np.nonzero((hours > 0).T)  # day-major: the table is written in time order
    # An archive that does not feed the indices (a changed registry) makes no hour: 0 is then the truth.
    archive_code = source_codes().get(ARCHIVE, -1)
    columns: dict[str, object] = {
        "sensor_id": hourly.sensor_ids[sensor_index],
        "day": np.datetime64(chunk_start.date(), "D") + day_index.astype("timedelta64[D]"),
        "hours": hours[sensor_index, day_index],
        "archive_hours": (by_day(hourly.sources) == archive_code).sum(axis=2)[sensor_index, day_index],
    }
    for pollutant in POLLUTANTS:
        mean, count = mean_with_coverage(by_day(hourly.means[pollutant]))
        columns[f"{pollutant}_mean"] = mean[sensor_index, day_index]
        columns[f"{pollutant}_hours"] = count[sensor_index, day_index]
    columns.update(epa_columns("aqi_us_daily", columns["pm25_mean"], columns["pm10_mean"]))
    # The day's DAQI: the highest hourly DAQI (on 24-hour means) among the day's hours with data.
    daqi_cells = np.full((sensors, hourly.hours), np.nan)
    daqi_cells[rows["sensor_index"], rows["hour_index"]] = rows["daqi_24h"]
    daqi_by_day = by_day(daqi_cells)
    has_daqi = ~np.isnan(daqi_by_day)
    daqi = np.where(has_daqi, daqi_by_day, -np.inf).max(axis=2)
    daqi[~has_daqi.any(axis=2)] = np.nan
    columns["daqi_daily"] = daqi[sensor_index, day_index]
    columns["daqi_daily_band"] = daqi_band(columns["daqi_daily"])
    # Location: the sensor's last hour with data in the day.
    last_hour = MEAN_HOURS - 1 - np.argmax(has_data[:, :, ::-1], axis=2)
    hour_index = hourly.first_target + day_index * MEAN_HOURS + last_hour[sensor_index, day_index]
    return _with_location(connection, columns, hourly, sensor_index, hour_index, DAILY_SCHEMA)
