"""The one UTC helper pair: DuckDB's naive-UTC TIMESTAMPs to and from aware datetimes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aqi_assets.lib.common.utc import aware_utc, naive_utc

MINUS_FIVE = timezone(timedelta(hours=-5))
PLUS_TWO = timezone(timedelta(hours=2))


def test_an_aware_moment_is_converted_not_stripped() -> None:
    assert naive_utc(datetime(2026, 1, 1, 7, 0, tzinfo=MINUS_FIVE)) == datetime(2026, 1, 1, 12, 0)
    # The archive's ISO timestamps carry an offset: 13:02:46+02:00 is 11:02:46 UTC.
    assert naive_utc(datetime(2016, 7, 14, 13, 2, 46, tzinfo=PLUS_TWO)) == datetime(2016, 7, 14, 11, 2, 46)
    assert naive_utc(datetime(2026, 1, 1, 12, 0)) == datetime(2026, 1, 1, 12, 0)  # naive is UTC already


def test_naive_now_is_utc_and_naive() -> None:
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    now = naive_utc()
    assert now.tzinfo is None and before <= now <= before + timedelta(seconds=5)


def test_aware_utc_round_trips_with_naive_utc() -> None:
    naive = datetime(2026, 3, 29, 1, 30)
    assert aware_utc(naive) == datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc)
    assert aware_utc(datetime(2026, 1, 1, 7, 0, tzinfo=MINUS_FIVE)).tzinfo == timezone.utc
    assert aware_utc(datetime(2026, 1, 1, 7, 0, tzinfo=MINUS_FIVE)).hour == 12
    assert naive_utc(aware_utc(naive)) == naive
