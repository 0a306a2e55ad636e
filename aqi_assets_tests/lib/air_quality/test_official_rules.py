"""The rules that decide which hours and which day count for the official indices, one test per rule (each
failed on the code before them): NowCast in an hour without readings, the local standard-time day, valid hours
(>= 9 of 12 five-minute slots), feeds combined by coverage, outdoor air only, exact truncation. Plus properties:
a feed covering fewer slots and indoor sensors change nothing; and the local day across zones on a day when
clocks change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aqi_assets.lib.air_quality.aggregate_checks import check_daily_partition, check_hourly_partition
from aqi_assets.lib.air_quality.aggregates import (
    AGGREGATES_SCHEMA,
    AQI_DAILY,
    AQI_HOURLY,
    DAY_BASIS_LOCAL,
    DAY_BASIS_UTC,
    daily_indices,
    hourly_indices,
    truncated,
)
from aqi_assets.lib.common.duckdb_tables import replace_partition
from aqi_assets.lib.readings.history import attach_history
from aqi_assets.lib.readings.periods import ARCHIVE, FIVE_MINUTE
from aqi_assets.lib.readings.schema import ensure_schema

FIVE_MIN = FIVE_MINUTE.name

D = datetime(2025, 1, 15)  # winter: every zone below is on its standard time anyway
HOUR = timedelta(hours=1)


@pytest.fixture
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as conn:
        ensure_schema(conn)
        attach_history(conn, None)
        yield conn


def insert(connection: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    """rows: (period, sensor_id, timestamp, pm25, pm10, indoor, latitude, longitude)."""
    if not rows:
        return
    connection.executemany(
        'INSERT INTO aqi_readings (period, sensor_id, "timestamp", country, latitude, longitude, indoor, '
        "sensor_type, pm25, pm10, snapshot, ingested_at, ingest_seq) "
        "VALUES (?, ?, ?, 'XX', ?, ?, ?, 'SDS011', ?, ?, 'test', ?, 1)",
        [(period, sensor, ts, lat, lon, indoor, pm25, pm10, ts) for period, sensor, ts, pm25, pm10, indoor, lat, lon
         in rows],
    )


def hour_rows(sensor: int, hour: datetime, pm25: float | None, pm10: float | None = None, *, slots: int = 12,
              period: str = FIVE_MIN, indoor: bool = False, lat: float | None = 51.5,
              lon: float | None = -0.12) -> list[tuple]:
    """One reading in each of the hour's first ``slots`` 5-minute slots (London unless told: UTC days)."""
    return [(period, sensor, hour + timedelta(minutes=5 * k, seconds=150), pm25, pm10, indoor, lat, lon)
            for k in range(slots)]


def by_sensor(table) -> dict[int, dict]:
    return {row["sensor_id"]: row for row in table.to_pylist()}


def one_hour(connection: duckdb.DuckDBPyConnection, hour: datetime) -> dict[int, dict]:
    return by_sensor(hourly_indices(connection, hour, hour + HOUR))


def one_day(connection: duckdb.DuckDBPyConnection, day: datetime) -> dict[int, dict]:
    return by_sensor(daily_indices(connection, day, day + timedelta(days=1)))


# --- 1. NowCast where it exists, also in an hour without readings --------------------------------------------


def test_nowcast_exists_in_an_hour_without_readings_of_its_own(connection: duckdb.DuckDBPyConnection) -> None:
    # AirNow: 10:00 = 20, 11:00 = 30, nothing at 12:00 → NowCast 26.0 at 12:00 (AQI 82).
    insert(connection, hour_rows(1, D + 10 * HOUR, 20.0) + hour_rows(1, D + 11 * HOUR, 30.0))
    row = one_hour(connection, D + 12 * HOUR)[1]
    assert row["readings"] == 0 and row["pm25_slots"] == 0 and row["pm25_source"] is None
    assert row["pm25_mean"] is None and row["pm10_mean"] is None
    assert row["pm25_nowcast"] == 26.0 and row["aqi_us_nowcast"] == 82
    assert row["latitude"] == 51.5  # the location of the sensor's latest reading before the hour
    # 13:00: only 11:00 of the latest three hours is valid: no NowCast, and nothing else to keep a row for.
    assert one_hour(connection, D + 13 * HOUR) == {}


