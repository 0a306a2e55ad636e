"""The official indices as time-partitioned assets: `aqi_hourly` (NowCast, 24-hour DAQI) and `aqi_daily`.

- Partitions: hourly (UTC hours) and daily from `AQI_PARTITIONS_START` (default 2025-01-01); only complete hours
  and days exist as partitions. Daily partition D holds every sensor's local day D (local standard time from
  its coordinates, UTC without them), so it reads UTC [D - 14 h, D + 36 h). Archive days before that start
  (the archive reaches back to AQI_ARCHIVE_START, 2015-10-01) get no index partitions: set
  AQI_PARTITIONS_START to AQI_ARCHIVE_START to cover them (about 90,000 hourly partitions from 2015 on).
- Inputs: the history as one table, `aqi_readings_all` (`lib.readings.history`): the hot rows of DuckDB plus the
  days retention moved to the Parquet tier (`tiers` resource), so a partition recomputed after its day was
  pruned gives the same rows. All three are declared upstream: `aqi_readings` (snapshot merges),
  `archive_readings` (archived days) and `aqi_readings_parquet` (the tier's days), the last two daily from
  AQI_ARCHIVE_START; Dagster's time-window mapping links an hour or a day to its day.
- Storage: `AggregatesDuckDBIOManager` (`aggregates_io.py`) writes each asset's table into `<db_schema>.<asset>`
  (`aggregates` unless configured), replacing exactly the materialised partitions' rows in one transaction; the
  checks read the table from the same manager. `aqi_daily` computes from the history itself (not from
  `aqi_hourly`), so a day never waits for, or depends on, 24 hourly partitions.
- Automation: `AutomationCondition.on_cron` requests the latest hour 10 minutes after it ends (late snapshots
  land first) and the latest day at 12:20 UTC, when the last time zone (UTC-12) has finished it, once
  `aqi_readings` has been updated since that tick (the archive is backfilled on demand, far behind the clock,
  and the tier holds yesterday at the earliest: the cron waits for neither). Archive days and late snapshots
  reach already-materialised partitions through
  `aqi_late_data_sensor` (`late_data.py`); a day moved to the tier changes no index.
- Blocking checks per partition (one step, one scan): indices match concentrations, NowCast / daily means
  within the range of their hourly means, completeness rules. A missing table fails the check step.
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotations of decorated functions.

import contextlib
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa

from aqi_assets.defs.air_quality.aggregates_io import IO_MANAGER_KEY, AggregatesDuckDBIOManager
from aqi_assets.defs.air_quality.late_data import (
    ARCHIVE_MONTH_KEYS,
    ARCHIVE_READINGS_KEY,
    PARQUET_TIER_KEY,
    READINGS_KEY,
    LateDataTarget,
    build_late_data_sensor,
)
from aqi_assets.defs.common.env import setting
from aqi_assets.defs.common.intended_beta import (
    PARTITIONS_DEF_ON_CHECK_SPEC,
    asset_with_backfill_policy,
    intended,
)
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.air_quality import aggregate_checks, aggregate_report
from aqi_assets.lib.air_quality.aggregates import (
    AQI_DAILY,
    AQI_HOURLY,
    COMPUTE_MEMORY_LIMIT,
    DAILY_DESCRIPTIONS,
    DAY,
    HOUR,
    HOURLY_DESCRIPTIONS,
    daily_indices,
    history_window,
    hourly_indices,
    sources_text,
)
from aqi_assets.lib.common.duckdb_conn import bounded_memory
from aqi_assets.lib.common.markdown import figure_markdown, frame_markdown
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.readings.history import attach_history

PARTITIONS_START_ENV = "AQI_PARTITIONS_START"
DEFAULT_PARTITIONS_START = "2025-01-01"
HOURLY_CRON = "10 * * * *"  # an hour is complete 10 minutes after it ends
# A day's partition holds every sensor's local day D, final once the last zone (UTC-12) has ended D: at 12:00 UTC
# of D + 1 (plus the hourly margin for late snapshots).
DAILY_CRON = "20 12 * * *"
OWNERS = ["team:air-quality"]


# The indices' upstream assets that are not waited for by the cron (see `_aggregate_asset`).
NOT_WAITED_FOR = (ARCHIVE_READINGS_KEY, *ARCHIVE_MONTH_KEYS, PARQUET_TIER_KEY)


def partitions_start_setting() -> datetime:
    """The first partition (UTC midnight), from `AQI_PARTITIONS_START` (YYYY-MM-DD), read at load time.

    Archive days before it get no aqi_hourly / aqi_daily partitions (the late-data sensor skips them too): to
    compute indices for the whole archive, set AQI_PARTITIONS_START to AQI_ARCHIVE_START (2015-10-01 by default,
    about 90,000 hourly partitions to date)."""
    text = setting(PARTITIONS_START_ENV, DEFAULT_PARTITIONS_START).strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{PARTITIONS_START_ENV}={text!r} is not a date (YYYY-MM-DD)") from None
    return datetime.combine(day, datetime.min.time())


def _column_schema(schema: pa.Schema, descriptions: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(f.name, str(f.type), description=descriptions.get(f.name)) for f in schema]
    )


def _partition_metadata(
    table: pa.Table, columns: aggregate_report.IndexColumns, label: str, figure: bool = True
) -> dict[str, Any]:
    summary = aggregate_report.summarise(table, columns)
    metadata: dict[str, Any] = {
        "sensors": dg.MetadataValue.int(summary.sensors),
        "aqi_us_coverage": dg.MetadataValue.float(round(summary.aqi_coverage, 4)),
        "daqi_coverage": dg.MetadataValue.float(round(summary.daqi_coverage, 4)),
        "aqi_us_category_counts": dg.MetadataValue.json(summary.category_counts),
        "daqi_band_counts": dg.MetadataValue.json(summary.band_counts),
        "worst_sensors": dg.MetadataValue.md(summary.worst_markdown),
    }
    if figure and table.num_rows:
        chart = aggregate_report.distribution_figure(table, columns, label)
        metadata["distribution"] = dg.MetadataValue.md(figure_markdown(chart, label))
    return metadata


@contextlib.contextmanager
def history_connection(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, storage: AqiStorage, tiers: TierStorage,
    unit: timedelta,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The DuckDB file with `aqi_readings_all` attached: hot rows plus the tier's pruned days, limited to what the
    partition reads (`history_window`: its hours and their 23-hour lookback, for days every zone's local day),
    so a partition costs the same however many days were pruned. A pruned day the tier cannot serve (no or
    another location) fails the step (HistoryError) instead of
    reading as empty."""
    window = context.partition_time_window
    reads = history_window(unit, window.start, window.end)
    with storage.readings() as connection:
        view = attach_history(connection, tiers.location(), window=reads)
        if view.cold_days:
            context.log.info(f"history: DuckDB plus {view.cold_days} pruned days from the tier at {view.location}")
        yield connection


