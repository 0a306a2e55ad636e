"""The Sensor.Community snapshot endpoints and how to fetch them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from aqi_assets.lib.air_quality.lake import day_directory, snapshot_name
from aqi_assets.lib.common.fetch import (
    DEFAULT_USER_AGENT,
    FetchResult,
    build_session,
    download,
    file_roots_for,
    utc_now,
)
from aqi_assets.lib.readings.periods import FIVE_MINUTE, TWENTY_FOUR_HOUR, snapshot_period

# Resource field → environment variable, read when the code location loads (`from_env`).
SNAPSHOT_SOURCE_ENV = {
    "url_5min": FIVE_MINUTE.url_env,
    "url_24h": TWENTY_FOUR_HOUR.url_env,
    "allowed_file_roots": "AQI_ALLOWED_FILE_ROOTS",
}


class SnapshotSource(dg.ConfigurableResource):
    """Where the 5-minute and 24-hour snapshots come from (http(s):// or file:// URLs)."""

    url_5min: str = Field(default=FIVE_MINUTE.default_url, description=FIVE_MINUTE.url_env)
    url_24h: str = Field(default=TWENTY_FOUR_HOUR.default_url, description=TWENTY_FOUR_HOUR.url_env)
    allowed_file_roots: str = Field(
        default="",
        description="Directories that file:// URLs may read from, separated by ',' or the OS path separator "
        "(AQI_ALLOWED_FILE_ROOTS); empty = the directory of the configured file URL only.",
    )
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retries: int = 4
    backoff_factor: float = 1.0
    user_agent: str = DEFAULT_USER_AGENT

    def url_for(self, period: str) -> str:
        return getattr(self, f"url_{snapshot_period(period).name}")

    def file_roots(self, period: str) -> list[str]:
        return file_roots_for(self.url_for(period), self.allowed_file_roots)

    def fetch(self, period: str, raw_dir: Path) -> FetchResult:
        """Download the period's snapshot into the lake (exact bytes, gzip-compressed, atomic)."""
        session = build_session(self.user_agent, self.retries, self.backoff_factor)
        try:
            return download(
                self.url_for(period),
                day_directory(raw_dir, period, utc_now().date()),
                lambda sha, fetched_at: snapshot_name(period, sha, fetched_at),
                session=session,
                connect_timeout_s=self.connect_timeout_s,
                read_timeout_s=self.read_timeout_s,
                allowed_file_roots=self.file_roots(period),
            )
        finally:
            session.close()
