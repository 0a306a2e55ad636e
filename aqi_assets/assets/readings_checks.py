"""Asset checks on `aqi_readings`: blocking ones guard the indices, warnings flag data-quality trouble."""


from collections.abc import Callable
from datetime import datetime

import dagster as dg
import duckdb

from aqi_assets.core import readings_checks as checks
from aqi_assets.resources.storage import AqiStorage

QUARANTINE_WARN_SHARE = 0.05  # above 5 % quarantined values, something upstream is off


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


def _check(
    name: str,
    description: str,
    evaluate: Callable[[duckdb.DuckDBPyConnection], checks.CheckOutcome],
    *,
    blocking: bool,
) -> dg.AssetChecksDefinition:
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

    @dg.asset_check(
        asset="aqi_readings",
        name=name,
        description=description,
        blocking=blocking,
        pool="duckdb",
    )
    def _asset_check(storage: AqiStorage) -> dg.AssetCheckResult:
        with storage.connect() as connection:
            return _result(evaluate(connection), severity)

    return _asset_check


readings_asset_checks = [
    _check(
        "indices_match_concentrations",
        "Blocking: every DAQI / US AQI value and label equals the one recomputed from the stored PM2.5 and PM10.",
        checks.indices_match_concentrations,
        blocking=True,
    ),
    _check(
        "indices_in_range",
        "Blocking: DAQI within 1–10 and US AQI within 0–500.",
        checks.indices_in_range,
        blocking=True,
    ),
    _check(
        "overall_index_is_max_sub_index",
        "Blocking: the overall DAQI and US AQI equal the highest of their PM sub-indices.",
        checks.overall_is_max_of_sub_indices,
        blocking=True,
    ),
    _check(
        "daqi_band_matches_index",
        "Blocking: daqi_band is Low 1–3, Moderate 4–6, High 7–9, Very High 10.",
        checks.daqi_band_matches_index,
        blocking=True,
    ),
    _check(
        "no_duplicate_readings",
        "Blocking: (period, sensor_id, timestamp) is unique.",
        checks.no_duplicate_readings,
        blocking=True,
    ),
    _check(
        "quarantine_share",
        f"Warning: more than {QUARANTINE_WARN_SHARE:.0%} of the values of the newest snapshot were quarantined.",
        lambda connection: checks.quarantine_share(connection, QUARANTINE_WARN_SHARE),
        blocking=False,
    ),
    _check(
        "humid_pm_share",
        "Warning: more than half of the PM sensors sit at a station reporting humidity above 70 % "
        "(optical PM reads high in humid air).",
        checks.humid_pm_share,
        blocking=False,
    ),
    _check(
        "readings_fresh",
        "Warning: no new reading for more than 30 minutes (5-minute period) or 26 hours (24-hour period).",
        checks.readings_fresh,
        blocking=False,
    ),
]
