"""Which readings the hourly and daily aggregates use: the archive where it covers a sensor-hour, else 5-minute.

For one sensor and one hour the history may hold archived measurements (``period = 'archive'``, every
measurement the sensor sent) and 5-minute averages (``period = '5min'``, snapshots of the live feed). Using
both would count that hour twice, so for each sensor-hour the archive wins when it has any measurement of that
hour, and the 5-minute readings are used otherwise; `period_source` records which one it was. The 24-hour
snapshot averages are never a source of hourly values.

`create_hourly_source_view` defines a TEMP VIEW over `aqi_readings` for a time range; an aggregate selects from
it instead of from `aqi_readings` (and keeps `period_source`, constant within a sensor-hour, as its `source`).
"""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb

from aqi_assets.lib.archive.schema import ARCHIVE_PERIOD

VIEW_NAME = "hourly_source_readings"
LIVE_PERIOD = "5min"
SOURCE_COLUMNS: tuple[str, ...] = (
    "sensor_id", "timestamp", "pm25", "pm10", "country", "latitude", "longitude", "indoor", "sensor_type",
)
# The hour a reading belongs to. 5-minute readings carry the end of their averaging window; an aggregate that
# buckets differently passes its own expression, so source choice and aggregation agree on the hour.
DEFAULT_HOUR_EXPRESSION = 'date_trunc(\'hour\', "timestamp")'


def _naive_utc(moment: datetime) -> datetime:
    """UTC without a zone, as `aqi_readings` stores it (a naive value is taken to be UTC already)."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo is not None else moment


def _literal(moment: datetime) -> str:
    """A TIMESTAMP literal; views cannot hold prepared parameters."""
    return f"TIMESTAMP '{_naive_utc(moment).isoformat(sep=' ')}'"


def hourly_source_sql(start: datetime, end: datetime, hour_expression: str = DEFAULT_HOUR_EXPRESSION) -> str:
    """A SELECT of the readings in [start, end) an hourly aggregate should use, with `period_source` first.

    The range is widened to whole hours, so a sensor-hour is never judged on part of its readings.
    """
    if _naive_utc(end) <= _naive_utc(start):
        raise ValueError(f"empty range: {start} … {end}")
    columns = ", ".join(f'"{c}"' for c in SOURCE_COLUMNS)
    hour_of = hour_expression
    in_range = (
        f"{hour_of} >= date_trunc('hour', {_literal(start)}) AND {hour_of} < {_literal(end)}"
    )
    # The raw time range lets DuckDB skip row groups (zone maps); the hour test above is the exact one.
    coarse = (
        f"\"timestamp\" >= date_trunc('hour', {_literal(start)}) - INTERVAL 1 HOUR "
        f"AND \"timestamp\" < {_literal(end)} + INTERVAL 1 HOUR"
    )
    return f"""
        WITH archive_rows AS (
            SELECT {columns}, {hour_of} AS source_hour FROM aqi_readings
            WHERE period = '{ARCHIVE_PERIOD}' AND {coarse} AND {in_range}
        ),
        archive_hours AS (
            SELECT DISTINCT sensor_id, source_hour FROM archive_rows
        ),
        live_rows AS (
            SELECT {columns}, {hour_of} AS source_hour FROM aqi_readings
            WHERE period = '{LIVE_PERIOD}' AND {coarse} AND {in_range}
        )
        SELECT '{ARCHIVE_PERIOD}' AS period_source, {columns} FROM archive_rows
        UNION ALL
        SELECT '{LIVE_PERIOD}' AS period_source, {", ".join(f'l."{c}"' for c in SOURCE_COLUMNS)}
        FROM live_rows l ANTI JOIN archive_hours h ON l.sensor_id = h.sensor_id AND l.source_hour = h.source_hour
    """


def create_hourly_source_view(
    connection: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    hour_expression: str = DEFAULT_HOUR_EXPRESSION,
    view_name: str = VIEW_NAME,
) -> str:
    """(Re)define TEMP VIEW ``view_name`` = `hourly_source_sql(start, end)` on ``connection``; returns its name."""
    if not view_name.isidentifier():
        raise ValueError(f"{view_name!r} is not a plain identifier")
    connection.execute(f"CREATE OR REPLACE TEMP VIEW {view_name} AS {hourly_source_sql(start, end, hour_expression)}")
    return view_name
