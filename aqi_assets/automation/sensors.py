"""Sensors that make the platform run itself.

- `snapshot_5min_sensor` / `snapshot_24h_sensor` probe the Sensor.Community endpoints with a conditional GET
  (`aqi_assets.core.probe`) and request a run of `ingest_5min_job` / `ingest_24h_job` only for a snapshot no
  run was requested for yet. They poll a third-party server, so they are STOPPED by default; set
  `AQI_SENSORS_DEFAULT_RUNNING=1` (or run `dagster sensor start ...`) to have them running. Their intervals
  come from `AQI_SENSOR_5MIN_INTERVAL_S` (60) and `AQI_SENSOR_24H_INTERVAL_S` (300).
- `aqi_automation_condition_sensor` evaluates the assets' automation conditions (`AutomationCondition.eager()`
  downstream of the raw snapshots), so one sensor-triggered snapshot flows through the whole lineage. It
  touches no network and is RUNNING by default.
- `aqi_run_failure_alert` logs every failed run and posts it to `AQI_ALERT_WEBHOOK_URL` when set. RUNNING by
  default.

Everything that depends on the environment is built in `build_automation_sensors()`, which the
`@dg.definitions` function calls when the code location loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from aqi_assets.core.alerts import FailedStep, build_failure_payload
from aqi_assets.core.probe import PROBE_CONNECT_TIMEOUT_S, PROBE_READ_TIMEOUT_S, CursorError, CursorState, probe
from aqi_assets.resources.alerts import AlertWebhook, alert_resources
from aqi_assets.resources.env import env_or
from aqi_assets.resources.snapshots import SnapshotSource

if TYPE_CHECKING:
    from dagster_shared.error import SerializableErrorInfo

__all__ = [
    "AUTOMATION_SENSOR_NAME",
    "DEFAULT_INTERVALS_S",
    "SNAPSHOT_JOBS",
    "alert_resources",
    "automation_schedules",
    "automation_sensors",
    "build_automation_sensors",
    "build_snapshot_sensor",
    "run_failure_alert",
    "snapshot_sensor_name",
]

SNAPSHOT_JOBS: dict[str, str] = {"5min": "ingest_5min_job", "24h": "ingest_24h_job"}
DEFAULT_INTERVALS_S: dict[str, int] = {"5min": 60, "24h": 300}
INTERVAL_ENV: dict[str, str] = {"5min": "AQI_SENSOR_5MIN_INTERVAL_S", "24h": "AQI_SENSOR_24H_INTERVAL_S"}
DEFAULT_RUNNING_ENV = "AQI_SENSORS_DEFAULT_RUNNING"
AUTOMATION_SENSOR_NAME = "aqi_automation_condition_sensor"
MIN_INTERVAL_S = 10  # anything faster would hammer a server whose data changes once a minute


def snapshot_sensor_name(period: str) -> str:
    return f"snapshot_{period}_sensor"


def _setting(name: str, default: str) -> str:
    """A setting's value now (at load time), through `env_or` so the lookup is the project's one way."""
    value = env_or(name, default)
    return value.get_value() if isinstance(value, dg.EnvVar) else value


def _interval_setting(period: str) -> int:
    name = INTERVAL_ENV[period]
    text = _setting(name, str(DEFAULT_INTERVALS_S[period])).strip()
    try:
        seconds = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number of seconds") from None
    if seconds < MIN_INTERVAL_S:
        raise ValueError(f"{name}={seconds} is below the minimum of {MIN_INTERVAL_S} s")
    return seconds


def _default_running_setting() -> bool:
    text = _setting(DEFAULT_RUNNING_ENV, "0").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{DEFAULT_RUNNING_ENV}={text!r}: use 1 or 0")


def _user_error_message(error: SerializableErrorInfo | None) -> str | None:
    """The user's own exception inside Dagster's wrappers ("Error occurred while executing op ...")."""
    while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    return error.message.strip() if error is not None else None


def build_snapshot_sensor(
    period: str,
    *,
    minimum_interval_seconds: int | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """The polling sensor of one period (``"5min"`` or ``"24h"``), targeting that period's ingest job."""
    job_name = SNAPSHOT_JOBS[period]

    @dg.sensor(
        name=snapshot_sensor_name(period),
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds or DEFAULT_INTERVALS_S[period],
        default_status=default_status,
        description=(
            f"Probes the {period} snapshot endpoint with a conditional GET and requests a run of {job_name} "
            "for each new snapshot (run key from the server's Last-Modified)."
        ),
    )
    def _snapshot_sensor(context: dg.SensorEvaluationContext, snapshots: SnapshotSource):
        url = snapshots.url_for(period)
        try:
            state = CursorState.from_json(context.cursor)
        except CursorError as error:
            # Starting afresh is safe: the run key of the current snapshot is unchanged, so Dagster drops a
            # request for a snapshot that was already ingested.
            context.log.warning(f"{error}; starting from an empty cursor")
            state = CursorState()
        outcome = probe(
            url,
            state,
            period=period,
            connect_timeout_s=min(float(snapshots.connect_timeout_s), PROBE_CONNECT_TIMEOUT_S),
            read_timeout_s=min(float(snapshots.read_timeout_s), PROBE_READ_TIMEOUT_S),
            allowed_file_roots=snapshots.file_roots(period),
            user_agent=snapshots.user_agent,
        )
        if not outcome.changed:
            # The cursor stays as it was: it moves only together with a run request.
            return dg.SkipReason(f"[{outcome.detail}] {outcome.reason}")
        context.log.info(outcome.reason)
        tags = {"aqi/period": period, "aqi/snapshot_key": outcome.run_key or ""}
        if outcome.last_modified:
            tags["aqi/snapshot_last_modified"] = outcome.last_modified
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=outcome.run_key, tags=tags)],
            cursor=outcome.cursor.to_json(),
        )

    return _snapshot_sensor


@dg.run_failure_sensor(
    name="aqi_run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Logs every failed run and posts a short JSON alert to AQI_ALERT_WEBHOOK_URL when it is set.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook) -> None:
    run = context.dagster_run
    failed_steps = [
        FailedStep(
            step_key=event.step_key or "?",
            error=_user_error_message(event.step_failure_data.error),
        )
        for event in context.get_step_failure_events()
    ]
    run_error = _user_error_message(getattr(context.failure_event.event_specific_data, "error", None))
    # The step's own error says more than the run's "Execution of run failed" summary.
    error = next((step.error for step in failed_steps if step.error), None) or run_error
    error = error or context.failure_event.message
    payload = build_failure_payload(
        job_name=run.job_name,
        run_id=run.run_id,
        failed_steps=failed_steps,
        error=error,
        location=run.remote_job_origin.location_name if run.remote_job_origin else None,
    )
    context.log.error(payload["text"])  # always logged, whether or not a webhook is configured
    alert_webhook.send(payload, context.log)


automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    AUTOMATION_SENSOR_NAME,
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (eager downstream of the raw snapshots).",
)

# Sensors that read no environment: safe to build at import time.
automation_sensors: list = [automation_condition_sensor, run_failure_alert]
# The COVID-19 daily schedule lives with its assets (aqi_assets.assets.covid.covid_schedules).
automation_schedules: list = []


def build_automation_sensors() -> list[dg.SensorDefinition]:
    """The snapshot sensors, with intervals and default status from the environment (call at load time)."""
    status = dg.DefaultSensorStatus.RUNNING if _default_running_setting() else dg.DefaultSensorStatus.STOPPED
    return [
        build_snapshot_sensor(period, minimum_interval_seconds=_interval_setting(period), default_status=status)
        for period in SNAPSHOT_JOBS
    ]
