"""Every period of the history, written once: where its rows come from, how often, and what they feed.

`aqi_readings` holds three kinds of rows, told apart by their `period` (part of the key, so a 5-minute average
and an archived measurement of the same sensor and second never collide). Everything that treats periods
differently reads it from `PERIODS` at call time — normalisation, the archive merge, the sinks, the Parquet
tier (export, verification, retention), the official indices, the site — so adding a period is one entry here
(plus its tests). A test registers an extra period to prove it flows through the tier and the sinks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta


class Feed(enum.Enum):
    """What a period's rows are used for beyond the history itself."""

    INDICES = "official indices"  # hourly means → NowCast, 24-hour DAQI, daily AQI (aqi_hourly / aqi_daily)
    SINKS = "sinks"  # synced to Timestream and InfluxDB
    TIER = "parquet tier"  # exported to Parquet, verified, then pruned from DuckDB after the hot window


@dataclass(frozen=True)
class SnapshotPeriod:
    """How a period fetched as a whole-network JSON snapshot is polled and how fresh it must stay."""

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


@dataclass(frozen=True)
class Period:
    """One value of `aqi_readings.period`."""

    name: str
    source: str  # where the rows come from
    averaging: str  # what one row is an average of
    feeds: frozenset[Feed]
    # Rank among the periods feeding the official indices: where two cover the same sensor-hour, the lower wins.
    index_rank: int | None = None
    snapshot: SnapshotPeriod | None = None  # set for periods fetched as snapshots

    def __post_init__(self) -> None:
        if (Feed.INDICES in self.feeds) != (self.index_rank is not None):
            raise ValueError(f"period {self.name!r}: an index_rank exactly when it feeds the official indices")
        if self.snapshot is not None and self.snapshot.name != self.name:
            raise ValueError(f"period {self.name!r}: its snapshot facts are named {self.snapshot.name!r}")


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
ARCHIVE = "archive"

# The registry. Order matters only for display; `index_rank` decides between sources of the indices.
PERIODS: dict[str, Period] = {
    "5min": Period(
        name="5min",
        source="data.sensor.community/static/v2/data.json, polled as whole-network snapshots",
        averaging="5 minutes",
        feeds=frozenset(Feed),
        index_rank=2,
        snapshot=FIVE_MINUTE,
    ),
    "24h": Period(
        name="24h",
        source="data.sensor.community/static/v2/data.24h.json, polled as whole-network snapshots",
        averaging="24 hours (a running mean: never an input of the hourly indices)",
        feeds=frozenset({Feed.SINKS, Feed.TIER}),
        snapshot=TWENTY_FOUR_HOUR,
    ),
    ARCHIVE: Period(
        name=ARCHIVE,
        source="archive.sensor.community, one CSV per sensor and day, backfilled by day",
        averaging="one measurement (about 145 s)",
        feeds=frozenset(Feed),
        index_rank=1,  # every measurement the sensor sent: preferred to the 5-minute snapshots
    ),
}

# The first day the history can hold: the archive's first day (2015-10-01). The archive's and the Parquet
# tier's daily partitions both start here, so every day the archive can fill can also be tiered.
HISTORY_START_ENV = "AQI_ARCHIVE_START"
DEFAULT_HISTORY_START = "2015-10-01"


def registry() -> tuple[Period, ...]:
    """The registered periods, read now (a test may have registered one), each filed under its own name."""
    misfiled = [key for key, p in PERIODS.items() if key != p.name]
    if misfiled:
        raise ValueError(f"PERIODS entries filed under another name than their period's: {misfiled}")
    return tuple(PERIODS.values())


def period(name: str) -> Period:
    for candidate in registry():
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown period {name!r}; known: {', '.join(PERIODS)}")


def period_names(feed: Feed | None = None) -> tuple[str, ...]:
    """Every period's name, or those feeding ``feed``."""
    return tuple(p.name for p in registry() if feed is None or feed in p.feeds)


def index_sources() -> tuple[str, ...]:
    """The periods feeding the official indices, most preferred first."""
    ranked = [p for p in registry() if p.index_rank is not None]
    return tuple(p.name for p in sorted(ranked, key=lambda p: p.index_rank or 0))


def snapshot_periods() -> dict[str, SnapshotPeriod]:
    """The periods fetched as snapshots, by name."""
    return {p.name: p.snapshot for p in registry() if p.snapshot is not None}


def snapshot_period(name: str) -> SnapshotPeriod:
    found = period(name).snapshot
    if found is None:
        known = ", ".join(snapshot_periods())
        raise ValueError(f"period {name!r} is not fetched as a snapshot; snapshot periods: {known}")
    return found


def sql_list(names: tuple[str, ...]) -> str:
    """``('a', 'b')`` as a SQL list literal; the names are registry keys (plain words), checked anyway."""
    for name in names:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"period name {name!r} is not a plain word")
    return "(" + ", ".join(f"'{name}'" for name in names) + ")" if names else "(NULL)"
