"""The indices against every oracle of ../shared/reference/aqi-standards.md, plus their properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aqi_assets.lib.air_quality.indices import (
    compute_indices,
    daqi_band,
    daqi_sub_index,
    epa_category,
    epa_sub_index,
    truncate_decimal,
)

EPA_PM25_ORACLES = {
    0: 0, 5.0: 28, 9.0: 50, 9.09: 50, 9.1: 51, 12.0: 56, 20.0: 71, 35.4: 100, 35.45: 100, 35.5: 101, 45.0: 124,
    55.4: 150, 55.5: 151, 100.0: 182, 125.4: 200, 125.5: 201, 200.0: 275, 225.4: 300, 225.5: 301, 300.0: 449,
    325.4: 500,
}
EPA_PM10_ORACLES = {
    20: 19, 54: 50, 54.9: 50, 55: 51, 100: 73, 154: 100, 155: 101, 200: 123, 254: 150, 255: 151, 300: 173,
    354: 200, 355: 201, 400: 266, 424: 300, 425: 301, 500: 384, 604: 500,
}
DAQI_ORACLES = [("pm25", 11.4, 1), ("pm25", 11.5, 2), ("pm25", 70.4, 9), ("pm25", 70.5, 10),
                ("pm10", 16.4, 1), ("pm10", 16.5, 2), ("pm10", 100.4, 9), ("pm10", 100.5, 10)]
# Every integer band edge of the DAQI table (COMEAP 2011): (pollutant, concentration, index).
DAQI_TABLE_EDGES = [
    *[("pm25", c, i) for c, i in [(0, 1), (11, 1), (12, 2), (23, 2), (24, 3), (35, 3), (36, 4), (41, 4), (42, 5),
                                  (47, 5), (48, 6), (53, 6), (54, 7), (58, 7), (59, 8), (64, 8), (65, 9), (70, 9),
                                  (71, 10), (500, 10)]],
    *[("pm10", c, i) for c, i in [(0, 1), (16, 1), (17, 2), (33, 2), (34, 3), (50, 3), (51, 4), (58, 4), (59, 5),
                                  (66, 5), (67, 6), (75, 6), (76, 7), (83, 7), (84, 8), (91, 8), (92, 9), (100, 9),
                                  (101, 10), (1000, 10)]],
]


@pytest.mark.parametrize(("concentration", "expected"), EPA_PM25_ORACLES.items())
def test_epa_pm25_oracles(concentration: float, expected: int) -> None:
    aqi, beyond = epa_sub_index([concentration], "pm25")
    assert aqi[0] == expected
    assert not beyond[0]


@pytest.mark.parametrize(("concentration", "expected"), EPA_PM10_ORACLES.items())
def test_epa_pm10_oracles(concentration: float, expected: int) -> None:
    aqi, beyond = epa_sub_index([concentration], "pm10")
    assert aqi[0] == expected
    assert not beyond[0]


@pytest.mark.parametrize(("pollutant", "concentration", "expected"), DAQI_ORACLES + DAQI_TABLE_EDGES)
def test_daqi_oracles_and_band_edges(pollutant: str, concentration: float, expected: int) -> None:
    assert daqi_sub_index([concentration], pollutant)[0] == expected


def test_concentrations_beyond_the_top_breakpoint_give_500_and_a_flag() -> None:
    aqi, beyond = epa_sub_index([325.4, 325.5, 900.0], "pm25")
    assert aqi.tolist() == [500, 500, 500]
    assert beyond.tolist() == [False, True, True]
    aqi10, beyond10 = epa_sub_index([604.9, 605, 1500], "pm10")  # 604.9 truncates to 604
    assert aqi10.tolist() == [500, 500, 500]
    assert beyond10.tolist() == [False, True, True]


def test_truncation_is_decimal_exact() -> None:
    # floor(0.29 * 100) is 28 in binary floating point.
    assert truncate_decimal([0.29, 35.45, 9.09, 9.1, 0.7, 54.9], 2).tolist() == [29, 3545, 909, 910, 70, 5490]
    assert truncate_decimal([9.09, 35.45, 12.0, 0.3], 1).tolist() == [90, 354, 120, 3]


def test_bands_and_categories() -> None:
    assert daqi_band([1, 3, 4, 6, 7, 9, 10, np.nan]).tolist() == [
        "Low", "Low", "Moderate", "Moderate", "High", "High", "Very High", None,
    ]
    assert epa_category([0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500]).tolist() == [
        "Good", "Good", "Moderate", "Moderate", "Unhealthy for Sensitive Groups", "Unhealthy for Sensitive Groups",
        "Unhealthy", "Unhealthy", "Very Unhealthy", "Very Unhealthy", "Hazardous", "Hazardous",
    ]


def test_missing_or_invalid_concentrations_give_no_index() -> None:
    result = compute_indices([np.nan, -1.0, 10.0, np.nan], [np.nan, np.nan, np.nan, 20.0])
    assert np.isnan(result["daqi"][0]) and np.isnan(result["aqi_us"][0])
    assert result["daqi_band"][0] is None and result["aqi_us_category"][0] is None
    assert result["aqi_us_beyond"][0] is None
    assert np.isnan(result["daqi"][1])  # a negative PM2.5 is no index input
    assert result["daqi"][2] == 1 and np.isnan(result["daqi_pm10"][2])  # only PM2.5 → overall from PM2.5
    assert result["aqi_us"][3] == 19 and np.isnan(result["aqi_us_pm25"][3])


def test_p1_is_pm10_and_p2_is_pm25() -> None:
    # 40 µg/m³ is DAQI 4 as PM2.5 but DAQI 3 as PM10: swapping the pollutants (the old defect) would show.
    result = compute_indices(pm25=[40.0], pm10=[20.0])
    assert result["daqi_pm25"][0] == 4 and result["daqi_pm10"][0] == 2 and result["daqi"][0] == 4


concentrations = st.floats(min_value=0, max_value=2000, allow_nan=False, allow_infinity=False)


@given(st.lists(concentrations, min_size=2, max_size=50))
def test_indices_are_monotone_in_concentration(values: list[float]) -> None:
    ordered = np.sort(np.asarray(values))
    for pollutant in ("pm25", "pm10"):
        assert np.all(np.diff(daqi_sub_index(ordered, pollutant)) >= 0)
        assert np.all(np.diff(epa_sub_index(ordered, pollutant)[0]) >= 0)


@given(st.lists(st.one_of(concentrations, st.just(math.nan)), min_size=1, max_size=50),
       st.lists(st.one_of(concentrations, st.just(math.nan)), min_size=1, max_size=50))
def test_indices_stay_in_range_and_overall_is_the_maximum(pm25: list[float], pm10: list[float]) -> None:
    n = min(len(pm25), len(pm10))
    result = compute_indices(pm25[:n], pm10[:n])
    for name, low, high in [("daqi", 1, 10), ("daqi_pm25", 1, 10), ("daqi_pm10", 1, 10),
                            ("aqi_us", 0, 500), ("aqi_us_pm25", 0, 500), ("aqi_us_pm10", 0, 500)]:
        values = result[name][~np.isnan(result[name])]
        assert np.all((values >= low) & (values <= high))
    for overall, a, b in [("daqi", "daqi_pm25", "daqi_pm10"), ("aqi_us", "aqi_us_pm25", "aqi_us_pm10")]:
        expected = np.fmax(result[a], result[b])
        assert np.array_equal(result[overall], expected, equal_nan=True)
    has_pm = ~(np.isnan(pm25[:n]) & np.isnan(pm10[:n]))
    assert np.array_equal(~np.isnan(result["daqi"]), has_pm)


@given(st.integers(min_value=0, max_value=200_000))
def test_truncation_matches_decimal_arithmetic_for_two_decimal_readings(hundredths: int) -> None:
    # Sensor.Community values carry two decimals; their truncation to 0.1 must equal integer division.
    value = float(f"{hundredths // 100}.{hundredths % 100:02d}")
    assert truncate_decimal([value], 1)[0] == hundredths // 10
    assert truncate_decimal([value], 0)[0] == hundredths // 100


HUGE = [math.inf, 1e19, 1e30, 1.7e308]


@pytest.mark.parametrize("pollutant", ["pm25", "pm10"])
def test_huge_or_infinite_concentrations_never_wrap(pollutant: str) -> None:
    # 1e19 µg/m³ is 1e20 units of 0.1: beyond int64, which used to wrap to a negative number and read "Good".
    aqi, beyond = epa_sub_index(HUGE, pollutant)
    assert aqi.tolist() == [500] * len(HUGE)
    assert beyond.tolist() == [True] * len(HUGE)
    assert daqi_sub_index(HUGE, pollutant).tolist() == [10] * len(HUGE)


def test_compute_indices_on_huge_values_reports_hazardous_beyond() -> None:
    result = compute_indices(pm25=[math.inf, 1e19, np.nan, 1e30], pm10=[np.nan, np.nan, 1e30, 5.0])
    assert result["aqi_us"].tolist() == [500, 500, 500, 500]
    assert result["aqi_us_category"].tolist() == ["Hazardous"] * 4
    assert result["aqi_us_beyond"].tolist() == [True] * 4
    assert result["daqi"].tolist() == [10, 10, 10, 10]
    # Negative infinity is no concentration at all.
    assert np.isnan(compute_indices(pm25=[-math.inf], pm10=[np.nan])["aqi_us"][0])


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e19])
def test_truncation_refuses_values_that_would_wrap(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        truncate_decimal([1.0, value], 1)
