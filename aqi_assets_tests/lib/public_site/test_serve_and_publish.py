"""The built site served by a real nginx (headers, gzip_static) and published to a local moto S3 over HTTP."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from aqi_assets.lib.public_site.build import INDEX, POINTER, SiteConfig, build_site, read_pointer
from aqi_assets.lib.public_site.files import CACHE_IMMUTABLE, CACHE_POINTER
from aqi_assets.lib.public_site.nginx import serving
from aqi_assets.lib.public_site.publish import publish_site
from aqi_assets.lib.public_site.vendor import check_vendored
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.http import free_port
from aqi_assets_tests.support.moto_server import threaded_moto_server
from aqi_assets_tests.support.site_data import HOURLY_TABLE, ingest_hours, world_readable_dir

END = datetime(2026, 11, 27, 12, 30, 0)


@pytest.fixture(scope="module")
def built_site() -> Iterator[tuple[Path, object]]:
    root = world_readable_dir("aqi-site-serve-")
    try:
        database = root / "aqi.duckdb"
        ingest_hours(database, n_records=120, end=END, hours=3, work_dir=root / "snapshots")
        with readings_connection(database, read_only=True) as connection:
            result = build_site(
                connection, root / "site", SiteConfig(tile_url=""), hourly_table=HOURLY_TABLE, location=None,
                now=END + timedelta(minutes=3),
            )
        yield root / "site", result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_vendored_leaflet_matches_its_manifest() -> None:
    files = check_vendored()
    assert {"leaflet.js", "leaflet.css", "LICENSE"} <= set(files)


@pytest.mark.server
def test_nginx_serves_gzip_copies_with_types_and_cache_rules(built_site) -> None:
    site, result = built_site
    pointer = read_pointer(site)
    with serving(site, free_port()) as server, requests.Session() as http:
        page = http.get(f"{server.url}/", headers={"Accept-Encoding": "gzip"})
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert page.headers["Content-Encoding"] == "gzip" and page.headers["Cache-Control"] == CACHE_POINTER
        assert page.content == (site / INDEX).read_bytes()  # requests decodes the gzip body
        latest = http.get(f"{server.url}/{pointer['latest']}", headers={"Accept-Encoding": "gzip"}, stream=True)
        assert latest.headers["Content-Type"].startswith("application/geo+json")
        assert latest.headers["Content-Encoding"] == "gzip" and latest.headers["Cache-Control"] == CACHE_IMMUTABLE
        assert int(latest.headers["Content-Length"]) == result.latest_gzip_bytes
        assert latest.raw.read() == (site / f"{pointer['latest']}.gz").read_bytes()
        plain = http.get(f"{server.url}/{pointer['latest']}", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers and len(plain.content) == result.latest_bytes
        first_sensor = json.loads(plain.content)["features"][0]["properties"]["id"]
        # A history file exists only as .gz: sent as is with gzip, decompressed by nginx without.
        history = f"{server.url}/{pointer['history']}{first_sensor % pointer['history_shards']}.json"
        zipped = http.get(history, headers={"Accept-Encoding": "gzip"})
        assert zipped.status_code == 200 and zipped.headers["Cache-Control"] == CACHE_IMMUTABLE
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert zipped.headers["Content-Type"].startswith("application/json")
        unzipped = http.get(history, headers={"Accept-Encoding": "identity"})
        assert unzipped.status_code == 200 and "Content-Encoding" not in unzipped.headers
        assert unzipped.content == zipped.content and str(first_sensor) in json.loads(unzipped.content)["sensors"]
        vendor = http.get(f"{server.url}/vendor/leaflet-1.9.4/leaflet.js")
        assert vendor.status_code == 200 and vendor.headers["Cache-Control"] == CACHE_IMMUTABLE
        assert http.get(f"{server.url}/{POINTER}").headers["Cache-Control"] == CACHE_POINTER
        assert http.get(f"{server.url}/missing.json").status_code == 404
    assert server.process.poll() is not None, "nginx stopped (QUIT to its own pid)"


def _s3(url: str):
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}),
    )


def test_publish_to_s3_uploads_gzip_with_headers_and_the_pointer_last(built_site, monkeypatch) -> None:
    site, result = built_site
    with threaded_moto_server() as url:
        client = _s3(url)
        client.create_bucket(Bucket="public-site")
        order: list[str] = []
        client.meta.events.register("before-call.s3.PutObject", lambda params, **_: order.append(params["url_path"]))
        published = publish_site(client, "public-site", site, result.files, prefix="aq/")
        assert order[-2:][0].endswith(f"/aq/{POINTER}") and order[-1].endswith(f"/aq/{INDEX}"), order[-3:]
        assert len(published.uploaded) == len(set(result.files)) + 2
        latest = client.get_object(Bucket="public-site", Key=f"aq/{result.latest_path}")
        assert latest["ContentType"] == "application/geo+json"
        assert latest["ContentEncoding"] == "gzip" and latest["CacheControl"] == CACHE_IMMUTABLE
        assert gzip.decompress(latest["Body"].read()) == (site / result.latest_path).read_bytes()
        index = client.get_object(Bucket="public-site", Key=f"aq/{INDEX}")
        assert index["ContentType"] == "text/html; charset=utf-8" and index["CacheControl"] == CACHE_POINTER
        png = client.get_object(Bucket="public-site", Key="aq/vendor/leaflet-1.9.4/images/layers.png")
        assert png["ContentType"] == "image/png" and "ContentEncoding" not in png
        pointer_body = client.get_object(Bucket="public-site", Key=f"aq/{POINTER}")["Body"].read()
        pointer = json.loads(gzip.decompress(pointer_body))
        sensor_key = f"aq/{pointer['history']}{result.files[2].rsplit('/', 1)[1]}"
        assert client.head_object(Bucket="public-site", Key=sensor_key)["ContentEncoding"] == "gzip"
        # A second publish of the same build re-sends only the pointer and the page.
        order.clear()
        again = publish_site(client, "public-site", site, result.files, prefix="aq/")
        assert again.uploaded == [POINTER, INDEX] and again.skipped == len(set(result.files))
        assert [path.rsplit("/", 1)[-1] for path in order] == [POINTER, INDEX]


def test_a_failed_upload_leaves_the_published_pointer_untouched(built_site) -> None:
    site, result = built_site
    with threaded_moto_server() as url:
        client = _s3(url)
        client.create_bucket(Bucket="public-site")
        client.put_object(Bucket="public-site", Key=POINTER, Body=b'{"old": true}')
        # A file that vanished between build and upload (say, removed by hand): that upload fails.
        with pytest.raises(FileNotFoundError):
            publish_site(client, "public-site", site, [*result.files, "data/vanished.json"], concurrency=2)
        body = client.get_object(Bucket="public-site", Key=POINTER)["Body"].read()
        assert body == b'{"old": true}'
