"""Collect Sensor.Community snapshots into the raw lake and merge them into the DuckDB history."""


import dagster as dg
import duckdb

from aqi_assets.defs.air_quality.late_data import HOURS_TOUCHED_KEY, hours_touched_metadata
from aqi_assets.defs.air_quality.resources import SnapshotSource
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.lib.air_quality.lake import mark_invalid, pending_snapshots
from aqi_assets.lib.air_quality.late_data import latest_ingest_seq, touched_hour_ranges
from aqi_assets.lib.air_quality.normalise import SnapshotFormatError, count_records, merge_snapshot, record_unreadable
from aqi_assets.lib.air_quality.summary import readings_summary
from aqi_assets.lib.common.fetch import FetchError
from aqi_assets.lib.readings.periods import (
    FIVE_MINUTE,
    TWENTY_FOUR_HOUR,
    SnapshotPeriod,
    snapshot_period,
    snapshot_periods,
)
from aqi_assets.lib.readings.schema import COLUMN_DESCRIPTIONS

OWNERS = ["team:air-quality"]
FETCH_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def _freshness(period: SnapshotPeriod) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=period.freshness_fail, warn_window=period.freshness_warn)


def _raw_snapshot_asset(period: str) -> dg.AssetsDefinition:
    spec = snapshot_period(period)

    @dg.asset(
        name=f"raw_snapshot_{period}",
        group_name="sensor_community",
        kinds={"json", "file"},
        owners=OWNERS,
        tags={"period": period},
        retry_policy=FETCH_RETRY,
        freshness_policy=_freshness(spec),
        description=(
            f"Sensor.Community {spec.label}, stored byte for byte (gzip) in the raw lake before any "
            "parsing; a body that is not a JSON array fails here and is kept with an `.invalid` suffix."
        ),
    )
    def raw_snapshot(context: dg.AssetExecutionContext, snapshots: SnapshotSource, storage: AqiStorage):
        try:
            fetched = snapshots.fetch(period, storage.raw_dir)
        except FetchError as error:
            # A refused URL or a 4xx fails at once; network trouble goes through the RetryPolicy.
            raise dg.Failure(description=str(error), allow_retries=not error.permanent) from None
        metadata: dict[str, object] = {
            "url": dg.MetadataValue.url(fetched.url) if fetched.url.startswith("http") else fetched.url,
            "path": dg.MetadataValue.path(str(fetched.path)),
            "bytes": dg.MetadataValue.int(fetched.body_bytes),
            "stored_bytes": dg.MetadataValue.int(fetched.stored_bytes),
            "sha256": fetched.sha256,
            "fetched_at": dg.MetadataValue.timestamp(fetched.fetched_at),
        }
        if fetched.last_modified:
            metadata["last_modified"] = fetched.last_modified  # the server's own text, as the sensor sees it
        if fetched.content_type:
            metadata["content_type"] = fetched.content_type
        try:
            # An in-memory DuckDB validates the body: the history file is not touched by this step.
            with duckdb.connect() as scratch:
                records = count_records(scratch, fetched.path)
        except SnapshotFormatError as error:
            kept = mark_invalid(fetched.path)
            raise dg.Failure(
                description=f"Snapshot body from {fetched.url} is not a JSON array ({error}). "
                f"The raw bytes are kept in {kept}; the history is untouched.",
                metadata={**metadata, "path": dg.MetadataValue.path(str(kept))},
                allow_retries=False,
            ) from None
        context.log.info(f"{period}: {records} records, {fetched.body_bytes} bytes → {fetched.path}")
        return dg.MaterializeResult(metadata={**metadata, "records": dg.MetadataValue.int(records)})

    return raw_snapshot


raw_snapshot_5min = _raw_snapshot_asset(FIVE_MINUTE.name)
raw_snapshot_24h = _raw_snapshot_asset(TWENTY_FOUR_HOUR.name)


class AqiReadingsConfig(dg.Config):
    full_rescan: bool = False  # look at every day of the lake, not just from the newest merged snapshot on


