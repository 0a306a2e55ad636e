"""The COVID-19 domain's Definitions (built when the code location loads)."""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.covid.assets import covid_assets, covid_jobs, covid_schedules
from aqi_assets.defs.covid.resources import covid_resources


def defs(storage: AqiStorage) -> dg.Definitions:
    """``storage`` is the platform's storage resource: the group's tables live in its DuckDB file."""
    return dg.Definitions(
        assets=covid_assets, jobs=covid_jobs, schedules=covid_schedules, resources=covid_resources(storage)
    )
