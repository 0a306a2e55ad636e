"""Fetching archive months (Spark Parquet parts, else the csv_per_month zip) from a local archive into the lake."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from aqi_assets.bench.archive_month_data import month_readings, write_month_zip, write_spark_parquet
from aqi_assets.lib.archive.fetch import ArchiveFetchError, fetch_day, lake_files
from aqi_assets.lib.archive.monthly_fetch import (
    PART_NAME,
    fetch_month,
    lake_month_files,
    link_names,
    month_lake_dir,
)
from aqi_assets.lib.common.fetch import build_session
from aqi_assets_tests.support.archive_month_server import local_month_archive, serve_folder
from aqi_assets_tests.support.archive_server import HTML_ERROR_PAGE, index_page
from aqi_assets_tests.support.http import local_http_server

MONTH = date(2015, 10, 1)
KEY = "2015-10"


@pytest.fixture
def session():
    with build_session(retries=1, backoff_factor=0.01) as s:
        yield s


def _stored_names(raw_dir: Path) -> list[str]:
    """Every file under the month's lake folder, temporary ones included, as `type/name`."""
    root = month_lake_dir(raw_dir, MONTH)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _parquet_rows(paths: list[Path], columns: list[str]) -> list[tuple]:
    """Rows of Parquet files read by name and cast to text, sorted (the files' physical types differ)."""
    tables = [pq.read_table(p, columns=columns) for p in paths]
    return _text_rows(pa.concat_tables([t.cast(pa.schema([(c, pa.string()) for c in columns])) for t in tables]))


def _text_rows(table: pa.Table) -> list[tuple]:
    return sorted(zip(*(table[c].cast(pa.string()).to_pylist() for c in table.column_names), strict=True))


def test_index_pages_give_type_folders_and_part_files_only() -> None:
    html = index_page(f"/parquet/{KEY}/sds011/", [
        "_SUCCESS", "._SUCCESS.crc", ".part-00000-ab-c000.snappy.parquet.crc", "part-00000-ab-c000.snappy.parquet",
        "part-00001-ab-c000.snappy.parquet", "sub/",
    ]).decode()
    names = link_names(html)
    assert "../" not in names and "sub/" in names  # the parent link is dropped; folders keep their slash
    assert sorted(n for n in names if PART_NAME.match(n)) == [
        "part-00000-ab-c000.snappy.parquet", "part-00001-ab-c000.snappy.parquet"
    ]
    assert link_names('<a href="/parquet/2015-10/bme280/">x</a><a href="a%20b.zip?x=1">y</a>') == ["bme280/", "a b.zip"]


def test_a_month_prefers_parquet_falls_back_to_the_zip_and_a_rerun_downloads_nothing(tmp_path: Path,
                                                                                       session) -> None:
    with local_month_archive(MONTH, sensors_per_type=2, days=2) as archive:
        first = fetch_month(archive.url, MONTH, None, tmp_path, session=session, concurrency=3)
        assert first.month == MONTH
        assert first.types_listed == ["bme280", "sds011"]
        assert first.types_from_zip == ["pms5003"] and first.types_missing == []
        published = {
            **{p: "parquet" for t in ("sds011", "bme280") for p in archive.parquet_paths(t)},
            archive.zip_path("pms5003"): "csv_zip",
        }
        assert len(published) == 5  # two parts per Parquet type, one zip
        assert sorted(archive.file_requests()) == sorted(published)  # no _SUCCESS, .crc or zip of a Parquet type
        assert first.downloaded == len(first.files) == 5
        for stored in first.files:
            url_path = next(p for p in published if p.endswith(f"/{stored.name}"))
            assert stored.kind == published[url_path]
            assert stored.path == month_lake_dir(tmp_path, MONTH) / stored.sensor_type / stored.name
            assert stored.path.read_bytes() == archive.published[url_path]
            assert stored.sha256 == hashlib.sha256(archive.published[url_path]).hexdigest()
        assert first.bytes == sum(len(archive.published[p]) for p in published)
        assert not [n for n in _stored_names(tmp_path) if "/." in n]  # no temporary file left
        assert sorted((f.sensor_type, f.name, f.sha256) for f in lake_month_files(tmp_path, MONTH)) == sorted(
            (f.sensor_type, f.name, f.sha256) for f in first.files
        )

        again = fetch_month(archive.url, MONTH, None, tmp_path, session=session)
        assert again.downloaded == 0 and len(again.files) == 5
        assert len(archive.file_requests()) == 5  # nothing in the lake was requested twice
        assert again.fileset_sha256() == first.fileset_sha256()

        # What was stored is the served readings, whatever the physical schema (another column order, numbers
        # as text, an extra column): read by name and cast.
        columns = ["sensor_id", "timestamp", "P1", "P2"]
        sds_parts = [f.path for f in first.files if f.sensor_type == "sds011"]
        assert _parquet_rows(sds_parts, columns) == _text_rows(archive.tables["SDS011"].select(columns))
        bme_columns = ["sensor_id", "timestamp", "pressure", "temperature", "humidity"]
        bme_parts = [f.path for f in first.files if f.sensor_type == "bme280"]
        assert _parquet_rows(bme_parts, bme_columns) == _text_rows(archive.tables["BME280"].select(bme_columns))
        pms_zip = next(f.path for f in first.files if f.sensor_type == "pms5003")
        with zipfile.ZipFile(pms_zip) as opened:
            body = opened.read(f"{KEY}_pms5003.csv")
        read = pa_csv.read_csv(io.BytesIO(body), parse_options=pa_csv.ParseOptions(delimiter=";"))
        assert read.num_rows == archive.tables["PMS5003"].num_rows


