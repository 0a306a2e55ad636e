"""The month generator: seeded, at the archive's cadence, and written in the archive's three shapes."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from aqi_assets.bench.archive_month_data import (
    SENTINEL,
    month_readings,
    write_day_csvs,
    write_month_zip,
    write_spark_parquet,
)
from aqi_assets.lib.archive.listing import parse_name

MONTH = date(2024, 2, 1)  # a leap February
SDS011_HEADER = "sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2"
TEXT = {"P1": pa.string(), "P2": pa.string(), "timestamp": pa.string(), "durP1": pa.string()}


def _seconds(table: pa.Table) -> np.ndarray:
    texts = table["timestamp"].cast(pa.string())
    return pc.strptime(texts, format="%Y-%m-%dT%H:%M:%S", unit="s").cast(pa.int64()).to_numpy()


def _texts(table: pa.Table) -> dict[str, list]:
    """Every column as text (NaN compares equal to NaN as "nan"; dictionaries and plain strings alike)."""
    return {name: table[name].cast(pa.string()).to_pylist() for name in table.column_names}


def _read_csv(body: bytes) -> pa.Table:
    return pa_csv.read_csv(io.BytesIO(body), parse_options=pa_csv.ParseOptions(delimiter=";"),
                           convert_options=pa_csv.ConvertOptions(column_types=TEXT))


def test_the_same_seed_gives_the_same_month_and_another_seed_another() -> None:
    first = month_readings(MONTH, 3, 2, seed=7)
    assert _texts(first) == _texts(month_readings(MONTH, 3, 2, seed=7))
    other = month_readings(MONTH, 3, 2, seed=8)
    assert not first.select(["timestamp", "P1"]).equals(other.select(["timestamp", "P1"]))
    assert _texts(month_readings(date(2024, 2, 17), 3, 2, seed=7)) == _texts(first)  # any day names its month


def test_readings_come_every_145_seconds_or_so_and_stay_inside_the_days() -> None:
    table = month_readings(MONTH, 4, 3, first_id=500)
    seconds, ids = _seconds(table), table["sensor_id"].to_numpy()
    start = int(datetime(2024, 2, 1).timestamp() - datetime(1970, 1, 1).timestamp())
    assert seconds.min() >= start and seconds.max() < start + 3 * 86_400
    assert sorted(set(ids.tolist())) == [500, 501, 502, 503]
    for sensor in (500, 503):
        own = seconds[ids == sensor]
        gaps = np.diff(own)
        assert gaps.min() >= 131 and gaps.max() <= 159  # 145 s ± 10 %, never twice the same second
        assert 143 <= gaps.mean() <= 147
        assert 3 * 590 <= len(own) <= 3 * 602  # ~596 a day
    assert pc.all(pc.match_substring_regex(table["timestamp"].cast(pa.string()),
                                           r"^2024-02-0[1-3]T\d\d:\d\d:\d\d$")).as_py()
    with pytest.raises(ValueError, match="days"):
        month_readings(MONTH, 1, 30)  # February 2024 has 29


def test_columns_coordinates_values_and_the_share_of_bad_values() -> None:
    table = month_readings(MONTH, 20, 2, seed=1)
    assert table.column_names == SDS011_HEADER.split(";")
    assert set(table["sensor_type"].cast(pa.string()).to_pylist()) == {"SDS011"}
    assert table["durP1"].null_count == table.num_rows and table["ratioP2"].null_count == table.num_rows
    lat, lon = table["lat"].to_numpy(), table["lon"].to_numpy()
    assert lat.min() >= 35 and lat.max() <= 60 and lon.min() >= -10 and lon.max() <= 30
    assert len(set(zip(table["sensor_id"].to_pylist(), lat.tolist(), strict=True))) == 20  # one place a sensor
    for name in ("P1", "P2"):
        values = table[name].to_numpy()
        negative, sentinel, nan = (values < 0).sum(), (values == SENTINEL).sum(), np.isnan(values).sum()
        assert negative > 0 and sentinel > 0 and nan > 0
        assert negative + sentinel + nan < 0.01 * len(values)  # a small share
        good = values[(values >= 0) & (values != SENTINEL)]
        assert 5 < np.median(good) < 40
    pm10, pm25 = table["P1"].to_numpy(), table["P2"].to_numpy()
    clean = (pm10 >= 0) & (pm10 != SENTINEL) & (pm25 >= 0) & (pm25 != SENTINEL)
    assert np.all(pm25[clean] <= pm10[clean])

    bme = month_readings(MONTH, 2, 1, sensor_type="bme280")
    assert bme.column_names[6:] == ["pressure", "altitude", "pressure_sealevel", "temperature", "humidity"]
    assert 90_000 < np.nanmedian(bme["pressure"].to_numpy()) < 110_000
    assert month_readings(MONTH, 1, 1, sensor_type="PMS5003").column_names[6:] == ["P1", "P2", "P0"]
    with pytest.raises(ValueError, match="unsupported sensor type"):
        month_readings(MONTH, 1, 1, sensor_type="SPS30")


def test_spark_parquet_parts_hold_every_row_in_the_asked_physical_shape(tmp_path: Path) -> None:
    table = month_readings(MONTH, 3, 1)
    order = ["timestamp", *[c for c in table.column_names if c != "timestamp"]]
    parts = write_spark_parquet(table, tmp_path / "plain", parts=3, column_order=order)
    assert [re.sub(r"-[0-9a-f-]{36}-", "-<uuid>-", p.name) for p in parts] == [
        f"part-0000{i}-<uuid>-c000.snappy.parquet" for i in range(3)
    ]
    assert len({p.name.split("-", 2)[2] for p in parts}) == 1  # one job uuid for all parts
    assert (tmp_path / "plain" / "_SUCCESS").read_bytes() == b""
    files = [pq.ParquetFile(p) for p in parts]
    assert all(f.metadata.row_group(0).column(0).compression == "SNAPPY" for f in files)
    assert all(f.schema_arrow.names == order for f in files)
    assert all(b"ARROW:schema" not in (f.metadata.metadata or {}) for f in files)  # like Spark's files
    assert [f.metadata.num_rows > 0 for f in files] == [True] * 3
    read = pa.concat_tables(pq.read_table(p) for p in parts)
    assert read.schema.field("timestamp").type == pa.string() and read.schema.field("sensor_type").type == pa.string()
    assert _texts(read.select(table.column_names)) == _texts(table)

    typed = write_spark_parquet(table, tmp_path / "typed", parts=1, numbers_as_strings=True,
                                extra_columns={"source": "x"}, timestamp_as="timestamp")
    typed_read = pq.read_table(typed[0])
    assert typed_read.schema.field("P1").type == pa.string() and typed_read.schema.field("lat").type == pa.string()
    assert typed_read.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert set(typed_read["source"].to_pylist()) == {"x"}
    assert typed_read["P1"].to_pylist() == [None if v is None else ("nan" if v != v else str(v).removesuffix(".0"))
                                            for v in table["P1"].to_pylist()]
    assert (typed_read["timestamp"].cast(pa.int64()).to_numpy() // 1_000_000 == _seconds(table)).all()


def test_the_month_zip_and_the_daily_files_hold_the_same_csv_rows(tmp_path: Path) -> None:
    table = month_readings(MONTH, 3, 2, seed=2)
    path = write_month_zip(table, tmp_path / "2024-02_sds011.zip")
    with zipfile.ZipFile(path) as opened:
        assert opened.namelist() == ["2024-02_sds011.csv"]
        body = opened.read("2024-02_sds011.csv")
    assert body.startswith((SDS011_HEADER + "\r\n").encode()) and body.endswith(b"\r\n")
    assert body.count(b"\r\n") == body.count(b"\n") == table.num_rows + 1
    assert b'"' not in body and b";nan;" in body  # no quoting; NaN is written as the archive's text
    from_zip = _read_csv(body)
    assert from_zip.num_rows == table.num_rows
    assert from_zip["P1"].to_pylist()[:5] == [str(v).removesuffix(".0") for v in table["P1"].to_pylist()[:5]]
    assert path.read_bytes() == write_month_zip(table, tmp_path / "again" / path.name).read_bytes()

    written = write_day_csvs(table, tmp_path / "days")
    assert sorted(written) == [date(2024, 2, 1), date(2024, 2, 2)]
    rows = []
    for day, paths in written.items():
        assert len(paths) == 3
        for day_path in paths:
            parsed = parse_name(day_path.name)
            assert (parsed.day, parsed.sensor_type) == (day, "SDS011") and day_path.parent.name == day.isoformat()
            day_body = day_path.read_bytes()
            assert day_body.startswith((SDS011_HEADER + "\r\n").encode())
            one = _read_csv(day_body)
            assert set(one["sensor_id"].to_pylist()) == {parsed.sensor_id}
            assert all(t.startswith(day.isoformat()) for t in one["timestamp"].to_pylist())
            rows += zip(one["sensor_id"].to_pylist(), one["timestamp"].to_pylist(), one["P1"].to_pylist(),
                        strict=True)
    assert sorted(rows) == sorted(zip(from_zip["sensor_id"].to_pylist(), from_zip["timestamp"].to_pylist(),
                                      from_zip["P1"].to_pylist(), strict=True))
    # Rows out of order are grouped all the same.
    shuffled = table.take(np.random.default_rng(0).permutation(table.num_rows))
    again = write_day_csvs(shuffled, tmp_path / "shuffled")
    assert sum(len(_read_csv(p.read_bytes())) for paths in again.values() for p in paths) == table.num_rows
