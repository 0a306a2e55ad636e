"""What a step opens it closes (HTTP sessions, connection pools, boto3 clients), and a half-configured
InfluxDB target fails clearly instead of being silently skipped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
from pytest_httpserver import HTTPServer

import aqi_assets.lib.air_quality.probe as probe_module
import aqi_assets.lib.common.fetch as fetch_module
from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.assets import influxdb_readings, timestream_readings
from aqi_assets.defs.sinks.resources import InfluxDBResource, SyncConfigError, TimestreamResource
from aqi_assets.lib.air_quality.probe import CursorState, probe
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.sinks.influx_writer import V1Sender
from aqi_assets_tests.support.moto_server import threaded_moto_server


class ClosingSpy:
    """Wraps a factory of closable objects and remembers each object made and each close() call."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.made: list[Any] = []
        self.closed: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        made = self.factory(*args, **kwargs)
        real_close = made.close

        def close() -> None:
            self.closed.append(made)
            real_close()

        made.close = close
        self.made.append(made)
        return made


def fill(db_path: Path, count: int) -> None:
    with readings_connection(db_path) as connection:
        insert_readings(connection, synthetic_readings(count, per_sensor=2, seed=3))


def test_probe_closes_the_session_it_made_but_not_a_callers(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/data.json").respond_with_data("[]", headers={"Last-Modified": "Fri, 27 Nov 2026"})
    spy = ClosingSpy(probe_module.probe_session)
    monkeypatch.setattr(probe_module, "probe_session", spy)
    outcome = probe(httpserver.url_for("/data.json"), CursorState(), period="5min")
    assert outcome.detail in ("changed", "empty_body")  # the server answered: the probe really ran
    assert len(spy.made) == 1 and spy.closed == spy.made

    with requests.Session() as callers:
        closed: list[bool] = []
        monkeypatch.setattr(callers, "close", lambda: closed.append(True))
        probe(httpserver.url_for("/data.json"), CursorState(), period="5min", session=callers)
        assert not closed and len(spy.made) == 1  # the caller's session is the caller's to close


def test_download_closes_the_session_it_made(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/data.json").respond_with_data("[]")
    spy = ClosingSpy(fetch_module.build_session)
    monkeypatch.setattr(fetch_module, "build_session", spy)
    result = fetch_module.download(httpserver.url_for("/data.json"), tmp_path, lambda sha, _: f"{sha}.json.gz")
    assert result.body_bytes == 2
    assert len(spy.made) == 1 and spy.closed == spy.made


def test_influxdb_v1_sync_closes_its_connection_pool(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path = tmp_path / "aqi.duckdb"
    fill(db_path, 6)
    httpserver.expect_request("/write", method="POST").respond_with_data("", status=204)
    spy = ClosingSpy(InfluxDBResource.sender)
    monkeypatch.setattr(InfluxDBResource, "sender", lambda self: spy(self))
    resource = InfluxDBResource(url=httpserver.url_for("/").rstrip("/"), api="v1", database="aqi")
    result = dg.materialize(
        [influxdb_readings], resources={"storage": AqiStorage(duckdb_path=str(db_path)), "influxdb": resource}
    )
    assert result.success
    (sender,) = spy.made
    assert isinstance(sender, V1Sender) and spy.closed == [sender]
    assert len(sender.pool.pools) == 0  # no pooled connection left open


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with threaded_moto_server() as endpoint:
        yield endpoint


def test_timestream_sync_closes_its_boto3_client(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path = tmp_path / "aqi.duckdb"
    fill(db_path, 6)
    spy = ClosingSpy(TimestreamResource.client)
    monkeypatch.setattr(TimestreamResource, "client", lambda self: spy(self))
    resource = TimestreamResource(
        database=f"aqi_{uuid.uuid4().hex[:8]}", table="readings", endpoint_url=moto_endpoint,
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
        create_if_missing=True,
    )  # fmt: skip
    result = dg.materialize(
        [timestream_readings], resources={"storage": AqiStorage(duckdb_path=str(db_path)), "timestream": resource}
    )
    assert result.success
    (event,) = result.asset_materializations_for_node("timestream_readings")
    assert event.metadata["records_accepted"].value == 6
    assert len(spy.made) == 1 and spy.closed == spy.made


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"token": "s3cr3t-token", "bucket": "air", "org": "me"},
         "AQI_INFLUX_TOKEN, AQI_INFLUX_ORG, AQI_INFLUX_BUCKET"),
        ({"database": "aqi"}, "AQI_INFLUX_DB"),
        ({"username": "writer", "password": "pw-123456"}, "AQI_INFLUX_USERNAME, AQI_INFLUX_PASSWORD"),
    ],
    ids=["v2-without-url", "v1-database-without-url", "basic-auth-without-url"],
)
def test_a_partly_configured_influxdb_fails_clearly(tmp_path: Path, settings: dict[str, str], named: str) -> None:
    resource = InfluxDBResource(**settings)
    assert not resource.enabled
    with pytest.raises(SyncConfigError, match="needs AQI_INFLUX_URL") as failure:
        resource.check_config()
    assert named in str(failure.value)
    assert "s3cr3t" not in str(failure.value) and "pw-123456" not in str(failure.value)  # names, not values

    db_path = tmp_path / "aqi.duckdb"
    result = dg.materialize(
        [influxdb_readings],
        resources={"storage": AqiStorage(duckdb_path=str(db_path)), "influxdb": resource},
        raise_on_error=False,
    )
    assert not result.success
    failure_event = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    cause = failure_event.event_specific_data.error.cause  # dagster wraps what the step raised
    assert cause.cls_name == "SyncConfigError" and "needs AQI_INFLUX_URL" in cause.message
    assert not result.asset_materializations_for_node("influxdb_readings")
    InfluxDBResource().check_config()  # nothing set at all is simply off
