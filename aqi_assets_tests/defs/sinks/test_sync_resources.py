"""Sync resources refuse a half-made configuration with a message naming what is missing, before any I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.assets import influxdb_readings, timestream_readings
from aqi_assets.defs.sinks.resources import InfluxDBResource, SyncConfigError, TimestreamResource, sync_resources

URL = "http://127.0.0.1:9"  # never contacted: the configuration is refused first


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": URL, "api": "v3", "org": "o", "bucket": "b"}, "AQI_INFLUX_API must be 'v1' or 'v2', not 'v3'"),
        ({"url": URL, "api": "V2", "org": "o", "bucket": "b"}, "AQI_INFLUX_API must be 'v1' or 'v2'"),
        ({"url": URL, "api": "v2", "org": "o"}, "v2 API needs AQI_INFLUX_ORG and AQI_INFLUX_BUCKET"),
        ({"url": URL, "api": "v2", "bucket": "b"}, "v2 API needs AQI_INFLUX_ORG and AQI_INFLUX_BUCKET"),
        ({"url": URL, "api": "v1"}, "v1 API needs AQI_INFLUX_DB"),
        ({"url": URL, "api": "v1", "org": "o", "bucket": "b"}, "v1 API needs AQI_INFLUX_DB"),
        ({"token": "t", "bucket": "b"}, "needs AQI_INFLUX_URL (AQI_INFLUX_TOKEN, AQI_INFLUX_BUCKET set"),
        ({"database": "d", "password": "p"}, "needs AQI_INFLUX_URL (AQI_INFLUX_DB, AQI_INFLUX_PASSWORD set"),
    ],
)
def test_a_half_configured_influxdb_sink_is_refused(settings: dict[str, str], message: str) -> None:
    resource = InfluxDBResource(**settings)
    with pytest.raises(SyncConfigError) as raised:
        resource.check_config()
    assert message in str(raised.value)
    if resource.url:
        with pytest.raises(SyncConfigError):
            resource.sender()  # no sender is built from it either


@pytest.mark.parametrize(
    "settings",
    [{}, {"url": URL, "api": "v2", "org": "o", "bucket": "b"}, {"url": URL, "api": "v1", "database": "d"}],
)
def test_off_or_complete_influxdb_configurations_pass(settings: dict[str, str]) -> None:
    InfluxDBResource(**settings).check_config()


@pytest.mark.parametrize(("settings", "missing"), [({"database": "d"}, "TABLE"), ({"table": "t"}, "DATABASE")])
def test_a_half_configured_timestream_sink_is_refused(settings: dict[str, str], missing: str) -> None:
    resource = TimestreamResource(**settings)
    assert not resource.enabled
    with pytest.raises(SyncConfigError, match=f"AQI_TIMESTREAM_{missing}"):
        resource.check_config()


def error_text(error: Any) -> str:
    """A step failure's message with the messages of its causes (Dagster wraps the asset's exception)."""
    texts = []
    while error is not None:
        texts.append(error.message)
        error = error.cause
    return "\n".join(texts)


def test_an_invalid_aqi_influx_api_from_the_environment_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"AQI_INFLUX_URL": URL, "AQI_INFLUX_API": "v9", "AQI_INFLUX_DB": "aqi"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AQI_TIMESTREAM_TABLE", "readings")  # and a Timestream table without its database
    monkeypatch.delenv("AQI_TIMESTREAM_DATABASE", raising=False)
    db_path = tmp_path / "aqi.duckdb"
    result = dg.materialize(
        [influxdb_readings, timestream_readings],
        resources={"storage": AqiStorage(duckdb_path=str(db_path)), **sync_resources()},
        raise_on_error=False,
    )
    assert not result.success
    failures = {
        event.step_key: error_text(event.event_specific_data.error)
        for event in result.all_events
        if event.event_type_value == "STEP_FAILURE"
    }
    assert "AQI_INFLUX_API must be 'v1' or 'v2', not 'v9'" in failures["influxdb_readings"]
    assert "AQI_TIMESTREAM_DATABASE" in failures["timestream_readings"]
    assert not db_path.exists()  # refused before opening DuckDB
