"""A month of the archive's monthly files straight to the Parquet tier (`lib.tiers.archive_months`): the same rules as
the daily CSVs, cold days in the tier read like pruned ones, hot days to DuckDB, a corrupt file writes nothing,
re-runs replace exactly their month, and two months written at once lose and double nothing."""

from __future__ import annotations

import multiprocessing
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import FileSelector

from aqi_assets.bench.archive_month_data import month_readings, write_day_csvs, write_month_zip, write_spark_parquet
from aqi_assets.lib.archive.merge import ArchiveDayPrunedError, merge_archive_day
from aqi_assets.lib.archive.selection import ResolvedSelection, parse_selection, resolve_selection
from aqi_assets.lib.common.location import TierLocation, open_location
from aqi_assets.lib.readings.history import (
    BACKFILL_DIR,
    HISTORY_VIEW,
    attach_history,
    backfilled,
    read_manifest,
)
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers import archive_months
from aqi_assets.lib.tiers.archive_months import (
    BACKFILL_STAGING_DIR,
    OUTSIDE_MONTH_REASON,
    MonthSourceError,
    backfill_month,
    merge_hot_rows,
)
from aqi_assets.lib.tiers.parquet_tier import DayPrunedError, export_day, verify_day

MONTH = date(2016, 3, 1)
FAR_FUTURE = date(2100, 1, 1)  # every day of the month older than the hot window
# What a reading is, whatever its source: every contract column except where and when it was merged.
COMPARED = ("sensor_id", '"timestamp"', "location_id", "latitude", "longitude", "sensor_type", "pm10", "pm25",
            "temperature", "humidity", "pressure", "other_values", "daqi", "daqi_band", "aqi_us", "aqi_us_category",
            "aqi_us_beyond", "no_index_reason")


@dataclass(frozen=True)
class Source:
    sensor_type: str
    kind: str
    name: str
    path: Path


def _parquet_sources(directory: Path, sensor_type: str, **variant: object) -> list[Source]:
    table = month_readings(MONTH, 4, 2, sensor_type=sensor_type.upper(), first_id=_first_id(sensor_type))
    paths = write_spark_parquet(table, directory / sensor_type, parts=2, **variant)
    return [Source(sensor_type, "parquet", p.name, p) for p in paths]


def _first_id(sensor_type: str) -> int:
    return {"sds011": 10_000, "bme280": 20_000, "pms5003": 30_000}[sensor_type]


def _tier(tmp_path: Path) -> TierLocation:
    return open_location(str(tmp_path / "tier"))


def _tier_rows(location: TierLocation, month: date = MONTH) -> list[tuple]:
    with duckdb.connect() as connection:
        return connection.execute(
            f"""SELECT {", ".join(COMPARED)}
                FROM read_parquet('{location.root}/period=archive/date={month:%Y-%m}-*/*.parquet')
                ORDER BY sensor_id, "timestamp" """
        ).fetchall()


def test_columns_are_read_by_name_whatever_their_order_types_or_extras(tmp_path: Path) -> None:
    """SDS011 in another column order with timestamps as TIMESTAMP, BME280 with every number as text and an extra
    column: both read exactly like the same readings as daily CSVs through `merge_archive_day`."""
    sources = [
        *_parquet_sources(tmp_path / "src", "sds011", column_order=[
            "timestamp", "sensor_id", "P2", "P1", "lat", "lon", "location", "sensor_type", "durP1", "ratioP1",
            "durP2", "ratioP2"], timestamp_as="timestamp"),
        *_parquet_sources(tmp_path / "src", "bme280", numbers_as_strings=True, extra_columns={"source_file": "x"}),
    ]
    location = _tier(tmp_path)
    result = backfill_month(MONTH, sources, location, hot_from=FAR_FUTURE, hot_dir=tmp_path / "hot")
    assert result.cold_total == result.rows_new > 0 and result.hot_rows == 0 and result.values_quarantined > 0
    monthly = _tier_rows(location)

    # The same readings as the archive's daily CSVs, merged into a DuckDB history by the daily path.
    database = tmp_path / "daily.duckdb"
    with readings_connection(database) as connection:
        for sensor_type in ("SDS011", "BME280"):
            table = month_readings(MONTH, 4, 2, sensor_type=sensor_type, first_id=_first_id(sensor_type.lower()))
            for day, paths in write_day_csvs(table, tmp_path / "csv").items():
                merge_archive_day(connection, day, paths)
        daily = connection.execute(
            f'SELECT {", ".join(COMPARED)} FROM aqi_readings ORDER BY sensor_id, "timestamp"'
        ).fetchall()
    # The extra column is kept in other_values (the daily files have no such column); nothing else differs.
    bme = [row for row in monthly if row[5] == "BME280"]
    assert bme and all(row[11] == {"source_file": "x"} for row in bme)
    without_extra = [(*row[:11], None, *row[12:]) if row[5] == "BME280" else row for row in monthly]
    assert without_extra == daily
    assert {row[5] for row in monthly} == {"SDS011", "BME280"}
    # Every row names the file it came from, as the month's files are called in the archive.
    with duckdb.connect() as connection:
        named = {row[0] for row in connection.execute(
            f"SELECT DISTINCT snapshot FROM read_parquet('{location.root}/period=archive/*/*.parquet')").fetchall()}
        rejected = {row[0] for row in connection.execute(
            f"SELECT DISTINCT snapshot FROM read_parquet('{location.root}/_rejected/period=archive/2016-03.parquet')"
        ).fetchall()}
    published = {f"2016-03/{source.sensor_type}/{source.name}" for source in sources}
    assert named == published and rejected and rejected <= published
    assert result.sensors == 8


