"""What the public site shows, read from DuckDB: the latest reading per outdoor sensor, 7-day hourly histories
and per-country summaries.

Two inputs, both declared on the `public_site` asset:
- the history through `aqi_readings_all` (`lib.readings.history`: the hot rows plus the days pruned to the
  Parquet tier): the latest 5-minute reading of each sensor (its time, PM values and per-reading indices). The
  view is attached over the window read (`read_window`: the hour before the newest reading), so a build opens
  at most the Parquet days of that hour, however many days were pruned;
- the `aqi_hourly` aggregate (the official methods: US AQI NowCast, UK DAQI on the 24-hour mean), a table named
  by the caller (the aggregates IO manager knows its schema). A missing table or column fails the build
  (`HourlyTableError`): there is no table-wide fallback to indicative indices. A sensor without a recent hourly
  row shows its latest reading's own index, labelled `reading` on that index of that sensor.
Everything returned is plain Python (None for a missing value, never NaN), ready for `json.dumps(allow_nan=False)`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from aqi_assets.lib.air_quality.aggregates import HOURLY_SCHEMA
from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.history import HISTORY_VIEW, attach_history, pruned
from aqi_assets.lib.readings.periods import FIVE_MINUTE

# The window of the map: the latest reading per sensor within this long before the newest reading.
LATEST_WINDOW = timedelta(hours=1)
HISTORY_DAYS = 7
# A reading stamped further ahead than this of the build's clock is ignored (a sensor with a wrong clock).
FUTURE_TOLERANCE = timedelta(minutes=10)
# An hourly aggregate older than this before the newest reading is not shown as the sensor's current index.
HOURLY_MAX_AGE = timedelta(hours=2)

# Columns of the aqi_hourly table this module reads (checked against HOURLY_SCHEMA below, at import).
HOURLY_KEY_COLUMNS = ("sensor_id", "hour")
HOURLY_VALUE_COLUMNS = (
    "pm25_mean",
    "pm10_mean",
    "aqi_us_nowcast",
    "aqi_us_nowcast_category",
    "daqi_24h",
    "daqi_24h_band",
)
HOURLY_COLUMNS_READ = HOURLY_KEY_COLUMNS + HOURLY_VALUE_COLUMNS

# Basis labels written with every index (the page shows them next to the value).
US_NOWCAST = "nowcast"  # US AQI NowCast from hourly means (official real-time method)
UK_24H = "24h"  # DAQI on the 24-hour running mean (official method)
READING = "reading"  # indicative: one 5-minute reading fed into the bands (a sensor without a recent hour)

# Plantower sensors report whole µg/m³; the others (SDS011, SPS30, ...) resolve 0.1 µg/m³.
WHOLE_UNIT_PREFIXES = ("PMS",)


class HourlyTableError(RuntimeError):
    """The aqi_hourly table the site reads is missing, or lacks a column the site reads."""


def check_read_columns(schema: pa.Schema) -> None:
    """Every column the site reads is one the aggregate defines. Run at import against `HOURLY_SCHEMA`, so a
    rename there fails loudly here instead of turning into gaps on the map."""
    unknown = [name for name in HOURLY_COLUMNS_READ if name not in schema.names]
    if unknown:
        raise HourlyTableError(
            f"aqi_assets.lib.air_quality.aggregates.HOURLY_SCHEMA has no column {', '.join(unknown)}, which the "
            "public site reads: update HOURLY_COLUMNS_READ in aqi_assets.lib.public_site.data to match"
        )


check_read_columns(HOURLY_SCHEMA)


def check_hourly_table(connection: duckdb.DuckDBPyConnection, table: str) -> None:
    """Fail with what to do when `table` (a qualified SQL name) is missing or lacks a column the site reads."""
    try:
        description = connection.execute(f"SELECT * FROM {table} LIMIT 0").description
    except duckdb.CatalogException as error:
        reason = str(error).splitlines()[0]
        raise HourlyTableError(
            f"{table} does not exist ({reason}): the public site reads the official indices from it. "
            "Materialise the `aqi_hourly` asset (at least its latest hour), then rebuild the site."
        ) from error
    present = {column[0] for column in description}
    missing = [name for name in HOURLY_COLUMNS_READ if name not in present]
    if missing:
        raise HourlyTableError(
            f"{table} lacks the column(s) {', '.join(missing)} that the public site reads. Materialise the "
            "`aqi_hourly` asset again so the table has the columns of HOURLY_SCHEMA (a table created with an older "
            "schema must be dropped first), then rebuild the site."
        )


def pm_digits(sensor_type: str | None) -> int:
    """Decimals a sensor type can resolve (the PM values are rounded to it)."""
    return 0 if (sensor_type or "").strip().upper().startswith(WHOLE_UNIT_PREFIXES) else 1


def clean_number(value: Any, digits: int | None = None) -> float | int | None:
    """A JSON-safe number: None for NULL/NaN/inf, rounded to `digits` (an int when digits == 0)."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    if digits is None:
        return int(number) if number.is_integer() else number
    rounded = round(number, digits)
    return int(rounded) if digits == 0 else rounded


