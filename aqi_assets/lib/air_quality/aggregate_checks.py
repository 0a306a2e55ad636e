"""Checks of one partition (a range of hours or days) of `<schema>.aqi_hourly` / `<schema>.aqi_daily`, the
schema being where the aggregates IO manager writes them (`AGGREGATES_SCHEMA` unless configured otherwise).

The reference is recomputed independently of `aggregates.py`: plain SQL over the history view `aqi_readings_all`
(hourly means by GROUP BY, windows by joining each row to the hours 0..23 hours before it), so a bug in the
NumPy windows of the computation does not hide itself. Like the computation, the checks read hot and pruned
days alike, and fail without the view attached on the connection (`require_attached`). A missing table fails
(`AggregateTableMissing`): checking no rows is not a pass. Each check returns the rows it looked at, the rows
that fail it and a few failing rows as a sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from aqi_assets.lib.air_quality.aggregates import (
    AGGREGATES_SCHEMA,
    AQI_DAILY,
    AQI_HOURLY,
    DAY,
    HOUR,
    MIN_HOURS_FOR_MEAN,
    MIN_SLOTS_FOR_HOUR,
    NOWCAST_HOURS,
    NOWCAST_MIN_RECENT,
    NOWCAST_RECENT_HOURS,
    POLLUTANTS,
    TRUNCATION_DIGITS,
    daqi_columns,
    epa_columns,
    history_window,
    outdoor_pm_sql,
    source_codes,
)
from aqi_assets.lib.air_quality.indices import daqi_band, daqi_sub_index, overall
from aqi_assets.lib.air_quality.local_time import local_zones
from aqi_assets.lib.air_quality.sensor_types import mass_concentration_sql_list
from aqi_assets.lib.common.duckdb_tables import identifier
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.history import HISTORY_VIEW, require_attached

SAMPLE_ROWS = 5
FLOAT_TOLERANCE = 1e-9
# Stored means are rounded to 9 decimals (exact truncation) and summed in another order than here.
MEAN_TOLERANCE = 1e-8


class AggregateTableMissing(LookupError):
    """The table to check does not exist (not materialised yet, or the checks look in another schema than the IO
    manager writes to)."""


def aggregate_table(connection: duckdb.DuckDBPyConnection, schema: str, name: str) -> str:
    """The quoted ``schema.name`` of an aggregate table, after checking it exists."""
    qualified = f"{identifier(schema)}.{identifier(name)}"
    found = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchall()[0][0]
    if not found:
        raise AggregateTableMissing(
            f"{schema}.{name} does not exist: the checks read the table the aggregates IO manager writes (its "
            f"db_schema is {schema!r}); materialise {name} for this partition first"
        )
    return qualified


@dataclass
class PartitionCheck:
    passed: bool
    checked_rows: int
    failing_rows: int
    sample: list[dict[str, Any]] = field(default_factory=list)


def _outcome(connection: duckdb.DuckDBPyConnection, relation: str, failing: str) -> PartitionCheck:
    checked = connection.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
    failing_count = connection.execute(f"SELECT count(*) FROM {relation} WHERE {failing}").fetchall()[0][0]
    sample = connection.execute(f"SELECT * FROM {relation} WHERE {failing} LIMIT {SAMPLE_ROWS}").df()
    return PartitionCheck(failing_count == 0, checked, failing_count, sample.to_dict("records"))


def _reference_hourly_means(connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> None:
    """`reference_hourly`: one row per (sensor, hour) with outdoor PM readings in [start, end), and each
    pollutant's valid mean (NULL unless its best-covering feed has >= MIN_SLOTS_FOR_HOUR distinct slots), by
    GROUP BY and `arg_max`, independently of the NumPy feed choice."""
    require_attached(connection)
    codes = source_codes()
    rank = "CASE period " + " ".join(f"WHEN '{period}' THEN {code}" for period, code in codes.items()) + " END"
    per_feed = ", ".join(
        f"count(DISTINCT minute(\"timestamp\") // 5) FILTER (WHERE {p} IS NOT NULL) AS {p}_slots, avg({p}) AS {p}_feed"
        for p in POLLUTANTS
    )
    # Most slots wins; on a tie the lower code (the preferred feed): key = slots * 100 - code.
    chosen = ", ".join(
        f"CASE WHEN max({p}_slots) >= {MIN_SLOTS_FOR_HOUR} THEN arg_max({p}_feed, {p}_slots * 100 - code) END AS {p}, "
        f"max({p}_slots) AS {p}_slots, "
        f"CASE WHEN max({p}_slots) > 0 THEN arg_max(period, {p}_slots * 100 - code) END AS {p}_source"
        for p in POLLUTANTS
    )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE reference_hourly AS
        SELECT sensor_id, hour, {chosen}
        FROM (
            SELECT sensor_id, period, {rank} AS code, date_trunc('hour', "timestamp") AS hour, {per_feed}
            FROM {HISTORY_VIEW}
            WHERE {outdoor_pm_sql()} AND "timestamp" >= $lo AND "timestamp" < $end
              AND upper(trim(sensor_type)) IN ({mass_concentration_sql_list()})
            GROUP BY ALL
        )
        GROUP BY sensor_id, hour
        """,
        {"lo": start, "end": end},
    )