def test_a_zip_month_goes_through_the_csv_path_and_rows_outside_the_month_are_quarantined(tmp_path: Path) -> None:
    table = month_readings(MONTH, 3, 1, sensor_type="PMS5003", first_id=30_000)
    zipped = write_month_zip(table, tmp_path / "2016-03_pms5003.zip")
    # A stray row of the next month (an offset timestamp in the file) belongs to another partition.
    with zipfile.ZipFile(zipped) as archive:
        [member] = archive.namelist()
        text = archive.read(member).decode()
    stray = text.splitlines()[1].split(";")
    stray[5] = "2016-04-01T00:00:05"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(member, text + ";".join(stray) + "\r\n")
    location = _tier(tmp_path)
    result = backfill_month(MONTH, [Source("pms5003", "csv_zip", zipped.name, zipped)], location,
                            hot_from=FAR_FUTURE, hot_dir=tmp_path / "hot")
    assert result.rows_outside_month == 1
    assert result.cold_total == len(_tier_rows(location)) > 0
    assert not location.exists(location.path("period=archive", "date=2016-04-01"))
    rejected = pq.read_table(location.path("_rejected", "period=archive", "2016-03.parquet")).to_pylist()
    assert [r["reason"] for r in rejected if r["reason"] == OUTSIDE_MONTH_REASON] == [OUTSIDE_MONTH_REASON]


def test_a_corrupt_file_fails_the_month_naming_it_and_leaves_the_tier_as_it_was(tmp_path: Path) -> None:
    sources = _parquet_sources(tmp_path / "src", "sds011")
    location = _tier(tmp_path)
    backfill_month(MONTH, sources, location, hot_from=FAR_FUTURE, hot_dir=tmp_path / "hot")
    before = {info.path: info.mtime_ns for info in location.files_under(location.root)}
    broken = sources[-1].path
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    with pytest.raises(MonthSourceError, match=broken.name):
        backfill_month(MONTH, sources, location, hot_from=FAR_FUTURE, hot_dir=tmp_path / "hot")
    assert {info.path: info.mtime_ns for info in location.files_under(location.root)} == before
    assert not location.files_under(location.path(BACKFILL_STAGING_DIR))  # nothing staged is left behind


def test_a_rerun_replaces_exactly_its_month_with_the_same_rows(tmp_path: Path) -> None:
    location = _tier(tmp_path)
    april = date(2016, 4, 1)
    april_table = month_readings(april, 2, 1)
    april_sources = [Source("sds011", "parquet", p.name, p)
                     for p in write_spark_parquet(april_table, tmp_path / "april" / "sds011")]
    backfill_month(april, april_sources, location, hot_from=FAR_FUTURE, hot_dir=tmp_path / "hot")
    april_files = {info.path: info.mtime_ns for info in location.files_under(location.path("period=archive"))}
    sources = _parquet_sources(tmp_path / "src", "sds011")
    first = backfill_month(MONTH, sources, location, hot_from=FAR_FUTURE, hot_dir=tmp_path / "hot")
    rows = _tier_rows(location)
    second = backfill_month(MONTH, sources, location, hot_from=FAR_FUTURE, hot_dir=tmp_path / "hot")
    assert _tier_rows(location) == rows and second.cold_rows == first.cold_rows
    assert second.rows_new == 0 and second.rows_in_tier_before == first.cold_total
    march_dirs = [d for d in location.filesystem.get_file_info(FileSelector(location.path("period=archive")))
                  if d.base_name.startswith("date=2016-03")]
    assert len(march_dirs) == 2
    for directory in march_dirs:
        assert len(location.files_under(directory.path)) == 1  # the old file went when the new one came
    after = {info.path: info.mtime_ns for info in location.files_under(location.path("period=archive"))}
    assert {p: m for p, m in after.items() if "2016-04" in p} == april_files
    manifest = read_manifest(location, "archive", MONTH)
    assert manifest is not None and sum(e["rows"] for e in manifest["days"].values()) == len(rows)


