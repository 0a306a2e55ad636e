"""Monthly partitions of the Sensor.Community archive: the whole network's past, one month per run.

`raw_archive_month` fetches a month's Parquet files (or its zipped CSVs) into the lake; `archive_month_readings`
normalises them by the archive's rules and writes the days older than the hot window straight to the Parquet tier,
without the DuckDB file, so months run in parallel (one run worker, pod or ECS task each); `archive_month_hot` adds
the few days inside the hot window to DuckDB under the `duckdb` pool. Backfills run one month per run.
"""

from datetime import date, datetime, timedelta, timezone

import dagster as dg

from aqi_assets.defs.archive.assets import FETCH_RETRY, GROUP, OWNERS, ArchiveDayConfig, resolve_for_backfill
from aqi_assets.defs.archive.resources import ArchiveSource
from aqi_assets.defs.common.intended_beta import asset_with_backfill_policy
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.air_quality.late_data import HOURS_TOUCHED_KEY, serialise_hours_touched
from aqi_assets.lib.archive.monthly_fetch import (
    FilesetError,
    MonthFetch,
    month_lake_dir,
    read_fileset,
    write_fileset,
)
from aqi_assets.lib.archive.selection import ResolvedSelection
from aqi_assets.lib.common.fetch import FetchError
from aqi_assets.lib.common.markdown import markdown_table
from aqi_assets.lib.tiers import glue_catalog
from aqi_assets.lib.tiers.archive_months import (
    MonthSourceError,
    MonthVerificationError,
    backfill_month,
    merge_hot_rows,
)

# Months run in this pool: set its limit to the number of months to run at once (`dagster instance concurrency
# set archive_month N`); every pool has one slot by default (deploy/dagster.yaml).
MONTH_POOL = "archive_month"
HOT_DIR = "_hot"
FILES_SHOWN = 25


