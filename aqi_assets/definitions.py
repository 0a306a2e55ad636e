"""The code location's one `Definitions`.

Built by a `@dg.definitions` function so that environment variables are read when the code location
loads, never at import time.
"""

from __future__ import annotations

import dagster as dg

from aqi_assets.assets.covid import covid_asset_checks, covid_assets, covid_jobs, covid_schedules
from aqi_assets.assets.ingest import ingest_assets, ingest_jobs
from aqi_assets.assets.readings_checks import (
    aqi_history_audit_job,
    aqi_history_audit_schedule,
    readings_asset_checks,
)
from aqi_assets.assets.sync import sync_asset_checks, sync_assets
from aqi_assets.automation.sensors import (
    alert_resources,
    automation_schedules,
    automation_sensors,
    build_automation_sensors,
)
from aqi_assets.resources.covid import covid_resources
from aqi_assets.resources.env import env_or
from aqi_assets.resources.snapshots import SnapshotSource
from aqi_assets.resources.storage import AqiStorage
from aqi_assets.resources.sync import sync_resources


def build_resources() -> dict[str, object]:
    duckdb_path = env_or("AQI_DUCKDB_PATH", "data/aqi.duckdb")
    return {
        "storage": AqiStorage(data_dir=env_or("AQI_DATA_DIR", "data"), duckdb_path=duckdb_path),
        "snapshots": SnapshotSource(
            url_5min=env_or("AQI_SNAPSHOT_5MIN_URL", "https://data.sensor.community/static/v2/data.json"),
            url_24h=env_or("AQI_SNAPSHOT_24H_URL", "https://data.sensor.community/static/v2/data.24h.json"),
            allowed_file_roots=env_or("AQI_ALLOWED_FILE_ROOTS", ""),
        ),
        **covid_resources(duckdb_path),
        **sync_resources(),
        **alert_resources(),
    }


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[*ingest_assets, *sync_assets, *covid_assets],
        asset_checks=[*readings_asset_checks, *sync_asset_checks, *covid_asset_checks],
        jobs=[*ingest_jobs, aqi_history_audit_job, *covid_jobs],
        schedules=[*automation_schedules, aqi_history_audit_schedule, *covid_schedules],
        sensors=[*automation_sensors, *build_automation_sensors()],
        resources=build_resources(),
    )
