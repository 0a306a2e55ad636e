"""Late data: `aqi_late_data_sensor` re-materialises the index partitions that late readings changed.

Every `aqi_readings` materialisation reports the hours its merges touched (`hours_touched`), and a merged
archive day (an `archive_readings` partition) touches its own 24 hours. The sensor requests the
already-materialised (or running) partitions of `aqi_hourly` / `aqi_daily` whose indices those hours change
(the hours themselves and the next 23, and their days; arithmetic in `lib.air_quality.late_data`) — one run per
contiguous range, since both assets have a single-run backfill policy (so do UI backfills). A partition whose
run has not started by the time the late data landed is left to that run, which reads them.
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotations of decorated functions.

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg

from aqi_assets.lib.air_quality.late_data import (
    HOURS_TOUCHED_KEY,
    candidate_keys,
    key_runs,
    merged_ranges,
    parse_hours_touched,
    serialise_hours_touched,
)

LATE_DATA_SENSOR_NAME = "aqi_late_data_sensor"
# The asset keys the official indices read, typed once (the assets' own definitions and their readers import them).
READINGS_KEY = "aqi_readings"  # snapshot merges: report `hours_touched`
ARCHIVE_READINGS_KEY = "archive_readings"  # a merged archive day is late data for the hours it covers
# The monthly backfill (defs.archive.monthly): its tier days and its hot days, each reporting `hours_touched`.
ARCHIVE_MONTH_KEYS = ("archive_month_readings", "archive_month_hot")
# The Parquet tier (defs.tiers.assets): the indices read its pruned days, but exporting or pruning a day never
# changes them, so it is no late data.
PARQUET_TIER_KEY = "aqi_readings_parquet"
RANGE_START_TAG = "dagster/asset_partition_range_start"  # Dagster's documented single-run range tags
RANGE_END_TAG = "dagster/asset_partition_range_end"
ARCHIVE_DAY_FORMAT = "%Y-%m-%d"  # archive_readings' daily partition keys
CURSOR_VERSION = 2


@dataclass(frozen=True)
class LateDataTarget:
    """An aggregate the sensor re-materialises: its partitions' length and the job that runs it."""

    asset: dg.AssetsDefinition
    unit: timedelta
    job: Any  # what `dg.define_asset_job` returns (its class is not public API)

    @property
    def partitions_def(self) -> dg.TimeWindowPartitionsDefinition:
        partitions_def = self.asset.partitions_def
        if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            raise TypeError(f"{self.asset.key.to_user_string()} is not time-partitioned")
        return partitions_def


def hours_touched_metadata(ranges: list[tuple[datetime, datetime]]) -> dg.MetadataValue:
    """The `hours_touched` metadata of an `aqi_readings` materialisation."""
    return dg.MetadataValue.json(serialise_hours_touched(ranges))


def late_data_requests(
    instance: dg.DagsterInstance,
    touched: list[tuple[datetime, datetime]],
    targets: Sequence[LateDataTarget],
    now: datetime,
    event_id: int,
    event_time: float | None = None,
) -> list[dg.RunRequest]:
    """Run requests for the partitions (already materialised or running) whose indices ``touched`` hours
    change: one request per contiguous range and asset (single-run backfill policy). A partition whose
    in-progress run had not started by `event_time` (the late data's commit, epoch seconds) is left alone:
    that run reads the late data itself (a queued backfill would otherwise be done twice)."""
    requests = []
    for target in targets:
        partitions_def = target.partitions_def
        fmt = partitions_def.fmt
        ordered = candidate_keys(touched, target.unit, fmt, partitions_def.start, now)
        if not ordered:
            continue
        status = instance.get_status_by_partition(target.asset.key, ordered, partitions_def) or {}
        will_read_late_data = (
            _keys_of_runs_not_started_before(instance, target, event_time)
            if event_time is not None and dg.AssetPartitionStatus.IN_PROGRESS in status.values()
            else set()
        )
        wanted = [
            key for key in ordered
            if status.get(key) == dg.AssetPartitionStatus.MATERIALIZED
            or (status.get(key) == dg.AssetPartitionStatus.IN_PROGRESS and key not in will_read_late_data)
        ]
        asset_name = target.asset.key.to_user_string()
        for range_start, range_end in key_runs(wanted, fmt, target.unit):
            tags = {"aqi/late_data_event": str(event_id)}
            run_key = f"late:{asset_name}:{range_start}:{range_end}:{event_id}"
            if range_start == range_end:
                requests.append(dg.RunRequest(run_key=run_key, job_name=target.job.name,
                                              asset_selection=[target.asset.key], partition_key=range_start,
                                              tags=tags))
            else:
                requests.append(dg.RunRequest(
                    run_key=run_key, job_name=target.job.name, asset_selection=[target.asset.key],
                    tags={**tags, RANGE_START_TAG: range_start, RANGE_END_TAG: range_end},
                ))
    return requests