def _month(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def hot_window_start(hot_days: int, today: date | None = None) -> date:
    """The first day the hot tier (DuckDB) keeps: retention's cut-off, so a backfilled day lands where retention
    would have left it."""
    return (today or datetime.now(timezone.utc).date()) - timedelta(days=hot_days)


def _selection_record(resolved: ResolvedSelection) -> dict:
    return {"everything": resolved.everything, "sensor_types": sorted(resolved.sensor_types),
            "sensor_ids": sorted(resolved.sensor_ids)}


def _selection_of(record: dict) -> ResolvedSelection:
    return ResolvedSelection(frozenset(record["sensor_ids"]), sensor_types=frozenset(record["sensor_types"]),
                             everything=record["everything"])


def build_monthly_archive_assets(start_date: str) -> list[dg.AssetsDefinition]:
    first = date.fromisoformat(start_date).replace(day=1)
    partitions = dg.MonthlyPartitionsDefinition(start_date=first.isoformat(), timezone="UTC")
    backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)

    @asset_with_backfill_policy(
        name="raw_archive_month",
        deps=["aqi_readings"],  # countries and boxes resolve from the history's locations
        group_name=GROUP,
        kinds={"parquet", "file"},
        owners=OWNERS,
        partitions_def=partitions,
        backfill_policy=backfill,
        retry_policy=FETCH_RETRY,
        pool=MONTH_POOL,
        description=(
            "One month of the archive's monthly files for the selected sensors (AQI_ARCHIVE_SENSORS or the run "
            "config's `sensors`: `all`, `type:<name>`, ids, countries, boxes): per sensor type the Parquet parts "
            "of `parquet/YYYY-MM/<type>/`, else the zip of `csv_per_month/YYYY-MM/`, stored byte for byte under "
            "`raw/archive-monthly/YYYY-MM/<type>/` (files already there are not fetched again), and the set "
            "fetched recorded for the merge."
        ),
    )
    def raw_archive_month(
        context: dg.AssetExecutionContext,
        config: ArchiveDayConfig,
        archive: ArchiveSource,
        storage: AqiStorage,
        tiers: TierStorage,
    ) -> dg.MaterializeResult:
        month = _month(context)
        text = archive.sensors if config.sensors is None else config.sensors
        selection, resolved = resolve_for_backfill(storage, tiers, text)
        if resolved is None or resolved.empty:
            # The month's file set says "nothing": the merge then writes nothing (not the files of an earlier fetch).
            write_fileset(storage.raw_dir, MonthFetch(month), _selection_record(resolved or ResolvedSelection(
                frozenset())))
        if resolved is None:
            return dg.MaterializeResult(
                metadata={"status": "disabled", "reason": "no sensors selected (AQI_ARCHIVE_SENSORS is empty)"}
            )
        metadata: dict[str, object] = {"selection": selection.describe(), "selected": resolved.describe()}
        if resolved.notes:
            metadata["selection_notes"] = "; ".join(resolved.notes)
        if resolved.empty:
            context.log.warning(f"{month:%Y-%m}: the selection resolves to no sensor ({'; '.join(resolved.notes)})")
            return dg.MaterializeResult(metadata={"status": "no sensors", **metadata})
        try:
            fetched = archive.fetch_month(month, resolved.types_to_fetch(), storage.raw_dir)
        except FetchError as error:
            raise dg.Failure(description=str(error), allow_retries=not error.permanent, metadata=metadata) from None
        write_fileset(storage.raw_dir, fetched, _selection_record(resolved))
        rows = [[f.sensor_type, f.name, f.kind, f.bytes, f.sha256[:16], "fetched" if f.downloaded else "in lake"]
                for f in fetched.files[:FILES_SHOWN]]
        if fetched.types_missing:
            context.log.warning(f"{month:%Y-%m}: no file of {', '.join(fetched.types_missing)} in the archive")
        context.log.info(f"{month:%Y-%m}: {len(fetched.files)} files ({fetched.downloaded} fetched), "
                         f"{fetched.bytes} bytes")
        return dg.MaterializeResult(
            metadata={
                "status": "fetched",
                **metadata,
                "files": dg.MetadataValue.int(len(fetched.files)),
                "files_fetched": dg.MetadataValue.int(fetched.downloaded),
                "bytes": dg.MetadataValue.int(fetched.bytes),
                "types_from_parquet": dg.MetadataValue.json(fetched.types_listed),
                "types_from_zip": dg.MetadataValue.json(fetched.types_from_zip),
                "types_missing": dg.MetadataValue.json(fetched.types_missing),
                "listing_urls": dg.MetadataValue.json(fetched.listing_urls),
                "sha256": fetched.fileset_sha256(),
                "path": dg.MetadataValue.path(str(month_lake_dir(storage.raw_dir, month))),
                "files_table": dg.MetadataValue.md(
                    markdown_table(["type", "file", "kind", "bytes", "sha256", "state"], rows)
                ),
            }
        )

    @asset_with_backfill_policy(
        name="archive_month_readings",
        deps=[raw_archive_month],
        group_name=GROUP,
        kinds={"parquet", "duckdb", "python"},
        owners=OWNERS,
        partitions_def=partitions,
        backfill_policy=backfill,
        pool=MONTH_POOL,
        description=(
            "The month's fetched files normalised, quarantined and indexed by the archive's own rules (the daily "
            "CSVs' code), in a scratch DuckDB of the run's own. Days older than the hot window (AQI_HOT_DAYS) go "
            "straight to the Parquet tier as `period=archive/date=…/` partitions, each the union of what the tier "
            "held and the new readings, staged, verified (row count and key checksum) and swapped in, then listed "
            "in the month's manifest (`_backfilled/`); the history reads them like pruned days. The history's "
            "DuckDB file is never opened. Days inside the hot window are staged for archive_month_hot."
        ),
    )
    def archive_month_readings(
        context: dg.AssetExecutionContext, archive: ArchiveSource, storage: AqiStorage, tiers: TierStorage
    ) -> dg.MaterializeResult:
        month = _month(context)
        try:
            files, selection_record = read_fileset(storage.raw_dir, month)
        except FilesetError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None
        if not files:
            return dg.MaterializeResult(metadata={
                "status": "no files", "reason": "the month's fetch stored no file (nothing selected, or the archive "
                "has none of the selected types)", "dagster/row_count": dg.MetadataValue.int(0)})
        location = tiers.location()
        selection = _selection_of(selection_record)
        try:
            result = backfill_month(
                month,
                files,
                location,
                hot_from=hot_window_start(tiers.hot_days),
                hot_dir=month_lake_dir(storage.raw_dir, month) / HOT_DIR,
                selection=selection,
                run_id=context.run.run_id,
                row_group_rows=tiers.row_group_rows,
                memory_limit=archive.month_memory_limit,
                threads=archive.month_threads or None,
            )
        except (MonthSourceError, MonthVerificationError) as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None
        metadata: dict[str, object] = {}
        if tiers.glue_enabled and location.is_s3 and result.cold_rows:
            client = tiers.glue_client()
            columns = glue_catalog.hive_columns()
            glue_catalog.ensure_table(client, tiers.glue_target(), location, columns)
            created = glue_catalog.register_partitions(
                client, tiers.glue_target(), location, columns,
                [("archive", date.fromisoformat(day)) for day in result.cold_rows],
            )
            metadata["glue_partitions_created"] = dg.MetadataValue.int(created)
        context.log.info(
            f"{month:%Y-%m}: {result.measurements} readings, {result.rows_new} new; {result.cold_total} rows in "
            f"{len(result.cold_rows)} tier days, {result.hot_rows} staged for DuckDB"
        )
        return dg.MaterializeResult(
            metadata={
                **metadata,
                "files": dg.MetadataValue.int(result.files),
                "bytes": dg.MetadataValue.int(result.bytes),
                "measurements": dg.MetadataValue.int(result.measurements),
                "rows_new": dg.MetadataValue.int(result.rows_new),
                "values_quarantined": dg.MetadataValue.int(result.values_quarantined),
                "rows_quarantined": dg.MetadataValue.int(result.records_quarantined),
                "rows_outside_month": dg.MetadataValue.int(result.rows_outside_month),
                "sensors": dg.MetadataValue.int(result.sensors),
                "tier_days": dg.MetadataValue.int(len(result.cold_rows)),
                "tier_rows": dg.MetadataValue.int(result.cold_total),
                "tier_rows_per_day": dg.MetadataValue.json(result.cold_rows),
                "parquet_bytes": dg.MetadataValue.int(result.parquet_bytes),
                "manifest": result.manifest or "",
                "hot_rows_staged": dg.MetadataValue.int(result.hot_rows),
                "seconds": dg.MetadataValue.json(result.seconds),
                "dagster/row_count": dg.MetadataValue.int(result.cold_total + result.hot_rows),
                HOURS_TOUCHED_KEY: dg.MetadataValue.json(serialise_hours_touched(result.hours_touched())),
            }
        )

    @asset_with_backfill_policy(
        name="archive_month_hot",
        deps=[archive_month_readings],
        group_name=GROUP,
        kinds={"duckdb"},
        owners=OWNERS,
        partitions_def=partitions,
        backfill_policy=backfill,
        pool="duckdb",
        description=(
            "The month's days inside the hot window (staged by archive_month_readings) added to `aqi_readings` as "
            "archive rows, exactly once per staged file, keys the history holds skipped. A month wholly older than "
            "the hot window has nothing staged: this step then does not open the DuckDB file."
        ),
    )
    def archive_month_hot(context: dg.AssetExecutionContext, storage: AqiStorage) -> dg.MaterializeResult:
        month = _month(context)
        hot_dir = month_lake_dir(storage.raw_dir, month) / HOT_DIR
        readings = hot_dir / "hot-readings.parquet"
        if not readings.is_file():
            return dg.MaterializeResult(metadata={"status": "no hot days", "rows_inserted": dg.MetadataValue.int(0)})
        with storage.readings() as connection:
            inserted, known = merge_hot_rows(
                connection, month, readings, hot_dir / "hot-rejected.parquet", run_id=context.run.run_id
            )
        return dg.MaterializeResult(
            metadata={
                "status": "merged",
                "rows_inserted": dg.MetadataValue.int(inserted),
                "rows_already_known": dg.MetadataValue.int(known),
                "dagster/row_count": dg.MetadataValue.int(inserted),
            }
        )

    return [raw_archive_month, archive_month_readings, archive_month_hot]
