"""The tiers domain's Definitions (built when the code location loads)."""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.common.env import from_env
from aqi_assets.defs.tiers.assets import (
    aqi_readings_parquet_job,
    aqi_tiers_retention_job,
    aqi_tiers_retention_schedule,
    tier_assets,
)
from aqi_assets.defs.tiers.resources import TIERS_ENV, TierStorage


def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=tier_assets,
        jobs=[aqi_readings_parquet_job, aqi_tiers_retention_job],
        schedules=[aqi_tiers_retention_schedule],
        resources={"tiers": from_env(TierStorage, TIERS_ENV)},
    )
