"""The two Sensor.Community snapshot periods: every fact about each, written once.

The ingest assets, their freshness policies, the snapshot sensors, the snapshot source and the freshness
check all read from here, so adding or changing a period is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class SnapshotPeriod:
    name: str  # the `period` column of aqi_readings and part of every raw snapshot's name
    label: str  # what the snapshot is, for descriptions in the UI
    url_env: str  # environment variable of the snapshot URL
    default_url: str
    job_name: str  # the ingest job a new snapshot of this period triggers
    probe_interval_env: str  # environment variable of the sensor's probe interval
    default_probe_interval_s: int
    # How often the server rewrites the file (None: irregularly); the sensor probes again when the next one is due.
    update_every_s: int | None
    # The raw snapshot asset's freshness policy; `freshness_fail` is also the limit of the readings_fresh check.
    freshness_warn: timedelta
    freshness_fail: timedelta


FIVE_MINUTE = SnapshotPeriod(
    name="5min",
    label="5-minute averages (data.json)",
    url_env="AQI_SNAPSHOT_5MIN_URL",
    default_url="https://data.sensor.community/static/v2/data.json",
    job_name="ingest_5min_job",
    probe_interval_env="AQI_SENSOR_5MIN_INTERVAL_S",
    default_probe_interval_s=60,  # the file changes about once a minute
    update_every_s=60,
    freshness_warn=timedelta(minutes=15),
    freshness_fail=timedelta(minutes=30),
)
TWENTY_FOUR_HOUR = SnapshotPeriod(
    name="24h",
    label="24-hour averages (data.24h.json)",
    url_env="AQI_SNAPSHOT_24H_URL",
    default_url="https://data.sensor.community/static/v2/data.24h.json",
    job_name="ingest_24h_job",
    probe_interval_env="AQI_SENSOR_24H_INTERVAL_S",
    default_probe_interval_s=300,  # changes every few minutes, and is often stale for hours
    update_every_s=None,
    freshness_warn=timedelta(hours=2),
    freshness_fail=timedelta(hours=26),
)

SNAPSHOT_PERIODS: dict[str, SnapshotPeriod] = {p.name: p for p in (FIVE_MINUTE, TWENTY_FOUR_HOUR)}


def snapshot_period(name: str) -> SnapshotPeriod:
    try:
        return SNAPSHOT_PERIODS[name]
    except KeyError:
        raise ValueError(f"unknown snapshot period {name!r}; known: {', '.join(SNAPSHOT_PERIODS)}") from None
