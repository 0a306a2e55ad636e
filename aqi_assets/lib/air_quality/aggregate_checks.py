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

from aqi_assets.lib.air_quality.aggregates import (
    AGGREGATES_SCHEMA,
    AQI_DAILY,
    AQI_HOURLY,
    LOOKBACK,
    MIN_HOURS_FOR_MEAN,
    NOWCAST_HOURS,
    NOWCAST_MIN_RECENT,
    NOWCAST_RECENT_HOURS,
    POLLUTANTS,
    TRUNCATION_DIGITS,
    daqi_columns,
    epa_columns,
    source_choice_sql,
    source_periods,
)
from aqi_assets.lib.air_quality.indices import daqi_band
from aqi_assets.lib.air_quality.sensor_types import mass_concentration_sql_list
from aqi_assets.lib.common.duckdb_tables import identifier
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.history import HISTORY_VIEW, require_attached
from aqi_assets.lib.readings.periods import sql_list

SAMPLE_ROWS = 5
FLOAT_TOLERANCE = 1e-9


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
    require_attached(connection)
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE reference_hourly AS
        SELECT sensor_id, hour, pm25, pm10 FROM (
            SELECT * FROM (
                SELECT sensor_id, period, date_trunc('hour', "timestamp") AS hour, avg(pm25) AS pm25,
                       avg(pm10) AS pm10
                FROM {HISTORY_VIEW}
                WHERE period IN {sql_list(source_periods())}
                  AND "timestamp" >= $lo AND "timestamp" < $end
                  AND upper(sensor_type) IN ({mass_concentration_sql_list()})
                  AND (pm25 IS NOT NULL OR pm10 IS NOT NULL)
                GROUP BY ALL
            )
            {source_choice_sql().format(hour="hour")}
        )
        """,
        {"lo": start - LOOKBACK, "end": end},
    )


def _index_mismatches(frame, recomputed: dict[str, np.ndarray]) -> np.ndarray:
    """Rows where any stored index column differs from its recomputed value (NULL, NaN and None alike)."""
    import pandas as pd

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
    _reference_hourly_means(connection, start, end)
    aggregates = ", ".join(
        f"min(m.{p}) FILTER (WHERE a.age < {NOWCAST_HOURS}) AS {p}_min12, "
        f"max(m.{p}) FILTER (WHERE a.age < {NOWCAST_HOURS}) AS {p}_max12, "
        f"count(m.{p}) FILTER (WHERE a.age < {NOWCAST_RECENT_HOURS}) AS {p}_recent3, "
        f"count(m.{p}) AS {p}_hours24"
        for p in POLLUTANTS
    )
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE hourly_check AS
        SELECT t.sensor_id, t.hour, any_value(t.pm25_nowcast) AS pm25_nowcast,
               any_value(t.pm10_nowcast) AS pm10_nowcast, any_value(t.pm25_24h) AS pm25_24h,
               any_value(t.pm10_24h) AS pm10_24h, any_value(t.aqi_us_nowcast) AS aqi_us_nowcast,
               any_value(t.daqi_24h) AS daqi_24h, {aggregates}
        FROM {table} t
        CROSS JOIN range(24) a(age)
        LEFT JOIN reference_hourly m ON m.sensor_id = t.sensor_id AND m.hour = t.hour - to_hours(a.age)
        WHERE t.hour >= $start AND t.hour < $end
        GROUP BY t.sensor_id, t.hour
        """,
        {"start": start, "end": end},
    )
    within = " OR ".join(
        f"({p}_nowcast IS NOT NULL AND NOT ({p}_nowcast >= {p}_min12 - {10.0 ** -TRUNCATION_DIGITS[p]} "
        f"- {FLOAT_TOLERANCE} AND {p}_nowcast <= {p}_max12 + {FLOAT_TOLERANCE}))"
        for p in POLLUTANTS
    )
    completeness = " OR ".join(
        [
            *(f"(({p}_nowcast IS NOT NULL) <> ({p}_recent3 >= {NOWCAST_MIN_RECENT}))" for p in POLLUTANTS),
            *(f"(({p}_24h IS NOT NULL) <> ({p}_hours24 >= {MIN_HOURS_FOR_MEAN}))" for p in POLLUTANTS),
            "((aqi_us_nowcast IS NOT NULL) <> (pm25_nowcast IS NOT NULL OR pm10_nowcast IS NOT NULL))",
            "((daqi_24h IS NOT NULL) <> (pm25_24h IS NOT NULL OR pm10_24h IS NOT NULL))",
        ]
    )
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
    }


def check_daily_partition(
    connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime, schema: str = AGGREGATES_SCHEMA
) -> dict[str, PartitionCheck]:
    """The blocking checks of `<schema>.aqi_daily` for the days in [start, end) (midnights)."""
    start, end = naive_utc(start), naive_utc(end)
    require_attached(connection)
    table = aggregate_table(connection, schema, AQI_DAILY)
    _reference_hourly_means(connection, start, end)
    per_day = ", ".join(
        f"min(m.{p}) AS {p}_min, max(m.{p}) AS {p}_max, count(m.{p}) AS {p}_count" for p in POLLUTANTS
    )
    # Hours of the day at which a trailing 24-hour mean exists (>= 18 hours of either pollutant).
    trailing = " OR ".join(f"count(w.{p}) >= {MIN_HOURS_FOR_MEAN}" for p in POLLUTANTS)
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE daily_check AS
        WITH day_hours AS (
            SELECT sensor_id, hour, CAST(hour AS DATE) AS day FROM reference_hourly WHERE hour >= $start
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
            SELECT m.sensor_id, CAST(m.hour AS DATE) AS day, count(*) AS hours_ref, {per_day}
            FROM reference_hourly m WHERE m.hour >= $start
            GROUP BY ALL
        )
        SELECT t.sensor_id, t.day, t.hours, t.pm25_hours, t.pm10_hours, t.pm25_mean, t.pm10_mean,
               t.aqi_us_daily, t.daqi_daily, r.* EXCLUDE (sensor_id, day), q.any_24h_mean
        FROM {table} t
        LEFT JOIN reference r USING (sensor_id, day)
        LEFT JOIN with_daqi q USING (sensor_id, day)
        WHERE t.day >= $start AND t.day < $end
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
    }
    return {
        "indices_match_concentrations": _indices_check(frame, recomputed, ["sensor_id", "day"]),
        "daily_mean_within_hourly_range": _outcome(connection, "daily_check", within),
        "completeness_rules": _outcome(connection, "daily_check", completeness),
    }


def _floats(frame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)

