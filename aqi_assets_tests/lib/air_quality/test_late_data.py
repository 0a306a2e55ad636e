"""Late data as partition arithmetic: which hours and days a touched range changes, as partition keys and runs."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aqi_assets.lib.air_quality.aggregates import DAY, HOUR
from aqi_assets.lib.air_quality.late_data import (
    affected_hours,
    affected_range,
    candidate_keys,
    complete_until,
    hour_runs,
    key_runs,
    keys_between,
    merged_ranges,
    parse_hours_touched,
    serialise_hours_touched,
)

HOURLY_FMT = "%Y-%m-%d-%H:%M"  # Dagster's hourly and daily partition key formats
DAILY_FMT = "%Y-%m-%d"
T = datetime(2026, 11, 27)


def at(hours: int) -> datetime:
    return T + timedelta(hours=hours)


def test_consecutive_hours_become_ranges() -> None:
    assert hour_runs([]) == []
    assert hour_runs([at(0), at(1), at(2), at(5), at(7), at(8)]) == [(at(0), at(3)), (at(5), at(6)), (at(7), at(9))]


def test_a_touched_hour_changes_itself_and_the_next_23() -> None:
    assert affected_hours((at(1), at(2))) == (at(1), at(25))
    assert affected_range((at(1), at(2)), HOUR) == (at(1), at(25))


def test_daily_partitions_widen_to_every_local_day_of_the_affected_hours() -> None:
    # 01:00 changes 01:00 .. 00:00 the next day (exclusive end 01:00); at UTC-12 the first is the previous local
    # day's 13:00, at UTC+14 the last is the next day's 14:00: three local days.
    assert affected_range((at(1), at(2)), DAY) == (T - DAY, T + 2 * DAY)
    # 10:00 .. 11:00 changes 10:00 .. 09:00 the next day: 22:00 the day before at UTC-12 .. 23:00 at UTC+14.
    assert affected_range((at(10), at(11)), DAY) == (T - DAY, T + 2 * DAY)
    # 13:00 changes 13:00 .. 12:00 the next day: 01:00 of the same local day at UTC-12 .. 02:00 two days on.
    assert affected_range((at(13), at(14)), DAY) == (T, T + 3 * DAY)
    # An aware range is converted to UTC first (07:00-05:00 is 12:00 UTC).
    eastern = timezone(timedelta(hours=-5))
    aware = (datetime(2026, 11, 27, 7, tzinfo=eastern), datetime(2026, 11, 27, 8, tzinfo=eastern))
    assert affected_range(aware, HOUR) == (at(12), at(12 + 24))


def test_other_units_are_refused() -> None:
    with pytest.raises(ValueError, match="hour or a day"):
        affected_range((at(0), at(1)), timedelta(minutes=15))


def test_only_complete_partitions_exist() -> None:
    now = datetime(2026, 11, 27, 13, 42, tzinfo=timezone.utc)
    assert complete_until(now, HOUR) == at(13)  # 13:00 is still running
    assert complete_until(now, DAY) == T


def test_keys_between_use_the_partition_format() -> None:
    assert keys_between(HOURLY_FMT, at(22), at(25), HOUR) == [
        "2026-11-27-22:00", "2026-11-27-23:00", "2026-11-28-00:00"
    ]
    assert keys_between(DAILY_FMT, T, T + 2 * DAY, DAY) == ["2026-11-27", "2026-11-28"]
    assert keys_between(DAILY_FMT, T, T, DAY) == []


def test_candidates_are_clipped_to_existing_partitions() -> None:
    now = at(5) + timedelta(minutes=30)  # complete hours end at 05:00
    first = at(2)  # the partitions start at 02:00
    keys = candidate_keys([(at(1), at(2))], HOUR, HOURLY_FMT, first, now)
    assert keys == ["2026-11-27-02:00", "2026-11-27-03:00", "2026-11-27-04:00"]
    assert candidate_keys([(at(1), at(2))], DAY, DAILY_FMT, T, now) == []  # the day is not complete yet
    # Overlapping touched ranges give each key once, in time order.
    later = at(72)  # 2026-11-30 00:00: the 29th is complete
    days = candidate_keys([(at(30), at(31)), (at(1), at(2)), (at(2), at(3))], DAY, DAILY_FMT, T, later)
    assert days == ["2026-11-27", "2026-11-28", "2026-11-29"]


def test_key_runs_group_consecutive_partitions() -> None:
    keys = ["2026-11-27-05:00", "2026-11-27-01:00", "2026-11-27-02:00", "2026-11-27-03:00", "2026-11-27-02:00"]
    assert key_runs(keys, HOURLY_FMT, HOUR) == [
        ("2026-11-27-01:00", "2026-11-27-03:00"), ("2026-11-27-05:00", "2026-11-27-05:00")
    ]
    # Across midnight and month ends the keys stay consecutive.
    assert key_runs(["2026-11-30", "2026-12-01", "2026-12-03"], DAILY_FMT, DAY) == [
        ("2026-11-30", "2026-12-01"), ("2026-12-03", "2026-12-03")
    ]
    assert key_runs([], DAILY_FMT, DAY) == []


@given(st.sets(st.integers(min_value=0, max_value=200), max_size=40))
def test_runs_cover_exactly_the_keys(offsets: set[int]) -> None:
    keys = [at(o).strftime(HOURLY_FMT) for o in offsets]
    runs = key_runs(keys, HOURLY_FMT, HOUR)
    covered = [
        key
        for first, last in runs
        for key in keys_between(HOURLY_FMT, datetime.strptime(first, HOURLY_FMT),
                                datetime.strptime(last, HOURLY_FMT) + HOUR, HOUR)
    ]
    assert covered == sorted(keys)
    # Runs are maximal: two runs never touch.
    for (_, last), (first, _) in itertools.pairwise(runs):
        assert datetime.strptime(first, HOURLY_FMT) - datetime.strptime(last, HOURLY_FMT) > HOUR


def test_hours_touched_round_trip() -> None:
    ranges = [(at(1), at(3)), (at(5), at(6))]
    value = serialise_hours_touched(ranges)
    assert value == [["2026-11-27T01:00:00", "2026-11-27T03:00:00"], ["2026-11-27T05:00:00", "2026-11-27T06:00:00"]]
    assert parse_hours_touched(value) == ranges
    assert parse_hours_touched(None) == [] and parse_hours_touched([]) == []


@pytest.mark.parametrize("value", ["2026-11-27T01:00:00", [["2026-11-27T01:00:00"]], [["x", "y"]],
                                   [["2026-11-27T03:00:00", "2026-11-27T01:00:00"]]])
def test_malformed_hours_touched_fail_loudly(value: object) -> None:
    with pytest.raises(ValueError):
        parse_hours_touched(value)


def test_an_archive_day_and_the_hours_its_rows_spilled_into_merge_into_runs() -> None:
    day = (T, T + DAY)
    # 01:00+02:00 on the day is 23:00 UTC the day before: that hour joins the day's run.
    assert merged_ranges([day, (T - timedelta(hours=1), T)]) == [(T - timedelta(hours=1), T + DAY)]
    assert merged_ranges([day, (at(5), at(7))]) == [day]  # inside the day: nothing new
    assert merged_ranges([(at(30), at(31)), day]) == [day, (at(30), at(31))]  # apart: two runs, in time order
    assert merged_ranges([]) == []
