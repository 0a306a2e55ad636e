"""Asset checks on `aqi_readings`: blocking ones guard the indices, warnings flag data-quality trouble.

After an ingest, each check looks at the rows that run merged (its cost follows the data added, not the size
of the history); `aqi_history_audit_job` (daily) runs the same checks over the whole history.
"""

from collections.abc import Callable
from datetime import datetime

import dagster as dg
import duckdb
from pydantic import Field

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.lib.air_quality import checks

QUARANTINE_WARN_SHARE = 0.05  # above 5 % quarantined values, something upstream is off

Evaluate = Callable[[duckdb.DuckDBPyConnection, checks.Scope], checks.CheckOutcome]


class ReadingsCheckConfig(dg.Config):
    full_history: bool = Field(
        default=False, description="Check every row of the history, not only the rows this run merged."
    )


def _result(outcome: checks.CheckOutcome, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {}
    if outcome.counts_rows:
        metadata["failing_rows"] = dg.MetadataValue.int(outcome.failing_rows)
        metadata["checked_rows"] = dg.MetadataValue.int(outcome.checked_rows)
    for name, value in outcome.figures.items():
        if isinstance(value, datetime):
            metadata[name] = dg.MetadataValue.timestamp(value)
        elif isinstance(value, int):
            metadata[name] = dg.MetadataValue.int(value)
        else:
            metadata[name] = dg.MetadataValue.float(float(value))
    if outcome.sample or not outcome.passed:
        metadata["sample"] = dg.MetadataValue.md(outcome.sample_markdown())
    if outcome.details:
        metadata["details"] = dg.MetadataValue.json(outcome.details)
    return dg.AssetCheckResult(passed=outcome.passed, severity=severity, metadata=metadata)


def _check(name: str, description: str, evaluate: Evaluate, *, blocking: bool) -> dg.AssetChecksDefinition:
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

    @dg.asset_check(asset="aqi_readings", name=name, description=description, blocking=blocking, pool="duckdb")
    def _asset_check(
        context: dg.AssetCheckExecutionContext, config: ReadingsCheckConfig, storage: AqiStorage
    ) -> dg.AssetCheckResult:
        with storage.readings() as connection:
            scope = None if config.full_history else checks.scope_snapshots(connection, context.run.run_id)
            return _result(evaluate(connection, scope), severity)

    return _asset_check


# (name, description, evaluation, blocking)
CHECKS: tuple[tuple[str, str, Evaluate, bool], ...] = (
    (
        "indices_match_concentrations",
        "Blocking: every DAQI / US AQI value and label equals the one recomputed from the stored PM2.5 and PM10 "
        "(NULL for sensor types that do not report µg/m³).",
        lambda connection, scope: checks.indices_match_concentrations(connection, scope),
        True,
    ),
    ("indices_in_range", "Blocking: DAQI within 1–10 and US AQI within 0–500.", checks.indices_in_range, True),
    (
        "overall_index_is_max_sub_index",
        "Blocking: the overall DAQI and US AQI equal the highest of their PM sub-indices.",
        checks.overall_is_max_of_sub_indices,
        True,
    ),
    (
        "daqi_band_matches_index",
        "Blocking: daqi_band is Low 1–3, Moderate 4–6, High 7–9, Very High 10.",
        checks.daqi_band_matches_index,
        True,
    ),
    (
        "no_duplicate_readings",
        "Blocking: (period, sensor_id, timestamp) is unique.",
        checks.no_duplicate_readings,
        True,
    ),
    (
        "quarantine_share",
        f"Warning: more than {QUARANTINE_WARN_SHARE:.0%} of a merged snapshot's values were quarantined.",
        lambda connection, scope: checks.quarantine_share(connection, QUARANTINE_WARN_SHARE, scope),
        False,
    ),
    (
        "humid_pm_share",
        "Warning: more than half of the PM sensors sit at a station reporting humidity above 70 % at the same "
        "time (optical PM reads high in humid air).",
        lambda connection, scope: checks.humid_pm_share(connection, scope=scope),
        False,
    ),
    (
        "pm25_not_above_pm10",
        "Warning: readings whose PM2.5 exceeds their PM10 by more than 1 µg/m³ or 5 % (PM2.5 is part of PM10: "
        "a faulty or saturated sensor).",
        checks.pm25_not_above_pm10,
        False,
    ),
    (
        "readings_fresh",
        "Warning: no new reading for more than 30 minutes (5-minute period) or 26 hours (24-hour period).",
        lambda connection, _scope: checks.readings_fresh(connection),
        False,
    ),
)

readings_asset_checks = [
    _check(name, description, evaluate, blocking=blocking) for name, description, evaluate, blocking in CHECKS
]
