"""The air-quality domain's Definitions (built when the code location loads)."""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.air_quality.assets import ingest_assets, ingest_jobs
from aqi_assets.defs.air_quality.checks import readings_asset_checks
from aqi_assets.defs.air_quality.resources import SNAPSHOT_SOURCE_ENV, SnapshotSource
from aqi_assets.defs.air_quality.sensors import build_snapshot_sensors
from aqi_assets.defs.common.env import from_env


def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=ingest_assets,
        asset_checks=readings_asset_checks,
        jobs=ingest_jobs,
        sensors=build_snapshot_sensors(),
        resources={"snapshots": from_env(SnapshotSource, SNAPSHOT_SOURCE_ENV)},
    )