def test_the_24_hour_mean_exists_wherever_18_of_its_hours_are_valid(connection: duckdb.DuckDBPyConnection) -> None:
    for h in range(18):
        insert(connection, hour_rows(1, D + h * HOUR, 12.0))
    rows = hourly_indices(connection, D + 18 * HOUR, D + 24 * HOUR).to_pylist()
    # 18:00 still has a NowCast (16:00 and 17:00 are 2 of its latest 3 hours), 19:00 not; the 24-hour mean lasts
    # until 23:00 (hours 0..17 are 18 of its 24).
    assert [(row["hour"].hour, row["pm25_24h"], row["pm25_nowcast"]) for row in rows] == [
        (18, 12.0, 12.0), (19, 12.0, None), (20, 12.0, None), (21, 12.0, None), (22, 12.0, None), (23, 12.0, None)
    ]
    assert [row["daqi_24h"] for row in rows] == [2] * 6  # 12 µg/m³: DAQI 2


# --- 2. The daily AQI on the sensor's local standard-time day ------------------------------------------------


def test_the_daily_aqi_is_on_the_sensors_local_standard_day(connection: duckdb.DuckDBPyConnection) -> None:
    # Los Angeles (UTC-8): its day D is UTC [D 08:00, D+1 08:00). PM2.5 40 over exactly that day, 5 around it.
    la = {"lat": 34.05, "lon": -118.24}
    for h in range(-12, 48):
        value = 40.0 if 8 <= h < 32 else 5.0
        insert(connection, hour_rows(1, D + h * HOUR, value, **la))
    row = one_day(connection, D)[1]
    assert row["time_zone"] == "America/Los_Angeles" and row["utc_offset_hours"] == -8
    assert row["day_basis"] == DAY_BASIS_LOCAL
    assert row["hours"] == row["pm25_hours"] == 24 and row["pm25_mean"] == 40.0
    assert row["aqi_us_daily"] == 112  # the UTC day (8 hours at 5, 16 at 40: 28.3) would give 87


