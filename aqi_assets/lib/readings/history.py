"""The one way to read the history: `aqi_readings_all`, the hot rows in DuckDB plus the Parquet rows of every
(day, period) that retention pruned from DuckDB.

Every reader that looks back in time (the official indices and their checks, the site, a user's query) reads
this view, so a day moved to the cold tier reads exactly as it did before. Writers (the merges, the export,
retention, the sync scan of rows not yet sent, which retention never prunes) work on `aqi_readings` itself.

The tier's layout is part of the contract too (Hive style, what Athena, Spark, Trino and DuckDB all discover):
`<root>/period=<name>/date=YYYY-MM-DD/part-<token>.parquet`, the partition columns in the path only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.readings.periods import PERIODS, sql_list
from aqi_assets.lib.readings.schema import TIER_LOG_DDL, column_names

HISTORY_VIEW = "aqi_readings_all"
# Partition columns with explicit types: with a bare "hive" partitioning `date` would be text and a DATE
# filter would not reach the file listing (every file fetched).
PARTITIONING_SCHEMA = pa.schema([("period", pa.string()), ("date", pa.date32())])
STAGING_DIR = "_staging"
_ARROW_DATASET = "aqi_readings_parquet_dataset"


class HistoryError(RuntimeError):
    """The history cannot be read as a whole (a pruned day whose Parquet copy is not where the tier is)."""


def day_dir(period: str, day: date) -> tuple[str, str]:
    """The two path parts of one (period, day) under the tier's root."""
    if period not in PERIODS:  # the period becomes part of a path
        raise ValueError(f"unknown period {period!r}; expected one of {tuple(PERIODS)}")
    return f"period={period}", f"date={day.isoformat()}"


def day_path(location: TierLocation, period: str, day: date) -> str:
    return location.path(*day_dir(period, day))


def tier_dataset(location: TierLocation) -> ds.Dataset:
    """Every exported (period, day) as one Arrow dataset with typed `period` and `date` columns (filters on
    them select directories before any file is opened)."""
    return ds.dataset(
        location.root,
        format="parquet",
        filesystem=location.filesystem,
        partitioning=ds.partitioning(PARTITIONING_SCHEMA, flavor="hive"),
        exclude_invalid_files=False,
        ignore_prefixes=[STAGING_DIR, ".", "_"],
    )


def pruned(connection: duckdb.DuckDBPyConnection) -> dict[str, list[date]]:
    """period → the days whose rows of that period were pruned from DuckDB (only in Parquet now), sorted."""
    if not _has_tier_log(connection):
        return {}
    found: dict[str, list[date]] = defaultdict(list)
    for period, day in connection.execute(
        "SELECT period, day FROM parquet_tier_log WHERE pruned_at IS NOT NULL ORDER BY period, day"
    ).fetchall():
        found[period].append(day)
    return dict(found)


def has_history(connection: duckdb.DuckDBPyConnection) -> bool:
    """The file holds the history's table (a read-only open of a file no writer has set up may not)."""
    return bool(
        connection.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'aqi_readings' AND schema_name = 'main'"
        ).fetchall()[0][0]
    )


def _has_tier_log(connection: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        connection.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'parquet_tier_log' AND schema_name = 'main'"
        ).fetchall()[0][0]
    )


def _days_filter(days: list[date]) -> str:
    """SQL keeping exactly `days` (sorted): a date range (pushed down to the listing) minus the days inside it
    that are not in the list."""
    first, last = days[0], days[-1]
    wanted = set(days)
    holes = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    holes = [d for d in holes if d not in wanted]
    condition = f"date BETWEEN DATE '{first.isoformat()}' AND DATE '{last.isoformat()}'"
    if holes:
        condition += " AND date NOT IN (" + ", ".join(f"DATE '{d.isoformat()}'" for d in holes) + ")"
    return condition


def cold_filter(pruned_days: dict[str, list[date]]) -> str:
    """SQL over the tier's (period, date) columns keeping exactly the pruned (period, day) pairs."""
    parts = [
        f"(period IN {sql_list((period,))} AND {_days_filter(days)})" for period, days in sorted(pruned_days.items())
    ]
    return " OR ".join(parts) if parts else "FALSE"