def iso_utc(moment: datetime | None) -> str | None:
    """ISO-8601 with a Z (the DuckDB columns hold naive UTC)."""
    return None if moment is None else naive_utc(moment).isoformat(timespec="seconds") + "Z"


@dataclass
class SiteData:
    """Everything one build of the site writes."""

    anchor: datetime | None  # the newest reading (naive UTC); None when there is no reading at all
    features: list[dict[str, Any]]
    histories: Histories
    countries: list[dict[str, Any]]
    hourly_table: str  # where the official indices came from
    notes: list[str] = field(default_factory=list)
    cold_days: int = 0  # Parquet days the build's window read (0: all hot)


def newest_reading(connection: duckdb.DuckDBPyConnection, now: datetime) -> datetime | None:
    """The newest 5-minute reading of the attached `aqi_readings_all` (whatever window it spans), not in the
    future."""
    return connection.execute(
        f"""SELECT max("timestamp") FROM {HISTORY_VIEW} WHERE period = $period AND "timestamp" <= $limit""",
        {"period": FIVE_MINUTE.name, "limit": naive_utc(now) + FUTURE_TOLERANCE},
    ).fetchall()[0][0]


def find_anchor(
    connection: duckdb.DuckDBPyConnection, location: TierLocation | None, now: datetime
) -> datetime | None:
    """The newest 5-minute reading of the whole history not stamped after `now` + FUTURE_TOLERANCE, reading as
    little of the cold tier as possible: the hot `aqi_readings` first, then only the pruned 5-minute days not
    older than the hot tier's newest reading (none in steady state: retention prunes old days only), newest first,
    one day attached at a time. Leaves `aqi_readings_all` attached over the last day looked at."""
    limit = naive_utc(now) + FUTURE_TOLERANCE
    hot = connection.execute(
        """SELECT max("timestamp") FROM aqi_readings WHERE period = $period AND "timestamp" <= $limit""",
        {"period": FIVE_MINUTE.name, "limit": limit},
    ).fetchall()[0][0]
    cold_days = [
        day
        for day in pruned(connection).get(FIVE_MINUTE.name, [])
        if day <= limit.date() and (hot is None or day >= hot.date())
    ]
    # Newest first; a day pruned empty (older tier logs marked those too) gives nothing and the next is tried.
    for day in reversed(cold_days):
        start = datetime.combine(day, time())
        attach_history(connection, location, window=(start, start + timedelta(days=1)))
        found = newest_reading(connection, now)
        if found is not None:
            return found if hot is None else max(hot, found)
    return hot