def test_a_reading_without_coordinates_does_not_move_a_located_sensor_to_utc(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    la = {"lat": 34.05, "lon": -118.24}
    for h in range(8, 32):
        insert(connection, hour_rows(1, D + h * HOUR, 40.0, **la))
    insert(connection, hour_rows(1, D + 33 * HOUR, 40.0, lat=None, lon=None))  # the latest readings lack them
    insert(connection, hour_rows(2, D + 10 * HOUR, 40.0, lat=None, lon=None))  # never located: UTC, and says so
    rows = one_day(connection, D)
    assert (rows[1]["time_zone"], rows[1]["utc_offset_hours"], rows[1]["hours"]) == ("America/Los_Angeles", -8, 24)
    assert (rows[2]["time_zone"], rows[2]["utc_offset_hours"], rows[2]["day_basis"]) == (None, 0, DAY_BASIS_UTC)


def test_a_sensor_moved_after_its_day_keeps_the_zone_of_its_day(connection: duckdb.DuckDBPyConnection) -> None:
    # Its whole Los Angeles day at 40, then it reports from London from D+1 09:00 UTC on.
    for h in range(8, 32):
        insert(connection, hour_rows(1, D + h * HOUR, 40.0, lat=34.05, lon=-118.24))
    for h in range(33, 36):
        insert(connection, hour_rows(1, D + h * HOUR, 5.0))
    row = one_day(connection, D)[1]
    assert (row["time_zone"], row["utc_offset_hours"], row["hours"], row["aqi_us_daily"]) == (
        "America/Los_Angeles", -8, 24, 112)
    assert (row["latitude"], row["longitude"]) == (34.05, -118.24)  # where it was on its day


# --- 3. Valid hours: >= 9 of the 12 five-minute slots --------------------------------------------------------


def test_an_hour_needs_9_of_its_12_slots(connection: duckdb.DuckDBPyConnection) -> None:
    insert(connection, hour_rows(1, D, 20.0, slots=9) + hour_rows(2, D, 20.0, slots=8))
    # Nine readings in one slot are one slot.
    insert(connection, [(FIVE_MIN, 3, D + timedelta(minutes=1, seconds=s * 20), 20.0, None, False, 51.5, -0.12)
                        for s in range(9)])
    rows = one_hour(connection, D)
    assert rows[1]["pm25_slots"] == 9 and rows[1]["pm25_mean"] == 20.0
    assert rows[2]["pm25_slots"] == 8 and rows[2]["pm25_mean"] is None and rows[2]["readings"] == 8
    assert rows[3]["pm25_slots"] == 1 and rows[3]["pm25_mean"] is None and rows[3]["readings"] == 9


def test_a_day_of_one_reading_per_hour_is_no_valid_day(connection: duckdb.DuckDBPyConnection) -> None:
    for h in range(18):
        insert(connection, hour_rows(1, D + h * HOUR, 18.0, slots=1))  # 18 hours of one reading each
    row = one_day(connection, D)[1]
    assert row["hours"] == 0 and row["pm25_mean"] is None and row["aqi_us_daily"] is None  # was AQI 59
    assert row["daqi_daily"] is None and row["daqi_daily_mean"] is None


# --- 4. Feeds combined by coverage, never by presence --------------------------------------------------------


def test_a_feed_covering_more_slots_makes_the_hour(connection: duckdb.DuckDBPyConnection) -> None:
    # One archived measurement at 10:58 (40) beside twelve 5-minute readings (10): the hour's mean is 10.
    insert(connection, hour_rows(1, D + 10 * HOUR, 10.0))
    insert(connection, [(ARCHIVE, 1, D + 10 * HOUR + timedelta(minutes=58), 40.0, None, False, 51.5, -0.12)])
    row = one_hour(connection, D + 10 * HOUR)[1]
    assert row["pm25_mean"] == 10.0 and row["pm25_source"] == FIVE_MIN and row["pm25_slots"] == 12
    assert row["readings"] == 12  # the archived measurement lost: it is not counted


def test_a_feed_that_lost_never_sets_the_location(connection: duckdb.DuckDBPyConnection) -> None:
    # The archive stores no country: its one late measurement must not blank the hour's country.
    insert(connection, hour_rows(1, D + 10 * HOUR, 10.0))
    connection.execute(
        'INSERT INTO aqi_readings (period, sensor_id, "timestamp", latitude, longitude, indoor, sensor_type, pm25, '
        "snapshot, ingested_at, ingest_seq) VALUES (?, 1, ?, 51.5, -0.12, false, 'SDS011', 40.0, 'a', ?, 1)",
        [ARCHIVE, D + 10 * HOUR + timedelta(minutes=59), D],
    )
    row = one_hour(connection, D + 10 * HOUR)[1]
    assert row["country"] == "XX" and row["pm25_source"] == FIVE_MIN


def test_a_feed_lacking_a_pollutant_never_blanks_it(connection: duckdb.DuckDBPyConnection) -> None:
    # The archive has PM10 only for the hour, the 5-minute feed PM2.5 only: each pollutant from its feed.
    insert(connection, hour_rows(1, D, None, 30.0, period=ARCHIVE) + hour_rows(1, D, 15.0))
    row = one_hour(connection, D)[1]
    assert (row["pm25_mean"], row["pm25_source"]) == (15.0, FIVE_MIN)
    assert (row["pm10_mean"], row["pm10_source"]) == (30.0, ARCHIVE)


def test_the_archive_wins_a_tie_and_the_24h_feed_never_counts(connection: duckdb.DuckDBPyConnection) -> None:
    insert(connection, hour_rows(1, D, 12.0, period=ARCHIVE) + hour_rows(1, D, 99.0))
    insert(connection, hour_rows(2, D, 50.0, period="24h"))
    rows = one_hour(connection, D)
    assert (rows[1]["pm25_mean"], rows[1]["pm25_source"]) == (12.0, ARCHIVE)
    assert 2 not in rows


# --- 5. Outdoor air only -------------------------------------------------------------------------------------


def test_indoor_sensors_never_enter_the_indices(connection: duckdb.DuckDBPyConnection) -> None:
    for h in range(24):
        insert(connection, hour_rows(1, D + h * HOUR, 30.0, indoor=True) + hour_rows(2, D + h * HOUR, 30.0))
    assert set(one_hour(connection, D + 23 * HOUR)) == {2}
    daily = one_day(connection, D)
    assert set(daily) == {2} and daily[2]["aqi_us_daily"] == 90  # the indoor sensor would be AQI 90 as well
    assert daily[2]["indoor"] is False


# --- 6. Exact truncation ----------------------------------------------------------------------------------------


def test_a_mean_of_exactly_5_is_truncated_as_5(connection: duckdb.DuckDBPyConnection) -> None:
    # Hourly means whose decimal mean is exactly 5.0, while their float mean is 4.999999999999999.
    hourly = [5.2, 4.6, 4.1, 5.7, 4.9, 5.4, 5.8, 5.4, 5.8, 4.8, 5.6, 4.9, 5.9, 5.8, 4.2, 4.3, 4.4, 5.9, 4.9, 5.3, 4.6,
              5.0, 4.8, 2.7]
    for h, value in enumerate(hourly):
        insert(connection, hour_rows(1, D + h * HOUR, value))
    means = connection.execute(
        "SELECT time_bucket(INTERVAL 1 HOUR, \"timestamp\") AS hour, avg(pm25) AS mean FROM aqi_readings "
        "GROUP BY hour ORDER BY hour"
    ).fetchnumpy()["mean"]
    assert sum(hourly) == pytest.approx(120.0) and np.sum(means) / 24 < 5.0  # the trap
    row = one_day(connection, D)[1]
    assert row["pm25_mean"] == 5.0 and row["aqi_us_daily_pm25"] == 28  # 4.9 would be AQI 27
    assert truncated([4.999999999999999, 35.49, 9.09], "pm25").tolist() == [5.0, 35.4, 9.0]


# --- The UK DAQI of the day, both ways -------------------------------------------------------------------------


def test_the_day_has_both_daqi_readings(connection: duckdb.DuckDBPyConnection) -> None:
    # A polluted evening before the day: the running mean peaks early in the day, the day's own mean is low.
    for h in range(-24, 24):
        insert(connection, hour_rows(1, D + h * HOUR, 80.0 if h < 0 else 5.0))
    row = one_day(connection, D)[1]
    assert row["daqi_daily"] == 10 and row["daqi_daily_band"] == "Very High"  # 00:00: 23 hours at 80 and one at 5
    assert row["pm25_mean"] == 5.0 and row["daqi_daily_mean"] == 1 and row["daqi_daily_mean_band"] == "Low"


# --- Time zones on a day when clocks change ------------------------------------------------------------------


def test_local_days_across_zones_on_the_day_european_clocks_change(connection: duckdb.DuckDBPyConnection) -> None:
    """30 March 2025: London and Berlin move to summer time at 01:00 UTC (Los Angeles did on 9 March). Each
    sensor is at 40 over exactly its local standard-time day and at 5 around it: every one gets 24 hours at 40."""
    day = datetime(2025, 3, 30)
    sensors = {  # sensor: (lat, lon, standard offset, zone)
        1: (34.05, -118.24, -8, "America/Los_Angeles"),
        2: (51.5, -0.12, 0, "Europe/London"),
        3: (52.52, 13.40, 1, "Europe/Berlin"),
        4: (35.68, 139.69, 9, "Asia/Tokyo"),
        5: (None, None, 0, None),
    }
    for sensor, (lat, lon, offset, _) in sensors.items():
        for h in range(-14 - 23, 24 + 12):
            inside = -offset <= h < 24 - offset
            insert(connection, hour_rows(sensor, day + h * HOUR, 40.0 if inside else 5.0, lat=lat, lon=lon))
    table = daily_indices(connection, day, day + timedelta(days=1))
    rows = by_sensor(table)
    assert set(rows) == set(sensors)
    for sensor, (_, _, offset, zone) in sensors.items():
        row = rows[sensor]
        assert (row["time_zone"], row["utc_offset_hours"]) == (zone, offset), sensor
        assert row["day_basis"] == (DAY_BASIS_LOCAL if zone else DAY_BASIS_UTC)
        assert row["hours"] == 24 and row["pm25_mean"] == 40.0 and row["aqi_us_daily"] == 112, sensor
    # The stored partition passes its blocking checks, which window each row by its stored offset.
    span = (day, day + timedelta(days=1))
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_DAILY, table, "day", span)
    outcomes = check_daily_partition(connection, *span)
    assert all(outcome.passed and outcome.checked_rows == 5 for outcome in outcomes.values()), outcomes


