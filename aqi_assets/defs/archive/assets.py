"""Daily partitions of the Sensor.Community archive: fetch a day into the lake, then merge it into the history.

Backfills run one day per run (`BackfillPolicy.multi_run(1)`): progress shows per day in the UI, and after a
failure only the failed days are re-run. Both steps are idempotent: the fetch skips files already in the lake,
the merge skips files already merged.
"""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from aqi_assets.defs.archive.resources import ArchiveSource
from aqi_assets.defs.common.intended_beta import asset_with_backfill_policy
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.air_quality.late_data import (
    HOURS_TOUCHED_KEY,
    latest_ingest_seq,
    serialise_hours_touched,
    touched_hour_ranges,
)
from aqi_assets.lib.archive.fetch import archive_day_dir, lake_files
from aqi_assets.lib.archive.merge import ArchiveDayPrunedError, merge_archive_day
from aqi_assets.lib.archive.selection import (
    LOCATION_LOOKBACK,
    SelectionError,
    location_window,
    parse_selection,
    resolve_selection,
)
from aqi_assets.lib.common.fetch import FetchError
from aqi_assets.lib.common.markdown import markdown_table
from aqi_assets.lib.readings.history import attach_history, backfilled, has_history
from aqi_assets.lib.readings.periods import ARCHIVE

OWNERS = ["team:air-quality"]
GROUP = "archive"
FETCH_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
FILES_SHOWN = 25


class ArchiveDayConfig(dg.Config):
    sensors: str | None = None  # overrides AQI_ARCHIVE_SENSORS for this run (same syntax)


def _day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def resolve_for_backfill(storage: AqiStorage, tiers: TierStorage, text: str):
    """The selection text parsed and resolved to sensors (None when empty: the backfill is disabled)."""
    try:
        selection = parse_selection(text)
    except SelectionError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    if selection.empty:
        return selection, None
    needs_history = bool(selection.countries or selection.boxes)
    if needs_history and Path(storage.duckdb_path).exists():
        with storage.readings(read_only=True) as connection:
            if has_history(connection):  # the recent readings only, hot or pruned to the Parquet tier
                attach_history(connection, tiers.location(), window=location_window())
            return selection, resolve_selection(connection, selection)
    return selection, resolve_selection(None, selection)