def unit_of(partitions_def: dg.PartitionsDefinition | None) -> timedelta:
    """The length of a partition of `aqi_hourly` (an hour) or `aqi_daily` (a day)."""
    if isinstance(partitions_def, dg.HourlyPartitionsDefinition):
        return HOUR
    if isinstance(partitions_def, dg.DailyPartitionsDefinition):
        return DAY
    raise TypeError(f"not an aggregate's partitions: {partitions_def!r}")


def _window_label(window: dg.TimeWindow, unit: timedelta) -> str:
    start, end = naive_utc(window.start), naive_utc(window.end)
    fmt = "%Y-%m-%d %H:%M" if unit == HOUR else "%Y-%m-%d"
    if end - start == unit:
        return f"{start.strftime(fmt)} UTC"
    return f"{start.strftime(fmt)} .. {(end - unit).strftime(fmt)} UTC"


def _aggregate_asset(
    name: str,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    cron: str,
    partition_expr: str,
    description: str,
    compute: Callable[[Any, datetime, datetime], pa.Table],
    unit: timedelta,
    report_columns: aggregate_report.IndexColumns,
    column_descriptions: dict[str, str],
) -> dg.AssetsDefinition:
    """One aggregate: a partition = `compute(connection, start, end)`, written by the partition IO manager."""
    unit_label = "sensor-hours" if unit == HOUR else "sensor-days"

    @asset_with_backfill_policy(
        name=name,
        # Every source of the history: the snapshot merges, the archive days and months, the tier days (read once
        # pruned from DuckDB). Daily upstreams map by time window: an hour or a day to its day.
        deps=[READINGS_KEY, ARCHIVE_READINGS_KEY, *ARCHIVE_MONTH_KEYS, PARQUET_TIER_KEY],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        # Archive days are backfilled on demand, far behind the clock, and the tier exports a day after it ends:
        # the tick waits for the snapshot merges only (merged archive days reach materialised partitions through
        # the late-data sensor; exporting or pruning a day changes no index).
        automation_condition=dg.AutomationCondition.on_cron(cron).ignore(dg.AssetSelection.assets(*NOT_WAITED_FOR)),
        group_name="air_quality",
        kinds={"duckdb", "python"},
        owners=OWNERS,
        pool="duckdb",
        io_manager_key=IO_MANAGER_KEY,
        metadata={"partition_expr": partition_expr},
        description=description,
    )
    def aggregate(
        context: dg.AssetExecutionContext, storage: AqiStorage, tiers: TierStorage
    ) -> dg.Output[pa.Table]:
        window = context.partition_time_window
        with (
            history_connection(context, storage, tiers, unit) as connection,
            bounded_memory(connection, COMPUTE_MEMORY_LIMIT),
        ):
            table = compute(connection, window.start, window.end)
        label = f"{name} {_window_label(window, unit)}"
        context.log.info(f"{label}: {table.num_rows} {unit_label}")
        metadata = _partition_metadata(table, report_columns, label)
        metadata["dagster/column_schema"] = _column_schema(table.schema, column_descriptions)
        return dg.Output(table, metadata=metadata)

    return aggregate


