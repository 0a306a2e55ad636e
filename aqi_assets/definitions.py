"""The code location's one `Definitions`: the domains of `aqi_assets.defs`, merged.

Built by a `@dg.definitions` function so that environment variables are read when the code location loads,
never at import time. Each domain contributes its own assets, checks, jobs, schedules, sensors and resources;
the storage resource (raw lake and DuckDB file) is shared by all of them. Whatever `dg scaffold defs` wrote into
`aqi_assets/components/` (the project's `defs_module`) is loaded by Dagster's defs-folder loading and merged in.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from aqi_assets.defs.air_quality import definitions as air_quality
from aqi_assets.defs.archive import definitions as archive
from aqi_assets.defs.common.env import from_env
from aqi_assets.defs.common.storage import STORAGE_ENV, AqiStorage
from aqi_assets.defs.covid import definitions as covid
from aqi_assets.defs.ops import definitions as ops
from aqi_assets.defs.public import definitions as public
from aqi_assets.defs.sinks import definitions as sinks
from aqi_assets.defs.tiers import definitions as tiers


@dg.definitions
def defs() -> dg.Definitions:
    storage = from_env(AqiStorage, STORAGE_ENV)
    return dg.Definitions.merge(
        dg.Definitions(resources={"storage": storage}),
        air_quality.defs(storage),
        sinks.defs(),
        covid.defs(storage),
        ops.defs(),
        tiers.defs(),
        public.defs(),
        archive.defs(),
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    )