def test_named_types_are_matched_in_any_case_and_unknown_ones_reported_missing(tmp_path: Path, session) -> None:
    with local_month_archive(MONTH, sensors_per_type=1, days=1) as archive:
        only_parquet = fetch_month(archive.url, MONTH, ["SDS011"], tmp_path, session=session)
        assert [f.sensor_type for f in only_parquet.files] == ["sds011", "sds011"]
        # Every named type had Parquet: the csv_per_month index was not needed, so not read.
        assert not [u for u in only_parquet.listing_urls if "csv_per_month" in u]
        mixed = fetch_month(archive.url, MONTH, ["sds011", "Pms5003", "DHT22"], tmp_path, session=session)
        assert (mixed.types_from_zip, mixed.types_missing) == (["pms5003"], ["dht22"])
        assert sorted({(f.sensor_type, f.kind) for f in mixed.files}) == [("pms5003", "csv_zip"), ("sds011", "parquet")]
        assert mixed.downloaded == 1  # the SDS011 parts were already in the lake
        assert mixed.listing_urls == [f"{archive.url}/parquet/{KEY}/", f"{archive.url}/parquet/{KEY}/sds011/",
                                      f"{archive.url}/csv_per_month/{KEY}/"]


def test_the_same_readings_come_from_the_month_and_from_the_daily_files(tmp_path: Path, session) -> None:
    with local_month_archive(MONTH, sensors_per_type=2, days=2, seed=3) as archive:
        monthly = fetch_month(archive.url, MONTH, ["sds011"], tmp_path, session=session)
        ids = sorted(set(archive.tables["SDS011"]["sensor_id"].to_pylist()))
        daily: list[pa.Table] = []
        for day in archive.days:
            fetched = fetch_day(archive.url, day, ids, tmp_path, session=session)
            assert fetched.sensors_without_file == []
            options = pa_csv.ParseOptions(delimiter=";")
            daily += [pa_csv.read_csv(p, parse_options=options, convert_options=pa_csv.ConvertOptions(
                column_types={"P1": pa.string(), "P2": pa.string(), "timestamp": pa.string()}))
                for p in lake_files(tmp_path, day)]
        columns = ["sensor_id", "timestamp", "P1", "P2"]
        from_days = _text_rows(pa.concat_tables([t.select(columns) for t in daily]))
        assert _parquet_rows([f.path for f in monthly.files], columns) == from_days
        assert len(from_days) == archive.tables["SDS011"].num_rows


def test_a_month_without_parquet_comes_from_the_zips_and_a_month_in_neither_place_fails(tmp_path: Path,
                                                                                          session) -> None:
    table = month_readings(MONTH, 1, 1, sensor_type="PMS5003")
    body = write_month_zip(table, tmp_path / "src" / f"{KEY}_pms5003.zip").read_bytes()
    with local_http_server() as server:
        server.no_handler_status_code = 404
        url = server.url_for("").rstrip("/")
        serve_folder(server, f"/csv_per_month/{KEY}/", {f"{KEY}_pms5003.zip": body}, ["2015-10_notes.txt"], {})
        fetched = fetch_month(url, MONTH, None, tmp_path / "raw", session=session)
        assert fetched.types_listed == [] and fetched.types_from_zip == ["pms5003"]
        assert [(f.kind, f.path.read_bytes() == body) for f in fetched.files] == [("csv_zip", True)]

        with pytest.raises(ArchiveFetchError) as raised:
            fetch_month(url, date(2015, 11, 1), None, tmp_path / "raw", session=session)
        assert raised.value.permanent
        assert f"{url}/parquet/2015-11/" in str(raised.value) and f"{url}/csv_per_month/2015-11/" in str(raised.value)


