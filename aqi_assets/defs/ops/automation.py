"""The automation-condition sensor: carries every materialisation downstream through the assets' conditions."""

from __future__ import annotations

import dagster as dg

AUTOMATION_SENSOR_NAME = "aqi_automation_condition_sensor"

automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    AUTOMATION_SENSOR_NAME,
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (eager downstream of the raw snapshots). It touches "
    "no network and is RUNNING by default.",
)
