"""The official indices as time-partitioned assets: `aqi_hourly` (NowCast, 24-hour DAQI) and `aqi_daily`.

- Partitions: hourly and daily (UTC) from `AQI_PARTITIONS_START` (default 2025-01-01); only complete hours
  and days exist as partitions.
- Storage: `AggregatesDuckDBIOManager` writes each asset's frame into `aggregates.<asset>` of the DuckDB file,
  replacing exactly the materialised partitions' rows in one transaction, and loads partitions for downstream
  assets. `aqi_daily` computes from `aqi_readings` itself (not from `aqi_hourly`), so a day never waits for,
  or depends on, 24 hourly partitions having been materialised.
- Automation: `AutomationCondition.on_cron` requests the latest hour 10 minutes after it ends (late 5-minute
  snapshots land first) and the latest day at 00:20 UTC, once `aqi_readings` has been updated since that
  tick. Late data: every `aqi_readings` materialisation reports the hours its merges touched
  (`hours_touched`); `aqi_late_data_sensor` requests the already-materialised (or running) partitions whose
  indices those hours change (the hours themselves and the next 23, and their days) — one run per contiguous
  range, since both assets have a single-run backfill policy (so do UI backfills). A partition whose run has
  not started by the time the late data landed is left to that run, which reads them.
- Blocking checks per partition (one step, one scan): indices match concentrations, NowCast / daily means
  within the range of their hourly means, completeness rules.
"""


import json
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from aqi_assets.defs.common.env import setting
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.lib.air_quality import aggregate_checks, aggregate_report
from aqi_assets.lib.air_quality.aggregates import (
    COMPUTE_MEMORY_LIMIT,
    DAILY_DESCRIPTIONS,
    DAY,
    HOUR,
    HOURLY_DESCRIPTIONS,
    affected_hours,
    daily_indices,
    hourly_indices,
    utc_naive,
)
from aqi_assets.lib.common.duckdb_conn import bounded_memory
from aqi_assets.lib.common.duckdb_tables import identifier, replace_partition, table_columns
from aqi_assets.lib.common.markdown import figure_markdown, frame_markdown

AGGREGATES_SCHEMA = "aggregates"
IO_MANAGER_KEY = "aggregates_io_manager"
PARTITIONS_START_ENV = "AQI_PARTITIONS_START"
DEFAULT_PARTITIONS_START = "2025-01-01"
HOURLY_CRON = "10 * * * *"  # an hour is complete 10 minutes after it ends
DAILY_CRON = "20 0 * * *"
HOURS_TOUCHED_KEY = "hours_touched"  # metadata of aqi_readings: [[start, end), ...] ISO hours, UTC
LATE_DATA_SENSOR_NAME = "aqi_late_data_sensor"
ARCHIVE_KEY = "archive_readings"  # a merged archive day is late data for the hours it covers
OWNERS = ["team:air-quality"]
RANGE_START_TAG = "dagster/asset_partition_range_start"  # Dagster's documented single-run range tags
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partitions_start_setting() -> datetime:
    """The first partition (UTC midnight), from `AQI_PARTITIONS_START` (YYYY-MM-DD), read at load time."""
    text = setting(PARTITIONS_START_ENV, DEFAULT_PARTITIONS_START).strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{PARTITIONS_START_ENV}={text!r} is not a date (YYYY-MM-DD)") from None
    return datetime.combine(day, datetime.min.time())


