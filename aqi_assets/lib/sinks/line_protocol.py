"""InfluxDB line protocol: `measurement,tag=v field=1.5,count=3i 1700000000000`.

Hand-written rather than taken from `influxdb_client.Point` because the v1 API path (InfluxDB 1.x) has no
client of its own worth depending on, and both APIs must see byte-identical lines. The escaping rules are
those of the InfluxDB line protocol reference (1.x and 2.x agree):
- measurement: escape commas and spaces;
- tag keys, tag values, field keys: escape commas, equals signs and spaces;
- string field values: double-quoted, with `"` and `\\` escaped;
- no element may contain a newline (the protocol has no escape for it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone

from aqi_assets.lib.common.utc import aware_utc

PRECISIONS: dict[str, int] = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

FieldValue = float | int | bool | str

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": r"\\"})


class LineProtocolError(ValueError):
    """A value that cannot be written as line protocol (the row is recorded as rejected, not lost)."""


def _check_no_newline(kind: str, text: str) -> None:
    if "\n" in text or "\r" in text:
        raise LineProtocolError(f"{kind} {text!r} contains a newline, which line protocol cannot carry")


def escape_measurement(name: str) -> str:
    if not name:
        raise LineProtocolError("measurement name is empty")
    _check_no_newline("measurement", name)
    # A measurement may not start with an unescaped '#' (the line would be read as a comment).
    escaped = name.translate(_MEASUREMENT_ESCAPES)
    return "\\" + escaped if escaped.startswith("#") else escaped


def escape_key(text: str, kind: str = "tag") -> str:
    """Tag key, tag value or field key."""
    if text == "":
        raise LineProtocolError(f"{kind} is empty")
    _check_no_newline(kind, text)
    if text.endswith("\\"):
        # A trailing backslash would escape the separator that follows it.
        raise LineProtocolError(f"{kind} {text!r} ends with a backslash")
    return text.translate(_KEY_ESCAPES)


def format_field_value(value: FieldValue) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field value {value!r} is not finite")
        # repr keeps full precision and always has a '.' or exponent, so InfluxDB reads it as a float.
        return repr(value)
    if isinstance(value, str):
        _check_no_newline("string field value", value)
        return '"' + value.translate(_STRING_ESCAPES) + '"'
    raise LineProtocolError(f"unsupported field value type {type(value).__name__}")


def to_epoch(timestamp: datetime, precision: str) -> int:
    """Integer timestamp at `precision`; naive datetimes are UTC (DuckDB TIMESTAMP columns are)."""
    if precision not in PRECISIONS:
        raise LineProtocolError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    delta = aware_utc(timestamp) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    # Integer arithmetic: float seconds would lose microseconds.
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if precision == "ns":
        return micros * 1_000
    return micros // (1_000_000 // PRECISIONS[precision])


def format_line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    timestamp: datetime,
    precision: str = "ms",
) -> str:
    """One point; tags with None/empty values and fields with None values are left out (sorted tags help
    InfluxDB's index). Raises `LineProtocolError` when nothing is left to write or a value is unwritable."""
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if value is None or value == "":
            continue
        parts.append(f"{escape_key(key, 'tag key')}={escape_key(str(value), 'tag value')}")
    field_parts = [
        f"{escape_key(key, 'field key')}={format_field_value(value)}"
        for key, value in fields.items()
        if value is not None
    ]
    if not field_parts:
        raise LineProtocolError("point has no field values")
    return f"{','.join(parts)} {','.join(field_parts)} {to_epoch(timestamp, precision)}"
