"""Line protocol formatting (escaping, types, precision); the real-server round trip is in
test_influxdb_sync.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aqi_assets.lib.sinks.influx_writer import reading_to_line
from aqi_assets.lib.sinks.line_protocol import (
    LineProtocolError,
    escape_key,
    escape_measurement,
    format_field_value,
    format_line,
    to_epoch,
)

T0 = datetime(2024, 3, 1, 12, 30, 15, 123456)


def test_escaping_of_measurement_tags_and_fields() -> None:
    assert escape_measurement("air quality,x") == r"air\ quality\,x"
    assert escape_measurement("a=b") == "a=b"  # '=' needs no escape in a measurement
    assert escape_key("Nova Fitness,SDS=011") == r"Nova\ Fitness\,SDS\=011"
    assert format_field_value('say "hi" \\ bye') == r'"say \"hi\" \\ bye"'


def test_field_types() -> None:
    assert format_field_value(12.0) == "12.0"  # stays a float for InfluxDB
    assert format_field_value(3) == "3i"
    assert format_field_value(True) == "true"
    assert format_field_value(False) == "false"
    assert format_field_value(1e-7) == "1e-07"
    with pytest.raises(LineProtocolError):
        format_field_value(float("nan"))
    with pytest.raises(LineProtocolError):
        format_field_value(float("inf"))


@pytest.mark.parametrize("bad", ["a\nb", "a\rb"])
def test_newlines_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(LineProtocolError):
        escape_key(bad)
    with pytest.raises(LineProtocolError):
        format_field_value(bad)
    with pytest.raises(LineProtocolError):
        escape_measurement(bad)


def test_precision_is_explicit_and_exact() -> None:
    epoch_s = int(datetime(2024, 3, 1, 12, 30, 15, tzinfo=timezone.utc).timestamp())
    assert to_epoch(T0, "s") == epoch_s
    assert to_epoch(T0, "ms") == epoch_s * 1000 + 123
    assert to_epoch(T0, "us") == epoch_s * 1_000_000 + 123456
    assert to_epoch(T0, "ns") == (epoch_s * 1_000_000 + 123456) * 1000
    # An aware datetime in another zone is the same instant (07:30:15-05:00 is 12:30:15 UTC).
    aware = T0.replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=-5)))
    assert aware.hour == 7 and aware.utcoffset() == timedelta(hours=-5)
    assert to_epoch(aware, "ms") == to_epoch(T0, "ms")
    east = T0.replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert to_epoch(east, "us") == to_epoch(T0, "us")
    with pytest.raises(LineProtocolError):
        to_epoch(T0, "m")


def test_format_line_sorts_tags_and_drops_missing_values() -> None:
    line = format_line(
        "air_quality",
        {"sensor_id": "7", "country": None, "b": "x y", "a": ""},
        {"pm25": 4.5, "pm10": None, "daqi": 2, "band": "Low"},
        T0,
        "s",
    )
    assert line == rf'air_quality,b=x\ y,sensor_id=7 pm25=4.5,daqi=2i,band="Low" {to_epoch(T0, "s")}'


def test_point_without_fields_is_an_error() -> None:
    with pytest.raises(LineProtocolError, match="no field"):
        format_line("m", {"t": "1"}, {"a": None}, T0)


def test_reading_to_line_types_follow_the_schema() -> None:
    reading = {
        "period": "5min",
        "sensor_id": 42,
        "timestamp": T0,
        "location_id": 7,
        "country": "DE",
        "sensor_type": "SDS011",
        "indoor": False,
        "pm25": 12,  # an integral value must still be written as a float field
        "pm10": 20.5,
        "daqi": 2,
        "daqi_band": "Low",
        "aqi_us_beyond": False,
        "measurement_id": 99,
    }
    line = reading_to_line(reading, "ms")
    head, fields, stamp = line.split(" ")
    assert head == "air_quality,country=DE,indoor=false,location_id=7,period=5min,sensor_id=42,sensor_type=SDS011"
    assert set(fields.split(",")) == {
        "pm25=12.0",
        "pm10=20.5",
        "daqi=2i",
        'daqi_band="Low"',
        "aqi_us_beyond=false",
        "measurement_id=99i",
    }
    assert int(stamp) == to_epoch(T0, "ms")