# --- Properties ----------------------------------------------------------------------------------------------

hour_plan = st.lists(
    st.tuples(st.integers(0, 12), st.floats(0, 300, allow_nan=False).map(lambda v: round(v, 1))),
    min_size=30, max_size=30,
)


def _fill(connection: duckdb.DuckDBPyConnection, plan: list[tuple[int, float]]) -> None:
    for h, (slots, value) in enumerate(plan):
        insert(connection, hour_rows(1, D + h * HOUR, value, value / 2, slots=slots))


def _tables(connection: duckdb.DuckDBPyConnection) -> tuple[list[dict], list[dict]]:
    hours = hourly_indices(connection, D + 24 * HOUR, D + 30 * HOUR).to_pylist()
    days = daily_indices(connection, D, D + timedelta(days=1)).to_pylist()
    return hours, days


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=hour_plan, fewer=st.lists(st.tuples(st.integers(1, 12), st.floats(0, 300, allow_nan=False)),
                                      min_size=30, max_size=30))
def test_a_feed_covering_fewer_slots_changes_nothing(plan: list[tuple[int, float]],
                                                     fewer: list[tuple[int, float]]) -> None:
    with duckdb.connect() as connection:
        ensure_schema(connection)
        attach_history(connection, None)
        _fill(connection, plan)
        before = _tables(connection)
        for h, ((slots, _), (less, other)) in enumerate(zip(plan, fewer, strict=True)):
            # The archive covers strictly fewer slots of each pollutant (it would win a tie), with other values.
            if slots > 1:
                insert(connection, hour_rows(1, D + h * HOUR, other, other, slots=min(less, slots - 1),
                                             period=ARCHIVE))
        assert _tables(connection) == before


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=hour_plan, indoor=hour_plan)
def test_indoor_sensors_change_nothing(plan: list[tuple[int, float]], indoor: list[tuple[int, float]]) -> None:
    with duckdb.connect() as connection:
        ensure_schema(connection)
        attach_history(connection, None)
        _fill(connection, plan)
        before = _tables(connection)
        for h, (slots, value) in enumerate(indoor):
            insert(connection, hour_rows(7, D + h * HOUR, value, slots=slots, indoor=True))
        assert _tables(connection) == before


