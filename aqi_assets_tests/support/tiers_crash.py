"""Export every day, then retention, in this process; SIGKILL itself at a chosen point (for the crash test).

`python -m aqi_assets_tests.support.tiers_crash DB PARQUET_DIR TODAY HOT_DAYS POINT`, POINT one of
`mid_export` (the second day's first period staged), `after_swap` (a day's new file moved in, old one not yet gone),
`before_delete` (every day exported and verified), `mid_delete` (inside the DELETE's transaction),
`never` (runs to the end).
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import date

from aqi_assets.lib.common.location import TierLocation, open_location
from aqi_assets.lib.readings.periods import Feed, period_names
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers import parquet_tier, retention


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(db: str, parquet_dir: str, today: str, hot_days: str, point: str) -> None:
    location = open_location(parquet_dir)
    if point == "mid_export":
        real_write = parquet_tier._write_period
        calls = []

        def write_then_die(*args, **kwargs):
            result = real_write(*args, **kwargs)
            calls.append(result)
            if len(calls) == len(period_names(Feed.TIER)) + 1:  # the second day's first period is staged
                _die()
            return result

        parquet_tier._write_period = write_then_die
    elif point == "after_swap":
        # The swap moves the new file in, then lists the day's directory to delete the old files: die there.
        def die_before_cleanup(self, path):
            _die()

        TierLocation.files_under = die_before_cleanup
    elif point == "before_delete":
        real_verify = retention.verify_day

        def verify_then_die(*args, **kwargs):
            result = real_verify(*args, **kwargs)
            _die()
            return result

        retention.verify_day = verify_then_die
    elif point == "mid_delete":
        retention.naive_utc = _die  # called inside the transaction, after the first period's DELETE
    with readings_connection(db) as connection:
        days = [
            row[0]
            for row in connection.execute(
                'SELECT DISTINCT CAST("timestamp" AS DATE) AS d FROM aqi_readings ORDER BY d'
            ).fetchall()
        ]
        for day in days:
            parquet_tier.export_day(connection, location, day)
        retention.prune_hot_tier(connection, location, today=date.fromisoformat(today), hot_days=int(hot_days))


if __name__ == "__main__":
    main(*sys.argv[1:])