def build_aggregate_assets(start: datetime) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """`aqi_hourly` and `aqi_daily`, partitioned from ``start`` (call at load time)."""
    aqi_hourly = _aggregate_asset(
        name=AQI_HOURLY,
        partitions_def=dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC"),
        cron=HOURLY_CRON,
        partition_expr="hour",
        description="Per outdoor sensor and UTC hour: hourly PM means of valid hours, the US EPA NowCast (the "
        "hourly 'current' AQI, 2024 table) and the UK DAQI on trailing 24-hour means — the official indices, "
        "computed from the history "
        f"(DuckDB and the Parquet tier alike; per sensor-hour, {sources_text()}). Table "
        f"`<db_schema>.{AQI_HOURLY}` of the aggregates IO manager (`aggregates` by default).",
        compute=hourly_indices,
        unit=HOUR,
        report_columns=aggregate_report.HOURLY_COLUMNS,
        column_descriptions=HOURLY_DESCRIPTIONS,
    )
    aqi_daily = _aggregate_asset(
        name=AQI_DAILY,
        partitions_def=dg.DailyPartitionsDefinition(start_date=start, timezone="UTC"),
        cron=DAILY_CRON,
        partition_expr="day",
        description="Per outdoor sensor and its local day (midnight to midnight local standard time, as EPA "
        "computes it; UTC without coordinates): PM means of the valid hours (>= 18), the US EPA daily AQI (2024 "
        "table), the UK DAQI of the day (the highest hourly DAQI on 24-hour running means, as UK-AIR reports a "
        "day) and the DAQI of the day's own mean. Computed from the "
        f"history (DuckDB and the Parquet tier alike; per sensor-hour, {sources_text()}). Table "
        f"`<db_schema>.{AQI_DAILY}` of the aggregates IO manager (`aggregates` by default).",
        compute=daily_indices,
        unit=DAY,
        report_columns=aggregate_report.DAILY_COLUMNS,
        column_descriptions=DAILY_DESCRIPTIONS,
    )
    return aqi_hourly, aqi_daily


CHECK_DESCRIPTIONS = {
    "indices_match_concentrations": "US AQI, DAQI, categories and bands recomputed from the stored concentrations "
    "match the stored values.",
    "nowcast_within_hourly_range": "Each NowCast lies within [min, max] of its 12 hourly means (recomputed from "
    "the history, aqi_readings_all), allowing for the truncation step.",
    "daily_mean_within_hourly_range": "Each daily mean lies within [min, max] of the day's hourly means "
    "(recomputed from the history, aqi_readings_all) and the hour counts match.",
    "completeness_rules": "An index exists exactly where the data suffice: NowCast with >= 2 of the 3 latest "
    "hours, 24-hour and daily means with >= 18 hours.",
    "means_match_history": "The stored means, covered slots and feeds equal those recomputed from the history (valid "
    "hours only, the best-covering feed per pollutant); daily rows over their local day, with the zone of their "
    "coordinates and the day's highest DAQI of the running 24-hour means.",
}


def _check_results(
    outcomes: dict[str, aggregate_checks.PartitionCheck], asset: dg.AssetsDefinition
) -> list[dg.AssetCheckResult]:
    results = []
    for name, outcome in outcomes.items():
        metadata: dict[str, Any] = {
            "checked_rows": dg.MetadataValue.int(outcome.checked_rows),
            "failing_rows": dg.MetadataValue.int(outcome.failing_rows),
        }
        if outcome.sample:
            metadata["sample"] = dg.MetadataValue.md(frame_markdown(pd.DataFrame(outcome.sample)))
        results.append(
            dg.AssetCheckResult(
                asset_key=asset.key,
                check_name=name,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata=metadata,
            )
        )
    return results