def _index_mismatches(frame, recomputed: dict[str, np.ndarray]) -> np.ndarray:
    """Rows where any stored index column differs from its recomputed value (NULL, NaN and None alike)."""

    bad = np.zeros(len(frame), dtype=bool)
    for name, expected in recomputed.items():
        stored = frame[name].to_numpy(dtype=object)
        expected = np.asarray(expected, dtype=object)
        stored_missing, expected_missing = pd.isna(stored), pd.isna(expected)
        both = ~stored_missing & ~expected_missing
        differs = np.zeros(len(frame), dtype=bool)
        differs[both] = stored[both] != expected[both]
        bad |= (stored_missing != expected_missing) | differs
    return bad


def _indices_check(frame, recomputed: dict[str, np.ndarray], key_columns: list[str]) -> PartitionCheck:
    bad = _index_mismatches(frame, recomputed)
    sample = frame.loc[bad, [*key_columns, *recomputed]].head(SAMPLE_ROWS).to_dict("records")
    return PartitionCheck(not bad.any(), len(frame), int(bad.sum()), sample)


def check_hourly_partition(
    connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime, schema: str = AGGREGATES_SCHEMA
) -> dict[str, PartitionCheck]:
    """The blocking checks of `<schema>.aqi_hourly` for the hours in [start, end)."""
    start, end = naive_utc(start), naive_utc(end)
    require_attached(connection)
    table = aggregate_table(connection, schema, AQI_HOURLY)
    _reference_hourly_means(connection, *history_window(HOUR, start, end))
    aggregates = ", ".join(
        f"min(m.{p}) FILTER (WHERE a.age < {NOWCAST_HOURS}) AS {p}_min12, "
        f"max(m.{p}) FILTER (WHERE a.age < {NOWCAST_HOURS}) AS {p}_max12, "
        f"count(m.{p}) FILTER (WHERE a.age < {NOWCAST_RECENT_HOURS}) AS {p}_recent3, "
        f"count(m.{p}) AS {p}_hours24"
        for p in POLLUTANTS
    )
    stored = ", ".join(
        f"t.{name}" for name in ("pm25_nowcast", "pm10_nowcast", "pm25_24h", "pm10_24h", "aqi_us_nowcast", "daqi_24h")
    )
    # Every hour that should have a row (readings of its own, or a NowCast or a 24-hour mean from the 23 before
    # it) beside every stored row: a missing row fails completeness as a wrong one does.
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hourly_check AS
        WITH candidates AS (
            SELECT DISTINCT sensor_id, hour + to_hours(a.age) AS hour
            FROM reference_hourly CROSS JOIN range(24) a(age)
        ), reference AS (
            SELECT c.sensor_id, c.hour, bool_or(a.age = 0 AND m.sensor_id IS NOT NULL) AS has_readings, {aggregates}
            FROM candidates c
            CROSS JOIN range(24) a(age)
            LEFT JOIN reference_hourly m ON m.sensor_id = c.sensor_id AND m.hour = c.hour - to_hours(a.age)
            WHERE c.hour >= $start AND c.hour < $end
            GROUP BY c.sensor_id, c.hour
        )
        SELECT coalesce(t.sensor_id, r.sensor_id) AS sensor_id, coalesce(t.hour, r.hour) AS hour,
               t.sensor_id IS NOT NULL AS stored, {stored}, r.* EXCLUDE (sensor_id, hour)
        FROM (SELECT * FROM {table} WHERE hour >= $start AND hour < $end) t
        FULL JOIN reference r ON r.sensor_id = t.sensor_id AND r.hour = t.hour
        """,
        {"start": start, "end": end},
    )
    within = " OR ".join(
        f"({p}_nowcast IS NOT NULL AND NOT ({p}_nowcast >= {p}_min12 - {10.0 ** -TRUNCATION_DIGITS[p]} "
        f"- {FLOAT_TOLERANCE} AND {p}_nowcast <= {p}_max12 + {FLOAT_TOLERANCE}))"
        for p in POLLUTANTS
    )
    expected_row = " OR ".join(
        ["coalesce(has_readings, false)",
         *(f"coalesce({p}_recent3 >= {NOWCAST_MIN_RECENT} OR {p}_hours24 >= {MIN_HOURS_FOR_MEAN}, false)"
           for p in POLLUTANTS)]
    )  # fmt: skip
    completeness = " OR ".join(
        [
            f"(stored <> ({expected_row}))",
            *(f"(stored AND ({p}_nowcast IS NOT NULL) <> coalesce({p}_recent3 >= {NOWCAST_MIN_RECENT}, false))"
              for p in POLLUTANTS),
            *(f"(stored AND ({p}_24h IS NOT NULL) <> coalesce({p}_hours24 >= {MIN_HOURS_FOR_MEAN}, false))"
              for p in POLLUTANTS),
            "((aqi_us_nowcast IS NOT NULL) <> (pm25_nowcast IS NOT NULL OR pm10_nowcast IS NOT NULL))",
            "((daqi_24h IS NOT NULL) <> (pm25_24h IS NOT NULL OR pm10_24h IS NOT NULL))",
        ]
    )  # fmt: skip
    frame = connection.execute(
        f"SELECT * FROM {table} WHERE hour >= $start AND hour < $end", {"start": start, "end": end}
    ).df()
    recomputed = {
        **epa_columns("aqi_us_nowcast", _floats(frame, "pm25_nowcast"), _floats(frame, "pm10_nowcast")),
        **daqi_columns("daqi_24h", _floats(frame, "pm25_24h"), _floats(frame, "pm10_24h")),
    }
    return {
        "indices_match_concentrations": _indices_check(frame, recomputed, ["sensor_id", "hour"]),
        "nowcast_within_hourly_range": _outcome(connection, "hourly_check", within),
        "completeness_rules": _outcome(connection, "hourly_check", completeness),
        "means_match_history": _hourly_means_check(connection, table, start, end),
    }


def check_daily_partition(
    connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime, schema: str = AGGREGATES_SCHEMA
) -> dict[str, PartitionCheck]:
    """The blocking checks of `<schema>.aqi_daily` for the days in [start, end) (midnights), each row over its
    sensor's local day (the stored `utc_offset_hours`)."""
    start, end = naive_utc(start), naive_utc(end)
    require_attached(connection)
    table = aggregate_table(connection, schema, AQI_DAILY)
    _reference_hourly_means(connection, *history_window(DAY, start, end))
    per_day = ", ".join(
        f"min(m.{p}) AS {p}_min, max(m.{p}) AS {p}_max, count(m.{p}) AS {p}_count" for p in POLLUTANTS
    )
    # Hours of the day at which a trailing 24-hour mean exists (>= 18 valid hours of either pollutant).
    trailing = " OR ".join(f"count(w.{p}) >= {MIN_HOURS_FOR_MEAN}" for p in POLLUTANTS)
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE daily_check AS
        WITH stored AS (
            SELECT *, CAST(day AS TIMESTAMP) - to_hours(utc_offset_hours) AS day_start
            FROM {table} WHERE day >= $start AND day < $end
        ), day_hours AS (
            SELECT s.sensor_id, s.day, s.day_start + to_hours(h.h) AS hour
            FROM stored s CROSS JOIN range(24) h(h)
        ), with_daqi AS (
            SELECT d.sensor_id, d.day, bool_or(has_mean) AS any_24h_mean
            FROM (
                SELECT h.sensor_id, h.day, h.hour, ({trailing}) AS has_mean
                FROM day_hours h CROSS JOIN range(24) a(age)
                LEFT JOIN reference_hourly w ON w.sensor_id = h.sensor_id AND w.hour = h.hour - to_hours(a.age)
                GROUP BY h.sensor_id, h.day, h.hour
            ) d
            GROUP BY d.sensor_id, d.day
        ), reference AS (
            SELECT h.sensor_id, h.day, count(m.pm25) + count(m.pm10) - count(m.pm25 + m.pm10) AS hours_ref,
                   count(m.sensor_id) AS reading_hours, {per_day}
            FROM day_hours h LEFT JOIN reference_hourly m ON m.sensor_id = h.sensor_id AND m.hour = h.hour
            GROUP BY ALL
        )
        SELECT t.sensor_id, t.day, t.utc_offset_hours, t.hours, t.pm25_hours, t.pm10_hours, t.pm25_mean,
               t.pm10_mean, t.aqi_us_daily, t.daqi_daily, r.* EXCLUDE (sensor_id, day), q.any_24h_mean
        FROM stored t
        LEFT JOIN reference r USING (sensor_id, day)
        LEFT JOIN with_daqi q USING (sensor_id, day)
        """,
        {"start": start, "end": end},
    )
    within = " OR ".join(
        [
            *(
                f"({p}_mean IS NOT NULL AND NOT ({p}_mean >= {p}_min - {FLOAT_TOLERANCE} "
                f"AND {p}_mean <= {p}_max + {FLOAT_TOLERANCE}))"
                for p in POLLUTANTS
            ),
            *(f"({p}_hours IS DISTINCT FROM {p}_count)" for p in POLLUTANTS),
            "(hours IS DISTINCT FROM hours_ref)",
        ]
    )
    completeness = " OR ".join(
        [
            "(reading_hours = 0)",  # a row for a local day without readings
            *(f"(({p}_mean IS NOT NULL) <> ({p}_count >= {MIN_HOURS_FOR_MEAN}))" for p in POLLUTANTS),
            "((aqi_us_daily IS NOT NULL) <> (pm25_mean IS NOT NULL OR pm10_mean IS NOT NULL))",
            "((daqi_daily IS NOT NULL) <> coalesce(any_24h_mean, false))",
        ]
    )
    frame = connection.execute(
        f"SELECT * FROM {table} WHERE day >= $start AND day < $end", {"start": start, "end": end}
    ).df()
    recomputed = {
        **epa_columns("aqi_us_daily", _floats(frame, "pm25_mean"), _floats(frame, "pm10_mean")),
        "daqi_daily_band": daqi_band(_floats(frame, "daqi_daily")),
        **daqi_columns("daqi_daily_mean", _floats(frame, "pm25_mean"), _floats(frame, "pm10_mean")),
    }
    recomputed = {name: values for name, values in recomputed.items() if name in frame.columns}
    return {
        "indices_match_concentrations": _indices_check(frame, recomputed, ["sensor_id", "day"]),
        "daily_mean_within_hourly_range": _outcome(connection, "daily_check", within),
        "completeness_rules": _outcome(connection, "daily_check", completeness),
        "means_match_history": _daily_means_check(connection, frame),
    }


def _differs(stored: str, expected: str, tolerance: float = MEAN_TOLERANCE) -> str:
    """SQL: the stored value is not the expected one (NULL-aware; floats within a relative tolerance)."""
    return (f"(({stored} IS NULL) <> ({expected} IS NULL) OR abs({stored} - {expected}) > "
            f"{tolerance} * greatest(1, abs({expected})))")


def _hourly_means_check(connection: duckdb.DuckDBPyConnection, table: str, start: datetime,
                        end: datetime) -> PartitionCheck:
    """Each stored hour's means, covered slots and feeds equal the reference's, and its 24-hour means equal the
    mean of the valid hourly means of the 24 hours ending with it (>= 18 of them)."""
    trailing = ", ".join(
        f"CASE WHEN count(w.{p}) >= {MIN_HOURS_FOR_MEAN} THEN avg(w.{p}) END AS {p}_24h_ref" for p in POLLUTANTS
    )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hourly_means_check AS
        SELECT t.sensor_id, t.hour, {", ".join(f"any_value(t.{p}_mean) AS {p}_mean, any_value(m.{p}) AS {p}_ref, "
                                               f"any_value(t.{p}_slots) AS {p}_slots, "
                                               f"coalesce(any_value(m.{p}_slots), 0) AS {p}_slots_ref, "
                                               f"any_value(t.{p}_source) AS {p}_source, "
                                               f"any_value(m.{p}_source) AS {p}_source_ref, "
                                               f"any_value(t.{p}_24h) AS {p}_24h" for p in POLLUTANTS)},
               {trailing}
        FROM {table} t
        LEFT JOIN reference_hourly m ON m.sensor_id = t.sensor_id AND m.hour = t.hour
        CROSS JOIN range(24) a(age)
        LEFT JOIN reference_hourly w ON w.sensor_id = t.sensor_id AND w.hour = t.hour - to_hours(a.age)
        WHERE t.hour >= $start AND t.hour < $end
        GROUP BY t.sensor_id, t.hour
        """,
        {"start": start, "end": end},
    )
    failing = " OR ".join(
        f"{_differs(f'{p}_mean', f'{p}_ref')} OR {p}_slots IS DISTINCT FROM {p}_slots_ref "
        f"OR {p}_source IS DISTINCT FROM {p}_source_ref OR {_differs(f'{p}_24h', f'{p}_24h_ref')}"
        for p in POLLUTANTS
    )
    return _outcome(connection, "hourly_means_check", failing)


