"""Hourly NowCast, 24-hour DAQI and daily AQI from the history: literal oracles and properties."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aqi_assets.lib.air_quality.aggregate_checks import (
    AggregateTableMissing,
    check_daily_partition,
    check_hourly_partition,
)
from aqi_assets.lib.air_quality.aggregates import (
    AGGREGATES_SCHEMA,
    AQI_DAILY,
    AQI_HOURLY,
    daily_indices,
    hourly_indices,
    mean_with_coverage,
    nowcast,
    truncated,
)
from aqi_assets.lib.air_quality.late_data import hour_runs, latest_ingest_seq, touched_hour_ranges
from aqi_assets.lib.common.duckdb_tables import replace_partition
from aqi_assets.lib.readings.history import attach_history
from aqi_assets.lib.readings.schema import ensure_schema

NAN = math.nan
T0 = datetime(2025, 3, 10)
HOURLY_TABLE = f"{AGGREGATES_SCHEMA}.{AQI_HOURLY}"
DAILY_TABLE = f"{AGGREGATES_SCHEMA}.{AQI_DAILY}"


def window(*values: float) -> np.ndarray:
    """One NowCast window, most recent hour first, padded with NaN to 12 hours."""
    padded = list(values) + [NAN] * (12 - len(values))
    return np.array([padded])


# --- NowCast: literal oracles -------------------------------------------------------------------------------


def test_stable_hours_give_the_plain_12_hour_mean() -> None:
    # max - min small: w = 1 - 1/11 ≈ 0.909 ... use exactly constant values for w = 1.
    assert nowcast(window(*[10.0] * 12))[0] == pytest.approx(10.0)
    # w = 1 - (12 - 11.4) / 12 = 0.95 ... stable but not constant: with w = 1 it would be the mean; check the
    # formula by hand instead: weights 0.95^i.
    values = [12.0, 11.4] * 6
    w = 0.95
    expected = sum(w**i * c for i, c in enumerate(values)) / sum(w**i for i in range(12))
    assert nowcast(window(*values))[0] == pytest.approx(expected, rel=1e-12)


def test_step_change_clamps_the_weight_at_one_half() -> None:
    # 6 recent hours at 40, 6 older at 10: w = 1 - 30/40 = 0.25 → clamped to 0.5.
    values = [40.0] * 6 + [10.0] * 6
    weights = [0.5**i for i in range(12)]
    expected = sum(wt * c for wt, c in zip(weights, values, strict=True)) / sum(weights)
    assert nowcast(window(*values))[0] == pytest.approx(expected, rel=1e-12)
    # By hand: (80·(1 - 0.5^6) + 20·(0.5^6 - 0.5^12)) / (2·(1 - 0.5^12)) = 39.538…
    assert nowcast(window(*values))[0] == pytest.approx(39.53846153846154)


def test_varying_hours_clamp_the_weight_and_truncate() -> None:
    # Most recent first; w = 1 - (30.2 - 10.8) / 30.2 = 0.358 → clamped to 0.5. By hand with weights 0.5^i:
    # Σ 0.5^i·c_i / Σ 0.5^i = 13.477…, truncated to 13.4 µg/m³ (AQI 59).
    hours = [13.2, 14.0, 10.8, 12.9, 16.6, 19.1, 24.8, 26.7, 30.2, 28.1, 22.9, 20.4]
    result = nowcast(np.array([hours]))[0]
    assert result == pytest.approx(13.477362637362639)
    assert truncated([result], "pm25")[0] == 13.4


def test_missing_hours_are_skipped_with_their_weights() -> None:
    # hours 0, 1 and 5 present: w = 1 - (20 - 10)/20 = 0.5; weights 1, 0.5, 0.5^5.
    values = [20.0, 10.0, NAN, NAN, NAN, 10.0]
    expected = (20 + 0.5 * 10 + 0.5**5 * 10) / (1 + 0.5 + 0.5**5)
    assert nowcast(window(*values))[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "values, valid",
    [
        ([5.0, 5.0, NAN, 5.0], True),  # hours 0 and 1 of the latest 3
        ([5.0, NAN, 5.0, 5.0], True),  # hours 0 and 2
        ([NAN, 5.0, 5.0, 5.0], True),  # hours 1 and 2
        ([5.0, NAN, NAN, 5.0, 5.0, 5.0], False),  # only hour 0 of the latest 3
        ([NAN, NAN, 5.0, 5.0, 5.0, 5.0], False),
        ([NAN] * 12, False),
    ],
)
def test_fewer_than_2_of_the_last_3_hours_gives_null(values: list[float], valid: bool) -> None:
    result = nowcast(window(*values))[0]
    assert (not math.isnan(result)) is valid
    if valid:
        assert result == pytest.approx(5.0)


def test_all_zero_hours_give_zero_not_a_division_by_zero() -> None:
    assert nowcast(window(*[0.0] * 12))[0] == 0.0
    assert nowcast(window(0.0, 0.0))[0] == 0.0


def test_nowcast_is_truncated_not_rounded() -> None:
    assert list(truncated([35.49, 0.29, 9.09, NAN], "pm25")[:3]) == [35.4, 0.2, 9.0]
    assert math.isnan(truncated([NAN], "pm25")[0])
    assert list(truncated([54.99, 154.9], "pm10")) == [54.0, 154.0]


@given(
    st.lists(
        st.one_of(st.floats(min_value=0, max_value=800, allow_nan=False), st.just(NAN)), min_size=12, max_size=12
    )
)
def test_nowcast_lies_between_min_and_max_of_its_hours(values: list[float]) -> None:
    result = nowcast(np.array([values]))[0]
    present = [v for v in values if not math.isnan(v)]
    if sum(not math.isnan(v) for v in values[:3]) < 2:
        assert math.isnan(result)
    else:
        assert min(present) - 1e-9 <= result <= max(present) + 1e-9


def test_mean_with_coverage_needs_18_hours() -> None:
    seventeen = np.array([[10.0] * 17 + [NAN] * 7])
    eighteen = np.array([[10.0] * 18 + [NAN] * 6])
    assert math.isnan(mean_with_coverage(seventeen)[0][0]) and mean_with_coverage(seventeen)[1][0] == 17
    assert mean_with_coverage(eighteen)[0][0] == 10.0


# --- From the history (a real DuckDB file) --------------------------------------------------------------------


@pytest.fixture
def connection(tmp_path) -> duckdb.DuckDBPyConnection:
    with duckdb.connect(str(tmp_path / "aqi.duckdb")) as conn:
        ensure_schema(conn)
        attach_history(conn, None)  # nothing pruned: the view is the hot table
        yield conn


def add_hours(
    connection: duckdb.DuckDBPyConnection,
    sensor_id: int,
    hourly_pm25: dict[int, float | None],
    *,
    pm10: float | None = None,
    sensor_type: str = "SDS011",
    per_hour: int = 12,
    period: str = "5min",
    start: datetime = T0,
    indoor: bool = False,
    latitude: float | None = 51.5,  # London: local standard time is UTC, so local days are UTC days
    longitude: float | None = -0.12,
) -> None:
    """Readings for ``sensor_id`` at offsets (hours from ``start``): ``per_hour`` readings, one in each of the
    hour's first ``per_hour`` 5-minute slots (12: a complete hour), whose mean is the given PM2.5 (spread evenly
    from ``value - 1`` to ``value + 1``)."""
    rows = []
    for offset, value in hourly_pm25.items():
        hour = start + timedelta(hours=offset)
        for k in range(per_hour):
            spread = (k - (per_hour - 1) / 2) * 2 / max(per_hour - 1, 1) if value is not None else 0
            pm25 = None if value is None else value + spread
            rows.append((period, sensor_id, hour + timedelta(minutes=5 * k, seconds=150), "GB", latitude, longitude,
                         indoor, sensor_type, pm25, pm10, "test", hour, 1))
    connection.executemany(
        'INSERT INTO aqi_readings (period, sensor_id, "timestamp", country, latitude, longitude, indoor, '
        "sensor_type, pm25, pm10, snapshot, ingested_at, ingest_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def rows_by_sensor(table) -> dict[int, dict]:
    return {row["sensor_id"]: row for row in table.to_pylist()}


def test_hourly_partition_from_readings(connection: duckdb.DuckDBPyConnection) -> None:
    h = 30  # the hour under test: T0 + 30 h
    add_hours(connection, 1, {o: 20.0 for o in range(h - 23, h + 1)}, pm10=30.0)  # stable all day
    add_hours(connection, 2, {h: 40.0, h - 1: 40.0, **{o: 10.0 for o in range(h - 11, h - 1)}})  # step change
    add_hours(connection, 3, {h: 50.0, h - 3: 50.0})  # only 1 of the last 3 hours
    add_hours(connection, 4, {h: 15.0}, sensor_type="PPD42NS")  # counts, not µg/m³: no row
    add_hours(connection, 5, {h: 80.0}, period="24h")  # 24-hour averages are not hourly data
    add_hours(connection, 6, {h: None}, pm10=None)  # every value quarantined: no row
    table = hourly_indices(connection, T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1))
    rows = rows_by_sensor(table)
    assert set(rows) == {1, 2, 3}
    stable = rows[1]
    assert stable["hour"] == T0 + timedelta(hours=h) and stable["readings"] == 12
    assert stable["pm25_mean"] == pytest.approx(20.0) and stable["pm25_nowcast"] == 20.0
    assert stable["pm10_nowcast"] == 30.0
    assert stable["aqi_us_nowcast_pm25"] == 71 and stable["aqi_us_nowcast_pm10"] == 28  # oracle 20.0 → 71
    assert stable["aqi_us_nowcast"] == 71 and stable["aqi_us_nowcast_category"] == "Moderate"
    assert stable["pm25_24h"] == pytest.approx(20.0) and stable["pm25_hours_24h"] == 24
    assert stable["daqi_24h_pm25"] == 2 and stable["daqi_24h_pm10"] == 2 and stable["daqi_24h"] == 2
    assert stable["daqi_24h_band"] == "Low"
    step = rows[2]
    # w = 1 - 30/40 → 0.5: (40 + 20 + 10·(0.5^2 + … + 0.5^11)) / (2·(1 - 0.5^12)) = 32.505… → 32.5
    assert step["pm25_nowcast"] == 32.5
    assert step["aqi_us_nowcast"] == 95  # 51 + (100 - 51)/(35.4 - 9.1)·(32.5 - 9.1) = 94.6 → 95
    assert step["pm25_24h"] is None and step["pm25_hours_24h"] == 12 and step["daqi_24h"] is None
    sparse = rows[3]
    assert sparse["pm25_nowcast"] is None and sparse["aqi_us_nowcast"] is None
    assert sparse["aqi_us_nowcast_category"] is None and sparse["pm25_mean"] == pytest.approx(50.0)


def test_daqi_on_24_hour_means_at_band_edges(connection: duckdb.DuckDBPyConnection) -> None:
    # A constant concentration makes the 24-hour mean exact; Met Office rounding: 11.4 → 1, 11.5 → 2, …
    cases = {11: (11.4, 1), 12: (11.5, 2), 13: (70.4, 9), 14: (70.5, 10)}
    for sensor, (value, _) in cases.items():
        add_hours(connection, sensor, {o: value for o in range(24)})
    add_hours(connection, 15, {o: 1.0 for o in range(24)}, pm10=100.5)
    add_hours(connection, 16, {o: 1.0 for o in range(24)}, pm10=100.4)
    rows = rows_by_sensor(hourly_indices(connection, T0 + timedelta(hours=23), T0 + timedelta(hours=24)))
    for sensor, (value, daqi) in cases.items():
        assert rows[sensor]["pm25_24h"] == pytest.approx(value) and rows[sensor]["daqi_24h"] == daqi, sensor
    assert rows[15]["daqi_24h_pm10"] == 10 and rows[15]["daqi_24h"] == 10 and rows[15]["daqi_24h_band"] == "Very High"
    assert rows[16]["daqi_24h_pm10"] == 9 and rows[16]["daqi_24h_band"] == "High"


def test_daily_completeness_17_versus_18_hours(connection: duckdb.DuckDBPyConnection) -> None:
    add_hours(connection, 1, {o: 12.0 for o in range(17)}, pm10=60.0)
    add_hours(connection, 2, {o: 12.0 for o in range(18)}, pm10=60.0)
    add_hours(connection, 3, {o: float(o) for o in range(24)})  # mean 11.5 exactly
    table = daily_indices(connection, T0, T0 + timedelta(days=1))
    rows = rows_by_sensor(table)
    assert rows[1]["hours"] == 17 and rows[1]["pm25_mean"] is None and rows[1]["aqi_us_daily"] is None
    assert rows[1]["daqi_daily"] is None  # no hour has 18 hours of trailing data either
    assert rows[2]["hours"] == 18 and rows[2]["pm25_mean"] == pytest.approx(12.0)
    # Oracle 12.0 → 56; PM10 60: 51 + (100 - 51)/(154 - 55)·(60 - 55) = 53.5 → 53.
    assert rows[2]["aqi_us_daily_pm25"] == 56 and rows[2]["aqi_us_daily_pm10"] == 53
    assert rows[2]["aqi_us_daily"] == 56 and rows[2]["aqi_us_daily_category"] == "Moderate"
    assert rows[2]["daqi_daily"] == 5  # PM10 60 → DAQI 5 (59–66), from the 24-hour mean at 17:00
    assert rows[2]["day"] == date(2025, 3, 10)
    # 51 + 49/26.3·2.4 = 55.47 → 55
    assert rows[3]["pm25_mean"] == pytest.approx(11.5) and rows[3]["aqi_us_daily"] == 55
    # Trailing means exist from 17:00 (18 hours); the highest is at 23:00: mean of 0..23 = 11.5 → DAQI 2.
    assert rows[3]["daqi_daily"] == 2 and rows[3]["daqi_daily_band"] == "Low"


def test_daily_daqi_is_the_highest_hourly_daqi_24h(connection: duckdb.DuckDBPyConnection) -> None:
    # Two days: a polluted evening before the day lifts the early hours' 24-hour means.
    add_hours(connection, 7, {o: (80.0 if o < 24 else 5.0) for o in range(48)})
    day = rows_by_sensor(daily_indices(connection, T0 + timedelta(days=1), T0 + timedelta(days=2)))[7]
    hourly = hourly_indices(connection, T0 + timedelta(days=1), T0 + timedelta(days=2)).to_pylist()
    assert day["daqi_daily"] == max(row["daqi_24h"] for row in hourly) == 10  # 00:00: mean of 23×80 and 5
    assert day["pm25_mean"] == pytest.approx(5.0) and day["aqi_us_daily"] == 28


@settings(max_examples=30, deadline=None)  # each example builds a DuckDB history
@given(st.lists(st.floats(min_value=0, max_value=500, allow_nan=False), min_size=18, max_size=24))
def test_daily_mean_lies_between_min_and_max_of_hourly_means(hourly: list[float]) -> None:
    with duckdb.connect() as connection:
        ensure_schema(connection)
        attach_history(connection, None)
        add_hours(connection, 1, dict(enumerate(hourly)))
        row = daily_indices(connection, T0, T0 + timedelta(days=1)).to_pylist()[0]
    assert min(hourly) - 1e-9 <= row["pm25_mean"] <= max(hourly) + 1e-9


def test_ranges_and_chunks_agree_with_single_partitions(connection: duckdb.DuckDBPyConnection) -> None:
    rng = np.random.default_rng(3)
    for sensor in range(1, 6):
        add_hours(connection, sensor, {o: float(rng.uniform(0, 90)) for o in range(60) if rng.random() > 0.15},
                  pm10=25.0)
    whole = hourly_indices(connection, T0 + timedelta(hours=24), T0 + timedelta(hours=60))
    one_by_one = [
        hourly_indices(connection, T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1)).to_pylist()
        for h in range(24, 60)
    ]
    assert whole.to_pylist() == [row for part in one_by_one for row in part]
    hours = [row["hour"] for row in whole.to_pylist()]
    assert hours == sorted(hours)  # written in time order


def test_checks_pass_on_computed_partitions_and_catch_a_tampered_row(connection: duckdb.DuckDBPyConnection) -> None:
    rng = np.random.default_rng(5)
    for sensor in range(1, 8):
        add_hours(connection, sensor, {o: float(rng.uniform(0, 120)) for o in range(48) if rng.random() > 0.2},
                  pm10=float(rng.uniform(0, 200)))
    hours = (T0 + timedelta(hours=24), T0 + timedelta(hours=48))
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, hourly_indices(connection, *hours), "hour", hours)
    days = (T0 + timedelta(days=1), T0 + timedelta(days=2))
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_DAILY, daily_indices(connection, *days), "day", days)
    assert all(outcome.passed for outcome in check_hourly_partition(connection, *hours).values())
    assert all(outcome.passed for outcome in check_daily_partition(connection, *days).values())
    sensor, hour = connection.execute(
        f"SELECT sensor_id, hour FROM {HOURLY_TABLE} WHERE pm25_nowcast IS NOT NULL ORDER BY ALL LIMIT 1"
    ).fetchall()[0]
    connection.execute(
        f"UPDATE {HOURLY_TABLE} SET pm25_nowcast = 999, aqi_us_nowcast = 1 WHERE sensor_id = ? AND hour = ?",
        [sensor, hour],
    )
    connection.execute(f"UPDATE {DAILY_TABLE} SET pm25_mean = NULL WHERE sensor_id = 1")
    hourly = check_hourly_partition(connection, *hours)
    assert not hourly["nowcast_within_hourly_range"].passed and hourly["nowcast_within_hourly_range"].failing_rows == 1
    assert not hourly["indices_match_concentrations"].passed
    assert hourly["completeness_rules"].passed
    daily = check_daily_partition(connection, *days)
    assert not daily["completeness_rules"].passed and daily["completeness_rules"].failing_rows == 1


def test_checks_read_the_given_schema_and_fail_on_a_missing_table(connection: duckdb.DuckDBPyConnection) -> None:
    """The checks read the schema they are given (the IO manager's `db_schema`): a table left in the default
    schema is not read instead, and a missing table raises rather than passing on zero checked rows."""
    add_hours(connection, 1, {o: 20.0 + o for o in range(30)}, pm10=25.0)
    hours = (T0 + timedelta(hours=24), T0 + timedelta(hours=30))
    days = (T0, T0 + timedelta(days=1))
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, hourly_indices(connection, *hours), "hour", hours)
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_DAILY, daily_indices(connection, *days), "day", days)
    with pytest.raises(AggregateTableMissing, match=r"official\.aqi_hourly does not exist.*'official'"):
        check_hourly_partition(connection, *hours, schema="official")
    with pytest.raises(AggregateTableMissing, match=r"official\.aqi_daily does not exist"):
        check_daily_partition(connection, *days, schema="official")

    replace_partition(connection, "official", AQI_HOURLY, hourly_indices(connection, *hours), "hour", hours)
    assert all(outcome.passed for outcome in check_hourly_partition(connection, *hours, schema="official").values())
    connection.execute(f"UPDATE official.{AQI_HOURLY} SET aqi_us_nowcast = aqi_us_nowcast + 7")
    official = check_hourly_partition(connection, *hours, schema="official")
    tampered = official["indices_match_concentrations"]
    assert not tampered.passed and tampered.failing_rows == tampered.checked_rows == 6
    # The untouched default table still passes: each call read only its own schema.
    assert all(outcome.passed for outcome in check_hourly_partition(connection, *hours).values())


def test_touched_hours_follow_the_merge_number(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("SELECT nextval('aqi_ingest_seq')")
    before = latest_ingest_seq(connection)
    add_hours(connection, 1, {0: 5.0, 1: 5.0, 5: 5.0})
    connection.execute(f"UPDATE aqi_readings SET ingest_seq = {before + 1}")
    assert touched_hour_ranges(connection, before) == [(T0, T0 + timedelta(hours=2)),
                                                       (T0 + timedelta(hours=5), T0 + timedelta(hours=6))]
    assert touched_hour_ranges(connection, before + 1) == []
    assert hour_runs([]) == []
