"""Where the Sensor.Community archive is and how politely to fetch it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from pathlib import Path

import dagster as dg
from pydantic import Field

from aqi_assets.lib.archive.fetch import DayFetch, fetch_day
from aqi_assets.lib.archive.monthly_fetch import MonthFetch, fetch_month
from aqi_assets.lib.archive.schema import DEFAULT_ARCHIVE_URL
from aqi_assets.lib.common.fetch import DEFAULT_USER_AGENT, build_session
from aqi_assets.lib.tiers.archive_months import MONTH_MEMORY_LIMIT

# Resource field → environment variable, read when the code location loads (`from_env`).
ARCHIVE_SOURCE_ENV = {
    "url": "AQI_ARCHIVE_URL",
    "sensors": "AQI_ARCHIVE_SENSORS",
    "concurrency": "AQI_ARCHIVE_CONCURRENCY",
    "month_threads": "AQI_ARCHIVE_MONTH_THREADS",
    "month_memory_limit": "AQI_ARCHIVE_MONTH_MEMORY",
}


class ArchiveSource(dg.ConfigurableResource):
    """The archive server and the default selection of sensors to backfill."""

    url: str = Field(default=DEFAULT_ARCHIVE_URL, description="Archive base URL (AQI_ARCHIVE_URL).")
    sensors: str = Field(
        default="",
        description="Sensors to backfill (AQI_ARCHIVE_SENSORS): sensor ids, two-letter countries and "
        "bbox:minlon,minlat,maxlon,maxlat, comma-separated; empty = backfill disabled.",
    )
    concurrency: int = Field(default=4, description="Requests at a time (AQI_ARCHIVE_CONCURRENCY).")
    month_threads: int = Field(
        default=0, description="DuckDB threads of one monthly backfill run (AQI_ARCHIVE_MONTH_THREADS); 0 = all cores."
    )
    month_memory_limit: str = Field(
        default=MONTH_MEMORY_LIMIT,
        description="DuckDB memory limit of one monthly backfill run (AQI_ARCHIVE_MONTH_MEMORY); it spills beyond.",
    )
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retries: int = 4
    backoff_factor: float = 1.0
    user_agent: str = DEFAULT_USER_AGENT

    def fetch_month(self, month: date, sensor_types: Collection[str] | None, raw_dir: Path) -> MonthFetch:
        session = build_session(self.user_agent, self.retries, self.backoff_factor)
        try:
            return fetch_month(
                self.url, month, sensor_types, raw_dir, session=session, concurrency=self.concurrency,
                timeout=(self.connect_timeout_s, self.read_timeout_s),
            )
        finally:
            session.close()

    def fetch(self, day, sensor_ids, raw_dir: Path) -> DayFetch:
        session = build_session(self.user_agent, self.retries, self.backoff_factor)
        try:
            return fetch_day(
                self.url, day, sensor_ids, raw_dir, session=session, concurrency=self.concurrency,
                timeout=(self.connect_timeout_s, self.read_timeout_s),
            )
        finally:
            session.close()
