"""The one way to read the history: `aqi_readings_all`, the hot rows in DuckDB plus the Parquet rows of every
(day, period) that retention pruned from DuckDB.

Every reader that looks back in time (the official indices and their checks, the site, a user's query) reads
this view, so a day moved to the cold tier reads exactly as it did before. Writers (the merges, the export,
retention, the sync scan of rows not yet sent, which retention never prunes) work on `aqi_readings` itself.

The tier's layout is part of the contract too (Hive style, what Athena, Spark, Trino and DuckDB all discover):
`<root>/period=<name>/date=YYYY-MM-DD/part-<token>.parquet`, the partition columns in the path only. Its
columns are the contract's (`schema.READINGS_COLUMNS`, read at call time): files written before a column was
added read that column as NULL, on every path below.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.readings import schema as contract
from aqi_assets.lib.readings.periods import PERIODS, sql_list
from aqi_assets.lib.readings.schema import TIER_LOG_DDL, column_names

HISTORY_VIEW = "aqi_readings_all"
# Partition columns with explicit types: with a bare "hive" partitioning `date` would be text and a DATE
# filter would not reach the file listing (every file fetched).
PARTITIONING_SCHEMA = pa.schema([("period", pa.string()), ("date", pa.date32())])
STAGING_DIR = "_staging"
# The monthly archive backfill writes (period, day)s straight to the tier, never through DuckDB. Each month it
# wrote is described by one manifest, `<root>/_backfilled/period=<name>/YYYY-MM.json` (written last, after the
# days' files were verified): those (period, day)s read exactly like pruned ones, from Parquet only.
BACKFILL_DIR = "_backfilled"
BACKFILL_MANIFEST_VERSION = 1
_ARROW_DATASET = "aqi_readings_parquet_dataset"
_HIVE_TYPES = "{'period': VARCHAR, 'date': DATE}"

# The contract's DuckDB types as the export writes them to Parquet (read back with pyarrow from real exported
# files: TIMESTAMP is microseconds without a zone, a MAP's entries are non-null string keys).
ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "SMALLINT": pa.int16(),
    "TINYINT": pa.int8(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us"),
    "DATE": pa.date32(),
    "MAP(VARCHAR, VARCHAR)": pa.map_(pa.string(), pa.string()),
}


class HistoryError(RuntimeError):
    """The history cannot be read as a whole (a pruned day whose Parquet copy is not where the tier is)."""


def day_dir(period: str, day: date) -> tuple[str, str]:
    """The two path parts of one (period, day) under the tier's root."""
    if period not in PERIODS:  # the period becomes part of a path
        raise ValueError(f"unknown period {period!r}; expected one of {tuple(PERIODS)}")
    return f"period={period}", f"date={day.isoformat()}"


def day_path(location: TierLocation, period: str, day: date) -> str:
    return location.path(*day_dir(period, day))


def arrow_type(sql_type: str) -> pa.DataType:
    try:
        return ARROW_TYPES[sql_type]
    except KeyError:
        raise ValueError(
            f"no Arrow type for the contract's SQL type {sql_type!r}: add it to lib.readings.history.ARROW_TYPES"
        ) from None


def tier_schema() -> pa.Schema:
    """The tier's rows as Arrow sees them: every contract column (read now: a column may have been added since a
    file was written; such files read it as NULL) with the typed partition columns."""
    columns = contract.READINGS_COLUMNS
    fields = [pa.field(c.name, arrow_type(c.sql_type)) for c in columns]
    return pa.schema(fields + [f for f in PARTITIONING_SCHEMA if f.name not in {c.name for c in columns}])


