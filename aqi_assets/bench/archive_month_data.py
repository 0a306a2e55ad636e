"""A seeded month of Sensor.Community archive data, written in the real archive's shapes.

`month_readings` generates the canonical readings of one sensor type (the columns of the archive's CSVs, rows
ordered by sensor then time; `sensor_type` and `timestamp` are dictionary-encoded text, cast them to string to
compare); the writers publish the same readings as the archive does: Spark Parquet part files
(`parquet/YYYY-MM/<type>/`), the month's zipped CSV (`csv_per_month/`) and the daily per-sensor CSVs. Everything is
vectorised (numpy/pyarrow), so a month of 1,000 sensors (~18 M rows) takes seconds, not minutes.
"""

from __future__ import annotations

import calendar
import io
import itertools
import uuid
import zipfile
import zlib
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

ID_COLUMNS = ["sensor_id", "sensor_type", "location", "lat", "lon", "timestamp"]
VALUE_COLUMNS = {
    "SDS011": ["P1", "durP1", "ratioP1", "P2", "durP2", "ratioP2"],
    "BME280": ["pressure", "altitude", "pressure_sealevel", "temperature", "humidity"],
    "PMS5003": ["P1", "P2", "P0"],
}
# Columns the archive leaves empty for these types (the sensors do not report them).
EMPTY_COLUMNS = {"durP1", "ratioP1", "durP2", "ratioP2", "altitude", "pressure_sealevel"}
# Columns that receive the seeded bad values (negative, the 999.9 sentinel, NaN written as "nan").
CHECKED_COLUMNS = {
    "SDS011": ["P1", "P2"],
    "BME280": ["pressure", "temperature", "humidity"],
    "PMS5003": ["P1", "P2", "P0"],
}
SENTINEL = 999.9
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"
CSV_OPTIONS = {"delimiter": ";", "quoting_style": "none", "quoting_header": "none", "eol": "\r\n"}
ROWS_PER_CSV_BATCH = 500_000  # bounds the memory of one CSV conversion
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def month_readings(
    month: date,
    sensors: int,
    days: int,
    *,
    sensor_type: str = "SDS011",
    first_id: int = 10_000,
    cadence_s: int = 145,
    seed: int = 0,
    bad_share: float = 0.002,
) -> pa.Table:
    """``sensors`` sensors of ``sensor_type`` over the first ``days`` days of ``month``: a reading every
    ``cadence_s`` seconds (±10 % jitter) from a random phase, per-sensor coordinates and levels, and a seeded
    ``bad_share`` of bad values per checked column. The same arguments give the same table."""
    sensor_type = sensor_type.upper()
    if sensor_type not in VALUE_COLUMNS:
        raise ValueError(f"unsupported sensor type {sensor_type!r}: one of {sorted(VALUE_COLUMNS)}")
    if cadence_s < 10:
        raise ValueError(f"cadence_s must be at least 10 s, not {cadence_s}")
    month = month.replace(day=1)
    if not 1 <= days <= calendar.monthrange(month.year, month.month)[1]:
        raise ValueError(f"days must be between 1 and the length of {month:%Y-%m}, not {days}")
    rng = np.random.default_rng([seed, month.toordinal(), zlib.crc32(sensor_type.encode())])

    offsets, sensor_index = _reading_times(rng, sensors, days * 86_400, cadence_s)
    rows = len(offsets)
    ids = first_id + np.arange(sensors, dtype=np.int32)
    lat = np.round(rng.uniform(35, 60, sensors), 3)
    lon = np.round(rng.uniform(-10, 30, sensors), 3)

    columns: dict[str, pa.Array] = {
        "sensor_id": pa.array(ids[sensor_index]),
        # Text columns are dictionary-encoded (one entry per type / per second of the month instead of ~18 M
        # strings): a third of the memory; casting them to string gives the archive's text.
        "sensor_type": pa.DictionaryArray.from_arrays(np.zeros(rows, dtype=np.int8), [sensor_type]),
        "location": pa.array((ids + 5)[sensor_index]),
        "lat": pa.array(lat[sensor_index]),
        "lon": pa.array(lon[sensor_index]),
        "timestamp": pa.DictionaryArray.from_arrays(pa.array(offsets), _second_texts(month, days)),
    }
    values = _values(rng, sensor_type, sensors, sensor_index, offsets)
    for name in CHECKED_COLUMNS[sensor_type]:
        _spoil(rng, values[name], bad_share)
    empty = pa.nulls(rows, pa.float64())  # shared by every empty column
    for name in VALUE_COLUMNS[sensor_type]:
        columns[name] = empty if name in EMPTY_COLUMNS else pa.array(values.pop(name))
    return pa.table(columns)


