"""What the sinks carry of a reading, derived from the contract (`lib.readings.schema.READINGS_COLUMNS`).

A column's `sink` role says what it is in Timestream and InfluxDB, its `sql_type` which Timestream measure type
and InfluxDB field type it gets. No column is named here, so a column added to the contract with a sink role
reaches both sinks with no other edit. `sink_columns()` reads the contract when called (a test extends it);
it is also derived once at import, so a contract the sinks cannot carry fails when the code location loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from aqi_assets.lib.readings import schema
from aqi_assets.lib.readings.schema import Column, SinkRole, columns_where

# DuckDB type → Timestream measure type. Every integer becomes BIGINT (Timestream's only integer type).
TIMESTREAM_TYPES: dict[str, str] = {
    "DOUBLE": "DOUBLE",
    "TINYINT": "BIGINT",
    "SMALLINT": "BIGINT",
    "INTEGER": "BIGINT",
    "BIGINT": "BIGINT",
    "VARCHAR": "VARCHAR",
    "BOOLEAN": "BOOLEAN",
}
# Timestream type → the Python type an InfluxDB field is written as. A DOUBLE column is always written as a
# float (12.0, never 12), so InfluxDB never sees a field change type between points.
FIELD_PYTHON_TYPES: dict[str, type] = {"DOUBLE": float, "BIGINT": int, "VARCHAR": str, "BOOLEAN": bool}

# Timestream naming rules for dimensions and measures (InfluxDB reserves `time` too).
_RESERVED = frozenset({"measure_value", "time", "ts_non_existent_col"})
_RESERVED_PREFIXES = ("ts_", "measure_name")
_MAX_NAME_BYTES = 60
_MAX_MEASURES = 256  # per multi-measure record


class SinkContractError(ValueError):
    """The contract has a column the sinks cannot carry (no type mapping, a reserved name, ...)."""


@dataclass(frozen=True)
class SinkColumns:
    """The sinks' view of `aqi_readings`, everything in table order (the mappings are read-only: shared)."""

    carried: tuple[str, ...]  # read from `aqi_readings` for the sinks: every column with a sink role
    dimensions: tuple[str, ...]  # Timestream dimensions, InfluxDB tags
    measures: Mapping[str, str]  # measure → Timestream type; the InfluxDB fields are the same columns
    fields: Mapping[str, type]  # measure → Python type of its InfluxDB field
    time: str  # the record's time
    version: str  # the Timestream record version (epoch ms): the merge time among the VERSION columns


def _check_name(name: str, role: SinkRole) -> None:
    if name in _RESERVED or name.startswith(_RESERVED_PREFIXES) or len(name.encode()) > _MAX_NAME_BYTES:
        raise SinkContractError(f"column {name!r} ({role.value}) is not a valid Timestream attribute name")


def _derive() -> SinkColumns:
    sql_types = {c.name: c.sql_type for c in schema.READINGS_COLUMNS}

    def sink_type(name: str, role: SinkRole) -> str:
        try:
            return TIMESTREAM_TYPES[sql_types[name]]
        except KeyError:
            raise SinkContractError(
                f"column {name!r} ({role.value}) has SQL type {sql_types[name]!r}, which the sinks cannot carry: "
                f"map it in lib/sinks/columns.py TIMESTREAM_TYPES ({', '.join(TIMESTREAM_TYPES)}) "
                "or give the column no sink role"
            ) from None

    dimensions = columns_where(SinkRole.DIMENSION)
    for name in dimensions:
        sink_type(name, SinkRole.DIMENSION)  # a dimension is sent as text, but only scalars make sense
        _check_name(name, SinkRole.DIMENSION)
    measures = {name: sink_type(name, SinkRole.MEASURE) for name in columns_where(SinkRole.MEASURE)}
    for name in measures:
        _check_name(name, SinkRole.MEASURE)
    if len(measures) > _MAX_MEASURES:
        raise SinkContractError(f"{len(measures)} measures: a Timestream record holds at most {_MAX_MEASURES}")
    # Dimension and measure names are disjoint (a Timestream rule) by construction: one role per column.
    times = columns_where(SinkRole.TIME)
    if len(times) != 1 or sql_types[times[0]] != "TIMESTAMP":
        raise SinkContractError(f"the sinks need exactly one TIMESTAMP column with the time role, not {times}")
    versions = [name for name in columns_where(SinkRole.VERSION) if sql_types[name] == "TIMESTAMP"]
    if len(versions) != 1:
        raise SinkContractError(f"the sinks need exactly one TIMESTAMP column with the version role, not {versions}")
    return SinkColumns(
        carried=columns_where(*SinkRole),
        dimensions=dimensions,
        measures=MappingProxyType(measures),
        fields=MappingProxyType({name: FIELD_PYTHON_TYPES[kind] for name, kind in measures.items()}),
        time=times[0],
        version=versions[0],
    )


_derived: tuple[tuple[Column, ...], SinkColumns] | None = None


def sink_columns() -> SinkColumns:
    """The sinks' columns as the contract says now (derived again only when the contract object changed)."""
    global _derived
    contract = schema.READINGS_COLUMNS
    cached = _derived
    if cached is not None and cached[0] is contract:
        return cached[1]
    derived = _derive()
    _derived = (contract, derived)
    return derived


# At import: a column the sinks cannot carry fails here, with its name, before any sync runs.
SINK_COLUMNS: SinkColumns = sink_columns()