def test_hourly_checks_pass_on_gap_rows_and_catch_a_missing_one(connection: duckdb.DuckDBPyConnection) -> None:
    insert(connection, hour_rows(1, D + 10 * HOUR, 20.0) + hour_rows(1, D + 11 * HOUR, 30.0))
    span = (D + 10 * HOUR, D + 14 * HOUR)
    table = hourly_indices(connection, *span)
    assert [row["hour"].hour for row in table.to_pylist()] == [10, 11, 12]
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, table, "hour", span)
    assert all(outcome.passed for outcome in check_hourly_partition(connection, *span).values())
    connection.execute(f"DELETE FROM {AGGREGATES_SCHEMA}.{AQI_HOURLY} WHERE hour = ?", [D + 12 * HOUR])
    completeness = check_hourly_partition(connection, *span)["completeness_rules"]
    assert not completeness.passed and completeness.failing_rows == 1


def test_nothing_before_the_changes(connection: duckdb.DuckDBPyConnection) -> None:
    """An empty history gives empty tables (the local-day lookup has no sensors to place)."""
    assert daily_indices(connection, D, D + timedelta(days=1)).num_rows == 0
    assert hourly_indices(connection, D, D + HOUR).num_rows == 0


def test_a_table_written_before_the_new_columns_takes_them(connection: duckdb.DuckDBPyConnection) -> None:
    """A database kept from the release before these rules: its aqi_hourly lacks the new columns and has the old
    `source`; the next write adds the columns (NULL in the old rows) instead of failing."""
    insert(connection, hour_rows(1, D + 10 * HOUR, 20.0) + hour_rows(1, D + 11 * HOUR, 30.0))
    connection.execute(f"CREATE SCHEMA {AGGREGATES_SCHEMA}")
    connection.execute(
        f"CREATE TABLE {AGGREGATES_SCHEMA}.{AQI_HOURLY} (sensor_id BIGINT, hour TIMESTAMP, source VARCHAR, "
        "pm25_mean DOUBLE, aqi_us_nowcast SMALLINT)"
    )
    connection.execute(f"INSERT INTO {AGGREGATES_SCHEMA}.{AQI_HOURLY} VALUES (9, ?, '5min', 5.0, 28)", [D])
    span = (D + 10 * HOUR, D + 13 * HOUR)
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, hourly_indices(connection, *span), "hour", span)
    rows = connection.execute(
        f"SELECT sensor_id, hour, source, pm25_slots, pm25_nowcast FROM {AGGREGATES_SCHEMA}.{AQI_HOURLY} ORDER BY hour"
    ).fetchall()
    assert rows == [(9, D, "5min", None, None), (1, D + 10 * HOUR, None, 12, None), (1, D + 11 * HOUR, None, 12, 26.0),
                    (1, D + 12 * HOUR, None, 0, 26.0)]
    assert all(outcome.passed for outcome in check_hourly_partition(connection, *span).values())