@dataclass
class HistoryView:
    """What `aqi_readings_all` spans on this connection."""

    sql: str
    pruned: dict[str, list[date]] = field(default_factory=dict)
    location: str | None = None

    @property
    def cold_days(self) -> int:
        return len({d for days in self.pruned.values() for d in days})


def attach_history(
    connection: duckdb.DuckDBPyConnection,
    location: TierLocation | None,
    *,
    persist: bool = False,
    window: tuple[datetime, datetime] | None = None,
) -> HistoryView:
    """Create `aqi_readings_all` on `connection`: a TEMP view (this connection only, works read-only), or with
    ``persist`` a view stored in the file for a local tier (usable from the `duckdb` shell).

    With ``window`` = [start, end) (naive UTC) the view holds only the rows stamped in it, hot and cold alike, and
    opens only the Parquet days overlapping it: a partition's computation then costs the same however many days
    were pruned (without it every pruned file's footer is read by every query). Outside the window the view is
    empty on both tiers, never hot-only.

    Fails when a pruned day cannot be read: no tier location given, or the tier log says the day was exported
    somewhere else than `location` (a changed AQI_PARQUET_URI would otherwise hide those days silently).
    """
    days = pruned(connection)
    if window is not None:
        first, last = window[0].date(), (window[1] - timedelta(microseconds=1)).date()
        days = {p: kept for p, ds_ in days.items() if (kept := [d for d in ds_ if first <= d <= last])}
    if days and location is None:
        raise HistoryError(
            f"{sum(map(len, days.values()))} (period, day) pairs live only in the Parquet tier; "
            "reading the history needs the tier's location (AQI_PARQUET_URI)"
        )
    if days and location is not None:
        elsewhere = connection.execute(
            "SELECT min(uri), count(*) FROM parquet_tier_log WHERE pruned_at IS NOT NULL AND NOT starts_with(uri, ?)",
            [location.uri_of() + "/"],
        ).fetchall()[0]
        if elsewhere[1]:
            raise HistoryError(
                f"{elsewhere[1]} pruned (period, day) pairs were exported outside the tier at {location.uri_of()} "
                f"(e.g. {elsewhere[0]}): point AQI_PARQUET_URI at where they are"
            )
    columns = ", ".join(f'"{c}"' for c in column_names())
    in_window = ""
    if window is not None:
        start, end = window
        if persist:
            raise ValueError("a stored view spans the whole history: no window")
        in_window = (
            f""" AND "timestamp" >= TIMESTAMP '{start.isoformat(sep=" ")}'"""
            f""" AND "timestamp" < TIMESTAMP '{end.isoformat(sep=" ")}'"""
        )
    hot = f"SELECT {columns} FROM aqi_readings" + (f" WHERE TRUE{in_window}" if in_window else "")
    if not days:
        body = hot
    else:
        assert location is not None
        if location.is_s3 or not persist:
            if location.is_s3 and persist:
                raise ValueError("a view over an S3 tier cannot be stored: DuckDB reads S3 here only through pyarrow")
            connection.register(_ARROW_DATASET, tier_dataset(location))
            source = _ARROW_DATASET
        else:
            glob = location.path("period=*", "date=*", "*.parquet").replace("'", "''")
            source = (
                f"read_parquet('{glob}', hive_partitioning = true, "
                "hive_types = {'period': VARCHAR, 'date': DATE})"
            )
        body = f"{hot}\nUNION ALL BY NAME\nSELECT {columns} FROM {source} WHERE ({cold_filter(days)}){in_window}"
    kind = "VIEW" if persist else "TEMP VIEW"
    connection.execute(f"CREATE OR REPLACE {kind} {HISTORY_VIEW} AS {body}")
    return HistoryView(body, days, location.uri_of() if location is not None else None)


def require_attached(connection: duckdb.DuckDBPyConnection) -> None:
    """Fail unless this connection attached the history (`attach_history`, a TEMP view): a stored
    `aqi_readings_all` may predate the last prune, so readers never rely on it."""
    attached = connection.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND temporary", [HISTORY_VIEW]
    ).fetchall()[0][0]
    if not attached:
        raise HistoryError(
            f"{HISTORY_VIEW} is not attached on this connection: call "
            "aqi_assets.lib.readings.history.attach_history(connection, tier_location) first"
        )


def ensure_tier_log(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(TIER_LOG_DDL)
