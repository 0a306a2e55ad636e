"""The Parquet tier (one daily partition per UTC day since the history's start) and the daily retention of the
hot tier and raw lake.

The tier's partitions start where the archive's do (AQI_ARCHIVE_START, read when the code location loads), so
every day the archive can backfill can also be tiered: `build_tier_assets` is called from the domain's
`defs()`, never at import.
"""

from datetime import date, datetime, timezone

import dagster as dg

from aqi_assets.defs.air_quality.late_data import ARCHIVE_READINGS_KEY, PARQUET_TIER_KEY
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.resources import InfluxDBResource, TimestreamResource
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.readings.history import attach_history
from aqi_assets.lib.tiers import glue_catalog
from aqi_assets.lib.tiers.parquet_tier import DayPrunedError, export_day, verify_day
from aqi_assets.lib.tiers.retention import prune_hot_tier, prune_raw_lake

OWNERS = ["team:air-quality"]
ARCHIVE_READINGS = dg.AssetKey(ARCHIVE_READINGS_KEY)
NIGHTLY_EXPORT_CRON = "30 0 * * *"


def export_condition() -> dg.AutomationCondition:
    """When a day's partition of `aqi_readings_parquet` is requested by automation.

    Nightly: yesterday's partition at 00:30 UTC once `aqi_readings` has been updated since (the archive is not
    waited for: it publishes a day later, if at all). And any day, as soon as its `archive_readings` partition
    is newly merged (a backfill of 2016 included), once that merge and the day's own export are not running.
    """
    archive = dg.AssetSelection.assets(ARCHIVE_READINGS)
    nightly = dg.AutomationCondition.on_cron(NIGHTLY_EXPORT_CRON, cron_timezone="UTC").ignore(archive)
    archive_merged = (
        dg.AutomationCondition.any_deps_updated().allow(archive).since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress().allow(archive)
        & ~dg.AutomationCondition.in_progress()
    ).with_label("archive_day_merged")
    return (nightly | archive_merged).with_label("nightly_or_archive_day_merged")


def build_tier_assets(history_start: str) -> list[dg.AssetsDefinition]:
    """The tier's assets, with daily partitions from `history_start` (YYYY-MM-DD)."""
    daily = dg.DailyPartitionsDefinition(start_date=history_start, timezone="UTC")

    @dg.asset(
        name=PARQUET_TIER_KEY,
        # The archive's days feed the same day's partition (both daily from the history's start).
        deps=["aqi_readings", dg.AssetDep(ARCHIVE_READINGS, partition_mapping=dg.TimeWindowPartitionMapping())],
        partitions_def=daily,
        group_name="tiers",
        kinds={"parquet", "s3", "duckdb"},
        owners=OWNERS,
        pool="duckdb",
        automation_condition=export_condition(),
        description=(
            "One UTC day of `aqi_readings`, every period (5-minute and 24-hour snapshots, archive "
            "measurements), as zstd Parquet sorted by sensor and time under `period=…/date=YYYY-MM-DD/` at "
            "AQI_PARQUET_URI (a path or s3://). Written to a staging key and swapped in (a re-run replaces "
            "exactly that day's periods; a period already pruned from DuckDB is left as it is, and fails the "
            "run if rows of it came back), then re-read and compared with DuckDB (row count and key checksum); "
            "registered in the Glue Data Catalog when AQI_GLUE_DATABASE is set. Runs nightly for yesterday and "
            "for any day whose archive partition is newly merged."
        ),
    )
    def aqi_readings_parquet(
        context: dg.AssetExecutionContext, storage: AqiStorage, tiers: TierStorage
    ) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        location = tiers.location()
        with storage.readings() as connection:
            try:
                export = export_day(connection, location, day, row_group_rows=tiers.row_group_rows)
            except DayPrunedError as error:
                raise dg.Failure(description=str(error), allow_retries=False) from None
            verification = verify_day(connection, location, day)
        if not verification.ok:
            raise dg.Failure(
                description=f"Parquet copy of {day} does not match DuckDB: " + "; ".join(verification.problems),
                metadata={"verification": dg.MetadataValue.json(verification.as_metadata())},
            )
        metadata: dict[str, object] = {
            "dagster/row_count": dg.MetadataValue.int(export.total_rows),
            "rows_per_period": dg.MetadataValue.json(export.rows),
            "periods_already_pruned": dg.MetadataValue.json(export.kept_pruned),
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
            columns = glue_catalog.hive_columns()
            glue_catalog.ensure_table(client, tiers.glue_target(), location, columns)
            created = glue_catalog.register_partitions(
                client, tiers.glue_target(), location, columns, [(p, day) for p, n in export.rows.items() if n]
            )
            metadata["glue_table"] = f"{tiers.glue_database}.{tiers.glue_table}"
            metadata["glue_partitions_created"] = dg.MetadataValue.int(created)
        context.log.info(f"{day}: {export.total_rows} readings → {export.total_bytes} bytes of Parquet, verified")
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        name="aqi_tiers_retention",
        deps=[aqi_readings_parquet],
        group_name="tiers",
        kinds={"duckdb", "file"},
        owners=OWNERS,
        pool="duckdb",
        # Runs daily from aqi_tiers_retention_schedule; the condition adds a run only when a day is exported
        # after the 02:30 tick (a late backfill), so everything downstream of the history stays declarative.
        automation_condition=dg.AutomationCondition.on_cron("30 2 * * *", cron_timezone="UTC"),
        description=(
            "Daily retention. Hot tier: each (day, period) older than AQI_HOT_DAYS is deleted from "
            "`aqi_readings` once the day's Parquet copy re-verifies and no enabled sync target has one of its "
            "readings pending; each delete must remove exactly the verified rows (then CHECKPOINT). Raw lake: "
            "snapshots older than AQI_RAW_RETENTION_DAYS whose merge is logged and whose day is verified in "
            "Parquet are removed, or moved to AQI_RAW_ARCHIVE_URI. Refreshes the `aqi_readings_all` view "
            "(hot + Parquet) stored in the DuckDB file for a local tier."
        ),
    )
    def aqi_tiers_retention(
        context: dg.AssetExecutionContext,
        storage: AqiStorage,
        tiers: TierStorage,
        timestream: TimestreamResource,
        influxdb: InfluxDBResource,
    ) -> dg.MaterializeResult:
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
            # DuckDB reads S3 here only through pyarrow: a view over it lives per connection (attach_history in
            # each reader), none can be stored in the file.
            if not location.is_s3:
                attach_history(connection, location, persist=True)
        for day, reason in hot.skipped.items():
            context.log.warning(f"{day} stays in DuckDB: {reason}")
        return dg.MaterializeResult(
            metadata={
                **{k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v
                   for k, v in hot.as_metadata().items()},
                **{k: dg.MetadataValue.json(v) if isinstance(v, list) else v for k, v in raw.as_metadata().items()},
                "sinks_guarded": dg.MetadataValue.json(enabled),
            }
        )  # fmt: skip

    return [aqi_readings_parquet, aqi_tiers_retention]


# Jobs select by key: the partitions come from the assets built at load time.
aqi_readings_parquet_job = dg.define_asset_job(
    "aqi_readings_parquet_job",
    selection=dg.AssetSelection.assets(PARQUET_TIER_KEY),
    description="Export one UTC day of the history (every period) to the Parquet tier and verify it.",
    executor_def=dg.in_process_executor,
)
aqi_tiers_retention_job = dg.define_asset_job(
    "aqi_tiers_retention_job",
    selection=dg.AssetSelection.assets("aqi_tiers_retention"),
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
