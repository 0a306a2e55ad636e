"""Late data: which hours a merge touched, and which partitions of the indices that changes.

A merge reports the hours its new rows fall in (`hours_touched`, JSON metadata of the materialisation); a merged archive
day touches its own 24 hours. The indices of an hour depend on the hour itself and the 23 before it (NowCast over 12
hours, trailing 24-hour means), so touched hours change themselves and the next 23 hours, and the local days those fall
in, in any zone from UTC-12 to UTC+14. Everything here is pure arithmetic on naive UTC datetimes and partition keys (the
key format is the partitions definition's `fmt`), apart from the two queries of the merge number.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import duckdb

from aqi_assets.lib.air_quality.aggregates import DAY, EARLIEST_ZONE_AHEAD, HOUR, LATEST_ZONE_BEHIND, LOOKBACK
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.periods import index_sources, sql_list

HOURS_TOUCHED_KEY = "hours_touched"  # metadata of aqi_readings: [[start, end), ...] ISO hours, UTC
UNITS = (HOUR, DAY)  # the partition lengths of aqi_hourly and aqi_daily

HourRange = tuple[datetime, datetime]


# ---------------------------------------------------------------------------------------------------------
# What a merge touched (new rows are hot: `aqi_readings` itself, never the history view)


def latest_ingest_seq(connection: duckdb.DuckDBPyConnection) -> int:
    """The newest merge number handed out (0 before the first merge): rows merged later have a higher one.

    Read from the sequence's own state, so it costs nothing however large the history is.
    """
    row = connection.execute(
        "SELECT last_value FROM duckdb_sequences() WHERE sequence_name = 'aqi_ingest_seq'"
    ).fetchall()
    if row and row[0][0] is not None:
        return int(row[0][0])
    return int(connection.execute("SELECT coalesce(max(ingest_seq), 0) FROM aqi_readings").fetchall()[0][0])


def touched_hour_ranges(connection: duckdb.DuckDBPyConnection, after_seq: int) -> list[HourRange]:
    """[start, end) ranges of the hours holding readings of the index sources merged after ``after_seq``."""
    hours = [
        row[0]
        for row in connection.execute(
            f"""
            SELECT DISTINCT time_bucket(INTERVAL 1 HOUR, "timestamp") AS hour
            FROM aqi_readings WHERE ingest_seq > ? AND period IN {sql_list(index_sources())}
            ORDER BY hour
            """,
            [after_seq],
        ).fetchall()
    ]
    return hour_runs(hours)


# ---------------------------------------------------------------------------------------------------------
# Pure arithmetic


def hour_runs(hours: Iterable[datetime]) -> list[HourRange]:
    """Sorted distinct hours → [start, end) ranges of consecutive hours."""
    ranges: list[HourRange] = []
    for hour in hours:
        if ranges and ranges[-1][1] == hour:
            ranges[-1] = (ranges[-1][0], hour + HOUR)
        else:
            ranges.append((hour, hour + HOUR))
    return ranges


def merged_ranges(ranges: Iterable[HourRange]) -> list[HourRange]:
    """[start, end) hour ranges (whole hours) merged where they overlap or touch, in time order."""
    merged: list[HourRange] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def affected_hours(touched: HourRange) -> HourRange:
    """Hours whose indices change when readings of ``touched`` change: the hours themselves and the next 23
    (whose NowCast and 24-hour means include them)."""
    start, end = touched
    return start, end + LOOKBACK


def _check_unit(unit: timedelta) -> None:
    if unit not in UNITS:
        raise ValueError(f"partition unit must be an hour or a day, not {unit}")


def _floor(moment: datetime, unit: timedelta) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if unit == DAY else moment


def affected_range(touched: HourRange, unit: timedelta) -> HourRange:
    """[start, end) of the partitions of length ``unit`` whose indices ``touched`` changes: the affected hours;
    for daily partitions every local day (UTC-12 .. UTC+14) holding an affected hour, widened to whole days."""
    _check_unit(unit)
    start, end = affected_hours((naive_utc(touched[0]), naive_utc(touched[1])))
    if unit == HOUR:
        return _floor(start, HOUR), end
    start, end = start - LATEST_ZONE_BEHIND, end + EARLIEST_ZONE_AHEAD
    return _floor(start, DAY), _floor(end - timedelta(microseconds=1), DAY) + DAY


def complete_until(now: datetime, unit: timedelta) -> datetime:
    """The end of the last complete partition of length ``unit`` at ``now`` (later ones do not exist yet)."""
    _check_unit(unit)
    return _floor(naive_utc(now), unit)


def keys_between(fmt: str, start: datetime, end: datetime, unit: timedelta) -> list[str]:
    """Keys (formatted with ``fmt``) of the partitions starting in [start, end), every ``unit``."""
    keys = []
    moment = start
    while moment < end:
        keys.append(moment.strftime(fmt))
        moment += unit
    return keys


def candidate_keys(
    touched: Iterable[HourRange], unit: timedelta, fmt: str, first: datetime, now: datetime
) -> list[str]:
    """Keys of the existing partitions (from ``first``, complete at ``now``) that ``touched`` hours change,
    in time order."""
    first, last_end = naive_utc(first), complete_until(now, unit)
    found: set[datetime] = set()
    for touched_range in touched:
        start, end = affected_range(touched_range, unit)
        moment = max(start, first)
        while moment < min(end, last_end):
            found.add(moment)
            moment += unit
    return [moment.strftime(fmt) for moment in sorted(found)]


def key_runs(keys: Iterable[str], fmt: str, unit: timedelta) -> list[tuple[str, str]]:
    """Partition keys → (first, last) of each run of consecutive ones, in time order (one run request each)."""
    starts = sorted({datetime.strptime(key, fmt) for key in keys})
    runs: list[tuple[datetime, datetime]] = []
    for moment in starts:
        if runs and moment == runs[-1][1] + unit:
            runs[-1] = (runs[-1][0], moment)
        else:
            runs.append((moment, moment))
    return [(first.strftime(fmt), last.strftime(fmt)) for first, last in runs]


def serialise_hours_touched(ranges: Iterable[HourRange]) -> list[list[str]]:
    """The `hours_touched` value: [[start, end], ...] as ISO text (naive UTC)."""
    return [[naive_utc(start).isoformat(), naive_utc(end).isoformat()] for start, end in ranges]


def parse_hours_touched(value: Any) -> list[HourRange]:
    """`hours_touched` back to ranges; None (an older materialisation without it) is no hours. Anything else
    that is not [[start, end], ...] of ISO datetimes raises."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{HOURS_TOUCHED_KEY} must be a list of [start, end] pairs, not {value!r}")
    ranges = []
    for pair in value:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError(f"{HOURS_TOUCHED_KEY}: {pair!r} is not a [start, end] pair")
        start, end = (naive_utc(datetime.fromisoformat(text)) for text in pair)
        if end <= start:
            raise ValueError(f"{HOURS_TOUCHED_KEY}: empty range {pair!r}")
        ranges.append((start, end))
    return ranges