def read_window(anchor: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the history a build reads through `aqi_readings_all`: the latest readings' window, up to
    and including the anchor. The 7-day histories come from the `aqi_hourly` table, not from the readings."""
    return anchor - LATEST_WINDOW, anchor + timedelta(microseconds=1)


def latest_readings(connection: duckdb.DuckDBPyConnection, anchor: datetime) -> list[tuple]:
    """The latest valid, indexed PM reading per outdoor sensor with coordinates, within the window, with the
    temperature and humidity of the newest climate reading (DHT22, BME280, ...) of the same station
    (`location_id`) in the same window (NULL where the station has none)."""
    return connection.execute(
        f"""
        WITH pm AS (
            SELECT sensor_id, "timestamp", country, latitude, longitude, sensor_type, pm25, pm10,
                   aqi_us, aqi_us_category, daqi, daqi_band, location_id
            FROM {HISTORY_VIEW}
            WHERE period = $period
              AND "timestamp" > $start AND "timestamp" <= $anchor
              AND indoor IS NOT TRUE
              AND latitude IS NOT NULL AND longitude IS NOT NULL
              AND (aqi_us IS NOT NULL OR daqi IS NOT NULL)
            QUALIFY row_number() OVER (PARTITION BY sensor_id ORDER BY "timestamp" DESC) = 1
        ),
        climate AS (
            SELECT location_id, temperature, humidity
            FROM {HISTORY_VIEW}
            WHERE period = $period
              AND "timestamp" > $start AND "timestamp" <= $anchor
              AND location_id IN (SELECT location_id FROM pm)
              AND (temperature IS NOT NULL OR humidity IS NOT NULL)
            QUALIFY row_number() OVER (PARTITION BY location_id ORDER BY "timestamp" DESC, sensor_id) = 1
        )
        SELECT pm.* EXCLUDE (location_id), climate.temperature, climate.humidity
        FROM pm LEFT JOIN climate USING (location_id)
        ORDER BY sensor_id
        """,
        {"period": FIVE_MINUTE.name, "start": anchor - LATEST_WINDOW, "anchor": anchor},
    ).fetchall()


def latest_hourly(
    connection: duckdb.DuckDBPyConnection, hourly_table: str, anchor: datetime
) -> dict[int, tuple[Any, ...]]:
    """sensor_id → (hour, pm25_mean, pm10_mean, nowcast, nowcast category, daqi_24h, band) of its latest hour."""
    rows = connection.execute(
        f"""
        SELECT h.sensor_id, h.hour, {", ".join(f"h.{c}" for c in HOURLY_VALUE_COLUMNS)}
        FROM {hourly_table} h
        WHERE h.hour > $start AND h.hour <= $anchor
        QUALIFY row_number() OVER (PARTITION BY h.sensor_id ORDER BY h.hour DESC) = 1
        """,
        {"start": anchor - HOURLY_MAX_AGE, "anchor": anchor},
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def build_features(rows: list[tuple], hourly: dict[int, tuple[Any, ...]]) -> list[dict[str, Any]]:
    features = []
    for sensor_id, ts, country, lat, lon, sensor_type, pm25, pm10, aqi_us, us_cat, daqi, band, temp, rh in rows:
        digits = pm_digits(sensor_type)
        properties: dict[str, Any] = {
            "id": sensor_id,
            "type": sensor_type,
            "country": country,
            "time": iso_utc(ts),
            "pm25": clean_number(pm25, digits),
            "pm10": clean_number(pm10, digits),
            "us": clean_number(aqi_us),
            "us_cat": us_cat,
            "us_basis": READING,
            "uk": clean_number(daqi),
            "uk_band": band,
            "uk_basis": READING,
            "t": clean_number(temp, 1),
            "rh": clean_number(rh, 0),
        }
        official = hourly.get(sensor_id)
        if official is not None:
            hour, _pm25_mean, _pm10_mean, nowcast, nowcast_cat, daqi_24h, daqi_24h_band = official
            if clean_number(nowcast) is not None:
                properties.update(us=clean_number(nowcast), us_cat=nowcast_cat, us_basis=US_NOWCAST)
                properties["us_hour"] = iso_utc(hour)
            if clean_number(daqi_24h) is not None:
                properties.update(uk=clean_number(daqi_24h), uk_band=daqi_24h_band, uk_basis=UK_24H)
                properties["uk_hour"] = iso_utc(hour)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round(float(lon), 5), round(float(lat), 5)]},
                "properties": properties,
            }
        )
    return features


HISTORY_FORMAT = 2  # part of the history fingerprint: a change of the file format gives new files
# Sensor histories are grouped into this many files by `sensor_id % HISTORY_SHARDS` (see `history_shard`).
HISTORY_SHARDS = 256
HISTORY_COLUMNS = ("pm25", "pm10", "us", "uk")
# Shards assembled together (a small working set, reused).
SHARDS_PER_GROUP = 16


def history_shard(sensor_id: int, shards: int = HISTORY_SHARDS) -> int:
    """The history file holding a sensor (the page computes the same: `id % shards`)."""
    return sensor_id % shards


@dataclass
class Histories:
    """The 7-day hourly history of every sensor on the map, as the JSON bodies of `shards` files.

    One file per sensor would be 20,000 files every hour: creating them took 4 to 28 s on the benchmark machine
    (and would be 20,000 PUTs an hour on S3). Shard k holds the sensors with `sensor_id % shards == k`, so the
    page fetches one small file (about 20 kB gzip) for a sensor clicked, cached for good under its hashed directory.
    `fingerprint` names the set (it changes with the sensors, the hours and any value read); `bodies` yields
    (shard, JSON) once, and is None when the caller already has the files of that fingerprint.
    """

    fingerprint: str
    sensor_ids: list[int]
    bodies: Iterator[tuple[int, bytes]] | None
    us_basis: str
    uk_basis: str
    shards: int = HISTORY_SHARDS

    def shard_numbers(self) -> set[int]:
        return {history_shard(sensor, self.shards) for sensor in self.sensor_ids}


def _exact_sum(column: str) -> str:
    """A sum that does not depend on the order DuckDB's threads add in (a float sum does, in its last bits)."""
    finite = f"CASE WHEN isfinite({column}::DOUBLE) THEN CAST(round({column}::DOUBLE * 1000) AS HUGEINT) END"
    return f"sum({finite})::VARCHAR || '/' || count(CASE WHEN isnan({column}::DOUBLE) THEN 1 END)"


# The hourly values a history file shows (a change in any of them gives a new fingerprint).
HISTORY_SOURCE_COLUMNS = {"pm25": "pm25_mean", "pm10": "pm10_mean", "us": "aqi_us_nowcast", "uk": "daqi_24h"}


def _window_fingerprint(
    connection: duckdb.DuckDBPyConnection, hourly_table: str, first: datetime, end: datetime, sensors: list[int]
) -> str:
    """A hash of everything the histories are made of: cheap aggregates over the window, not the files."""
    sums = ", ".join(_exact_sum(f"h.{column}") for column in HISTORY_SOURCE_COLUMNS.values())
    stats = connection.execute(
        f"""SELECT count(*), {sums} FROM {hourly_table} h SEMI JOIN site_sensors s USING (sensor_id)
            WHERE h.hour >= $first AND h.hour < $end""",
        {"first": first, "end": end},
    ).fetchall()[0]  # fetchall: DuckDB keeps a result open after fetchone (blocking register/unregister)
    digest = hashlib.sha256()
    digest.update(repr((HISTORY_FORMAT, HISTORY_SOURCE_COLUMNS, first, end, stats)).encode())
    digest.update(np.asarray(sensors, dtype=np.int64).tobytes())
    return digest.hexdigest()[:12]


def _hourly_values(
    connection: duckdb.DuckDBPyConnection, hourly_table: str, first: datetime, end: datetime
) -> duckdb.DuckDBPyRelation:
    """(sensor_id, slot, pm25, pm10, us, uk) per sensor (of `site_sensors`) and complete hour of the window: a
    relation, read only by the query that formats it."""
    values = ", ".join(f"h.{column}::DOUBLE AS {name}" for name, column in HISTORY_SOURCE_COLUMNS.items())
    return connection.sql(
        f"""
        SELECT h.sensor_id, (epoch(h.hour) - epoch($first::TIMESTAMP)) // 3600 AS slot, {values}
        FROM {hourly_table} h SEMI JOIN site_sensors s USING (sensor_id)
        WHERE h.hour >= $first AND h.hour < $end
        """,
        params={"first": first, "end": end},
    )


# A column's values get their texts from the range min..max when it spans fewer units than this (always, for
# validated PM in tenths and for the indices); otherwise only the values present get one.
TEXT_TABLE_LIMIT = 1_000_000


def _unit_text(units: int, scale: int) -> str:
    """`units / scale` as the shortest JSON number (12.3, 12, -0.5) for scale 1 or 10."""
    whole, fraction = divmod(abs(units), scale)
    sign = "-" if units < 0 else ""
    return f"{sign}{whole}" if fraction == 0 else f"{sign}{whole}.{fraction}"


def _unit_sql(name: str) -> str:
    """A history column in integer units: PM in tenths, rounded to what each sensor resolves; indices whole.
    TRY_CAST: a value too large for an integer is shown as a gap rather than failing the site."""
    if name in ("us", "uk"):
        return f"TRY_CAST(round(v.{name}) AS BIGINT)"
    # round(x, 1) first: x * 10 may round up to a tie (11.45 * 10 = 114.5) that x itself is not.
    return f"TRY_CAST(CASE WHEN r.whole THEN round(v.{name}) * 10 ELSE round(round(v.{name}, 1) * 10) END AS BIGINT)"


def history_bodies(
    connection: duckdb.DuckDBPyConnection, sensors: np.ndarray, digits: np.ndarray,
    values: pa.Table | duckdb.DuckDBPyRelation, hours: int, header: dict[str, Any], shards: int = HISTORY_SHARDS,
) -> Iterator[tuple[int, bytes]]:
    """(shard, `{...header, "sensors": {"<id>": {"pm25": [...], "pm10": [...], "us": [...], "uk": [...]}}}`).

    `sensors` sorted, `digits` the PM decimals of each; `values` holds (sensor_id, slot, pm25, pm10, us, uk) for
    the hours with data (slot 0 is the first hour of the window); every list has `hours` entries, null for a gap.

    Formatting 13 million numbers one by one in Python takes many seconds. Instead a file is a sequence of
    tokens, each an index into one table of texts: every value in the column's range (with and without its
    leading comma), the JSON between the lists, and one key per sensor. DuckDB turns each value into its token
    number (on both cores), NumPy lays the tokens out, Arrow gathers the texts in C++. DuckDB is read
    at once; the files are then assembled lazily, a few shards at a time, so the working memory stays small and
    is reused (fresh memory is what costs most on a small VM: about 4 ms per MB on the benchmark machine).
    """
    # One row per sensor, in shard order: each shard's sensors are one contiguous run of rows.
    layout = np.lexsort((sensors, sensors % shards))
    rows = pa.table({"sensor_id": sensors[layout], "row": np.arange(len(sensors), dtype=np.int32),
                     "whole": digits[layout] == 0})
    connection.register("history_rows", rows)
    connection.register("history_values", values)
    try:
        units = ", ".join(f"{_unit_sql(name)} AS {name}" for name in HISTORY_COLUMNS)
        scaled = f"""SELECT r.row, CAST(v.slot AS INTEGER) AS slot, {units}
                     FROM history_values v JOIN history_rows r USING (sensor_id)
                     WHERE v.slot >= 0 AND v.slot < {hours}"""
        # The range of each column's units, from the unrounded values (cheaper than rounding twice), widened by
        # what rounding can add.
        finite = ", ".join(f"min({n}) FILTER (isfinite({n})), max({n}) FILTER (isfinite({n}))" for n in HISTORY_COLUMNS)
        bounds = connection.sql(f"SELECT {finite} FROM history_values").fetchall()[0]
        texts: list[str] = []
        codes = []
        column_texts: list[tuple[int, int]] = []  # per column: where its texts start, and how many words
        for position, name in enumerate(HISTORY_COLUMNS):
            scale = 1 if name in ("us", "uk") else 10
            least, most = bounds[2 * position], bounds[2 * position + 1]
            low, high = (0, 0) if least is None else (
                math.floor(least * scale) - scale, math.ceil(most * scale) + scale)
            if high - low < TEXT_TABLE_LIMIT:  # always, for validated PM and the indices
                numbers = range(low, high + 1)
                code = f"coalesce({name} - {low} + 1, 0)"
            else:  # a wild value: only the values present get a text
                numbers = [row[0] for row in connection.sql(
                    f"SELECT DISTINCT {name} FROM ({scaled}) WHERE {name} IS NOT NULL ORDER BY 1").fetchall()]
                code = (f"CASE WHEN {name} IS NULL THEN 0 "
                        f"ELSE dense_rank() OVER (PARTITION BY {name} IS NULL ORDER BY {name}) END")
            plain = len(texts)  # texts[plain + k]: value k without a comma (k = 0: null); + size: with a comma
            words = ["null", *(_unit_text(u, scale) for u in numbers)]
            texts += words + ["," + word for word in words]
            column_texts.append((plain, len(words)))
            following = HISTORY_COLUMNS[position + 1] if position + 1 < len(HISTORY_COLUMNS) else None
            texts.append(f'],"{following}":[' if following else "]}")
            # The token of each cell: plain at the first hour, with a comma after it.
            codes.append(f"CAST({code} + CASE WHEN slot = 0 THEN {plain} ELSE {plain + len(words)} END AS INTEGER)"
                         f" AS {name}")
        cells = connection.sql(f"SELECT row, slot, {', '.join(codes)} FROM ({scaled})").to_arrow_table()
    finally:
        connection.unregister("history_values")
        connection.unregister("history_rows")
    counts = np.bincount(sensors % shards, minlength=shards)
    return _assemble(cells, texts, column_texts, sensors[layout], counts, hours, header)


def _assemble(
    cells: pa.Table, texts: list[str], column_texts: list[tuple[int, int]], sensors: np.ndarray, counts: np.ndarray,
    hours: int, header: dict[str, Any],
) -> Iterator[tuple[int, bytes]]:
    """The files of `history_bodies`, a group of shards at a time, from each cell's row, slot and tokens."""
    shards = len(counts)
    width = 1 + len(HISTORY_COLUMNS) * (hours + 1)  # key, pm25 hours, '],"pm10":[', ..., uk hours, ']}'
    # The tokens of a sensor without data (its key is set per row): null, then ",null" after the first hour,
    # then the text after the list.
    blank = np.empty(width, np.int32)
    for position, (plain, words) in enumerate(column_texts):
        first = 1 + position * (hours + 1)
        blank[first] = plain
        blank[first + 1:first + hours] = plain + words
        blank[first + hours] = plain + 2 * words
    keys = len(texts)  # every key starts with a comma: the first of each file has it cut off below
    table = pa.array(texts + [f',"{sensor}":{{"{HISTORY_COLUMNS[0]}":[' for sensor in sensors.tolist()], pa.binary())
    prefix = json.dumps({**header, "shards": shards}, separators=(",", ":"))[:-1].encode() + b',"sensors":{'

    row = cells.column("row").to_numpy()
    at = row * width + cells.column("slot").to_numpy()  # + the column's first token: the cell's token
    token_columns = [cells.column(name).to_numpy() for name in HISTORY_COLUMNS]
    ends = np.cumsum(counts)
    group_starts = list(range(0, shards, SHARDS_PER_GROUP))
    group_of_row = np.repeat(np.arange(len(group_starts), dtype=np.int16),
                             [int(counts[g:g + SHARDS_PER_GROUP].sum()) for g in group_starts])
    group_of_cell = group_of_row[row]
    buffer = np.empty(0, np.int32)
    for number, first_shard in enumerate(group_starts):
        group = range(first_shard, min(first_shard + SHARDS_PER_GROUP, shards))
        low, high = int(ends[group.start] - counts[group.start]), int(ends[group.stop - 1])
        if high == low:
            continue
        if buffer.size < (high - low) * width:
            buffer = np.empty((high - low) * width, np.int32)
        tokens = buffer[:(high - low) * width].reshape(high - low, width)
        tokens[:] = blank
        tokens[:, 0] = keys + np.arange(low, high)
        mine = np.flatnonzero(group_of_cell == number)
        where = at[mine] - low * width
        flat = tokens.ravel()
        for position, column in enumerate(token_columns):
            flat[where + 1 + position * (hours + 1)] = column[mine]
        # The gathered texts lie end to end in one buffer: each shard's file is one slice of it.
        gathered = table.take(pa.array(flat))
        text_offsets = np.frombuffer(gathered.buffers()[1], np.int32, len(gathered) + 1, gathered.offset * 4)
        text = memoryview(gathered.buffers()[2])
        shard_row = 0  # the shard's first row within the group
        for shard in group:
            if counts[shard]:
                begin, finish = text_offsets[shard_row * width], text_offsets[(shard_row + counts[shard]) * width]
                yield shard, b"".join((prefix, text[begin + 1:finish], b"}}"))
                shard_row += counts[shard]


def build_histories(
    connection: duckdb.DuckDBPyConnection,
    hourly_table: str,
    features: list[dict[str, Any]],
    anchor: datetime,
    have_fingerprint: Callable[[str], bool] = lambda _fingerprint: False,
) -> Histories:
    """Every sensor's last 7 days of complete hours from the hourly table: columnar arrays, one entry per hour,
    null for a gap."""
    end = anchor.replace(minute=0, second=0, microsecond=0)  # the hour holding the anchor is not complete
    first = end - timedelta(days=HISTORY_DAYS)
    hours = int((end - first) / timedelta(hours=1))
    by_id = sorted((f["properties"]["id"], pm_digits(f["properties"]["type"])) for f in features)
    sensors = np.array([sensor for sensor, _ in by_id], dtype=np.int64)
    digits = np.array([digit for _, digit in by_id], dtype=np.int32)
    connection.register("site_sensors", pa.table({"sensor_id": sensors}))
    try:
        fingerprint = _window_fingerprint(connection, hourly_table, first, end, sensors.tolist())
        if have_fingerprint(fingerprint):
            return Histories(fingerprint, sensors.tolist(), None, US_NOWCAST, UK_24H)
        values = _hourly_values(connection, hourly_table, first, end)
        header = {"format": HISTORY_FORMAT, "start": iso_utc(first), "step_s": 3600, "hours": hours,
                  "us_basis": US_NOWCAST, "uk_basis": UK_24H}
        bodies = history_bodies(connection, sensors, digits, values, hours, header)
    finally:
        connection.unregister("site_sensors")
    return Histories(fingerprint, sensors.tolist(), bodies, US_NOWCAST, UK_24H)


def build_countries(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per country: sensors shown, median PM, how many sensors per US category and DAQI band, the worst sensor."""
    by_country: dict[str, list[dict[str, Any]]] = {}
    for feature in features:
        properties = feature["properties"]
        by_country.setdefault(properties["country"] or "??", []).append(properties)
    summaries = []
    for country, sensors in sorted(by_country.items()):
        pm25 = [s["pm25"] for s in sensors if s["pm25"] is not None]
        pm10 = [s["pm10"] for s in sensors if s["pm10"] is not None]
        worst = max((s for s in sensors if s["us"] is not None), key=lambda s: s["us"], default=None)
        us_categories: dict[str, int] = {}
        uk_bands: dict[str, int] = {}
        for s in sensors:
            if s["us_cat"]:
                us_categories[s["us_cat"]] = us_categories.get(s["us_cat"], 0) + 1
            if s["uk_band"]:
                uk_bands[s["uk_band"]] = uk_bands.get(s["uk_band"], 0) + 1
        summaries.append(
            {
                "country": country,
                "sensors": len(sensors),
                "pm25_median": clean_number(float(np.median(pm25)), 1) if pm25 else None,
                "pm10_median": clean_number(float(np.median(pm10)), 1) if pm10 else None,
                "us_categories": us_categories,
                "uk_bands": uk_bands,
                "worst_sensor": None if worst is None else {"id": worst["id"], "us": worst["us"]},
            }
        )
    return summaries




def site_data(
    connection: duckdb.DuckDBPyConnection,
    *,
    hourly_table: str,
    location: TierLocation | None,
    now: datetime | None = None,
    have_fingerprint: Callable[[str], bool] = lambda _fingerprint: False,
) -> SiteData:
    """Read everything one build needs (one consistent read: the caller holds one connection).

    `hourly_table` is the qualified name of the `aqi_hourly` aggregate's table; `location` the Parquet tier's
    (None only when nothing the build reads was pruned: `attach_history` fails loudly otherwise).
    `have_fingerprint(f)` says whether the sensor histories of fingerprint `f` are already written (they are then
    not recomputed: they change once an hour, the map every five minutes)."""
    now = naive_utc(now)
    check_hourly_table(connection, hourly_table)
    anchor = find_anchor(connection, location, now)
    if anchor is None:
        empty = Histories("empty", [], iter(()), US_NOWCAST, UK_24H)
        return SiteData(None, [], empty, [], hourly_table, ["no 5-minute reading in the history yet"])
    view = attach_history(connection, location, window=read_window(anchor))
    features = build_features(latest_readings(connection, anchor), latest_hourly(connection, hourly_table, anchor))
    histories = build_histories(connection, hourly_table, features, anchor, have_fingerprint)
    notes = []
    for index, official in (("us", US_NOWCAST), ("uk", UK_24H)):
        by_reading = sum(1 for f in features if f["properties"][f"{index}_basis"] != official)
        if by_reading:
            notes.append(
                f"{by_reading} of {len(features)} sensors show their latest reading's {index.upper()} index "
                f"(labelled '{READING}'): no valid {official} value in {hourly_table} within "
                f"{HOURLY_MAX_AGE / timedelta(hours=1):g} h"
            )
    return SiteData(anchor, features, histories, build_countries(features), hourly_table, notes, view.cold_days)