def test_error_pages_and_wrong_magic_are_not_stored_and_the_other_files_are(tmp_path: Path, session) -> None:
    table = month_readings(MONTH, 1, 1)
    good_parts = write_spark_parquet(table, tmp_path / "src" / "sds011")
    zip_body = write_month_zip(table, tmp_path / "src" / "z.zip").read_bytes()
    raw = tmp_path / "raw"
    with local_http_server() as server:
        server.no_handler_status_code = 404
        url = server.url_for("").rstrip("/")
        serve_folder(server, f"/parquet/{KEY}/", {}, ["sds011/", "bme280/", "dht22/", "sps30/"], {})
        serve_folder(server, f"/parquet/{KEY}/sds011/", {p.name: p.read_bytes() for p in good_parts}, [], {})
        serve_folder(server, f"/parquet/{KEY}/bme280/", {"part-00000-x-c000.snappy.parquet": b"sensor_id;P1\r\n"},
                     ["_SUCCESS"], {})
        serve_folder(server, f"/parquet/{KEY}/dht22/", {"_SUCCESS": b""}, [], {})  # a folder without parts
        server.expect_request(f"/parquet/{KEY}/sps30/part-00000-y-c000.snappy.parquet").respond_with_data(
            HTML_ERROR_PAGE, status=200, content_type="text/html")
        server.expect_request(f"/parquet/{KEY}/sps30/").respond_with_data(
            index_page(f"/parquet/{KEY}/sps30/", ["part-00000-y-c000.snappy.parquet"]), content_type="text/html")
        serve_folder(server, f"/csv_per_month/{KEY}/", {f"{KEY}_dht22.zip": zip_body,
                                                        f"{KEY}_sds011.zip": b"not a zip"}, [], {})

        with pytest.raises(ArchiveFetchError) as raised:
            fetch_month(url, MONTH, None, raw, session=session, concurrency=2)
        # The first failure in order (bme280's part: not Parquet) is raised, naming its URL; every other file
        # was still attempted, and only the good ones were stored.
        assert f"{url}/parquet/{KEY}/bme280/part-00000-x-c000.snappy.parquet" in str(raised.value)
        assert "b'PAR1'" in str(raised.value)
        assert _stored_names(raw) == sorted([f"dht22/{KEY}_dht22.zip", *(f"sds011/{p.name}" for p in good_parts)])

        with pytest.raises(ArchiveFetchError) as raised:
            fetch_month(url, MONTH, ["sps30"], raw, session=session)
        assert "HTML page instead of Parquet" in str(raised.value)
        assert f"{url}/parquet/{KEY}/sps30/part-00000-y-c000.snappy.parquet" in str(raised.value)

        with pytest.raises(ArchiveFetchError) as raised:
            fetch_month(url, date(2015, 10, 20), ["bme280"], raw, session=session)  # any day names its month
        assert "bme280/part-00000-x-c000.snappy.parquet" in str(raised.value)
        assert "sps30" not in _stored_names(raw) and not (month_lake_dir(raw, MONTH) / "bme280").exists()


def test_a_zip_that_is_not_a_zip_fails_naming_its_url(tmp_path: Path, session) -> None:
    with local_http_server() as server:
        server.no_handler_status_code = 404
        url = server.url_for("").rstrip("/")
        serve_folder(server, f"/csv_per_month/{KEY}/", {f"{KEY}_sds011.zip": b"sensor_id;sensor_type\r\n"}, [], {})
        with pytest.raises(ArchiveFetchError, match=rf"csv_per_month/{KEY}/{KEY}_sds011\.zip is not a zip file"):
            fetch_month(url, MONTH, ["sds011"], tmp_path, session=session)
        assert _stored_names(tmp_path) == []


def test_a_truncated_part_file_starts_like_parquet_so_it_is_stored_and_its_reader_must_fail(tmp_path: Path,
                                                                                              session) -> None:
    with local_month_archive(MONTH, sensors_per_type=1, days=1, corrupt=True) as archive:
        fetched = fetch_month(archive.url, MONTH, ["sds011"], tmp_path, session=session)
        cut = next(f for f in fetched.files if archive.corrupt_path.endswith(f"/{f.name}"))
        assert cut.path.read_bytes().startswith(b"PAR1")
        with pytest.raises(pa.ArrowInvalid):
            pq.read_table(cut.path)
        whole = [f for f in fetched.files if f is not cut]
        assert pc.sum(pa.array([pq.read_metadata(f.path).num_rows for f in whole])).as_py() > 0
