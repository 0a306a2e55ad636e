"""What a person wants to see about the history after a merge: counts per band and the worst sensors."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from aqi_assets.lib.air_quality.indices import DAQI_BANDS, EPA_CATEGORIES
from aqi_assets.lib.common.markdown import markdown_table


@dataclass(frozen=True)
class ReadingsSummary:
    total_rows: int
    rows_per_period: dict[str, int]
    daqi_band_counts: dict[str, int]
    aqi_us_category_counts: dict[str, int]
    worst_sensors_markdown: str
    columns: list[tuple[str, str]]


_LABEL_COLUMNS = frozenset({"daqi_band", "aqi_us_category"})


def _counts(connection: duckdb.DuckDBPyConnection, column: str, labels: list[str]) -> dict[str, int]:
    if column not in _LABEL_COLUMNS:  # an identifier cannot be a SQL parameter: allow known ones only
        raise ValueError(f"not a label column: {column!r}")
    rows = dict(connection.execute(f"SELECT {column}, count(*) FROM aqi_readings GROUP BY 1").fetchall())
    counts = {label: int(rows.get(label, 0)) for label in labels}
    counts["no index"] = int(rows.get(None, 0))
    return counts


def worst_sensors_markdown(connection: duckdb.DuckDBPyConnection, limit: int = 10) -> str:
    """The outdoor sensors with the highest index in their latest reading (merged in the last day), as a markdown
    table."""
    rows = connection.execute(
        """
        WITH latest AS (
            SELECT * FROM aqi_readings
            WHERE NOT coalesce(indoor, false) AND daqi IS NOT NULL
              -- the current picture: readings merged in the day before the newest merge (zone maps skip the rest)
              AND ingested_at >= (SELECT max(processed_at) FROM snapshot_log) - INTERVAL 1 DAY
            QUALIFY row_number() OVER (PARTITION BY period, sensor_id ORDER BY "timestamp" DESC) = 1
        )
        SELECT period, sensor_id, "timestamp", country, location_id, pm25, pm10, daqi, daqi_band, aqi_us,
               aqi_us_category
        FROM latest ORDER BY daqi DESC, aqi_us DESC, sensor_id LIMIT ?
        """,
        [limit],
    ).fetchall()
    columns = ["period", "sensor", "time (UTC)", "country", "location", "PM2.5", "PM10", "DAQI", "band", "US AQI",
               "category"]
    return markdown_table(columns, rows, float_format="{:.1f}", empty="_No outdoor reading with a PM index yet._")


def readings_summary(connection: duckdb.DuckDBPyConnection) -> ReadingsSummary:
    total = connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0]
    per_period = dict(connection.execute("SELECT period, count(*) FROM aqi_readings GROUP BY 1").fetchall())
    columns = [
        (name, str(column_type))
        for name, column_type in connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'aqi_readings' ORDER BY ordinal_position"
        ).fetchall()
    ]
    return ReadingsSummary(
        total_rows=int(total),
        rows_per_period={k: int(v) for k, v in sorted(per_period.items())},
        daqi_band_counts=_counts(connection, "daqi_band", [name for _, _, name in DAQI_BANDS]),
        aqi_us_category_counts=_counts(connection, "aqi_us_category", [name for _, _, name in EPA_CATEGORIES]),
        worst_sensors_markdown=worst_sensors_markdown(connection),
        columns=columns,
    )