class AggregatesDuckDBIOManager(dg.ConfigurableIOManager):
    """Partitioned tables `aggregates.<asset>` in the platform's DuckDB file.

    An asset declares its partition column as `partition_expr` metadata (as dagster-duckdb does). Storing a
    partition (or a range of them, from a single-run backfill) deletes that time window's rows and inserts the
    frame's in one transaction: a re-run never duplicates, a failed write leaves the old rows. An empty frame
    is a result here (no sensor reported in that hour): it clears the partition. Opens the file through
    `storage`, with its bounded lock wait.
    """

    storage: AqiStorage
    db_schema: str = Field(default=AGGREGATES_SCHEMA, description="DuckDB schema of the aggregate tables.")

    def _partition_column(self, metadata: dict[str, Any] | None, asset: str) -> str:
        column = (metadata or {}).get("partition_expr")
        if not column:
            raise dg.Failure(f"asset {asset} has no `partition_expr` metadata naming its partition column")
        return str(column)

    def handle_output(self, context: dg.OutputContext, obj: pa.Table | pd.DataFrame) -> None:
        table = context.asset_key.path[-1]
        column = self._partition_column(context.definition_metadata, table)
        window = context.asset_partitions_time_window
        bounds = (utc_naive(window.start), utc_naive(window.end))
        with self.storage.readings() as connection:
            rows = replace_partition(connection, self.db_schema, table, obj, column, bounds)
            columns = table_columns(connection, self.db_schema, table)
        context.add_output_metadata(
            {
                "dagster/row_count": rows,
                "dagster/table_name": f"{self.db_schema}.{table}",
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=name, type=column_type) for name, column_type in columns]
                ),
                "partition_window": f"{bounds[0].isoformat()} .. {bounds[1].isoformat()}",
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        table = upstream.asset_key.path[-1]
        qualified = f"{identifier(self.db_schema)}.{identifier(table)}"
        with self.storage.readings(read_only=True) as connection:
            if not context.has_asset_partitions:
                return connection.execute(f"SELECT * FROM {qualified}").df()
            column = identifier(self._partition_column(upstream.definition_metadata, table))
            window = context.asset_partitions_time_window
            return connection.execute(
                f"SELECT * FROM {qualified} WHERE {column} >= ? AND {column} < ? ORDER BY {column}, sensor_id",
                [utc_naive(window.start), utc_naive(window.end)],
            ).df()


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


def _window_label(window: dg.TimeWindow, unit: timedelta) -> str:
    start, end = utc_naive(window.start), utc_naive(window.end)
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

    @dg.asset(
        name=name,
        deps=["aqi_readings"],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=dg.AutomationCondition.on_cron(cron),
        group_name="air_quality",
        kinds={"duckdb", "python"},
        owners=OWNERS,
        pool="duckdb",
        io_manager_key=IO_MANAGER_KEY,
        metadata={"partition_expr": partition_expr},
        description=description,
    )
    def aggregate(context: dg.AssetExecutionContext, storage: AqiStorage) -> dg.Output[pa.Table]:
        window = context.partition_time_window
        with storage.readings() as connection, bounded_memory(connection, COMPUTE_MEMORY_LIMIT):
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
        name="aqi_hourly",
        partitions_def=dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC"),
        cron=HOURLY_CRON,
        partition_expr="hour",
        description="Per sensor and UTC hour: hourly PM means, the US EPA NowCast (the hourly 'current' AQI, 2024 "
        "table) and the UK DAQI on trailing 24-hour means — the official indices, computed from the 5-minute "
        "history. Table `aggregates.aqi_hourly`.",
        compute=hourly_indices,
        unit=HOUR,
        report_columns=aggregate_report.HOURLY_COLUMNS,
        column_descriptions=HOURLY_DESCRIPTIONS,
    )
    aqi_daily = _aggregate_asset(
        name="aqi_daily",
        partitions_def=dg.DailyPartitionsDefinition(start_date=start, timezone="UTC"),
        cron=DAILY_CRON,
        partition_expr="day",
        description="Per sensor and UTC day: midnight-to-midnight PM means (>= 18 hours), the US EPA daily AQI "
        "(2024 table) and the UK DAQI of the day (the highest hourly DAQI on 24-hour means). Computed from the "
        "5-minute history. Table `aggregates.aqi_daily`.",
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
    "aqi_readings), allowing for the truncation step.",
    "daily_mean_within_hourly_range": "Each daily mean lies within [min, max] of the day's hourly means "
    "(recomputed from aqi_readings) and the hour counts match.",
    "completeness_rules": "An index exists exactly where the data suffice: NowCast with >= 2 of the 3 latest "
    "hours, 24-hour and daily means with >= 18 hours.",
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


def build_aggregate_checks(
    aqi_hourly: dg.AssetsDefinition, aqi_daily: dg.AssetsDefinition
) -> list[dg.AssetChecksDefinition]:
    """One blocking multi-check per asset: every rule of a partition from one scan of its readings."""

    def specs(asset: dg.AssetsDefinition, names: list[str]) -> list[dg.AssetCheckSpec]:
        return [
            dg.AssetCheckSpec(
                name, asset=asset, blocking=True, description=CHECK_DESCRIPTIONS[name],
                partitions_def=asset.partitions_def,
            )
            for name in names
        ]

    @dg.multi_asset_check(
        name="aqi_hourly_checks",
        specs=specs(aqi_hourly, ["indices_match_concentrations", "nowcast_within_hourly_range", "completeness_rules"]),
        pool="duckdb",
    )
    def aqi_hourly_checks(context: dg.AssetCheckExecutionContext, storage: AqiStorage):
        window = context.partition_time_window
        with storage.readings() as connection:
            outcomes = aggregate_checks.check_hourly_partition(connection, window.start, window.end)
        yield from _check_results(outcomes, aqi_hourly)

    @dg.multi_asset_check(
        name="aqi_daily_checks",
        specs=specs(
            aqi_daily, ["indices_match_concentrations", "daily_mean_within_hourly_range", "completeness_rules"]
        ),
        pool="duckdb",
    )
    def aqi_daily_checks(context: dg.AssetCheckExecutionContext, storage: AqiStorage):
        window = context.partition_time_window
        with storage.readings() as connection:
            outcomes = aggregate_checks.check_daily_partition(connection, window.start, window.end)
        yield from _check_results(outcomes, aqi_daily)

    return [aqi_hourly_checks, aqi_daily_checks]


# ---------------------------------------------------------------------------------------------------------
# Late data


def hours_touched_metadata(ranges: list[tuple[datetime, datetime]]) -> dg.MetadataValue:
    """The `hours_touched` metadata of an `aqi_readings` materialisation."""
    return dg.MetadataValue.json([[start.isoformat(), end.isoformat()] for start, end in ranges])


def _parse_touched(value: Any) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(start), datetime.fromisoformat(end)) for start, end in value or []]


