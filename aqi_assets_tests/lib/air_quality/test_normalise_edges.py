"""The science at the edges of normalisation: altitude, particle counters, saturated sensors, `indoor` spellings,
zoned clocks, records without values and later copies of a reading (issue 12)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pytest

from aqi_assets.lib.air_quality import checks
from aqi_assets.lib.air_quality.generator import Quirks, generate_records
from aqi_assets.lib.air_quality.indices import compute_indices
from aqi_assets.lib.air_quality.normalise import LATER_COPY_REASON, merge_snapshot, utc_timestamp_sql
from aqi_assets.lib.air_quality.sensor_types import (
    AT_MEASURING_LIMIT_REASON,
    BEYOND_MEASURING_LIMIT_REASON,
    FULL_SCALE,
    MASS_CONCENTRATION_PM_TYPES,
    NOT_MASS_CONCENTRATION_REASON,
    is_mass_concentration_pm,
)
from aqi_assets.lib.readings.schema import MEASUREMENT_COLUMNS, readings_connection
from aqi_assets_tests.lib.air_quality.test_normalise import record, rows, write_snapshot

NOW = datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc)
AT = "2026-11-27 12:00:00"


@pytest.fixture
def history(tmp_path: Path):
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        yield connection


def typed(sensor_id: int, sensor_type: str, values: list[tuple[str, object]], timestamp: str = AT, **extra) -> dict:
    entry = record(sensor_id, timestamp, values, **extra)
    entry["sensor"]["sensor_type"]["name"] = sensor_type
    return entry


def merge(connection: duckdb.DuckDBPyConnection, directory: Path, records: list, name: str = "s.json.gz", **kw):
    return merge_snapshot(connection, write_snapshot(directory, name, records), "5min", now=kw.pop("now", NOW), **kw)


def isa_station_pressure_pa(altitude_m: float) -> float:
    """Station pressure of the ICAO standard atmosphere at `altitude_m` (barometric formula)."""
    return 101_325.0 * (1.0 - 2.25577e-5 * altitude_m) ** 5.25588


# Real places, by altitude: the station pressure a BME280 there reads on an ordinary day.
STATIONS = {
    "Dead Sea shore": -430.0,
    "Amsterdam": 0.0,
    "Munich": 520.0,
    "Denver": 1_609.0,
    "Mexico City": 2_240.0,
    "Quito": 2_850.0,
    "La Paz": 3_640.0,
    "El Alto": 4_150.0,
    "La Rinconada": 5_100.0,
}


# 1. Station pressure at altitude ----------------------------------------------------------------------------


def test_station_pressure_is_kept_at_real_world_altitudes(history, tmp_path) -> None:
    records = []
    for i, altitude in enumerate(STATIONS.values()):
        station = isa_station_pressure_pa(altitude)
        records.append(typed(100 + i, "BME280", [("pressure", f"{station:.2f}"), ("pressure_at_sealevel", 101325.0),
                                                 ("temperature", "15.0")],
                             location={"id": 100 + i, "latitude": "19.4", "longitude": "-99.1",
                                       "altitude": str(altitude), "country": "MX"}))
    stats = merge(history, tmp_path, records)
    assert stats.values_rejected == 0
    stored = dict(rows(history, "SELECT altitude, pressure FROM aqi_readings"))
    for altitude in STATIONS.values():
        assert stored[altitude] == pytest.approx(isa_station_pressure_pa(altitude), abs=0.01)
    assert 76_000 < stored[STATIONS["Mexico City"]] < 78_500  # about 77 kPa


def test_station_pressure_limits_are_physical_and_sea_level_pressure_keeps_its_range(history, tmp_path) -> None:
    records = [
        # Below the Everest summit; and 77 kPa is a station pressure, not a sea-level one.
        typed(1, "BME280", [("pressure", "29999"), ("pressure_at_sealevel", "77300")]),
        typed(2, "BME280", [("pressure", "110000"), ("pressure_at_sealevel", "120000")]),
        typed(3, "BME280", [("pressure", "33700"), ("pressure_at_sealevel", "101300")]),  # Everest summit
    ]
    merge(history, tmp_path, records)
    assert rows(history, "SELECT sensor_id, value_type, reason FROM rejected_values ORDER BY 1, 2") == [
        (1, "pressure", "out of range: pressure < 30000"),
        (1, "pressure_at_sealevel", "out of range: pressure_at_sealevel < 85000"),
        (2, "pressure", "out of range: pressure ≥ 110000"),
        (2, "pressure_at_sealevel", "out of range: pressure_at_sealevel ≥ 120000"),
    ]
    assert rows(history, "SELECT sensor_id, pressure, pressure_at_sealevel FROM aqi_readings") == [
        (3, 33700.0, 101300.0)
    ]


# 2. Particle counters are not indexed -----------------------------------------------------------------------


def test_a_particle_counter_keeps_its_values_without_an_index(history, tmp_path) -> None:
    ppd = typed(1, "PPD42NS", [("P1", "260.5"), ("durP1", "5830"), ("ratioP1", "1.94"), ("P2", "88.1"),
                               ("durP2", "2100"), ("ratioP2", "0.7")])
    sds = typed(2, "SDS011", [("P1", "260.5"), ("P2", "88.1")])
    lower_case = typed(3, "sds011", [("P1", "20"), ("P2", "10")])  # the list is compared case-insensitively
    no_type = typed(4, "", [("P1", "20"), ("P2", "10")])
    stats = merge(history, tmp_path, [ppd, sds, lower_case, no_type])
    assert stats.values_rejected == 0 and stats.readings == 4
    got = rows(history, "SELECT sensor_id, pm10, pm25, other_values, daqi, aqi_us, aqi_us_category, aqi_us_beyond, "
                        "no_index_reason FROM aqi_readings ORDER BY sensor_id")
    assert got[0] == (1, None, None, {"P1": "260.5", "durP1": "5830", "ratioP1": "1.94", "P2": "88.1",
                                      "durP2": "2100", "ratioP2": "0.7"},
                      None, None, None, None, NOT_MASS_CONCENTRATION_REASON)
    assert got[1] == (2, 260.5, 88.1, None, 10, 174, "Unhealthy", False, None)  # the figures
    assert got[2][:2] == (3, 20.0) and got[2][4] is not None and got[2][8] is None
    assert got[3][1:3] == (None, None) and got[3][4] is None and got[3][8] == NOT_MASS_CONCENTRATION_REASON
    # The climate sensors have no PM, hence no reason.
    assert checks.indices_match_concentrations(history).passed


def test_the_blocking_index_check_wants_no_index_for_particle_counters(history, tmp_path) -> None:
    merge(history, tmp_path, [typed(1, "PPD42NS", [("P1", "260.5"), ("P2", "88.1")]),
                              typed(2, "SPS30", [("P1", "20"), ("P2", "10")])])
    assert checks.indices_match_concentrations(history).passed
    # Counts written into the µg/m³ columns with indices consistent with them (what the platform used to store).
    indices = compute_indices([88.1], [260.5])
    assignments = ", ".join(
        f"{name} = {value[0]!r}" if not isinstance(value[0], (float, np.floating)) else f"{name} = {float(value[0])}"
        for name, value in indices.items()
    )
    history.execute(f"UPDATE aqi_readings SET pm25 = 88.1, pm10 = 260.5, {assignments} WHERE sensor_id = 1")
    outcome = checks.indices_match_concentrations(history)
    assert not outcome.passed and outcome.failing_rows == 1
    assert outcome.sample[0]["sensor_id"] == 1 and outcome.sample[0]["sensor_type"] == "PPD42NS"
    assert outcome.sample[0]["expected_daqi"] != outcome.sample[0]["expected_daqi"]  # NaN: no index expected


def test_the_mass_concentration_list_is_the_official_maps() -> None:
    assert {"SDS011", "SDS021", "PMS1003", "PMS3003", "PMS5003", "PMS6003", "PMS7003", "HPM", "SPS30", "SEN5X",
            "NEXTPM", "IPS-7100"} == MASS_CONCENTRATION_PM_TYPES
    assert is_mass_concentration_pm(" NextPM ") and is_mass_concentration_pm("sen5x")
    assert not is_mass_concentration_pm("PPD42NS") and not is_mass_concentration_pm(None)


# 3. Saturated sensors --------------------------------------------------------------------------------------


def test_values_at_the_sds011_full_scale_are_quarantined(history, tmp_path) -> None:
    records = [
        typed(1, "SDS011", [("P1", "999.9"), ("P2", "999.9")]),  # saturated: used to be AQI 500 "Hazardous"
        typed(2, "SDS021", [("P1", "999.90"), ("P2", "35.0")]),
        typed(3, "SDS011", [("P1", "1200.5"), ("P2", "80.0")]),  # beyond what it can measure
        typed(4, "SDS011", [("P1", "999.8"), ("P2", "400.0")]),  # just below: a measurement
        typed(5, "SPS30", [("P1", "999.9"), ("P2", "500.0")]),  # no full scale known for the SPS30
    ]
    assert FULL_SCALE["SDS011"] == {"P1": 999.9, "P2": 999.9}
    merge(history, tmp_path, records)
    assert rows(history, "SELECT sensor_id, value_type, raw_value, reason FROM rejected_values ORDER BY 1, 2") == [
        (1, "P1", "999.9", AT_MEASURING_LIMIT_REASON),
        (1, "P2", "999.9", AT_MEASURING_LIMIT_REASON),
        (2, "P1", "999.90", AT_MEASURING_LIMIT_REASON),
        (3, "P1", "1200.5", BEYOND_MEASURING_LIMIT_REASON),
    ]
    # Sensor 1 has no value left, so no reading (item 7); the others keep what they measured.
    assert rows(history, "SELECT sensor_id, pm10, pm25, aqi_us FROM aqi_readings ORDER BY 1") == [
        (2, None, 35.0, 99), (3, None, 80.0, 168), (4, 999.8, 400.0, 500), (5, 999.9, 500.0, 500),
    ]


def test_pm25_above_pm10_is_reported_by_a_warning_check(history, tmp_path) -> None:
    records = [
        typed(1, "SDS011", [("P1", "30.0"), ("P2", "30.9")]),  # within 1 µg/m³: rounding
        typed(2, "SDS011", [("P1", "200.0"), ("P2", "209.0")]),  # within 5 %
        typed(3, "SDS011", [("P1", "30.0"), ("P2", "50.0")]),
        typed(4, "PMS5003", [("P1", "100.0"), ("P2", "111.0")]),
    ]
    merge(history, tmp_path, records)
    outcome = checks.pm25_not_above_pm10(history)
    assert not outcome.passed and outcome.failing_rows == 2 and outcome.checked_rows == 4
    assert sorted(s["sensor_id"] for s in outcome.sample) == [3, 4]
    history.execute("DELETE FROM aqi_readings WHERE sensor_id IN (3, 4)")
    assert checks.pm25_not_above_pm10(history).passed


# 4. `indoor` spellings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lenient", [False, True], ids=["typed-reader", "lenient-reader"])
def test_indoor_given_as_json_boolean_or_text(history, tmp_path, lenient: bool) -> None:
    spellings = [1, "1", True, "true", "TRUE", 0, "0", False, "false", None, "junk"]
    records = []
    for i, indoor in enumerate(spellings):
        location = {"id": i, "latitude": "48.1", "longitude": "11.5", "altitude": "", "country": "DE",
                    "indoor": indoor}
        records.append(typed(10 + i, "SDS011", [("P2", "5")], location=location))
    records.append(typed(99, "SDS011", [("P2", "5")], location={"id": 99, "latitude": "1", "longitude": "1"}))
    if lenient:  # a malformed record makes the whole snapshot go through the lenient reader
        records.append({**typed(98, "SDS011", []), "sensordatavalues": "oops"})
    stats = merge(history, tmp_path, records)
    assert stats.lenient_parse is lenient
    indoor = dict(rows(history, "SELECT sensor_id, indoor FROM aqi_readings"))
    assert [indoor[10 + i] for i in range(len(spellings))] == [
        True, True, True, True, True, False, False, False, False, False, False
    ]
    assert indoor[99] is False  # absent: outdoor, the API's default


# 5. `now` with an offset -----------------------------------------------------------------------------------


def test_a_zoned_now_is_converted_to_utc_not_stripped(history, tmp_path) -> None:
    now = datetime(2026, 11, 27, 7, 0, tzinfo=timezone(timedelta(hours=-5)))  # 12:00 UTC
    records = [
        typed(1, "SDS011", [("P2", "5")], timestamp="2026-11-27 11:58:00"),  # two minutes old
        typed(2, "SDS011", [("P2", "5")], timestamp="2026-11-27 12:14:00"),  # within the 15 minutes tolerance
        typed(3, "SDS011", [("P2", "5")], timestamp="2026-11-27 12:16:00"),  # the future
    ]
    merge(history, tmp_path, records, now=now)
    assert rows(history, "SELECT sensor_id FROM aqi_readings ORDER BY 1") == [(1,), (2,)]
    assert rows(history, "SELECT sensor_id, reason FROM rejected_values") == [(3, "timestamp in the future")]
    expected = datetime(2026, 11, 27, 12, 0)
    assert rows(history, "SELECT DISTINCT ingested_at FROM aqi_readings") == [(expected,)]
    assert rows(history, "SELECT processed_at FROM snapshot_log") == [(expected,)]


def test_freshness_takes_a_zoned_now_in_utc(history, tmp_path) -> None:
    merge(history, tmp_path, [typed(1, "SDS011", [("P2", "5")], timestamp="2026-11-27 12:00:00")])
    ten_minutes_later = datetime(2026, 11, 27, 13, 10, tzinfo=timezone(timedelta(hours=1)))  # 12:10 UTC
    outcome = checks.readings_fresh(history, now=ten_minutes_later)
    assert outcome.passed and outcome.details["5min"]["age_minutes"] == 10.0


# 7. A record with no values is not a reading ---------------------------------------------------------------


def test_records_without_a_kept_value_are_no_readings(history, tmp_path) -> None:
    records = [
        typed(1, "SDS011", []),  # empty sensordatavalues
        typed(2, "SDS011", [("P1", "nan"), ("P2", "-4")]),  # every value quarantined
        typed(3, "DNMS", [("noise_LAeq", "41.2")]),  # only a value type without a column: a reading
        typed(4, "SDS011", [("P1", "12"), ("P2", "8")]),
        typed(5, "SDS011", [], timestamp="garbage"),  # rejected as a record: counted there, not here
    ]
    stats = merge(history, tmp_path, records)
    assert rows(history, "SELECT sensor_id FROM aqi_readings ORDER BY 1") == [(3,), (4,)]
    assert (stats.records, stats.readings, stats.records_without_values) == (5, 2, 2)
    assert rows(history, "SELECT records, rows_inserted, records_without_values FROM snapshot_log") == [(5, 2, 2)]
    # The quarantined values of sensor 2 are visible, with their reasons.
    assert rows(history, "SELECT sensor_id, value_type, reason FROM rejected_values WHERE sensor_id = 2 "
                         "ORDER BY value_type") == [(2, "P1", "NaN"), (2, "P2", "negative")]


def test_no_row_of_a_generated_history_carries_only_its_location(history, tmp_path) -> None:
    quirks = Quirks(empty_values=0.05, sentinel=0.05, non_numeric=0.05)
    stats = merge(history, tmp_path, generate_records(3000, seed=9, quirks=quirks))
    assert stats.records_without_values > 100
    measured = " OR ".join(f"{c} IS NOT NULL" for c in (*MEASUREMENT_COLUMNS, "other_values"))
    assert rows(history, f"SELECT count(*) FROM aqi_readings WHERE NOT ({measured})") == [(0,)]
    assert rows(history, "SELECT count(*) FROM aqi_readings") == [(stats.readings,)]


def test_a_duplicate_with_values_beats_an_empty_one(history, tmp_path) -> None:
    empty = typed(1, "SDS011", [], measurement_id=200)
    full = typed(1, "SDS011", [("P2", "7")], measurement_id=100)
    merge(history, tmp_path, [full, empty])
    assert rows(history, "SELECT measurement_id, pm25 FROM aqi_readings") == [(100, 7.0)]


# 8. A later copy with other values -------------------------------------------------------------------------


def test_a_later_copy_with_other_values_is_recorded_and_the_first_kept(history, tmp_path) -> None:
    first = [typed(1, "SDS011", [("P1", "20"), ("P2", "10")]), typed(2, "DHT22", [("temperature", "4.5")])]
    merge(history, tmp_path, first, "a.json.gz")
    # The same readings again, identical (the normal case: consecutive snapshots overlap): nothing recorded.
    again = merge(history, tmp_path, first, "b.json.gz")
    assert (again.rows_duplicate, again.readings_differing, again.values_rejected) == (2, 0, 0)
    # A different measurement id with the same values is still the same reading.
    renumbered = [typed(1, "SDS011", [("P1", "20"), ("P2", "10")], measurement_id=5)]
    assert merge(history, tmp_path, renumbered, "c.json.gz").readings_differing == 0
    changed = [typed(1, "SDS011", [("P1", "20"), ("P2", "40"), ("P0", "bad")]),
               typed(2, "DHT22", [("temperature", "4.5"), ("humidity", "80")])]
    stats = merge(history, tmp_path, changed, "d.json.gz")
    assert (stats.rows_inserted, stats.rows_duplicate, stats.readings_differing) == (0, 2, 2)
    assert rows(history, "SELECT sensor_id, pm10, pm25, temperature, humidity FROM aqi_readings ORDER BY 1") == [
        (1, 20.0, 10.0, None, None), (2, None, None, 4.5, None),
    ]
    assert rows(history, "SELECT sensor_id, value_type, raw_value, reason, snapshot FROM rejected_values "
                         "ORDER BY 1, 2") == [
        (1, "P0", "bad", "non-numeric", "d.json.gz"),
        (1, "P1", "20", LATER_COPY_REASON, "d.json.gz"),
        (1, "P2", "40", LATER_COPY_REASON, "d.json.gz"),
        (2, "humidity", "80", LATER_COPY_REASON, "d.json.gz"),
        (2, "temperature", "4.5", LATER_COPY_REASON, "d.json.gz"),
    ]


def test_a_later_copy_differing_only_in_other_values_is_recorded(history, tmp_path) -> None:
    noise = [("noise_LAeq", "41.2"), ("noise_LA_max", "60.1")]
    merge(history, tmp_path, [typed(1, "DNMS", noise)], "a.json.gz")
    # The same values listed in another order are the same reading.
    assert merge(history, tmp_path, [typed(1, "DNMS", noise[::-1])], "b.json.gz").readings_differing == 0
    stats = merge(history, tmp_path, [typed(1, "DNMS", [("noise_LAeq", "55.0"), ("noise_LA_max", "60.1")])],
                  "c.json.gz")
    assert stats.readings_differing == 1
    assert rows(history, "SELECT value_type, raw_value, reason FROM rejected_values ORDER BY 1") == [
        ("noise_LA_max", "60.1", LATER_COPY_REASON), ("noise_LAeq", "55.0", LATER_COPY_REASON)
    ]
    assert rows(history, "SELECT other_values FROM aqi_readings") == [({"noise_LAeq": "41.2", "noise_LA_max": "60.1"},)]


# 9. Timestamps with a zone ---------------------------------------------------------------------------------

# Text → the naive UTC time it stands for (None: no reading time). A zone is applied, never dropped.
TIMESTAMP_TEXTS = [
    ("2016-07-14 11:02:46", datetime(2016, 7, 14, 11, 2, 46)),  # the API's form: UTC
    ("2016-07-14T11:02:46", datetime(2016, 7, 14, 11, 2, 46)),
    ("2016-07-14T11:02:46.75", datetime(2016, 7, 14, 11, 2, 46, 750000)),
    (" 2016-07-14 11:02:46 ", datetime(2016, 7, 14, 11, 2, 46)),
    ("2016-07-14T13:02:46+02:00", datetime(2016, 7, 14, 11, 2, 46)),
    ("2016-07-14T06:02:46-05:00", datetime(2016, 7, 14, 11, 2, 46)),
    ("2016-07-14T13:02:46+0200", datetime(2016, 7, 14, 11, 2, 46)),
    ("2016-07-14T13:02:46+02", datetime(2016, 7, 14, 11, 2, 46)),
    ("2016-07-14T11:02:46Z", datetime(2016, 7, 14, 11, 2, 46)),
    ("2016-07-14T11:02:46+00:00", datetime(2016, 7, 14, 11, 2, 46)),
    ("2016-07-14T13:02:46.250+02:00", datetime(2016, 7, 14, 11, 2, 46, 250000)),
    ("2016-07-14T11:02:46.123456Z", datetime(2016, 7, 14, 11, 2, 46, 123456)),
    ("2016-07-14 13:02:46 Europe/Berlin", datetime(2016, 7, 14, 11, 2, 46)),  # a named zone, with its DST
    ("2016-07-14T00:30:00+02:00", datetime(2016, 7, 13, 22, 30)),  # the day before, in UTC
    ("2016-07-14T23:30:00-05:00", datetime(2016, 7, 15, 4, 30)),  # the day after
    ("2016-07-14 13:02:46 CEST", None),  # a zone DuckDB cannot read: unknown instant
    ("2016-07-14 01:02:46 PM", None),  # the TIMESTAMP cast alone would read 01:02:46
    ("2016-07-14", None),  # no time of day
    ("epoch", None),
    ("-infinity", None),
    ("16.04.2019 14:22", None),
    ("garbage", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize("time_zone", ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati"])
def test_timestamp_text_is_read_as_utc_whatever_the_session_time_zone(time_zone: str) -> None:
    connection = duckdb.connect()
    connection.execute(f"SET TimeZone = '{time_zone}'")
    texts = [text for text, _ in TIMESTAMP_TEXTS]
    read = connection.execute(
        f"SELECT {utc_timestamp_sql('text')} FROM unnest($texts) WITH ORDINALITY AS t(text, n) ORDER BY n",
        {"texts": texts},
    ).fetchall()
    assert list(zip(texts, (utc for (utc,) in read), strict=True)) == TIMESTAMP_TEXTS


def test_a_live_timestamp_with_an_offset_is_merged_at_its_utc_time(history, tmp_path) -> None:
    history.execute("SET TimeZone = 'America/New_York'")  # a session zone must not move anything
    records = [
        typed(1, "SDS011", [("P2", "5")], timestamp="2026-11-27 12:00:00"),
        typed(2, "SDS011", [("P2", "5")], timestamp="2026-11-27T13:00:00+01:00"),  # 12:00 UTC
        typed(3, "SDS011", [("P2", "5")], timestamp="2026-11-27T07:00:00.5-05:00"),  # 12:00:00.5 UTC
        typed(4, "SDS011", [("P2", "5")], timestamp="2026-11-27T12:00:00Z"),
        typed(5, "SDS011", [("P2", "5")], timestamp="2026-11-27T12:00:00-05:00"),  # 17:00 UTC: the future
    ]
    stats = merge(history, tmp_path, records)
    assert rows(history, 'SELECT sensor_id, "timestamp" FROM aqi_readings ORDER BY 1') == [
        (1, datetime(2026, 11, 27, 12, 0)),
        (2, datetime(2026, 11, 27, 12, 0)),
        (3, datetime(2026, 11, 27, 12, 0, 0, 500000)),
        (4, datetime(2026, 11, 27, 12, 0)),
    ]
    assert rows(history, 'SELECT sensor_id, "timestamp", reason FROM rejected_values') == [
        (5, datetime(2026, 11, 27, 17, 0), "timestamp in the future")
    ]
    assert stats.rows_inserted == 4
