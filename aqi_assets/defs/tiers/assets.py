"""The Parquet tier (one daily partition per UTC day) and the daily retention of the hot tier and raw lake."""

from datetime import date, datetime, timezone

import dagster as dg

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.resources import InfluxDBResource, TimestreamResource
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.readings.periods import PERIODS
from aqi_assets.lib.tiers import glue_catalog
from aqi_assets.lib.tiers.parquet_tier import DayPrunedError, export_day, verify_day
from aqi_assets.lib.tiers.retention import create_all_readings_view, prune_hot_tier, prune_raw_lake

OWNERS = ["team:air-quality"]
DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC")


@dg.asset(
    deps=["aqi_readings"],
    partitions_def=DAILY,
    group_name="tiers",
    kinds={"parquet", "s3", "duckdb"},
    owners=OWNERS,
    pool="duckdb",
    # Yesterday's partition at 00:30 UTC, once the history has been updated since (the automation sensor).
    automation_condition=dg.AutomationCondition.on_cron("30 0 * * *", cron_timezone="UTC"),
    description=(
        "One UTC day of `aqi_readings` (both periods) as zstd Parquet, sorted by sensor and time, under "
        "`period=…/date=YYYY-MM-DD/` at AQI_PARQUET_URI (a path or s3://). Written to a staging key and "
        "swapped in (a re-run replaces exactly that day), then re-read and compared with DuckDB (row count "
        "and key checksum); registered in the Glue Data Catalog when AQI_GLUE_DATABASE is set."
    ),
)
def aqi_readings_parquet(context: dg.AssetExecutionContext, storage: AqiStorage, tiers: TierStorage):
    day = date.fromisoformat(context.partition_key)
    location = tiers.location()
    with storage.readings() as connection:
        try:
            export = export_day(connection, location, day, row_group_rows=tiers.row_group_rows)
        except DayPrunedError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None
        verification = verify_day(connection, location, day)
        columns = glue_catalog.hive_columns(connection) if tiers.glue_enabled else []
    if not verification.ok:
        raise dg.Failure(
            description=f"Parquet copy of {day} does not match DuckDB: " + "; ".join(verification.problems),
            metadata={"verification": dg.MetadataValue.json(verification.as_metadata())},
        )
    metadata: dict[str, object] = {
        "dagster/row_count": dg.MetadataValue.int(export.total_rows),
        "rows_per_period": dg.MetadataValue.json(export.rows),
        "parquet_bytes": dg.MetadataValue.int(export.total_bytes),
        "bytes_per_reading": dg.MetadataValue.float(
            round(export.total_bytes / export.total_rows, 2) if export.total_rows else 0.0
        ),
        "seconds": dg.MetadataValue.float(round(export.seconds, 3)),
        "location": location.uri_of(),
        "verified": True,
    }
    if tiers.glue_enabled and location.is_s3:
        client = tiers.glue_client()
        glue_catalog.ensure_table(client, tiers.glue_target(), location, columns)
        created = glue_catalog.register_partitions(
            client, tiers.glue_target(), location, columns, [(p, day) for p in PERIODS if export.rows[p]]
        )
        metadata["glue_table"] = f"{tiers.glue_database}.{tiers.glue_table}"
        metadata["glue_partitions_created"] = dg.MetadataValue.int(created)
    context.log.info(f"{day}: {export.total_rows} readings → {export.total_bytes} bytes of Parquet, verified")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    deps=[aqi_readings_parquet],
    group_name="tiers",
    kinds={"duckdb", "file"},
    owners=OWNERS,
    pool="duckdb",
    # Runs daily from aqi_tiers_retention_schedule; the condition adds a run only when a day is exported
    # after the 02:30 tick (a late backfill), so everything downstream of the history stays declarative.
    automation_condition=dg.AutomationCondition.on_cron("30 2 * * *", cron_timezone="UTC"),
    description=(
        "Daily retention. Hot tier: days older than AQI_HOT_DAYS are deleted from `aqi_readings` once their "
        "Parquet copy re-verifies and no enabled sync target has one of their readings pending (then "
        "CHECKPOINT). Raw lake: snapshots older than AQI_RAW_RETENTION_DAYS whose merge is logged and whose "
        "day is verified in Parquet are removed, or moved to AQI_RAW_ARCHIVE_URI. Refreshes the "
        "`aqi_readings_all` view (hot + Parquet)."
    ),
)
def aqi_tiers_retention(
    context: dg.AssetExecutionContext,
    storage: AqiStorage,
    tiers: TierStorage,
    timestream: TimestreamResource,
    influxdb: InfluxDBResource,
):
    today = datetime.now(timezone.utc).date()
    location = tiers.location()
    enabled = [name for name, sink in (("timestream", timestream), ("influxdb", influxdb)) if sink.enabled]
    with storage.readings() as connection:
        hot = prune_hot_tier(connection, location, today=today, hot_days=tiers.hot_days, enabled_sinks=enabled)
        raw = prune_raw_lake(
            connection,
            storage.raw_dir,
            today=today,
            raw_days=tiers.raw_retention_days,
            archive=tiers.archive_location(),
        )
        if not location.is_s3:  # DuckDB reads S3 here only through pyarrow: no view can be stored for it
            create_all_readings_view(connection, location, temporary=False)
    for day, reason in hot.skipped.items():
        context.log.warning(f"{day} stays in DuckDB: {reason}")
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v for k, v in hot.as_metadata().items()},
            **{k: dg.MetadataValue.json(v) if isinstance(v, list) else v for k, v in raw.as_metadata().items()},
            "sinks_guarded": dg.MetadataValue.json(enabled),
        }
    )


tier_assets = [aqi_readings_parquet, aqi_tiers_retention]

aqi_readings_parquet_job = dg.define_asset_job(
    "aqi_readings_parquet_job",
    selection=[aqi_readings_parquet],
    partitions_def=DAILY,
    description="Export one UTC day of the history to the Parquet tier and verify it.",
    executor_def=dg.in_process_executor,
)
aqi_tiers_retention_job = dg.define_asset_job(
    "aqi_tiers_retention_job",
    selection=[aqi_tiers_retention],
    description="Prune verified old days from DuckDB and safely merged old snapshots from the raw lake.",
    executor_def=dg.in_process_executor,
)
aqi_tiers_retention_schedule = dg.ScheduleDefinition(
    name="aqi_tiers_retention_schedule",
    job=aqi_tiers_retention_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    description="Daily 02:30 UTC, after the night's Parquet export.",
)