def _keys_between(
    partitions_def: dg.TimeWindowPartitionsDefinition, start: datetime, end: datetime, unit: timedelta
) -> list[str]:
    keys = []
    moment = start
    while moment < end:
        keys.append(moment.strftime(partitions_def.fmt))
        moment += unit
    return keys


def _runs(keys: list[str], position: dict[str, int]) -> list[tuple[str, str]]:
    """Consecutive partition keys → (first, last) ranges."""
    ranges: list[tuple[str, str]] = []
    for key in sorted(keys, key=position.__getitem__):
        if ranges and position[key] == position[ranges[-1][1]] + 1:
            ranges[-1] = (ranges[-1][0], key)
        else:
            ranges.append((key, key))
    return ranges


def late_data_requests(
    instance: dg.DagsterInstance,
    touched: list[tuple[datetime, datetime]],
    assets: list[tuple[dg.AssetsDefinition, timedelta]],
    now: datetime,
    event_id: int,
    event_time: float | None = None,
) -> list[dg.RunRequest]:
    """Run requests for the partitions (already materialised or running) whose indices ``touched`` hours
    change: one request per contiguous range and asset (single-run backfill policy). A partition whose
    in-progress run had not started by `event_time` (the late data's commit, epoch seconds) is left alone:
    that run reads the late data itself (a queued backfill would otherwise be done twice)."""
    requests = []
    for asset, unit in assets:
        partitions_def = asset.partitions_def
        assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
        first = utc_naive(partitions_def.start)
        last_end = utc_naive(now.astimezone(timezone.utc)).replace(minute=0, second=0, microsecond=0)
        if unit == DAY:
            last_end = last_end.replace(hour=0)
        candidates: set[str] = set()
        for touched_range in touched:
            start, end = affected_hours(touched_range)
            if unit == DAY:
                start = start.replace(hour=0)
                end = (end - HOUR).replace(hour=0) + DAY
            candidates.update(_keys_between(partitions_def, max(start, first), min(end, last_end), unit))
        if not candidates:
            continue
        ordered = sorted(candidates)
        status = instance.get_status_by_partition(asset.key, ordered, partitions_def) or {}
        will_read_late_data = (
            _keys_of_runs_not_started_before(instance, asset, event_time)
            if event_time is not None and dg.AssetPartitionStatus.IN_PROGRESS in status.values()
            else set()
        )
        wanted = [
            key for key in ordered
            if status.get(key) == dg.AssetPartitionStatus.MATERIALIZED
            or (status.get(key) == dg.AssetPartitionStatus.IN_PROGRESS and key not in will_read_late_data)
        ]
        position = {key: i for i, key in enumerate(_keys_between(
            partitions_def, datetime.strptime(ordered[0], partitions_def.fmt),
            datetime.strptime(ordered[-1], partitions_def.fmt) + unit, unit,
        ))}
        for range_start, range_end in _runs(wanted, position):
            tags = {"aqi/late_data_event": str(event_id)}
            run_key = f"late:{asset.key.to_user_string()}:{range_start}:{range_end}:{event_id}"
            if range_start == range_end:
                requests.append(dg.RunRequest(run_key=run_key, job_name=aggregate_job_name(asset),
                                              asset_selection=[asset.key], partition_key=range_start, tags=tags))
            else:
                requests.append(dg.RunRequest(
                    run_key=run_key, job_name=aggregate_job_name(asset), asset_selection=[asset.key],
                    tags={**tags, RANGE_START_TAG: range_start, RANGE_END_TAG: range_end},
                ))
    return requests


