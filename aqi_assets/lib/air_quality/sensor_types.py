"""What the platform knows about Sensor.Community sensor types, as data.

**Which sensors get an index.** Only sensors that report particulate matter as a mass concentration (µg/m³) get an
air-quality index. The list is the one the official map (maps.sensor.community) draws PM for. Other PM-reporting
types — the PPD42NS, whose airrohr firmware reports P1/P2 as particle counts per 0.01 ft³ — keep their values,
but as text in `other_values` (the `pm*` columns of `aqi_readings` hold µg/m³ only), with NULL indices and
`no_index_reason` saying why.

**Full scale.** A sensor cannot report more than its measuring range: a value at a type's documented full scale
means "saturated", not a concentration. Only full-scale values that the sensor actually reports when it saturates
are listed (the Nova Fitness SDS011 / SDS021 datasheets: 0.0–999.9 µg/m³ for both PM2.5 and PM10). The
Plantower PMS*, Honeywell HPM, Sensirion SPS30 / SEN5x, Tera NextPM and Piera IPS-7100 datasheets give a range
(≈ 0–1000 µg/m³) but no clipping value, so nothing is assumed for them.
"""

from __future__ import annotations

# Upper-case names as they appear in `sensor.sensor_type.name` (compared case-insensitively).
MASS_CONCENTRATION_PM_TYPES: frozenset[str] = frozenset(
    {
        "SDS011",
        "SDS021",
        "PMS1003",
        "PMS3003",
        "PMS5003",
        "PMS6003",
        "PMS7003",
        "HPM",
        "SPS30",
        "SEN5X",
        "NEXTPM",
        "IPS-7100",
    }
)

# The value types that are particulate matter (P0 PM1, P1 PM10, P2 PM2.5, P4 PM4): µg/m³ only for the types above.
PM_VALUE_TYPES: tuple[str, ...] = ("P0", "P1", "P2", "P4")

# Why a PM reading of another type has no index (shown in the UI and stored with the reading).
NOT_MASS_CONCENTRATION_REASON = "sensor type does not report PM as a mass concentration (µg/m³): no index"

# Documented full scale per (upper-case) sensor type and value type: the value the sensor reports when saturated.
FULL_SCALE: dict[str, dict[str, float]] = {
    "SDS011": {"P1": 999.9, "P2": 999.9},
    "SDS021": {"P1": 999.9, "P2": 999.9},
}
# Quarantine reasons for values at (exactly) and beyond a type's full scale.
AT_MEASURING_LIMIT_REASON = "at the sensor's measuring limit"
BEYOND_MEASURING_LIMIT_REASON = "beyond the sensor's measuring limit"


def normalised_type(sensor_type: str | None) -> str:
    return (sensor_type or "").strip().upper()


def is_mass_concentration_pm(sensor_type: str | None) -> bool:
    """True for the sensor types whose P1/P2 values are µg/m³ and may be indexed."""
    return normalised_type(sensor_type) in MASS_CONCENTRATION_PM_TYPES


def mass_concentration_sql_list() -> str:
    """The list as a SQL literal list, for `upper(sensor_type) IN (...)` filters."""
    return ", ".join(f"'{name}'" for name in sorted(MASS_CONCENTRATION_PM_TYPES))


def is_mass_concentration_sql(sensor_type_expression: str) -> str:
    """A SQL expression, never NULL: whether the sensor type in `sensor_type_expression` reports PM in µg/m³."""
    return f"coalesce(upper(trim({sensor_type_expression})) IN ({mass_concentration_sql_list()}), false)"


def full_scale_sql(type_expression: str, value_type_expression: str) -> str:
    """A SQL expression giving the full scale for the (sensor type, value type) pair, NULL when none is known.

    `type_expression` must already be upper-case and trimmed (see `normalised_type`)."""
    clauses = [
        f"WHEN {type_expression} = '{sensor_type}' AND {value_type_expression} = '{value_type}' THEN {limit!r}"
        for sensor_type, limits in sorted(FULL_SCALE.items())
        for value_type, limit in sorted(limits.items())
    ]
    return f"(CASE {' '.join(clauses)} END)::DOUBLE" if clauses else "NULL::DOUBLE"