@dg.asset(
    deps=[raw_snapshot_5min, raw_snapshot_24h],
    group_name="air_quality",
    kinds={"duckdb", "python"},
    owners=OWNERS,
    pool="duckdb",
    automation_condition=dg.AutomationCondition.eager(),
    # The 5-minute feed drives freshness; the 24-hour period has its own (warning) check.
    freshness_policy=_freshness(FIVE_MINUTE),
    description=(
        "Typed readings per (period, sensor, timestamp) with UK DAQI and US EPA AQI (2024) indices, merged from "
        "every raw snapshot not merged before. Bad values are NULL here and quarantined in `rejected_values`. "
        "5-minute indices are indicative; DAQI and the EPA daily AQI are defined on 24-hour means."
    ),
)
def aqi_readings(context: dg.AssetExecutionContext, config: AqiReadingsConfig, storage: AqiStorage):
    merged, unreadable = [], []
    with storage.readings() as connection:
        seq_before = latest_ingest_seq(connection)
        for period in snapshot_periods():
            for path in pending_snapshots(connection, storage.raw_dir, period, full_rescan=config.full_rescan):
                try:
                    stats = merge_snapshot(connection, path, period, run_id=context.run.run_id)
                except SnapshotFormatError as error:
                    record_unreadable(connection, path.name, period, str(error), run_id=context.run.run_id)
                    unreadable.append(f"{path}: {error}")
                    continue
                merged.append(stats)
                context.log.info(
                    f"merged {stats.snapshot}: {stats.records} records, {stats.rows_inserted} new readings, "
                    f"{stats.rows_duplicate} already known ({stats.readings_differing} with other values), "
                    f"{stats.records_without_values} records without values, "
                    f"{stats.values_rejected} values quarantined"
                )
        summary = readings_summary(connection)
        # Hours whose 5-minute readings this run added: aqi_late_data_sensor re-materialises the aggregates
        # partitions they change.
        hours_touched = touched_hour_ranges(connection, seq_before)
    if unreadable:
        raise dg.Failure(
            description="Unreadable raw snapshots (kept in the lake, skipped from now on): " + "; ".join(unreadable),
            allow_retries=False,
        )
    metadata: dict[str, object] = {
        "dagster/row_count": dg.MetadataValue.int(summary.total_rows),
        "snapshots_merged": dg.MetadataValue.int(len(merged)),
        "records_read": dg.MetadataValue.int(sum(s.records for s in merged)),
        "rows_inserted": dg.MetadataValue.int(sum(s.rows_inserted for s in merged)),
        "rows_already_known": dg.MetadataValue.int(sum(s.rows_duplicate for s in merged)),
        "values_quarantined": dg.MetadataValue.int(sum(s.values_rejected for s in merged)),
        # Records that carried no valid value are no reading (their bad values are in rejected_values).
        "records_without_values": dg.MetadataValue.int(sum(s.records_without_values for s in merged)),
        # Known readings delivered again with other values (the first copy stays; this one is quarantined).
        "readings_differing": dg.MetadataValue.int(sum(s.readings_differing for s in merged)),
        "rows_per_period": dg.MetadataValue.json(summary.rows_per_period),
        "daqi_band_counts": dg.MetadataValue.json(summary.daqi_band_counts),
        "aqi_us_category_counts": dg.MetadataValue.json(summary.aqi_us_category_counts),
        "worst_outdoor_sensors": dg.MetadataValue.md(summary.worst_sensors_markdown),
        HOURS_TOUCHED_KEY: hours_touched_metadata(hours_touched),
        "index_note": "5-minute indices are indicative only: DAQI and the EPA daily AQI are defined on 24-hour means.",
        "counts_note": "daqi_band/* and aqi_us_category/*: per period, outdoor PM sensors, each counted once with "
        "its latest reading (sensors quiet for longer than the period's freshness limit left out).",
        "dagster/table_name": "aqi_readings",
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name, column_type, description=COLUMN_DESCRIPTIONS.get(name))
                for name, column_type in summary.columns
            ]
        ),
    }
    for prefix, per_period in (
        ("daqi_band", summary.daqi_band_counts), ("aqi_us_category", summary.aqi_us_category_counts)
    ):
        for period, counts in per_period.items():
            for label, count in counts.items():
                metadata[f"{prefix}/{period}/{label}"] = dg.MetadataValue.int(count)
    if not merged:
        context.log.info("no new raw snapshots to merge")
    return dg.MaterializeResult(metadata=metadata)


ingest_assets = [raw_snapshot_5min, raw_snapshot_24h, aqi_readings]

ingest_jobs = [
    dg.define_asset_job(
        period.job_name,
        selection=dg.AssetSelection.assets(f"raw_snapshot_{period.name}", aqi_readings),
        description=f"Fetch the {period.label} snapshot and merge it into the AQI history (with the blocking "
        "checks).",
        executor_def=dg.in_process_executor,
    )
    for period in snapshot_periods().values()
]
