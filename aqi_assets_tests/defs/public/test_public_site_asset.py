"""The `public_site` asset: in the code location with its automation, materialised on a real DuckDB history,
written locally and published to a local moto S3 over HTTP, configured from the environment."""

from __future__ import annotations

import gzip
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import dagster as dg
import pytest

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.public.assets import public_site
from aqi_assets.defs.public.resources import PUBLIC_SITE_ENV, PublicSiteResource, public_resources
from aqi_assets.lib.public_site.build import POINTER, read_pointer
from aqi_assets_tests.support.moto_server import threaded_moto_server
from aqi_assets_tests.support.site_data import ingest_hours, outdoor_pm_sensors


def test_public_site_is_in_the_code_location_and_follows_aqi_readings() -> None:
    from aqi_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    node = graph.get(dg.AssetKey("public_site"))
    assert node.group_name == "public"
    assert dg.AssetKey("aqi_readings") in node.parent_keys
    # Rebuilt as soon as aqi_readings changes, but never from readings a blocking check has just failed.
    assert node.automation_condition == (
        dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    )


def test_resource_reads_its_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in PUBLIC_SITE_ENV.values():
        monkeypatch.delenv(name, raising=False)
    assert PublicSiteResource().site_dir == "data/site" and not PublicSiteResource().publishing
    monkeypatch.setenv("AQI_SITE_DIR", str(tmp_path / "www"))
    monkeypatch.setenv("AQI_SITE_TILE_URL", "")  # empty counts as unset: the OpenStreetMap default
    storage = AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(tmp_path / "data" / "aqi.duckdb"))
    result = dg.materialize([public_site], resources={"storage": storage, **public_resources()})
    assert result.success
    index = (tmp_path / "www" / "index.html").read_text()
    assert "https://tile.openstreetmap.org" in index and "OpenStreetMap" in index
    assert read_pointer(tmp_path / "www")["features"] == 0, "an empty history gives an empty map, not an error"


def test_materialise_writes_the_site_and_publishes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    end = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0) - timedelta(minutes=3)
    database = tmp_path / "data" / "aqi.duckdb"
    records = ingest_hours(database, n_records=200, end=end, hours=2, work_dir=tmp_path / "snapshots")
    storage = AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(database))
    with threaded_moto_server() as url:
        for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        site = PublicSiteResource(
            site_dir=str(tmp_path / "site"), s3_bucket="public", s3_prefix="map", s3_endpoint_url=url, tile_url=""
        )
        client = site.s3_client()
        client.create_bucket(Bucket="public")
        result = dg.materialize([public_site], resources={"storage": storage, "public_site": site})
        assert result.success
        metadata = result.asset_materializations_for_node("public_site")[0].metadata
        pointer = read_pointer(tmp_path / "site")
        assert metadata["features"].value == len(outdoor_pm_sensors(records)) == pointer["features"]
        assert metadata["s3_uploaded"].value >= pointer["features"] + 3
        published = json.loads(gzip.decompress(client.get_object(Bucket="public", Key=f"map/{POINTER}")["Body"].read()))
        assert published == pointer
        s3 = boto3.client("s3", endpoint_url=url)
        assert s3.head_object(Bucket="public", Key=f"map/{pointer['latest']}")["ContentType"] == "application/geo+json"
    assert os.access(tmp_path / "site" / "index.html", os.R_OK)