def _backfill_in_child(month: str, directory: str, tier: str) -> int:
    month_day = date.fromisoformat(month)
    sources = [Source("sds011", "parquet", p.name, p) for p in sorted(Path(directory).glob("part-*"))]
    result = backfill_month(month_day, sources, open_location(tier), hot_from=FAR_FUTURE,
                            hot_dir=Path(directory) / "hot", threads=1)
    return result.cold_total


def test_two_months_written_at_once_lose_and_double_nothing(tmp_path: Path) -> None:
    months = [date(2016, 3, 1), date(2016, 4, 1)]
    tables = {m: month_readings(m, 5, 3, seed=7) for m in months}
    for month, table in tables.items():
        write_spark_parquet(table, tmp_path / f"{month:%Y-%m}", parts=3)
    tier = str(tmp_path / "tier")
    open_location(tier)
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        written = pool.starmap(
            _backfill_in_child, [(m.isoformat(), str(tmp_path / f"{m:%Y-%m}"), tier) for m in months]
        )
    location = open_location(tier)
    with duckdb.connect() as connection:
        per_month = {
            month: (rows, keys)
            for month, rows, keys in connection.execute(
                f"""SELECT strftime("timestamp", '%Y-%m'), count(*), count(DISTINCT (sensor_id, "timestamp"))
                    FROM read_parquet('{tier}/period=archive/*/*.parquet') GROUP BY 1 ORDER BY 1"""
            ).fetchall()
        }
    assert per_month == {"2016-03": (written[0], written[0]), "2016-04": (written[1], written[1])}
    # Each month alone, in this process, writes the same number of readings: nothing was lost to the other run.
    for month, count in zip(months, written, strict=True):
        alone = open_location(str(tmp_path / f"alone-{month:%Y-%m}"))
        sources = [Source("sds011", "parquet", p.name, p) for p in sorted((tmp_path / f"{month:%Y-%m}").glob("part-*"))]
        assert backfill_month(month, sources, alone, hot_from=FAR_FUTURE, hot_dir=tmp_path / "h").cold_total == count
    assert set(backfilled(location)) == {("archive", m + timedelta(days=i)) for m in months for i in range(3)}


def test_backfilled_days_read_like_pruned_ones_and_guard_the_day_like_them(tmp_path: Path) -> None:
    location = _tier(tmp_path)
    sources = _parquet_sources(tmp_path / "src", "sds011")
    result = backfill_month(MONTH, sources, location, hot_from=FAR_FUTURE, hot_dir=tmp_path / "hot")
    day = MONTH
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        view = attach_history(connection, location, window=(datetime(2016, 3, 1), datetime(2016, 3, 2)))
        assert view.cold_days == 1
        count = connection.execute(f"SELECT count(*) FROM {HISTORY_VIEW}").fetchone()[0]
        assert count == result.cold_rows[day.isoformat()]
        assert verify_day(connection, location, day).ok
        assert export_day(connection, location, day).kept_pruned == ["archive"]
        assert len(_tier_rows(location)) == result.cold_total  # the export left the backfilled files alone
        # The daily path refuses the day (its rows would be read twice), as it does a pruned day.
        csvs = write_day_csvs(month_readings(MONTH, 4, 2), tmp_path / "csv")[day]
        with pytest.raises(ArchiveDayPrunedError):
            merge_archive_day(connection, day, csvs, backfilled_rows={day: result.cold_rows[day.isoformat()]})
        # Hot rows of a backfilled day (merged before the month was backfilled) are not read twice, and fail the
        # day's export and verification until they are gone.
        merge_archive_day(connection, day, csvs)
        attach_history(connection, location, window=(datetime(2016, 3, 1), datetime(2016, 3, 2)))
        assert connection.execute(f"SELECT count(*) FROM {HISTORY_VIEW}").fetchone()[0] == count
        assert not verify_day(connection, location, day).ok
        with pytest.raises(DayPrunedError):
            export_day(connection, location, day)
    assert location.exists(location.path(BACKFILL_DIR, "period=archive", "2016-03.json"))