def tier_dataset(location: TierLocation, files: list[str] | None = None) -> ds.Dataset:
    """Every exported (period, day) as one Arrow dataset with typed `period` and `date` columns (filters on
    them select directories before any file is opened), in the contract's schema (no file's schema is inferred:
    the first file found would decide, and a column added since would vanish). ``files``: only these files."""
    partitioning = ds.partitioning(PARTITIONING_SCHEMA, flavor="hive")
    if files is not None:
        return ds.dataset(
            files,
            schema=tier_schema(),
            format="parquet",
            filesystem=location.filesystem,
            partitioning=partitioning,
            partition_base_dir=location.root,
        )
    return ds.dataset(
        location.root,
        schema=tier_schema(),
        format="parquet",
        filesystem=location.filesystem,
        partitioning=partitioning,
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


@dataclass(frozen=True)
class BackfilledDay:
    """One (period, day) the monthly backfill wrote straight to the tier: what its verified files hold."""

    period: str
    day: date
    rows: int
    key_checksum: int  # the sum of DuckDB's hash(sensor_id, timestamp), as `parquet_tier.KeyStats`
    files: tuple[str, ...]


def _month_start(day: date) -> date:
    return day.replace(day=1)


def manifest_path(location: TierLocation, period: str, month: date) -> str:
    return location.path(BACKFILL_DIR, day_dir(period, month)[0], f"{month:%Y-%m}.json")


def read_manifest(location: TierLocation, period: str, month: date) -> dict | None:
    """The month's backfill manifest (None when the month was not backfilled to the tier)."""
    path = manifest_path(location, period, month)
    if not location.exists(path):
        return None
    with location.filesystem.open_input_stream(path) as stream:
        manifest = json.loads(stream.read())
    if manifest.get("version") != BACKFILL_MANIFEST_VERSION or manifest.get("period") != period:
        raise HistoryError(f"{location.uri_of()}: backfill manifest {path} is not a version-1 {period!r} manifest")
    return manifest


def manifest_days(manifest: dict) -> list[BackfilledDay]:
    return [
        BackfilledDay(manifest["period"], date.fromisoformat(day), int(entry["rows"]), int(entry["key_checksum"]),
                      tuple(entry["files"]))
        for day, entry in sorted(manifest["days"].items())
    ]


def backfilled(
    location: TierLocation | None, *, first: date | None = None, last: date | None = None
) -> dict[tuple[str, date], BackfilledDay]:
    """(period, day) → what the monthly backfill wrote to the tier, for the days in [first, last] (both None:
    every month). With bounds, only the manifests of the months they span are opened, so the cost follows the
    window, not the history."""
    if location is None:
        return {}
    found: dict[tuple[str, date], BackfilledDay] = {}
    for period in PERIODS:
        if first is not None and last is not None:
            months, month = [], _month_start(first)
            while month <= last:
                months.append(month)
                month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        else:
            directory = location.path(BACKFILL_DIR, day_dir(period, date(2000, 1, 1))[0])
            months = sorted(
                date.fromisoformat(info.base_name.removesuffix(".json") + "-01")
                for info in location.files_under(directory)
                if info.base_name.endswith(".json") and len(info.base_name) == len("YYYY-MM.json")
            )
        for month in months:
            manifest = read_manifest(location, period, month)
            for entry in manifest_days(manifest) if manifest else []:
                if (first is None or entry.day >= first) and (last is None or entry.day <= last):
                    found[(period, entry.day)] = entry
    return found


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


def _days_filter(days: list[date], column: str = "date") -> str:
    """SQL keeping exactly `days` (sorted) of the DATE expression ``column``: a date range (pushed down to the
    listing) minus the days inside it that are not in the list."""
    first, last = days[0], days[-1]
    wanted = set(days)
    holes = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    holes = [d for d in holes if d not in wanted]
    condition = f"{column} BETWEEN DATE '{first.isoformat()}' AND DATE '{last.isoformat()}'"
    if holes:
        condition += f" AND {column} NOT IN (" + ", ".join(f"DATE '{d.isoformat()}'" for d in holes) + ")"
    return condition


def _hot_rows_of(days: dict[str, list[date]]) -> str:
    """SQL over `aqi_readings` matching the rows of the (period, day) pairs in ``days``."""
    parts = [
        f"""(period IN {sql_list((period,))} AND {_days_filter(ds_, 'CAST("timestamp" AS DATE)')})"""
        for period, ds_ in sorted(days.items())
    ]
    return " OR ".join(parts) if parts else "FALSE"


def cold_filter(pruned_days: dict[str, list[date]]) -> str:
    """SQL over the tier's (period, date) columns keeping exactly the pruned (period, day) pairs."""
    parts = [
        f"(period IN {sql_list((period,))} AND {_days_filter(days)})" for period, days in sorted(pruned_days.items())
    ]
    return " OR ".join(parts) if parts else "FALSE"


def pruned_files(
    location: TierLocation, days: dict[str, list[date]], *, one_listing: bool
) -> dict[tuple[str, date], list[str]]:
    """(period, day) → the Parquet files of each pruned pair of ``days``; fails naming the pairs with none (their
    rows exist nowhere else, so reading on would silently show fewer rows). ``one_listing``: list the whole tier
    once (many days) instead of each day's directory (a few days)."""
    wanted = {(period, day) for period, period_days in days.items() for day in period_days}
    found: dict[tuple[str, date], list[str]] = {pair: [] for pair in wanted}
    if one_listing:
        prefix = location.root + "/"
        for info in location.files_under(location.root):
            parts = info.path.removeprefix(prefix).split("/")
            if len(parts) != 3 or not parts[2].endswith(".parquet"):
                continue  # staging, or not a data file
            pair = _pair_of(parts[0], parts[1])
            if pair in found:
                found[pair].append(info.path)
    else:
        for period, day in wanted:
            found[(period, day)] = [
                info.path
                for info in location.files_under(day_path(location, period, day))
                if info.path.endswith(".parquet")
            ]
    missing = sorted((day, period) for (period, day), files in found.items() if not files)
    if missing:
        shown = ", ".join(f"{period} {day.isoformat()}" for day, period in missing[:5])
        raise HistoryError(
            f"{len(missing)} pruned (period, day) pairs have no Parquet file under {location.uri_of()} "
            f"(their rows are in no other place): {shown}{' …' if len(missing) > 5 else ''}"
        )
    return {pair: sorted(files) for pair, files in found.items()}


def _pair_of(period_part: str, date_part: str) -> tuple[str, date] | None:
    if not (period_part.startswith("period=") and date_part.startswith("date=")):
        return None
    try:
        return period_part.removeprefix("period="), date.fromisoformat(date_part.removeprefix("date="))
    except ValueError:
        return None


def date_patterns(days: list[date]) -> list[str]:
    """Globs of `date=` directory names matching exactly ``days``: a whole year or month as one pattern, so the
    stored view over years of pruned days names a few hundred patterns, not thousands of days."""
    wanted = set(days)
    patterns: list[str] = []
    for year in sorted({d.year for d in wanted}):
        if all(d in wanted for d in _calendar(date(year, 1, 1), date(year + 1, 1, 1))):
            patterns.append(f"{year:04d}-*")
            continue
        for month in sorted({d.month for d in wanted if d.year == year}):
            first = date(year, month, 1)
            month_days = _calendar(first, date(year + month // 12, month % 12 + 1, 1))
            if all(d in wanted for d in month_days):
                patterns.append(f"{year:04d}-{month:02d}-*")
            else:
                patterns += [d.isoformat() for d in month_days if d in wanted]
    return patterns


def _calendar(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def _typed_empty() -> str:
    """No rows, every contract column typed: unioned by name with the Parquet rows it gives columns no file in
    scope has yet (added to the contract after those days were exported) as NULL of the right type."""
    typed = ", ".join(f'CAST(NULL AS {c.sql_type}) AS "{c.name}"' for c in contract.READINGS_COLUMNS)
    return f"SELECT {typed} WHERE FALSE"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class HistoryView:
    """What `aqi_readings_all` spans on this connection."""

    sql: str
    pruned: dict[str, list[date]] = field(default_factory=dict)
    location: str | None = None
    files: tuple[str, ...] = ()  # the Parquet files of the pruned days in scope, as listed when attached

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
    lists and opens only the directories of the pruned (period, day) pairs overlapping it: a partition's
    computation then costs the same however many days were pruned. Outside the window the view is empty on both
    tiers, never hot-only.

    Fails when a pruned day cannot be read: no tier location given, the tier log says the day was exported
    somewhere else than `location` (a changed AQI_PARQUET_URI would otherwise hide those days silently), or its
    directory holds no Parquet file.
    """
    days = pruned(connection)
    if window is not None:
        if persist:
            raise ValueError("a stored view spans the whole history: no window")
        first, last = window[0].date(), (window[1] - timedelta(microseconds=1)).date()
        days = {p: kept for p, ds_ in days.items() if (kept := [d for d in ds_ if first <= d <= last])}
        written_cold = backfilled(location, first=first, last=last)
    else:
        written_cold = backfilled(location)
    # Days the monthly backfill wrote to the tier read like pruned ones; should DuckDB also hold rows of such a
    # (period, day) (merged from the daily files before the month was backfilled), the tier's copy is the one
    # read: it holds the union of both, so reading both would count a reading twice.
    backfilled_days: dict[str, list[date]] = defaultdict(list)
    for period, day in sorted(written_cold):
        backfilled_days[period].append(day)
    for period, ds_ in backfilled_days.items():
        days[period] = sorted(set(days.get(period, [])) | set(ds_))
    if days and location is None:
        raise HistoryError(
            f"{sum(map(len, days.values()))} (period, day) pairs live only in the Parquet tier; "
            "reading the history needs the tier's location (AQI_PARQUET_URI)"
        )
    if days and location is not None and _has_tier_log(connection):
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
        in_window = (
            f""" AND "timestamp" >= TIMESTAMP '{start.isoformat(sep=" ")}'"""
            f""" AND "timestamp" < TIMESTAMP '{end.isoformat(sep=" ")}'"""
        )
    hot_filter = in_window + (f" AND NOT ({_hot_rows_of(backfilled_days)})" if backfilled_days else "")
    hot = f"SELECT {columns} FROM aqi_readings" + (f" WHERE TRUE{hot_filter}" if hot_filter else "")
    files: dict[tuple[str, date], list[str]] = {}
    if not days:
        body = hot
    else:
        assert location is not None
        if location.is_s3 and persist:
            raise ValueError("a view over an S3 tier cannot be stored: DuckDB reads S3 here only through pyarrow")
        files = pruned_files(location, days, one_listing=window is None)
        source = _cold_source(connection, location, days, files, windowed=window is not None, persist=persist)
        cold = f"SELECT * FROM {source} WHERE ({cold_filter(days)}){in_window}"
        body = f"{hot}\nUNION ALL BY NAME\nSELECT {columns} FROM ({_typed_empty()}\nUNION ALL BY NAME\n{cold})"
    kind = "VIEW" if persist else "TEMP VIEW"
    connection.execute(f"CREATE OR REPLACE {kind} {HISTORY_VIEW} AS {body}")
    listed = tuple(f for pair in sorted(files) for f in files[pair])
    return HistoryView(body, days, location.uri_of() if location is not None else None, listed)


def _cold_source(
    connection: duckdb.DuckDBPyConnection,
    location: TierLocation,
    days: dict[str, list[date]],
    files: dict[tuple[str, date], list[str]],
    *,
    windowed: bool,
    persist: bool,
) -> str:
    """The FROM of the pruned rows. DuckDB reads a local tier itself (a window's days, the stored view), its files
    unioned by name (one written before a column was added lacks it). `union_by_name` opens every file it is
    given when the view is bound, so it gets the pruned days' directories only: a day not pruned may hold a
    damaged or half-replaced file (verification keeps it hot), and the whole tier would be opened for every
    query. S3, and the whole history on a TEMP view, go through an Arrow dataset over exactly the listed files
    in the contract's schema (no file opened before the scan)."""
    if not location.is_s3 and (windowed or persist):
        globs = [
            location.path(day_dir(period, period_days[0])[0], f"date={pattern}", "*.parquet")
            for period, period_days in sorted(days.items())
            for pattern in date_patterns(period_days)
        ]
        listed = "[" + ", ".join(map(_sql_string, globs)) + "]"
        return f"read_parquet({listed}, hive_partitioning = true, hive_types = {_HIVE_TYPES}, union_by_name = true)"
    connection.register(_ARROW_DATASET, tier_dataset(location, [f for pair in sorted(files) for f in files[pair]]))
    return _ARROW_DATASET


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
