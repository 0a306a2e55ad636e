"""The archive domain's Definitions (built when the code location loads: AQI_ARCHIVE_START is read then)."""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.archive.assets import build_archive_assets
from aqi_assets.defs.archive.monthly import build_monthly_archive_assets
from aqi_assets.defs.archive.resources import ARCHIVE_SOURCE_ENV, ArchiveSource
from aqi_assets.defs.common.env import from_env, setting
from aqi_assets.lib.readings.periods import DEFAULT_HISTORY_START, HISTORY_START_ENV


def defs() -> dg.Definitions:
    start = setting(HISTORY_START_ENV, DEFAULT_HISTORY_START)
    return dg.Definitions(
        assets=[*build_archive_assets(start), *build_monthly_archive_assets(start)],
        resources={"archive": from_env(ArchiveSource, ARCHIVE_SOURCE_ENV)},
    )
