"""`aqi_readings` rows -> Timestream for LiveAnalytics multi-measure records.

One record per reading: `MeasureName="air_quality"`, `MeasureValueType="MULTI"`, one measure per non-NULL
value. `Version` is the reading's ingest time in epoch milliseconds: a re-sync sends the same record with
the same version (Timestream accepts identical re-sends), and a corrected, re-ingested reading carries a
higher version, which overwrites.

Which columns are dimensions and which measures, and the measure types, come from the contract through
`lib.sinks.columns`, which also checks the naming rules: no reserved names (`time`, `measure_value`, `ts_*`,
`measure_name*`), dimension and measure names disjoint, ≤ 256 measures. Limits respected here (Timestream
quotas): dimension values are non-empty strings; ≤ 2048 bytes of measure values per record; ≤ 15 min in the
future; within the memory-store retention unless the table accepts magnetic-store writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from aqi_assets.lib.common.utc import aware_utc
from aqi_assets.lib.sinks.columns import SINK_COLUMNS, SinkColumns, sink_columns

MEASURE_NAME = "air_quality"
TIME_UNIT = "MILLISECONDS"
MAX_RECORDS_PER_WRITE = 100
MAX_FUTURE = timedelta(minutes=15)
MAX_MEASURE_VALUE_BYTES = 2048

# The contract as imported (readers and tests); a sync reads `sink_columns()` when it runs. Dimensions are
# what a query filters or groups by; coordinates are measures (numbers), not dimensions (strings).
DIMENSION_COLUMNS: tuple[str, ...] = SINK_COLUMNS.dimensions
MEASURE_TYPES: Mapping[str, str] = SINK_COLUMNS.measures


class RecordError(ValueError):
    """A reading that cannot become a valid record (recorded as skipped, never silently dropped)."""


def epoch_ms(timestamp: datetime) -> int:
    """Naive datetimes are UTC (DuckDB TIMESTAMP)."""
    delta = aware_utc(timestamp) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _dimension_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return text if text != "" else None


def _measure_value(name: str, kind: str, value: Any) -> str:
    if kind == "DOUBLE":
        number = float(value)
        if not math.isfinite(number):
            raise RecordError(f"measure {name} is not finite ({value!r})")
        return repr(number)
    if kind == "BIGINT":
        return str(int(value))
    if kind == "BOOLEAN":
        return "true" if value else "false"
    return str(value)


def build_record(reading: Mapping[str, Any], columns: SinkColumns | None = None) -> dict[str, Any]:
    """The full record of one reading (before common attributes are factored out); `columns`: the contract's
    sink columns, `sink_columns()` unless the caller already holds them."""
    columns = columns or sink_columns()
    dimensions = []
    for column in columns.dimensions:
        value = _dimension_value(reading.get(column))
        if value is not None:
            dimensions.append({"Name": column, "Value": value, "DimensionValueType": "VARCHAR"})
    measures = []
    size = 0
    for column, kind in columns.measures.items():
        value = reading.get(column)
        if value is None:
            continue
        text = _measure_value(column, kind, value)
        size += len(text.encode())
        measures.append({"Name": column, "Value": text, "Type": kind})
    if not measures:
        raise RecordError("reading has no values to send")
    if size > MAX_MEASURE_VALUE_BYTES:
        raise RecordError(f"measure values take {size} bytes (limit {MAX_MEASURE_VALUE_BYTES})")
    return {
        "Dimensions": dimensions,
        "MeasureName": MEASURE_NAME,
        "MeasureValueType": "MULTI",
        "MeasureValues": measures,
        "Time": str(epoch_ms(reading[columns.time])),
        "TimeUnit": TIME_UNIT,
        "Version": epoch_ms(reading[columns.version]),
    }


def factor_common_attributes(records: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Move what every record of a batch shares into `CommonAttributes` (smaller requests, same meaning:
    Timestream merges common dimensions into each record and lets record-level values win)."""
    if not records:
        return {}, []
    common: dict[str, Any] = {}
    for key in ("MeasureName", "MeasureValueType", "TimeUnit", "Version"):
        first = records[0].get(key)
        if first is not None and all(r.get(key) == first for r in records):
            common[key] = first
    shared_dims = {(d["Name"], d["Value"]) for d in records[0]["Dimensions"]}
    for record in records[1:]:
        shared_dims &= {(d["Name"], d["Value"]) for d in record["Dimensions"]}
    if shared_dims:  # in the records' own (table) order
        common["Dimensions"] = [d for d in records[0]["Dimensions"] if (d["Name"], d["Value"]) in shared_dims]
    slim = []
    for record in records:
        rest = {k: v for k, v in record.items() if k not in common}
        rest["Dimensions"] = [d for d in record["Dimensions"] if (d["Name"], d["Value"]) not in shared_dims]
        if not rest["Dimensions"]:
            del rest["Dimensions"]
        slim.append(rest)
    return common, slim


def merge_common_attributes(common: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """What Timestream stores for `record` sent with `common` (inverse of `factor_common_attributes`)."""
    merged = {k: v for k, v in common.items() if k != "Dimensions"}
    merged.update({k: v for k, v in record.items() if k != "Dimensions"})
    dims = {d["Name"]: d for d in common.get("Dimensions", [])}
    dims.update({d["Name"]: d for d in record.get("Dimensions", [])})
    merged["Dimensions"] = list(dims.values())
    return merged


@dataclass(frozen=True)
class TableWindow:
    """What a table accepts in time (from `DescribeTable`'s retention and magnetic-store properties)."""

    memory_store_hours: float = 6.0
    magnetic_store_writes: bool = False
    magnetic_store_days: float = 73000.0

    @classmethod
    def from_description(cls, table: Mapping[str, Any]) -> TableWindow:
        retention = table.get("RetentionProperties") or {}
        magnetic = table.get("MagneticStoreWriteProperties") or {}
        return cls(
            memory_store_hours=float(retention.get("MemoryStoreRetentionPeriodInHours", 6)),
            magnetic_store_writes=bool(magnetic.get("EnableMagneticStoreWrites", False)),
            magnetic_store_days=float(retention.get("MagneticStoreRetentionPeriodInDays", 73000)),
        )


def classify_time(timestamp: datetime, now: datetime, window: TableWindow) -> str | None:
    """None when the table accepts a record at `timestamp`, else why not (the reading is skipped)."""
    timestamp, now = aware_utc(timestamp), aware_utc(now)
    if timestamp > now + MAX_FUTURE:
        return "more than 15 minutes in the future"
    if window.magnetic_store_writes:
        if timestamp < now - timedelta(days=window.magnetic_store_days):
            return f"older than the magnetic-store retention ({window.magnetic_store_days:g} days)"
    elif timestamp < now - timedelta(hours=window.memory_store_hours):
        return (
            f"older than the memory-store retention ({window.memory_store_hours:g} h) "
            "and the table does not enable magnetic-store writes"
        )
    return None