def _reading_times(
    rng: np.random.Generator, sensors: int, span_s: int, cadence_s: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the month's start of every reading (sensor by sensor, increasing) and each row's sensor."""
    jitter = max(1, cadence_s // 10)
    steps = max(1, span_s // (cadence_s - jitter) + 1)
    times = rng.integers(cadence_s - jitter, cadence_s + jitter + 1, size=(sensors, steps), dtype=np.int32)
    times[:, 0] = rng.integers(0, cadence_s, size=sensors, dtype=np.int32)  # each sensor's own phase
    np.cumsum(times, axis=1, out=times)
    inside = times < span_s
    counts = inside.sum(axis=1)
    return times[inside], np.repeat(np.arange(sensors, dtype=np.int32), counts)


def _second_texts(month: date, days: int) -> pa.Array:
    """`YYYY-MM-DDTHH:MM:SS` of every second of the first ``days`` days of ``month``, built digit by digit
    (strftime over millions of values takes seconds; this takes milliseconds)."""
    seconds = np.arange(days * 86_400, dtype=np.int32)
    text = np.empty((len(seconds), 19), dtype=np.uint8)
    day_texts = np.frombuffer(
        "".join(date(month.year, month.month, day + 1).isoformat() for day in range(days)).encode(), dtype=np.uint8
    ).reshape(days, 10)
    text[:, :10] = day_texts[seconds // 86_400]
    text[:, 10], text[:, 13], text[:, 16] = ord("T"), ord(":"), ord(":")
    of_day = seconds % 86_400
    for column, value in ((11, of_day // 3_600), (14, of_day // 60 % 60), (17, of_day % 60)):
        text[:, column] = ord("0") + value // 10
        text[:, column + 1] = ord("0") + value % 10
    offsets = np.arange(0, text.size + 1, 19, dtype=np.int32)
    return pa.StringArray.from_buffers(len(seconds), pa.py_buffer(offsets), pa.py_buffer(text))


def _values(
    rng: np.random.Generator, sensor_type: str, sensors: int, sensor_index: np.ndarray, offsets: np.ndarray
) -> dict[str, np.ndarray]:
    # In-place arithmetic throughout: each temporary of a month is ~150 MB.
    rows = len(offsets)
    if sensor_type == "BME280":
        temperature = (offsets % 86_400).astype(np.float64)
        temperature *= 2 * np.pi / 86_400
        temperature -= 2 * np.pi * 9 / 24  # warmest mid-afternoon
        np.sin(temperature, out=temperature)
        temperature *= 6
        temperature += rng.uniform(0, 20, sensors)[sensor_index]
        temperature += rng.normal(0, 0.8, rows)
        pressure = rng.normal(0, 120, rows)
        pressure += rng.normal(100_500, 900, sensors)[sensor_index]
        humidity = np.clip(rng.normal(65, 15, rows), 5, 100)
        values = {"pressure": pressure, "temperature": temperature, "humidity": humidity}
    else:
        pm10 = rng.gamma(2.0, 10.0, rows)
        pm10 *= rng.lognormal(0, 0.4, sensors)[sensor_index]  # some places are dirtier than others
        pm25 = rng.uniform(0.3, 0.8, rows)
        pm25 *= pm10
        values = {"P1": pm10, "P2": pm25}
        if sensor_type == "PMS5003":
            pm1 = rng.uniform(0.5, 0.9, rows)
            pm1 *= pm25
            values["P0"] = pm1
    for column in values.values():
        np.round(column, 2, out=column)
    return values


def _spoil(rng: np.random.Generator, column: np.ndarray, share: float) -> None:
    """Replace a seeded ``share`` of the values by the archive's bad values, in place."""
    count = int(rng.binomial(len(column), share)) if len(column) else 0
    where = rng.integers(0, len(column), count)
    kind = rng.integers(0, 3, count)
    column[where[kind == 0]] = -np.abs(column[where[kind == 0]]) - 1.0
    column[where[kind == 1]] = SENTINEL
    column[where[kind == 2]] = np.nan


def write_spark_parquet(
    table: pa.Table,
    directory: Path,
    *,
    parts: int = 2,
    column_order: list[str] | None = None,
    numbers_as_strings: bool = False,
    extra_columns: dict[str, object] | None = None,
    timestamp_as: str = "string",
) -> list[Path]:
    """The table as a Spark job writes it: ``part-NNNNN-<job uuid>-c000.snappy.parquet`` files (rows split in
    order over ``parts``) and an empty ``_SUCCESS``. The variants change the physical schema only."""
    if timestamp_as not in ("string", "timestamp"):
        raise ValueError(f"timestamp_as must be 'string' or 'timestamp', not {timestamp_as!r}")
    names = column_order or table.column_names
    if sorted(names) != sorted(table.column_names):
        raise ValueError(f"column_order must name every column once: {table.column_names}")

    def spark_part(rows: pa.Table) -> pa.Table:
        # Converted part by part, so a month's table is never copied whole.
        columns = {name: _plain(rows[name]) for name in names}
        if numbers_as_strings:
            for name, column in columns.items():
                if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
                    columns[name] = column.cast(pa.string())
        if timestamp_as == "timestamp":
            parsed = pc.strptime(columns["timestamp"], format=TIMESTAMP_FORMAT, unit="s")
            columns["timestamp"] = parsed.cast(pa.timestamp("us", tz="UTC"))
        for name, value in (extra_columns or {}).items():
            columns[name] = pa.repeat(value, rows.num_rows)
        return pa.table(columns)

    directory.mkdir(parents=True, exist_ok=True)
    job = uuid.uuid4()
    bounds = np.linspace(0, table.num_rows, max(1, parts) + 1).astype(int)
    paths = []
    for number, (start, end) in enumerate(itertools.pairwise(bounds.tolist())):
        path = directory / f"part-{number:05d}-{job}-c000.snappy.parquet"
        # No Arrow schema in the footer: Spark does not write one, so readers see Parquet's own types.
        pq.write_table(spark_part(table.slice(start, end - start)), path, compression="snappy", store_schema=False)
        paths.append(path)
    (directory / "_SUCCESS").write_bytes(b"")
    return paths


def write_month_zip(table: pa.Table, path: Path) -> Path:
    """The csv_per_month file: a zip holding one ';'-separated CSV (CRLF lines) named like the zip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = zipfile.ZipInfo(f"{path.stem}.csv", date_time=(2020, 1, 1, 0, 0, 0))  # fixed: same bytes every run
    entry.compress_type = zipfile.ZIP_DEFLATED
    # Fastest deflate: 5x quicker than the default level for ~15 % more bytes (Python 3.13 names it compress_level).
    entry._compresslevel = 1
    with zipfile.ZipFile(path, "w") as archive, archive.open(entry, "w", force_zip64=True) as body:
        writer = pa_csv.CSVWriter(body, _csv_schema(table), write_options=pa_csv.WriteOptions(**CSV_OPTIONS))
        for batch in table.to_batches(ROWS_PER_CSV_BATCH):
            writer.write_table(_csv_ready(pa.Table.from_batches([batch])))
        writer.close()
    return path


def write_day_csvs(table: pa.Table, directory: Path) -> dict[date, list[Path]]:
    """The same readings as the archive's daily files: ``directory/YYYY-MM-DD/YYYY-MM-DD_<type>_sensor_<id>.csv``
    (one per sensor and day, header included, CRLF lines)."""
    sensor_ids = table["sensor_id"].to_numpy()
    # Days as numbers (date32), not 18 M Python strings.
    days = _day_numbers(table["timestamp"])
    if len(sensor_ids) > 1 and not np.all(
        (sensor_ids[1:] > sensor_ids[:-1]) | ((sensor_ids[1:] == sensor_ids[:-1]) & (days[1:] >= days[:-1]))
    ):
        order = np.lexsort((days, sensor_ids))
        table, sensor_ids, days = table.take(order), sensor_ids[order], days[order]
    starts = np.flatnonzero(np.r_[True, (sensor_ids[1:] != sensor_ids[:-1]) | (days[1:] != days[:-1])])
    ends = np.r_[starts[1:], len(sensor_ids)]
    types = _plain(table["sensor_type"].take(starts)).to_pylist()
    header = (";".join(table.column_names) + "\r\n").encode()
    options = pa_csv.WriteOptions(include_header=False, **CSV_OPTIONS)
    written: dict[date, list[Path]] = {}

    group = 0
    while group < len(starts):
        # Convert a batch of whole (sensor, day) groups to CSV at once, then cut it at the groups' line ends.
        last = max(group + 1, int(np.searchsorted(starts, starts[group] + ROWS_PER_CSV_BATCH, side="left")))
        first_row, end_row = int(starts[group]), int(ends[last - 1])
        buffer = io.BytesIO()
        pa_csv.write_csv(_csv_ready(table.slice(first_row, end_row - first_row)), buffer, options)
        body = buffer.getvalue()
        line_starts = np.r_[0, np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == ord("\n")) + 1]
        for index in range(group, last):
            day = date.fromordinal(EPOCH_ORDINAL + int(days[starts[index]]))
            folder = directory / day.isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{day.isoformat()}_{types[index].lower()}_sensor_{sensor_ids[starts[index]]}.csv"
            path.write_bytes(header + body[line_starts[starts[index] - first_row]:line_starts[ends[index] - first_row]])
            written.setdefault(day, []).append(path)
        group = last
    return written


def _day_numbers(timestamps: pa.ChunkedArray) -> np.ndarray:
    """Days since 1970 of `YYYY-MM-DDTHH:MM:SS` texts (of a dictionary's entries when it is one)."""
    def days_of(texts: pa.Array) -> np.ndarray:
        return pc.utf8_slice_codeunits(texts, 0, 10).cast(pa.date32()).cast(pa.int32()).to_numpy()

    pieces = [
        days_of(chunk.dictionary)[chunk.indices.to_numpy()] if isinstance(chunk, pa.DictionaryArray)
        else days_of(chunk)
        for chunk in timestamps.chunks
    ]
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int32)


def _csv_ready(table: pa.Table) -> pa.Table:
    """The table with dictionary columns as plain text (the CSV writer's input)."""
    return pa.table({name: _plain(table[name]) for name in table.column_names})


def _csv_schema(table: pa.Table) -> pa.Schema:
    return _csv_ready(table.slice(0, 0)).schema


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column