def test_the_checks_catch_a_table_computed_by_other_rules(connection: duckdb.DuckDBPyConnection) -> None:
    """Stored rows that break the rules while staying self-consistent (indices matching their concentrations) fail
    `means_match_history`: the UTC day for a Los Angeles sensor, a wrong day's DAQI, a wrong hourly mean, slot count
    or feed."""
    for h in range(-12, 48):
        insert(connection, hour_rows(1, D + h * HOUR, 40.0 if 8 <= h < 32 else 5.0, lat=34.05, lon=-118.24))
    days, hours = (D, D + timedelta(days=1)), (D + 10 * HOUR, D + 12 * HOUR)
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_DAILY, daily_indices(connection, *days), "day", days)
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, hourly_indices(connection, *hours), "hour", hours)
    assert all(o.passed for o in check_daily_partition(connection, *days).values())
    assert all(o.passed for o in check_hourly_partition(connection, *hours).values())
    daily_table, hourly_table = f"{AGGREGATES_SCHEMA}.{AQI_DAILY}", f"{AGGREGATES_SCHEMA}.{AQI_HOURLY}"
    # The old rules' UTC day: 8 hours at 5 and 16 at 40 (28.3), its indices consistent with that mean.
    connection.execute(f"UPDATE {daily_table} SET utc_offset_hours = 0, pm25_mean = 28.333333333, "
                       "aqi_us_daily = 87, aqi_us_daily_pm25 = 87, aqi_us_daily_category = 'Moderate'")
    assert not check_daily_partition(connection, *days)["means_match_history"].passed
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_DAILY, daily_indices(connection, *days), "day", days)
    connection.execute(f"UPDATE {daily_table} SET daqi_daily = 1, daqi_daily_band = 'Low'")
    outcome = check_daily_partition(connection, *days)
    assert not outcome["means_match_history"].passed and outcome["indices_match_concentrations"].passed
    for tampering in ("pm25_mean = 999", "pm25_slots = 1", "pm25_source = 'archive'"):
        replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, hourly_indices(connection, *hours), "hour",
                          hours)
        connection.execute(f"UPDATE {hourly_table} SET {tampering} WHERE hour = ?", [D + 10 * HOUR])
        outcome = check_hourly_partition(connection, *hours)["means_match_history"]
        assert not outcome.passed and outcome.failing_rows == 1, tampering