_IN_PROGRESS_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _keys_of_runs_not_started_before(
    instance: dg.DagsterInstance, asset: dg.AssetsDefinition, event_time: float
) -> set[str]:
    """Partitions of `asset` held by in-progress runs that started after `event_time` or not yet: their step
    reads the history later than the event, so it sees the late data."""
    partitions_def = asset.partitions_def
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    keys: set[str] = set()
    for record in instance.get_run_records(
        filters=dg.RunsFilter(statuses=_IN_PROGRESS_RUN_STATUSES),
    ):
        run = record.dagster_run
        # Runs of this asset: a selection naming it (sensor requests, UI backfills) or its own job.
        if asset.key not in (run.asset_selection or ()) and not (
            run.asset_selection is None and run.job_name == aggregate_job_name(asset)
        ):
            continue
        if record.start_time is not None and record.start_time <= event_time:
            continue
        if run.tags.get("dagster/partition"):
            keys.add(run.tags["dagster/partition"])
        elif run.tags.get(RANGE_START_TAG) and run.tags.get(RANGE_END_TAG):
            keys.update(partitions_def.get_partition_keys_in_range(
                dg.PartitionKeyRange(run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG])
            ))
    return keys


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


def build_late_data_sensor(
    aqi_hourly: dg.AssetsDefinition, aqi_daily: dg.AssetsDefinition, readings_key: str = "aqi_readings"
) -> dg.SensorDefinition:
    """Re-materialise partitions that late readings changed (see the module docstring)."""

    @dg.sensor(
        name=LATE_DATA_SENSOR_NAME,
        jobs=[aggregate_job(aqi_hourly), aggregate_job(aqi_daily)],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Reads the `hours_touched` metadata of each new aqi_readings materialisation (and the day of each "
            "merged archive day) and requests the "
            "already-materialised aqi_hourly / aqi_daily partitions those readings change (one run per "
            "contiguous range). Reads Dagster's event log only; RUNNING by default."
        ),
    )
    def aqi_late_data_sensor(context: dg.SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {}
        now = datetime.now(timezone.utc)
        requests: list[dg.RunRequest] = []
        # Snapshot merges report the hours they touched; a merged archive day touches its own 24 hours.
        readings = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(readings_key), after_storage_id=state.get("after")),
            limit=100,
            ascending=True,
        ).records
        archive = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(ARCHIVE_KEY), after_storage_id=state.get("archive_after")),
            limit=100,
            ascending=True,
        ).records
        if not readings and not archive:
            return dg.SkipReason(f"no new {readings_key} or {ARCHIVE_KEY} materialisation")
        for record in readings:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            touched_value = metadata.get(HOURS_TOUCHED_KEY)
            touched = _parse_touched(touched_value.value if touched_value is not None else None)
            if touched:
                requests.extend(
                    late_data_requests(
                        context.instance, touched, [(aqi_hourly, HOUR), (aqi_daily, DAY)], now, record.storage_id,
                        record.timestamp,
                    )
                )
        for record in archive:
            if record.partition_key:
                day = datetime.strptime(record.partition_key, "%Y-%m-%d")
                requests.extend(
                    late_data_requests(
                        context.instance, [(day, day + DAY)], [(aqi_hourly, HOUR), (aqi_daily, DAY)], now,
                        record.storage_id, record.timestamp,
                    )
                )
        cursor = json.dumps(
            {
                "version": 2,
                "after": readings[-1].storage_id if readings else state.get("after"),
                "archive_after": archive[-1].storage_id if archive else state.get("archive_after"),
            }
        )
        if not requests:
            return dg.SensorResult(skip_reason="no materialised partition changed", cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return aqi_late_data_sensor


def aggregates_defs(storage: AqiStorage) -> dg.Definitions:
    """Assets, checks, the late-data sensor and the IO manager (partitions start read from the environment)."""
    aqi_hourly, aqi_daily = build_aggregate_assets(partitions_start_setting())
    return dg.Definitions(
        assets=[aqi_hourly, aqi_daily],
        asset_checks=build_aggregate_checks(aqi_hourly, aqi_daily),
        sensors=[build_late_data_sensor(aqi_hourly, aqi_daily)],
        resources={IO_MANAGER_KEY: AggregatesDuckDBIOManager(storage=storage)},
    )
