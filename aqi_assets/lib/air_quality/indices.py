"""Air-quality indices for particulate matter, vectorised with NumPy.

UK DAQI (COMEAP 2011 / Defra 2013) and US EPA AQI (PM revision effective 6 May 2024). The band tables are
kept as data below; the functions take float arrays (NaN = no valid value) and never loop in Python.
Sensor.Community value types: P1 = PM10, P2 = PM2.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# DAQI: the upper integer bound of indices 1..9 (index 10 is everything above). Non-integer concentrations are
# rounded half up first (Met Office ADAQ convention), i.e. cut points at bound + 0.5.
DAQI_UPPER_BOUNDS: dict[str, tuple[int, ...]] = {
    "pm25": (11, 23, 35, 41, 47, 53, 58, 64, 70),
    "pm10": (16, 33, 50, 58, 66, 75, 83, 91, 100),
}
DAQI_BANDS: tuple[tuple[int, int, str], ...] = (
    (1, 3, "Low"),
    (4, 6, "Moderate"),
    (7, 9, "High"),
    (10, 10, "Very High"),
)


@dataclass(frozen=True)
class EpaTable:
    """One pollutant's breakpoints: concentrations in integer units of `resolution` (after truncation)."""

    resolution_digits: int  # PM2.5: 1 (0.1 µg/m³), PM10: 0 (1 µg/m³)
    concentration_lo: tuple[float, ...]
    concentration_hi: tuple[float, ...]
    index_lo: tuple[int, ...] = (0, 51, 101, 151, 201, 301)
    index_hi: tuple[int, ...] = (50, 100, 150, 200, 300, 500)


EPA_2024: dict[str, EpaTable] = {
    "pm25": EpaTable(
        resolution_digits=1,
        concentration_lo=(0.0, 9.1, 35.5, 55.5, 125.5, 225.5),
        concentration_hi=(9.0, 35.4, 55.4, 125.4, 225.4, 325.4),
    ),
    "pm10": EpaTable(
        resolution_digits=0,
        concentration_lo=(0, 55, 155, 255, 355, 425),
        concentration_hi=(54, 154, 254, 354, 424, 604),
    ),
}
EPA_CATEGORIES: tuple[tuple[int, int, str], ...] = (
    (0, 50, "Good"),
    (51, 100, "Moderate"),
    (101, 150, "Unhealthy for Sensitive Groups"),
    (151, 200, "Unhealthy"),
    (201, 300, "Very Unhealthy"),
    (301, 500, "Hazardous"),
)
EPA_MAX = 500


