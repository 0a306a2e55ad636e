"""What a person wants to see about the history after a merge: the current picture and the worst sensors.

The band and category counts are the *current* picture, per period: each outdoor PM sensor (a reading with PM
values) counts once, with its latest reading. Only readings merged within the period's freshness limit (30 minutes
for 5-minute data, 26 hours for 24-hour data) before the period's newest merge are looked at (`ingested_at`
against `snapshot_log.processed_at`, so DuckDB's zone maps skip the rest of the history and the cost does not
grow with it), and of those only readings within that limit of the period's newest reading (a replayed old
snapshot is merged late but is not current). A sensor that has gone quiet for longer is left out. The
worst-sensors table ranks the same readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from aqi_assets.lib.air_quality.indices import DAQI_BANDS, EPA_CATEGORIES
from aqi_assets.lib.common.markdown import markdown_table
from aqi_assets.lib.readings.periods import snapshot_periods

NO_INDEX = "no index"  # a PM sensor whose latest reading has no index (e.g. a particle counter)


@dataclass(frozen=True)
class ReadingsSummary:
    total_rows: int
    rows_per_period: dict[str, int]
    # period → label → outdoor PM sensors whose latest reading has that label (see the module docstring)
    daqi_band_counts: dict[str, dict[str, int]]
    aqi_us_category_counts: dict[str, dict[str, int]]
    worst_sensors_markdown: str
    columns: list[tuple[str, str]]


def _newest_merges(connection: duckdb.DuckDBPyConnection) -> dict[str, datetime]:
    return dict(
        connection.execute(
            "SELECT period, max(processed_at) FROM snapshot_log WHERE status = 'merged' GROUP BY 1"
        ).fetchall()
    )


# One period's current picture: each outdoor PM sensor's latest reading merged within the freshness limit
# before the period's newest merge (`$since`, a constant, so DuckDB's zone maps skip every older row group),
# and within that limit of the newest of those readings (a replayed old snapshot is merged late but is not
# current).
_CURRENT_READINGS = """
    latest AS (
        SELECT * FROM aqi_readings
        WHERE period = $period AND ingested_at >= $since
          AND NOT coalesce(indoor, false)
          AND (pm25 IS NOT NULL OR pm10 IS NOT NULL OR no_index_reason IS NOT NULL)
        QUALIFY row_number() OVER (PARTITION BY sensor_id ORDER BY "timestamp" DESC) = 1
    ),
    current AS (
        SELECT * FROM latest WHERE "timestamp" >= (SELECT max("timestamp") FROM latest) - $horizon
    )"""


def _current_params(period: str, newest_merge: datetime, horizon: timedelta) -> dict[str, object]:
    return {"period": period, "since": newest_merge - horizon, "horizon": horizon}


def current_label_counts(
    connection: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """(DAQI band counts, US AQI category counts) per period over the outdoor PM sensors' latest readings."""
    newest_merges = _newest_merges(connection)
    bands = [name for _, _, name in DAQI_BANDS] + [NO_INDEX]
    categories = [name for _, _, name in EPA_CATEGORIES] + [NO_INDEX]
    daqi = {period: dict.fromkeys(bands, 0) for period in snapshot_periods()}
    aqi = {period: dict.fromkeys(categories, 0) for period in snapshot_periods()}
    for period, spec in snapshot_periods().items():
        if period not in newest_merges:
            continue
        for band, category, count in connection.execute(
            f"WITH {_CURRENT_READINGS} SELECT daqi_band, aqi_us_category, count(*) FROM current GROUP BY ALL",
            _current_params(period, newest_merges[period], spec.freshness_fail),
        ).fetchall():
            daqi[period][band or NO_INDEX] += int(count)
            aqi[period][category or NO_INDEX] += int(count)
    return daqi, aqi


def worst_sensors_markdown(connection: duckdb.DuckDBPyConnection, limit: int = 10) -> str:
    """The outdoor sensors with the highest index in the current picture (the readings the band counts look
    at), as a markdown table."""
    newest_merges = _newest_merges(connection)
    rows: list[tuple] = []
    for period, spec in snapshot_periods().items():
        if period not in newest_merges:
            continue
        rows += connection.execute(
            f"""WITH {_CURRENT_READINGS}
                SELECT period, sensor_id, "timestamp", country, location_id, pm25, pm10, daqi, daqi_band, aqi_us,
                       aqi_us_category
                FROM current WHERE daqi IS NOT NULL ORDER BY daqi DESC, aqi_us DESC, sensor_id LIMIT $limit""",
            {**_current_params(period, newest_merges[period], spec.freshness_fail), "limit": limit},
        ).fetchall()
    rows = sorted(rows, key=lambda row: (-row[7], -(row[9] or 0), row[1], row[0]))[:limit]
    columns = ["period", "sensor", "time (UTC)", "country", "location", "PM2.5", "PM10", "DAQI", "band", "US AQI",
               "category"]
    return markdown_table(columns, rows, float_format="{:.1f}", empty="_No outdoor reading with a PM index yet._")


def readings_summary(connection: duckdb.DuckDBPyConnection) -> ReadingsSummary:
    total = connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0]
    # Rows per period from the merge log (one row per snapshot), not a scan of the history.
    per_period = dict(
        connection.execute(
            "SELECT period, sum(rows_inserted) FROM snapshot_log WHERE status = 'merged' GROUP BY 1"
        ).fetchall()
    )
    columns = [
        (name, str(column_type))
        for name, column_type in connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'aqi_readings' ORDER BY ordinal_position"
        ).fetchall()
    ]
    daqi, aqi = current_label_counts(connection)
    return ReadingsSummary(
        total_rows=int(total),
        rows_per_period={k: int(v) for k, v in sorted(per_period.items())},
        daqi_band_counts=daqi,
        aqi_us_category_counts=aqi,
        worst_sensors_markdown=worst_sensors_markdown(connection),
        columns=columns,
    )
