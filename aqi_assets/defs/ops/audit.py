"""The daily audit: every check on `aqi_readings` over the whole history.

After an ingest the checks look at the rows that run merged (their cost follows the data added); this job runs
the same checks with `full_history` so nothing older escapes them.
"""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.air_quality.checks import readings_asset_checks

CHECK_STEP_NAMES = [c.node_def.name for c in readings_asset_checks]

aqi_history_audit_job = dg.define_asset_job(
    "aqi_history_audit_job",
    selection=dg.AssetSelection.checks_for_assets("aqi_readings"),
    description="Runs every check on aqi_readings over the whole history (after an ingest they look at the "
    "rows that run merged).",
    config={"ops": {step: {"config": {"full_history": True}} for step in CHECK_STEP_NAMES}},
    executor_def=dg.in_process_executor,
)
aqi_history_audit_schedule = dg.ScheduleDefinition(
    name="aqi_history_audit_schedule",
    job=aqi_history_audit_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    description="Daily 03:00 UTC audit of the whole AQI history.",
)