def _as_float_array(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def daqi_sub_index(concentration: npt.ArrayLike, pollutant: str) -> FloatArray:
    """DAQI 1..10 per value (float array; NaN where the concentration is NaN or negative)."""
    c = _as_float_array(concentration)
    bounds = np.asarray(DAQI_UPPER_BOUNDS[pollutant], dtype=np.float64)
    # x.5 is exact in binary, so comparing against bound + 0.5 is exactly "round half up, then look up".
    index = np.searchsorted(bounds + 0.5, c, side="right").astype(np.float64) + 1.0
    index[~(c >= 0)] = np.nan
    return index


def _label(values: npt.ArrayLike, table: tuple[tuple[int, int, str], ...]) -> npt.NDArray[np.object_]:
    """The name of the (lo, hi, name) row each value falls in; None where NaN or outside every row."""
    v = _as_float_array(values)
    names = np.full(v.shape, None, dtype=object)
    for lo, hi, name in table:
        names[(v >= lo) & (v <= hi)] = name
    return names


def daqi_band(daqi: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """Band name per DAQI value (None where NaN)."""
    return _label(daqi, DAQI_BANDS)


_INT64_SAFE = float(2**62)  # comfortably inside int64, exactly representable as a double


def truncate_decimal(values: npt.ArrayLike, digits: int) -> npt.NDArray[np.int64]:
    """Truncate to `digits` decimals as decimal arithmetic would, returning integer units of 10**-digits.

    `floor(0.29 * 100)` is 28 in floating point; the candidate is corrected against the double nearest to each
    neighbouring decimal, so a value truncates as its shortest decimal representation does. Raises ValueError
    for values that are not finite or whose units do not fit in int64 (a cast would silently wrap them).
    """
    x = _as_float_array(values)
    scale = 10.0**digits
    units = np.floor(x * scale)
    units = np.where((units + 1.0) / scale <= x, units + 1.0, units)
    units = np.where(units / scale > x, units - 1.0, units)
    if not np.all(np.abs(units) < _INT64_SAFE):  # also false for NaN and ±inf
        raise ValueError("truncate_decimal needs finite values within ±9.2e18 units")
    return units.astype(np.int64)


def epa_sub_index(concentration: npt.ArrayLike, pollutant: str) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """US EPA AQI (2024 table) per value and a flag for concentrations beyond the top breakpoint (AQI 500).

    Returns floats with NaN where the concentration is NaN or negative. Any concentration beyond the top
    breakpoint (also +inf or 1e30) is AQI 500 with the flag set.
    """
    table = EPA_2024[pollutant]
    c = _as_float_array(concentration)
    valid = c >= 0
    scale = 10**table.resolution_digits
    lo = np.round(np.asarray(table.concentration_lo) * scale).astype(np.int64)
    hi = np.round(np.asarray(table.concentration_hi) * scale).astype(np.int64)
    # Cap far above the top breakpoint before converting to integer units: inf or 1e19 would overflow int64
    # (and wrap to a small or negative number); the cap is still "beyond", so the result is unchanged.
    cap = 10.0 * (hi[-1] + 1) / scale
    units = truncate_decimal(np.where(valid, np.minimum(c, cap), 0.0), table.resolution_digits)
    i_lo = np.asarray(table.index_lo, dtype=np.int64)
    i_hi = np.asarray(table.index_hi, dtype=np.int64)
    row = np.clip(np.searchsorted(lo, units, side="right") - 1, 0, len(lo) - 1)
    beyond = valid & (units > hi[-1])
    # Integer arithmetic for the linear interpolation makes "round half up" exact:
    # AQI = i_lo + (i_hi - i_lo) * (c - bp_lo) / (bp_hi - bp_lo).
    numerator = (i_hi[row] - i_lo[row]) * (units - lo[row])
    denominator = hi[row] - lo[row]
    aqi = i_lo[row] + (2 * numerator + denominator) // (2 * denominator)
    result = np.where(beyond, EPA_MAX, aqi).astype(np.float64)
    result[~valid] = np.nan
    return result, beyond


def epa_category(aqi: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """Category name per US AQI value (None where NaN)."""
    return _label(aqi, EPA_CATEGORIES)


def overall(*sub_indices: FloatArray) -> FloatArray:
    """The highest sub-index per row, NaN only where every sub-index is NaN."""
    stacked = np.vstack([_as_float_array(s) for s in sub_indices])
    all_missing = np.all(np.isnan(stacked), axis=0)
    filled = np.where(np.isnan(stacked), -np.inf, stacked)
    result = filled.max(axis=0)
    result[all_missing] = np.nan
    return result


def compute_indices(pm25: npt.ArrayLike, pm10: npt.ArrayLike) -> dict[str, np.ndarray]:
    """All index columns of `aqi_readings` from PM2.5 (P2) and PM10 (P1) arrays."""
    daqi_pm25 = daqi_sub_index(pm25, "pm25")
    daqi_pm10 = daqi_sub_index(pm10, "pm10")
    daqi = overall(daqi_pm25, daqi_pm10)
    aqi_pm25, beyond_pm25 = epa_sub_index(pm25, "pm25")
    aqi_pm10, beyond_pm10 = epa_sub_index(pm10, "pm10")
    aqi = overall(aqi_pm25, aqi_pm10)
    has_aqi = ~np.isnan(aqi)
    beyond = np.where(has_aqi, beyond_pm25 | beyond_pm10, False)
    return {
        "daqi_pm25": daqi_pm25,
        "daqi_pm10": daqi_pm10,
        "daqi": daqi,
        "daqi_band": daqi_band(daqi),
        "aqi_us_pm25": aqi_pm25,
        "aqi_us_pm10": aqi_pm10,
        "aqi_us": aqi,
        "aqi_us_category": epa_category(aqi),
        "aqi_us_beyond": np.where(has_aqi, beyond, None),
    }