def _daily_means_check(connection: duckdb.DuckDBPyConnection, frame) -> PartitionCheck:
    """Each stored day's means equal the mean of the valid hourly means of its local day (from the stored offset),
    its `daqi_daily` the highest DAQI of the day's trailing 24-hour means, and its offset the one of the zone at
    its coordinates (`local_time`): a day computed on the wrong clock fails."""
    per_hour = connection.execute(
        f"""
        WITH stored AS (
            SELECT sensor_id, day, CAST(day AS TIMESTAMP) - to_hours(utc_offset_hours) AS day_start
            FROM daily_check
        ), day_hours AS (
            SELECT s.sensor_id, s.day, s.day_start + to_hours(h.h) AS hour FROM stored s CROSS JOIN range(24) h(h)
        )
        SELECT d.sensor_id, d.day, d.hour, {", ".join(f"any_value(m.{p}) AS {p}" for p in POLLUTANTS)},
               {", ".join(f"CASE WHEN count(w.{p}) >= {MIN_HOURS_FOR_MEAN} THEN avg(w.{p}) END AS {p}_24h"
                          for p in POLLUTANTS)}
        FROM day_hours d
        LEFT JOIN reference_hourly m ON m.sensor_id = d.sensor_id AND m.hour = d.hour
        CROSS JOIN range(24) a(age)
        LEFT JOIN reference_hourly w ON w.sensor_id = d.sensor_id AND w.hour = d.hour - to_hours(a.age)
        GROUP BY d.sensor_id, d.day, d.hour
        """
    ).df()
    per_hour["daqi"] = overall(daqi_sub_index(_floats(per_hour, "pm25_24h"), "pm25"),
                               daqi_sub_index(_floats(per_hour, "pm10_24h"), "pm10"))
    reference = per_hour.groupby(["sensor_id", "day"]).agg(
        pm25_ref=("pm25", "mean"), pm25_n=("pm25", "count"), pm10_ref=("pm10", "mean"), pm10_n=("pm10", "count"),
        daqi_ref=("daqi", "max"),
    )
    merged = frame.merge(reference.reset_index(), on=["sensor_id", "day"], how="left")
    bad = np.zeros(len(merged), dtype=bool)
    for p in POLLUTANTS:
        expected = np.where(merged[f"{p}_n"].to_numpy() >= MIN_HOURS_FOR_MEAN, _floats(merged, f"{p}_ref"), np.nan)
        stored = _floats(merged, f"{p}_mean")
        bad |= np.isnan(stored) != np.isnan(expected)
        both = ~np.isnan(stored) & ~np.isnan(expected)
        bad[both] |= np.abs(stored[both] - expected[both]) > MEAN_TOLERANCE * np.maximum(1, np.abs(expected[both]))
    stored_daqi, expected_daqi = _floats(merged, "daqi_daily"), _floats(merged, "daqi_ref")
    bad |= ~((stored_daqi == expected_daqi) | (np.isnan(stored_daqi) & np.isnan(expected_daqi)))
    latitudes, longitudes = _floats(merged, "latitude"), _floats(merged, "longitude")
    expected_offset = np.zeros(len(merged))
    days = pd.to_datetime(merged["day"]).dt.date.to_numpy()
    for day in set(days):
        rows = days == day
        expected_offset[rows] = [zone.standard_offset_hours for zone in
                                 local_zones(latitudes[rows], longitudes[rows], day)]
    located = ~np.isnan(latitudes) & ~np.isnan(longitudes)
    bad[located] |= _floats(merged, "utc_offset_hours")[located] != expected_offset[located]
    columns = ["sensor_id", "day", "utc_offset_hours", "pm25_mean", "pm25_ref", "pm10_mean", "pm10_ref", "daqi_daily",
               "daqi_ref"]
    sample = merged.loc[bad, columns].head(SAMPLE_ROWS).to_dict("records")
    return PartitionCheck(not bad.any(), len(merged), int(bad.sum()), sample)


def _floats(frame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)

