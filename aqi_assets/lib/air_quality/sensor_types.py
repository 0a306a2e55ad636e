"""What the platform knows about Sensor.Community sensor types, as data.

Only sensors that report particulate matter as a mass concentration (µg/m³) get an air-quality index. The list
is the one the official map (maps.sensor.community) draws PM for. Other PM-reporting types — the PPD42NS, whose
airrohr firmware reports P1/P2 as particle counts per 0.01 ft³ — keep their values but get no index.
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

# Why a PM reading of another type has no index (shown in the UI and stored with the reading).
NOT_MASS_CONCENTRATION_REASON = "sensor type does not report PM as a mass concentration (µg/m³): no index"


def normalised_type(sensor_type: str | None) -> str:
    return (sensor_type or "").strip().upper()


def is_mass_concentration_pm(sensor_type: str | None) -> bool:
    """True for the sensor types whose P1/P2 values are µg/m³ and may be indexed."""
    return normalised_type(sensor_type) in MASS_CONCENTRATION_PM_TYPES


def mass_concentration_sql_list() -> str:
    """The list as a SQL literal list, for `upper(sensor_type) IN (...)` filters."""
    return ", ".join(f"'{name}'" for name in sorted(MASS_CONCENTRATION_PM_TYPES))
