"""The operations domain's Definitions: automation, alerting, the history audit."""

from __future__ import annotations

import dagster as dg

from aqi_assets.defs.ops.alerts import alert_resources, run_failure_alert
from aqi_assets.defs.ops.audit import aqi_history_audit_job, aqi_history_audit_schedule
from aqi_assets.defs.ops.automation import automation_condition_sensor


def defs() -> dg.Definitions:
    return dg.Definitions(
        jobs=[aqi_history_audit_job],
        schedules=[aqi_history_audit_schedule],
        sensors=[automation_condition_sensor, run_failure_alert],
        resources=alert_resources(),
    )
