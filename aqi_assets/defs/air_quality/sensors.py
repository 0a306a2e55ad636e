"""The snapshot sensors: probe the Sensor.Community endpoints and request an ingest run per new snapshot.

`snapshot_5min_sensor` / `snapshot_24h_sensor` probe with a conditional GET (`aqi_assets.lib.air_quality.probe`)
and request a run of `ingest_5min_job` / `ingest_24h_job` only for a snapshot no run was requested for yet.
They poll a third-party server, so they are STOPPED by default; set `AQI_SENSORS_DEFAULT_RUNNING=1` (or run
`dagster sensor start ...`) to have them running. Their intervals come from the period registry's variables
(`AQI_SENSOR_5MIN_INTERVAL_S`, default 60; `AQI_SENSOR_24H_INTERVAL_S`, default 300). Everything that depends on
the environment is read in `build_snapshot_sensors()`, when the code location loads.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import dagster as dg

from aqi_assets.defs.air_quality.resources import SnapshotSource
from aqi_assets.defs.common.env import setting
from aqi_assets.lib.air_quality.probe import (
    DUE_PROBES,
    DUE_RETRY_S,
    PROBE_CONNECT_TIMEOUT_S,
    PROBE_READ_TIMEOUT_S,
    CursorError,
    CursorState,
    ProbeKind,
    ProbeOutcome,
    due_in,
    probe,
)
from aqi_assets.lib.readings.periods import snapshot_period, snapshot_periods

DEFAULT_RUNNING_ENV = "AQI_SENSORS_DEFAULT_RUNNING"
MIN_INTERVAL_S = 10  # anything faster would hammer a server whose data changes once a minute
# A tick may wait for a snapshot due within its interval, ending this long before the next tick, and never
# longer than DUE_HORIZON_MAX_S (the daemon gives a sensor evaluation 60 s).
DUE_MARGIN_S = 3.0
DUE_HORIZON_MAX_S = 30.0


def snapshot_sensor_name(period: str) -> str:
    return f"snapshot_{period}_sensor"


def interval_setting(period: str) -> int:
    spec = snapshot_period(period)
    text = setting(spec.probe_interval_env, str(spec.default_probe_interval_s)).strip()
    try:
        seconds = int(text)
    except ValueError:
        raise ValueError(f"{spec.probe_interval_env}={text!r} is not a whole number of seconds") from None
    if seconds < MIN_INTERVAL_S:
        raise ValueError(f"{spec.probe_interval_env}={seconds} is below the minimum of {MIN_INTERVAL_S} s")
    return seconds


def default_running_setting() -> bool:
    text = setting(DEFAULT_RUNNING_ENV, "0").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{DEFAULT_RUNNING_ENV}={text!r}: use 1 or 0")


def build_snapshot_sensor(
    period: str,
    *,
    minimum_interval_seconds: int | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """The polling sensor of one period (``"5min"`` or ``"24h"``), targeting that period's ingest job."""
    spec = snapshot_period(period)
    interval_s = minimum_interval_seconds or spec.default_probe_interval_s
    due_horizon_s = min(interval_s, DUE_HORIZON_MAX_S) - DUE_MARGIN_S

    @dg.sensor(
        name=snapshot_sensor_name(period),
        job_name=spec.job_name,
        minimum_interval_seconds=interval_s,
        default_status=default_status,
        description=(
            f"Probes the {period} snapshot endpoint with a conditional GET and requests a run of {spec.job_name} "
            "for each new snapshot (run key from the server's Last-Modified); when the next snapshot is due "
            "before the next tick, probes again at that moment."
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

        def probe_once() -> ProbeOutcome:
            return probe(
                url,
                state,
                period=period,
                connect_timeout_s=min(float(snapshots.connect_timeout_s), PROBE_CONNECT_TIMEOUT_S),
                read_timeout_s=min(float(snapshots.read_timeout_s), PROBE_READ_TIMEOUT_S),
                allowed_file_roots=snapshots.file_roots(period),
                user_agent=snapshots.user_agent,
            )

        started = time.monotonic()
        outcome = probe_once()
        wait = None
        if not outcome.changed and outcome.kind != ProbeKind.ERROR:
            wait = due_in(state.modified_at, datetime.now(timezone.utc), spec.update_every_s, due_horizon_s)
        if wait is not None:  # the next snapshot is due before the next tick: be there when it appears
            time.sleep(wait)
            for attempt in range(DUE_PROBES):
                outcome = probe_once()
                late = time.monotonic() - started + DUE_RETRY_S > due_horizon_s
                if outcome.changed or outcome.kind == ProbeKind.ERROR or attempt + 1 == DUE_PROBES or late:
                    break
                time.sleep(DUE_RETRY_S)
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


def build_snapshot_sensors() -> list[dg.SensorDefinition]:
    """The snapshot sensors, with intervals and default status from the environment (call at load time)."""
    status = dg.DefaultSensorStatus.RUNNING if default_running_setting() else dg.DefaultSensorStatus.STOPPED
    return [
        build_snapshot_sensor(period, minimum_interval_seconds=interval_setting(period), default_status=status)
        for period in snapshot_periods()
    ]