def _run_checks(
    context: dg.AssetCheckExecutionContext,
    storage: AqiStorage,
    tiers: TierStorage,
    io_manager: AggregatesDuckDBIOManager,
    check: Callable[..., dict[str, aggregate_checks.PartitionCheck]],
    asset: dg.AssetsDefinition,
) -> Iterator[dg.AssetCheckResult]:
    """Check the partition in the table the IO manager writes (its configured `db_schema`); a missing table fails
    the step with what to do, never passes on zero rows."""
    window = context.partition_time_window
    try:
        with history_connection(context, storage, tiers, unit_of(asset.partitions_def)) as connection:
            outcomes = check(connection, window.start, window.end, schema=io_manager.db_schema)
    except aggregate_checks.AggregateTableMissing as error:
        raise dg.Failure(
            description=str(error), metadata={"table": io_manager.table_name(asset.key.to_user_string())}
        ) from error
    yield from _check_results(outcomes, asset)


def build_aggregate_checks(
    aqi_hourly: dg.AssetsDefinition, aqi_daily: dg.AssetsDefinition
) -> list[dg.AssetChecksDefinition]:
    """One blocking multi-check per asset: every rule of a partition from one scan of its readings."""

    def specs(asset: dg.AssetsDefinition, names: list[str]) -> list[dg.AssetCheckSpec]:
        # Partitioned check specs (Preview) are intended: each partition's checks run with it.
        with intended(dg.PreviewWarning, PARTITIONS_DEF_ON_CHECK_SPEC):
            return [
                dg.AssetCheckSpec(
                    name, asset=asset, blocking=True, description=CHECK_DESCRIPTIONS[name],
                    partitions_def=asset.partitions_def,
                )
                for name in names
            ]

    def multi_check(
        name: str, asset: dg.AssetsDefinition, names: list[str], evaluate: Callable[..., Any]
    ) -> dg.AssetChecksDefinition:
        @dg.multi_asset_check(name=name, specs=specs(asset, names), pool="duckdb")
        def checks(
            context: dg.AssetCheckExecutionContext,
            storage: AqiStorage,
            tiers: TierStorage,
            aggregates_io_manager: dg.ResourceParam[AggregatesDuckDBIOManager],
        ):
            yield from _run_checks(context, storage, tiers, aggregates_io_manager, evaluate, asset)

        return checks

    return [
        multi_check(
            "aqi_hourly_checks", aqi_hourly,
            ["indices_match_concentrations", "nowcast_within_hourly_range", "completeness_rules",
             "means_match_history"],
            aggregate_checks.check_hourly_partition,
        ),
        multi_check(
            "aqi_daily_checks", aqi_daily,
            ["indices_match_concentrations", "daily_mean_within_hourly_range", "completeness_rules",
             "means_match_history"],
            aggregate_checks.check_daily_partition,
        ),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Jobs and Definitions


def aggregate_job_name(asset: dg.AssetsDefinition) -> str:
    return f"{asset.key.to_user_string()}_job"


def aggregate_job(asset: dg.AssetsDefinition) -> Any:
    """One job per aggregate (with its checks): the two assets have different partitions, so one job (or a sensor
    targeting both assets directly) cannot hold them."""
    return dg.define_asset_job(
        aggregate_job_name(asset),
        selection=dg.AssetSelection.assets(asset),
        description=f"Materialise {asset.key.to_user_string()} partitions (with their blocking checks).",
        executor_def=dg.in_process_executor,
    )


def late_data_targets(aqi_hourly: dg.AssetsDefinition, aqi_daily: dg.AssetsDefinition) -> list[LateDataTarget]:
    """What `aqi_late_data_sensor` re-materialises: both aggregates, each through its own job."""
    return [LateDataTarget(aqi_hourly, HOUR, aggregate_job(aqi_hourly)),
            LateDataTarget(aqi_daily, DAY, aggregate_job(aqi_daily))]


def aggregates_defs(storage: AqiStorage) -> dg.Definitions:
    """Assets, checks, the late-data sensor and the IO manager (partitions start read from the environment).
    The assets also need the code location's `storage` and `tiers` resources."""
    aqi_hourly, aqi_daily = build_aggregate_assets(partitions_start_setting())
    return dg.Definitions(
        assets=[aqi_hourly, aqi_daily],
        asset_checks=build_aggregate_checks(aqi_hourly, aqi_daily),
        sensors=[build_late_data_sensor(late_data_targets(aqi_hourly, aqi_daily))],
        resources={IO_MANAGER_KEY: AggregatesDuckDBIOManager(storage=storage)},
    )