def test_days_inside_the_hot_window_are_staged_for_duckdb_and_merged_once(tmp_path: Path) -> None:
    location = _tier(tmp_path)
    sources = _parquet_sources(tmp_path / "src", "sds011")
    hot_from = MONTH + timedelta(days=1)  # the month's second day is inside the hot window
    result = backfill_month(MONTH, sources, location, hot_from=hot_from, hot_dir=tmp_path / "hot")
    assert list(result.cold_rows) == ["2016-03-01"] and result.hot_rows > 0
    assert not location.exists(location.path("period=archive", "date=2016-03-02"))
    assert result.hot_readings is not None
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        inserted, known = merge_hot_rows(connection, MONTH, result.hot_readings, result.hot_rejected)
        assert (inserted, known) == (result.hot_rows, 0)
        assert merge_hot_rows(connection, MONTH, result.hot_readings, result.hot_rejected) == (0, 0)
        assert connection.execute(
            """SELECT count(*), min("timestamp")::DATE, count(DISTINCT ingest_seq) FROM aqi_readings
               WHERE period = 'archive'"""
        ).fetchone() == (result.hot_rows, hot_from, 1)
        attach_history(connection, location, window=(datetime(2016, 3, 1), datetime(2016, 3, 3)))
        total, distinct = connection.execute(
            f'SELECT count(*), count(DISTINCT (sensor_id, "timestamp")) FROM {HISTORY_VIEW}'
        ).fetchone()
        assert total == distinct == result.cold_total + result.hot_rows


def test_a_selection_keeps_only_its_sensors_types_or_everything(tmp_path: Path) -> None:
    location = _tier(tmp_path)
    sources = [*_parquet_sources(tmp_path / "src", "sds011"), *_parquet_sources(tmp_path / "src", "bme280")]
    selection = resolve_selection(None, parse_selection("10001, type:bme280"))
    backfill_month(MONTH, sources, location, hot_from=FAR_FUTURE, hot_dir=tmp_path / "hot", selection=selection)
    kept = {(row[0], row[5]) for row in _tier_rows(location)}
    assert {sensor for sensor, kind in kept if kind == "SDS011"} == {10001}
    assert {sensor for sensor, kind in kept if kind == "BME280"} == {20000, 20001, 20002, 20003}


def test_the_selection_syntax_names_everything_or_whole_types() -> None:
    everything = resolve_selection(None, parse_selection("all"))
    assert everything.everything and everything.types_to_fetch() is None and everything.ids_within("x") is None
    types = resolve_selection(None, parse_selection("type:SDS011, type:pms5003"))
    assert types.types_to_fetch() == frozenset({"sds011", "pms5003"})
    assert types.matches(1, "SDS011") and not types.matches(1, "BME280")
    assert parse_selection("type:sds011, 42").describe() == "42, type:sds011"
    mixed = ResolvedSelection(frozenset({42}), sensor_types=frozenset({"sds011"}))
    assert mixed.types_to_fetch() is None and mixed.ids_within("bme280") == frozenset({42})


def test_a_file_larger_than_a_staging_unit_is_staged_in_slices_of_its_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging's memory follows UNIT_ROWS, not the archive's file sizes: a large file goes in row-group slices and
    gives exactly the rows it gives staged whole (row numbers, quarantine and the files' names included)."""
    table = month_readings(MONTH, 4, 2)
    path = tmp_path / "src" / "part-00000-big-c000.snappy.parquet"
    path.parent.mkdir()
    pq.write_table(table.cast(table.schema), path, row_group_size=700, compression="snappy")
    assert pq.ParquetFile(path).metadata.num_row_groups > 3
    sources = [Source("sds011", "parquet", path.name, path)]
    whole = backfill_month(MONTH, sources, _tier(tmp_path / "whole"), hot_from=FAR_FUTURE, hot_dir=tmp_path / "h")
    monkeypatch.setattr(archive_months, "UNIT_ROWS", 1_500)
    sliced_tier = _tier(tmp_path / "sliced")
    sliced = backfill_month(MONTH, sources, sliced_tier, hot_from=FAR_FUTURE, hot_dir=tmp_path / "h")
    assert sliced.cold_rows == whole.cold_rows and sliced.values_quarantined == whole.values_quarantined > 0
    assert _tier_rows(sliced_tier) == _tier_rows(_tier(tmp_path / "whole"))
    with duckdb.connect() as connection:
        names = connection.execute(
            f"SELECT DISTINCT snapshot FROM read_parquet('{sliced_tier.root}/period=archive/*/*.parquet')"
        ).fetchall()
    assert names == [(f"2016-03/sds011/{path.name}",)]
