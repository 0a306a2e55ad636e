"""The tiers domain's Definitions (built when the code location loads: AQI_ARCHIVE_START is read then)."""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.common.env import from_env, setting
from aqi_assets.defs.tiers.assets import (
    aqi_readings_parquet_job,
    aqi_tiers_retention_job,
    aqi_tiers_retention_schedule,
    build_tier_assets,
)
from aqi_assets.defs.tiers.resources import TIERS_ENV, TierStorage
from aqi_assets.lib.readings.periods import DEFAULT_HISTORY_START, HISTORY_START_ENV


def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=build_tier_assets(setting(HISTORY_START_ENV, DEFAULT_HISTORY_START)),
        jobs=[aqi_readings_parquet_job, aqi_tiers_retention_job],
        schedules=[aqi_tiers_retention_schedule],
        resources={"tiers": from_env(TierStorage, TIERS_ENV)},
    )
