"""The air-quality domain's Definitions (built when the code location loads)."""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.air_quality.aggregates import aggregates_defs
from aqi_assets.defs.air_quality.assets import ingest_assets, ingest_jobs
from aqi_assets.defs.air_quality.checks import readings_asset_checks
from aqi_assets.defs.air_quality.resources import SNAPSHOT_SOURCE_ENV, SnapshotSource
from aqi_assets.defs.air_quality.sensors import build_snapshot_sensors
from aqi_assets.defs.common.env import from_env
from aqi_assets.defs.common.storage import STORAGE_ENV, AqiStorage


def defs(storage: AqiStorage | None = None) -> dg.Definitions:
    """``storage`` backs the aggregates' IO manager (the code location's shared one; from the environment when
    not given). The aggregates also read the `tiers` resource (the Parquet tier holding pruned days), which the
    tiers domain's Definitions provide."""
    ingest = dg.Definitions(
        assets=ingest_assets,
        asset_checks=readings_asset_checks,
        jobs=ingest_jobs,
        sensors=build_snapshot_sensors(),
        resources={"snapshots": from_env(SnapshotSource, SNAPSHOT_SOURCE_ENV)},
    )
    return dg.Definitions.merge(ingest, aggregates_defs(storage or from_env(AqiStorage, STORAGE_ENV)))
