"""The three COVID-19 queries as pure functions, against the oracle numbers of the reference document."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from aqi_assets.lib.covid import queries as covid
from aqi_assets.lib.covid.continents import (
    METHOD_BBOX,
    METHOD_NONE,
    METHOD_POLYGON,
    ContinentsError,
    assign_continents,
    load_continents,
)
from aqi_assets_tests.support.covid_fixtures import (
    CONTINENTS_PATH,
    csv_bytes,
    non_numeric_cell_csv,
    renamed_column_csv,
    truncated_csv,
)


@pytest.fixture(scope="module")
def series() -> covid.ConfirmedSeries:
    return covid.parse_confirmed_csv(csv_bytes())


@pytest.fixture(scope="module")
def polygons():
    return load_continents(CONTINENTS_PATH)


@pytest.fixture(scope="module")
def q2(series, polygons) -> covid.WeeklyContinentStats:
    return covid.weekly_continent_stats(series, covid.location_continents(series, polygons))


@pytest.fixture(scope="module")
def q3(series) -> covid.MonthlyClusters:
    return covid.monthly_clusters(series)


# ----------------------------------------------------------------------------------------------- ingestion


def test_parsed_shape(series: covid.ConfirmedSeries) -> None:
    assert series.cumulative.shape == (289, 1143)
    assert series.dates[0] == pd.Timestamp("2020-01-22") and series.dates[-1] == pd.Timestamp("2023-03-09")
    assert int((~series.has_coordinates).sum()) == 2


def test_long_frame_round_trip(series: covid.ConfirmedSeries) -> None:
    frame = covid.to_long_frame(series)
    assert len(frame) == 289 * 1143
    back = covid.from_long_frame(frame.sample(frac=1.0, random_state=3))  # order must not matter
    assert np.array_equal(back.cumulative, series.cumulative)
    assert back.countries.tolist() == series.countries.tolist()
    assert back.locations.tolist() == series.locations.tolist()
    with pytest.raises(covid.CovidCsvError, match="complete"):
        covid.from_long_frame(frame.iloc[:-1])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (truncated_csv, "truncated"),
        (renamed_column_csv, r"header must start with .*Country_Region"),
        (non_numeric_cell_csv, r"non-numeric .* line 3, column '1/31/20': 'n/a'"),
        (lambda data: data.replace(b",1/23/20,", b",1/24/20,", 1), "consecutive days"),
        (lambda data: data.replace(b",1/22/20,", b",Jan 22,", 1), "must be dates"),
        (lambda data: data.replace(b"\n,Albania,41.1533,20.1683,0,", b"\n,Albania,41.1533,20.1683,", 1),
         "line 3 has 1146 fields"),
        (lambda data: data.replace(b",Albania,41.1533,", b",Albania,north,", 1), "invalid Lat"),
        (lambda data: data.replace(b",Albania,", b",Afghanistan,", 1), "duplicated"),
        (lambda data: data.split(b"\n", 1)[0] + b"\n", "no data rows"),
        (lambda data: b"", "empty"),
    ],
)
def test_malformed_csv_fails_with_a_clear_message(mutate, message: str) -> None:
    with pytest.raises(covid.CovidCsvError, match=message):
        covid.parse_confirmed_csv(mutate(csv_bytes()))


# ----------------------------------------------------------------------------------------------- query 1


def test_query1_afghanistan_oracle_and_size(series: covid.ConfirmedSeries) -> None:
    q1 = covid.monthly_mean_daily_cases(series)
    assert len(q1) == 7839 and q1["country"].nunique() == 201
    afghanistan = q1[q1["country"] == "Afghanistan"].head(5)
    assert afghanistan[["year", "month"]].to_numpy().tolist() == [[2020, m] for m in range(1, 6)]
    expected = [0.0, 0.1724137931034483, 5.193548387096774, 55.36666666666667, 430.741935483871]
    assert afghanistan["average"].to_numpy() == pytest.approx(expected, abs=1e-9)


def test_query1_sums_provinces_per_date(series: covid.ConfirmedSeries) -> None:
    q1 = covid.monthly_mean_daily_cases(series)
    australia = q1[(q1["country"] == "Australia") & (q1["year"] == 2020) & (q1["month"] == 3)]
    assert australia["average"].item() == pytest.approx(146.258064516129, abs=1e-9)


def test_query1_agrees_with_a_plain_pandas_groupby(series: covid.ConfirmedSeries) -> None:
    """An independent, slow formulation of the same definition (melt, sum per country-date, diff, mean)."""
    frame = pd.DataFrame(series.cumulative, columns=series.dates)
    frame["country"] = series.countries
    per_date = frame.groupby("country").sum().T  # dates × countries, provinces summed
    daily = per_date.diff().iloc[1:]
    days = pd.DatetimeIndex(daily.index)
    expected = daily.groupby([days.year, days.month]).mean().T.stack([0, 1], future_stack=True)
    q1 = covid.monthly_mean_daily_cases(series).set_index(["country", "year", "month"])["average"]
    expected.index = q1.index
    assert np.allclose(q1.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------- query 2

AFRICA_ORACLE = [("19/01/2020-25/01/2020", 0.0, 0.0, 0, 0)] + [
    (week, 0.0, 0.0, 0, 0)
    for week in (
        "26/01/2020-01/02/2020",
        "02/02/2020-08/02/2020",
        "09/02/2020-15/02/2020",
        "16/02/2020-22/02/2020",
        "23/02/2020-29/02/2020",
    )
] + [
    ("01/03/2020-07/03/2020", 0.02857, 0.16903, 0, 1),
    ("08/03/2020-14/03/2020", 0.65714, 1.73108, 0, 9),
    ("15/03/2020-21/03/2020", 2.74285, 4.53964, 0, 17),
    ("22/03/2020-28/03/2020", 12.62857, 15.33754, 0, 59),
    ("29/03/2020-04/04/2020", 14.97142, 19.31242, 0, 82),
]


def truncate5(value: float) -> float:
    return math.floor(value * 1e5) / 1e5  # the original printed values truncated, not rounded


def test_query2_africa_oracle(q2: covid.WeeklyContinentStats) -> None:
    africa = q2.stats[q2.stats["continent"] == "Africa"].sort_values("week_start").head(11)
    observed = [
        (row.week, truncate5(row.mean), truncate5(row.std), row.min, row.max) for row in africa.itertuples()
    ]
    assert observed == [(w, pytest.approx(m, abs=1e-9), pytest.approx(s, abs=1e-9), lo, hi)
                        for w, m, s, lo, hi in AFRICA_ORACLE]


def test_query2_top100_mix_and_slopes(q2: covid.WeeklyContinentStats) -> None:
    top = q2.top_locations
    assert len(top) == 100
    assert top["continent"].value_counts().to_dict() == {
        "Europe": 34, "Asia": 26, "America": 25, "Oceania": 10, "Africa": 5,
    }
    assert sorted(top.loc[top["continent"] == "Africa", "location"]) == [
        "Botswana", "Mauritius", "Reunion", "Tunisia", "Zimbabwe",
    ]
    assert top["location"].head(5).tolist() == ["Japan", "Korea, South", "Germany", "France", "US"]
    # The reference prints Korea, South as 72.8; the definition gives 72.747 (a double rounding there).
    assert top["slope"].head(5).to_numpy() == pytest.approx([94.3, 72.8, 65.9, 52.2, 44.4], abs=0.06)


def test_query2_weeks_are_sunday_to_saturday(q2: covid.WeeklyContinentStats) -> None:
    starts = pd.DatetimeIndex(q2.stats["week_start"])
    assert set(starts.dayofweek) == {6}  # Sunday
    assert q2.stats.groupby("continent").size().nunique() == 1  # every continent has every week
    # A full week of 5 Africa locations holds 35 values; the first (from 23 Jan) 15.
    africa = q2.stats[q2.stats["continent"] == "Africa"]
    assert africa["n_values"].iloc[0] == 15 and africa["n_values"].iloc[1] == 35


def test_continent_assignment_rules(series: covid.ConfirmedSeries, polygons) -> None:
    frame = covid.location_continents(series, polygons).set_index(["location", "country"])
    assert frame.loc[("France", "France"), ["continent", "method"]].tolist() == ["Europe", METHOD_POLYGON]
    assert frame.loc[("New South Wales", "Australia"), "continent"] == "Oceania"
    assert frame.loc[("Brazil", "Brazil"), "continent"] == "America"
    # Cruise ships sit at (0, 0): no polygon, the Africa box.
    assert frame.loc[("MS Zaandam", "MS Zaandam"), ["continent", "method"]].tolist() == ["Africa", METHOD_BBOX]
    unassigned = frame[frame["method"] == METHOD_NONE].index.get_level_values("location")
    assert sorted(unassigned) == ["Cabo Verde", "Kiribati", "Samoa"]


def test_bounding_box_order_and_antarctica(polygons) -> None:
    # At sea, so only the boxes apply: (lon, lat) in both the Africa and Europe boxes → Africa (tested first).
    continents, methods = assign_continents(np.array([-16.5, 0.0, 175.0]), np.array([35.0, -75.0, -40.0]),
                                            polygons)
    assert continents.tolist() == ["Africa", "Antarctica", "Oceania"]
    assert methods.tolist()[0] == METHOD_BBOX


def test_broken_continents_zip_is_rejected() -> None:
    with pytest.raises(ContinentsError, match="not a zip"):
        load_continents(b"not a zip at all")


# ----------------------------------------------------------------------------------------------- query 3


def test_query3_ranking_oracle(series: covid.ConfirmedSeries) -> None:
    ranking = covid.monthly_slope_ranking(series).ranking
    assert ranking["location"].head(5).tolist() == ["US", "India", "Brazil", "France", "Germany"]
    assert ranking["mean_slope"].head(5).to_numpy() == pytest.approx(
        [187040.7, 99855.6, 73173.5, 55232.2, 49017.4], abs=0.05
    )
    assert ranking["mean_slope"].iloc[49] == pytest.approx(2801.68, abs=0.005)
    assert ranking["location"].iloc[50] == "Morocco"
    assert ranking["mean_slope"].iloc[50] == pytest.approx(2757.46, abs=0.005)
    top50 = set(ranking["location"].head(50))
    assert {"New South Wales", "Victoria"} <= top50


def test_expanding_slope_matches_polyfit() -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(-100, 10_000, size=(3, 12)).astype(np.float64)
    slopes = covid.expanding_ols_slopes(values)
    assert np.all(slopes[:, 0] == 0.0)
    for m in range(1, 12):
        expected = [np.polyfit(np.arange(m + 1), row[: m + 1], 1)[0] for row in values]
        assert slopes[:, m] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_query3_clusters(q3: covid.MonthlyClusters) -> None:
    rows = q3.assignments
    assert len(rows) == 1950
    assert rows[["cluster_own", "cluster_sklearn"]].notna().all().all()
    assert rows.groupby(["location", "country"]).size().eq(39).all()
    january = rows[(rows["year"] == 2020) & (rows["month"] == 1)]
    assert len(january) == 50
    assert (january["monthly_slope"] == 0).all()
    assert january["cluster_own"].nunique() == 1 and january["cluster_sklearn"].nunique() == 1
    later = rows[rows["month_index"] > 0]
    assert later.groupby("month_index")["cluster_own"].nunique().eq(4).all()


def test_query3_optimal_partition_bounds_both_implementations(q3: covid.MonthlyClusters) -> None:
    months = q3.months
    assert len(months) == 39
    for column in ("inertia_own", "inertia_sklearn"):
        slack = 1e-9 * months[column].clip(lower=1.0)
        assert (months["inertia_optimal"] <= months[column] + slack).all(), column
    assert months["adjusted_rand_index"].between(-1.0, 1.0).all()
    assert months.loc[0, "adjusted_rand_index"] == 1.0  # 2020-01: both put everything in one cluster
