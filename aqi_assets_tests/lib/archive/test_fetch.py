"""Fetching archive days from a local archive server into the lake."""

from __future__ import annotations

import gzip
import hashlib
from datetime import date
from pathlib import Path

import pytest

from aqi_assets.lib.archive.fetch import ArchiveFetchError, archive_day_dir, fetch_day, lake_files
from aqi_assets.lib.archive.listing import listed_files, looks_like_html, parse_name
from aqi_assets.lib.common.fetch import build_session
from aqi_assets_tests.support.archive_server import (
    ALL_GOOD_IDS,
    BME280_ID,
    DHT22_ID,
    HTML_ERROR_ID,
    MISSING_ID,
    SDS011_ID,
    index_page,
    local_archive,
)

DAY = date(2025, 10, 15)


@pytest.fixture
def session():
    with build_session(retries=1, backoff_factor=0.01) as s:
        yield s


def test_names_and_index_pages_are_read_like_the_archive_writes_them() -> None:
    parsed = parse_name("2025-10-15_sds011_sensor_82312.csv")
    assert (parsed.day, parsed.sensor_type, parsed.sensor_id) == (DAY, "SDS011", 82312)
    assert parse_name("2017-12-31_dht22_sensor_7.csv.gz").sensor_type == "DHT22"
    assert parse_name("2025-10-15_sds011_sensor_82312_indoor.csv") is None
    assert parse_name("2025-13-40_sds011_sensor_1.csv") is None
    html = index_page("/2025-10-15/", ["2025-10-15_sds011_sensor_1.csv", "2025-10-14_sds011_sensor_2.csv",
                                       "2025-10-15_bme280_sensor_3.csv", "notes.txt"]).decode()
    assert [f.name for f in listed_files(html, DAY)] == [
        "2025-10-15_bme280_sensor_3.csv", "2025-10-15_sds011_sensor_1.csv"
    ]
    assert looks_like_html(b"\n  <!DOCTYPE html><html>") and not looks_like_html(b"sensor_id;sensor_type")


def test_a_day_is_stored_byte_for_byte_and_a_rerun_downloads_nothing(tmp_path: Path, session) -> None:
    with local_archive([DAY]) as archive:
        wanted = [*ALL_GOOD_IDS, MISSING_ID, 424242]
        first = fetch_day(archive.url, DAY, wanted, tmp_path, session=session, concurrency=4)
        assert first.layout == "day"
        assert sorted(f.sensor_id for f in first.stored) == sorted(ALL_GOOD_IDS)
        assert first.not_found == [f"{DAY}_sds011_sensor_{MISSING_ID}.csv"]  # listed, then 404: not an error
        assert first.sensors_without_file == sorted([MISSING_ID, 424242])
        for stored in first.stored:
            published = archive.files[DAY.isoformat()][stored.name]
            assert stored.path.read_bytes() == published
            assert stored.sha256 == hashlib.sha256(published).hexdigest()
        assert not [p for p in archive_day_dir(tmp_path, DAY).iterdir() if p.name.startswith(".")]
        requests_before = len(archive.file_requests())
        again = fetch_day(archive.url, DAY, wanted, tmp_path, session=session)
        assert again.downloaded == 0 and len(again.stored) == len(ALL_GOOD_IDS)
        # Only the 404 file is asked again (it is not in the lake); nothing stored is fetched twice.
        assert archive.file_requests()[requests_before:] == [f"/{DAY}/{DAY}_sds011_sensor_{MISSING_ID}.csv"]
        assert again.fileset_sha256() == first.fileset_sha256()


def test_older_days_come_from_the_yearly_folder_gzipped(tmp_path: Path, session) -> None:
    with local_archive([DAY]) as archive:
        fetched = fetch_day(archive.url, archive.year_day, [SDS011_ID, DHT22_ID], tmp_path, session=session)
        assert fetched.layout == "year"
        assert fetched.listing_url.endswith(f"/{archive.year_day:%Y}/{archive.year_day}/")
        names = [p.name for p in lake_files(tmp_path, archive.year_day)]
        assert names == [f"{archive.year_day}_dht22_sensor_{DHT22_ID}.csv.gz",
                         f"{archive.year_day}_sds011_sensor_{SDS011_ID}.csv.gz"]
        body = gzip.decompress(lake_files(tmp_path, archive.year_day)[1].read_bytes())
        assert body.startswith(b"sensor_id;sensor_type;location;lat;lon;timestamp;P1")


def test_an_html_error_page_with_status_200_fails_naming_the_url(tmp_path: Path, session) -> None:
    with local_archive([DAY]) as archive:
        with pytest.raises(ArchiveFetchError) as failure:
            fetch_day(archive.url, DAY, [BME280_ID, HTML_ERROR_ID], tmp_path, session=session)
        assert f"{archive.url}/{DAY}/{DAY}_sds011_sensor_{HTML_ERROR_ID}.csv" in str(failure.value)
        assert "HTML page instead of CSV" in str(failure.value)
        # The good file of the same day is kept; the HTML body is not in the lake under any name.
        assert [p.name for p in archive_day_dir(tmp_path, DAY).iterdir()] == [f"{DAY}_bme280_sensor_{BME280_ID}.csv"]


def test_a_day_the_archive_does_not_have_fails_clearly(tmp_path: Path, session) -> None:
    with local_archive([DAY]) as archive:
        with pytest.raises(ArchiveFetchError, match="no directory for 2030-01-01") as failure:
            fetch_day(archive.url, date(2030, 1, 1), [SDS011_ID], tmp_path, session=session)
        assert failure.value.permanent
