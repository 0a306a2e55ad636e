"""The Sensor.Community snapshot endpoints and how to fetch them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from aqi_assets.core.fetch import (
    DEFAULT_USER_AGENT,
    FetchResult,
    build_session,
    download,
    file_url_path,
    parse_file_roots,
    utc_now,
)
from aqi_assets.core.lake import day_directory, snapshot_name


class SnapshotSource(dg.ConfigurableResource):
    """Where the 5-minute and 24-hour snapshots come from (http(s):// or file:// URLs)."""

    url_5min: str = Field(
        default="https://data.sensor.community/static/v2/data.json", description="AQI_SNAPSHOT_5MIN_URL"
    )
    url_24h: str = Field(
        default="https://data.sensor.community/static/v2/data.24h.json", description="AQI_SNAPSHOT_24H_URL"
    )
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
        return {"5min": self.url_5min, "24h": self.url_24h}[period]

    def file_roots(self, period: str) -> list[str]:
        roots = parse_file_roots(self.allowed_file_roots)
        if roots:
            return roots
        url = self.url_for(period)
        if url.lower().startswith("file:"):
            return [str(file_url_path(url).parent)]
        return []

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