_IN_PROGRESS_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _keys_of_runs_not_started_before(
    instance: dg.DagsterInstance, target: LateDataTarget, event_time: float
) -> set[str]:
    """Partitions of the target held by in-progress runs that started after `event_time` or not yet: their step
    reads the history later than the event, so it sees the late data."""
    partitions_def = target.partitions_def
    keys: set[str] = set()
    for record in instance.get_run_records(
        filters=dg.RunsFilter(statuses=_IN_PROGRESS_RUN_STATUSES),
    ):
        run = record.dagster_run
        # Runs of this asset: a selection naming it (sensor requests, UI backfills) or its own job.
        if target.asset.key not in (run.asset_selection or ()) and not (
            run.asset_selection is None and run.job_name == target.job.name
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


def build_late_data_sensor(
    targets: Sequence[LateDataTarget],
    readings_key: str = READINGS_KEY,
    archive_key: str = ARCHIVE_READINGS_KEY,
    month_keys: Sequence[str] = ARCHIVE_MONTH_KEYS,
) -> dg.SensorDefinition:
    """Re-materialise partitions of ``targets`` that late readings changed (see the module docstring)."""
    names = " / ".join(target.asset.key.to_user_string() for target in targets)

    @dg.sensor(
        name=LATE_DATA_SENSOR_NAME,
        jobs=[target.job for target in targets],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Reads the `{HOURS_TOUCHED_KEY}` metadata of each new {readings_key} and monthly archive "
            f"({', '.join(month_keys)}) materialisation (and the day of each merged {archive_key} partition) "
            f"and requests the already-materialised {names} partitions "
            "those readings change (one run per contiguous range). Reads Dagster's event log only; RUNNING by "
            "default."
        ),
    )
    def aqi_late_data_sensor(context: dg.SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {}
        now = datetime.now(timezone.utc)
        requests: list[dg.RunRequest] = []
        # Merges report the hours they touched; a merged archive day touches at least its own 24 hours.
        readings = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(readings_key), after_storage_id=state.get("after")),
            limit=100,
            ascending=True,
        ).records
        archive = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(archive_key), after_storage_id=state.get("archive_after")),
            limit=100,
            ascending=True,
        ).records
        monthly = {
            key: context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), after_storage_id=state.get(f"after:{key}")),
                limit=100,
                ascending=True,
            ).records
            for key in month_keys
        }
        if not readings and not archive and not any(monthly.values()):
            return dg.SkipReason(f"no new {readings_key}, {archive_key} or monthly archive materialisation")
        # A backfilled month reports the hours it brought readings to (its tier days and its hot days alike).
        for record in [*readings, *(r for records in monthly.values() for r in records)]:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            touched_value = metadata.get(HOURS_TOUCHED_KEY)
            touched = parse_hours_touched(touched_value.value if touched_value is not None else None)
            if touched:
                requests.extend(
                    late_data_requests(context.instance, touched, targets, now, record.storage_id, record.timestamp)
                )
        for record in archive:
            if record.partition_key:
                # The day's own 24 hours (a re-merge adding nothing still asks for them), plus any hour of a
                # neighbouring day its rows landed in (timestamps with an offset, converted to UTC).
                day = datetime.strptime(record.partition_key, ARCHIVE_DAY_FORMAT)
                metadata = record.asset_materialization.metadata if record.asset_materialization else {}
                touched_value = metadata.get(HOURS_TOUCHED_KEY)
                touched = parse_hours_touched(touched_value.value if touched_value is not None else None)
                requests.extend(
                    late_data_requests(
                        context.instance, merged_ranges([(day, day + timedelta(days=1)), *touched]), targets, now,
                        record.storage_id, record.timestamp,
                    )
                )
        cursor = json.dumps(
            {
                "version": CURSOR_VERSION,
                "after": readings[-1].storage_id if readings else state.get("after"),
                "archive_after": archive[-1].storage_id if archive else state.get("archive_after"),
                **{f"after:{key}": records[-1].storage_id if records else state.get(f"after:{key}")
                   for key, records in monthly.items()},
            }
        )
        if not requests:
            return dg.SensorResult(skip_reason="no materialised partition changed", cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return aqi_late_data_sensor
