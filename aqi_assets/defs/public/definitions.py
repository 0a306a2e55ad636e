"""The public domain's Definitions (built when the code location loads)."""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.public.assets import public_assets
from aqi_assets.defs.public.resources import public_resources


def defs() -> dg.Definitions:
    return dg.Definitions(assets=public_assets, resources=public_resources())