def build_archive_assets(start_date: str) -> list[dg.AssetsDefinition]:
    partitions = dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")
    backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)

    @asset_with_backfill_policy(
        name="raw_archive_day",
        # Countries and boxes resolve from the locations in the history (lineage only: no automation here).
        deps=["aqi_readings"],
        group_name=GROUP,
        kinds={"csv", "file"},
        owners=OWNERS,
        partitions_def=partitions,
        backfill_policy=backfill,
        retry_policy=FETCH_RETRY,
        description=(
            "One UTC day of the Sensor.Community archive (one CSV per sensor) for the selected sensors "
            "(AQI_ARCHIVE_SENSORS or the run config's `sensors`), stored byte for byte under "
            "`raw/archive/YYYY/MM/DD/`. Files already in the lake are not fetched again. Unset selection: "
            "succeeds with status `disabled`. Countries and boxes resolve to the sensors located there by the "
            f"history's readings of the last {LOCATION_LOOKBACK.days} days (aqi_readings, hot or in the Parquet tier)."
        ),
    )
    def raw_archive_day(
        context: dg.AssetExecutionContext,
        config: ArchiveDayConfig,
        archive: ArchiveSource,
        storage: AqiStorage,
        tiers: TierStorage,
    ) -> dg.MaterializeResult:
        day = _day(context)
        text = archive.sensors if config.sensors is None else config.sensors
        selection, resolved = resolve_for_backfill(storage, tiers, text)
        if resolved is None:
            return dg.MaterializeResult(
                metadata={"status": "disabled", "reason": "no sensors selected (AQI_ARCHIVE_SENSORS is empty)"}
            )
        metadata: dict[str, object] = {
            "selection": selection.describe(),
            "selected": resolved.describe(),
            "selected_sensors": dg.MetadataValue.int(len(resolved.sensor_ids)),
        }
        if resolved.notes:
            metadata["selection_notes"] = "; ".join(resolved.notes)
        if resolved.empty:
            context.log.warning(f"{day}: the selection resolves to no sensor ({'; '.join(resolved.notes)})")
            return dg.MaterializeResult(metadata={"status": "no sensors", **metadata})
        try:
            fetched = archive.fetch(day, resolved, storage.raw_dir)
        except FetchError as error:
            raise dg.Failure(description=str(error), allow_retries=not error.permanent, metadata=metadata) from None
        rows = [[f.name, f.bytes, f.sha256[:16], "fetched" if f.downloaded else "in lake"]
                for f in sorted(fetched.stored, key=lambda f: f.name)[:FILES_SHOWN]]
        context.log.info(
            f"{day}: {len(fetched.stored)} files ({fetched.downloaded} fetched), {fetched.bytes} bytes "
            f"from {fetched.listing_url}"
        )
        return dg.MaterializeResult(
            metadata={
                "status": "fetched",
                **metadata,
                "listing_url": dg.MetadataValue.url(fetched.listing_url),
                "layout": fetched.layout,
                "files": dg.MetadataValue.int(len(fetched.stored)),
                "files_fetched": dg.MetadataValue.int(fetched.downloaded),
                "files_already_in_lake": dg.MetadataValue.int(len(fetched.stored) - fetched.downloaded),
                "files_listed_that_day": dg.MetadataValue.int(fetched.listed_files),
                "files_not_found": dg.MetadataValue.int(len(fetched.not_found)),
                "bytes": dg.MetadataValue.int(fetched.bytes),
                "sensors": dg.MetadataValue.int(len({f.sensor_id for f in fetched.stored})),
                "sensors_without_file": dg.MetadataValue.int(len(fetched.sensors_without_file)),
                "sha256": fetched.fileset_sha256(),
                "path": dg.MetadataValue.path(str(archive_day_dir(storage.raw_dir, day))),
                "files_table": dg.MetadataValue.md(markdown_table(["file", "bytes", "sha256", "state"], rows)),
            }
        )

    @asset_with_backfill_policy(
        name="archive_readings",
        deps=[raw_archive_day],
        group_name=GROUP,
        kinds={"duckdb", "python"},
        owners=OWNERS,
        partitions_def=partitions,
        backfill_policy=backfill,
        pool="duckdb",
        description=(
            "The day's archive files merged into `aqi_readings` as the registry's archive period (the same "
            "quarantine rules and indices as the snapshots), exactly once per file: a re-run adds nothing, a crash "
            "leaves nothing half-merged (`archive_files` / `archive_log`). Feeds the official indices (aqi_hourly, "
            "aqi_daily) and the Parquet tier (aqi_readings_parquet exports the day once it is merged). A day "
            "whose archive rows were already pruned to the tier is refused."
        ),
    )
    def archive_readings(
        context: dg.AssetExecutionContext, storage: AqiStorage, tiers: TierStorage
    ) -> dg.MaterializeResult:
        day = _day(context)
        paths = lake_files(storage.raw_dir, day)
        if not paths:
            return dg.MaterializeResult(
                metadata={"status": "no files", "files": dg.MetadataValue.int(0),
                          "reason": "no archive file of this day in the lake (nothing selected or fetched)"}
            )
        with storage.readings() as connection:
            seq_before = latest_ingest_seq(connection)
            try:
                # Days the monthly backfill wrote straight to the tier (the day and its neighbours, which a
                # file's offset timestamps may reach) are refused like pruned ones.
                backfilled_rows = {
                    d: entry.rows
                    for (period, d), entry in backfilled(
                        tiers.location(), first=day - timedelta(days=1), last=day + timedelta(days=1)
                    ).items()
                    if period == ARCHIVE
                }
                stats = merge_archive_day(
                    connection, day, paths, run_id=context.run.run_id, backfilled_rows=backfilled_rows
                )
            except ArchiveDayPrunedError as error:
                raise dg.Failure(description=str(error), allow_retries=False) from None
            # The hours the new rows fall in: a timestamp with an offset may land on a neighbouring UTC day, whose
            # indices aqi_late_data_sensor then re-materialises too.
            hours_touched = touched_hour_ranges(connection, seq_before)
        context.log.info(
            f"{day}: {stats.files} files merged ({stats.files_already_merged} before), {stats.rows_inserted} new "
            f"readings, {stats.values_quarantined} values and {stats.records_quarantined} rows quarantined"
        )
        return dg.MaterializeResult(
            metadata={
                "status": "merged" if stats.files else "already merged",
                "files": dg.MetadataValue.int(stats.files),
                "files_already_merged": dg.MetadataValue.int(stats.files_already_merged),
                "bytes": dg.MetadataValue.int(stats.bytes),
                "measurements": dg.MetadataValue.int(stats.measurements),
                "rows_inserted": dg.MetadataValue.int(stats.rows_inserted),
                "rows_already_known": dg.MetadataValue.int(stats.rows_already_known),
                "quarantined": dg.MetadataValue.int(stats.values_quarantined + stats.records_quarantined),
                "values_quarantined": dg.MetadataValue.int(stats.values_quarantined),
                "rows_quarantined": dg.MetadataValue.int(stats.records_quarantined),
                "sensors": dg.MetadataValue.int(stats.sensors),
                "problems": dg.MetadataValue.json(stats.details),
                "dagster/row_count": dg.MetadataValue.int(stats.rows_inserted),
                HOURS_TOUCHED_KEY: dg.MetadataValue.json(serialise_hours_touched(hours_touched)),
            }
        )

    return [raw_archive_day, archive_readings]
