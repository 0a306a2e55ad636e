"""The sinks domain's Definitions (built when the code location loads)."""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.sinks.assets import sync_assets
from aqi_assets.defs.sinks.resources import sync_resources


def defs() -> dg.Definitions:
    return dg.Definitions(assets=sync_assets, resources=sync_resources())
