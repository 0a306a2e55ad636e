"""The public map site: rebuilt after every `aqi_readings` update and every new `aqi_hourly` hour, then published
to S3 when configured.

Every input is declared: the history (`aqi_readings`, read through `aqi_readings_all` over the last hour: hot
rows plus any day of it pruned to the Parquet tier, `aqi_readings_parquet`) and the `aqi_hourly` table (the
official indices, named by the aggregates IO manager). A missing table or column fails the build with what to
do; a single sensor without a recent hour shows its latest reading's index, labelled `reading`.
"""

import time

import dagster as dg

from aqi_assets.defs.air_quality.aggregates_io import AggregatesDuckDBIOManager
from aqi_assets.defs.air_quality.late_data import PARQUET_TIER_KEY
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.public.resources import PublicSiteResource
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.air_quality.aggregates import AQI_HOURLY
from aqi_assets.lib.public_site.build import has_history_dir, write_site
from aqi_assets.lib.public_site.data import HourlyTableError, site_data
from aqi_assets.lib.public_site.publish import publish_site
from aqi_assets.lib.readings.history import HistoryError

READINGS_ASSET = "aqi_readings"
PARQUET_ASSET = PARQUET_TIER_KEY  # built by defs.tiers.assets (daily, from AQI_ARCHIVE_START)
_PARQUET = dg.AssetSelection.assets(PARQUET_ASSET)
_NOT_WAITED_FOR = dg.AssetSelection.assets(AQI_HOURLY, PARQUET_ASSET)

# aqi_hourly only triggers rebuilds. Its dep maps to the latest hour (LastPartitionMapping: a new hour triggers
# one, a recomputed older hour does not); without that eager() would wait for every hourly partition since the
# start. It never holds a rebuild back either: the latest hour is missing for 10+ minutes each hour (and an
# hourly backfill may run for hours) while the map must follow aqi_readings every 5 minutes, and Dagster 1.13
# evaluates a dep's checks over all its partitions whatever the mapping (one failed hour anywhere would stop
# the site). The build checks the table itself and fails loudly without it.
# aqi_readings_parquet is lineage only (the build reads a pruned day's readings from the tier): it neither
# triggers a rebuild (a nightly export changes no reading the map shows) nor holds one back (the newest day is
# exported a day late; an export running or failing says nothing about the readings shown).
# aqi_readings keeps eager()'s rules and its blocking checks must have passed.
SITE_AUTOMATION = (
    dg.AutomationCondition.eager()
    .replace("any_deps_updated", dg.AutomationCondition.any_deps_updated().ignore(_PARQUET))
    .replace("any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(_NOT_WAITED_FOR))
    .replace("any_deps_in_progress", dg.AutomationCondition.any_deps_in_progress().ignore(_NOT_WAITED_FOR))
    & dg.AutomationCondition.all_deps_blocking_checks_passed().ignore(_NOT_WAITED_FOR)
).with_label("eager on aqi_readings and the latest aqi_hourly hour")


@dg.asset(
    deps=[
        READINGS_ASSET,
        dg.AssetDep(AQI_HOURLY, partition_mapping=dg.LastPartitionMapping()),
        # Lineage of the pruned days the build reads (the latest day: mapping to every day since 2015 would make
        # each evaluation walk them all).
        dg.AssetDep(PARQUET_ASSET, partition_mapping=dg.LastPartitionMapping()),
    ],
    group_name="public",
    kinds={"html", "s3"},
    pool="duckdb",  # it reads the DuckDB file (the write of the site itself happens after the read)
    automation_condition=SITE_AUTOMATION,
    description=(
        "Static public map of the latest outdoor PM readings (Leaflet and supercluster, vendored: sensors grouped "
        "by their median at low zoom) with the official indices of `aqi_hourly` and their official health advice, "
        "temperature and humidity layers, in English and German: latest.geojson, 7-day hourly histories (256 "
        "files by sensor id), per-country summary and index.html, written atomically to AQI_SITE_DIR (default "
        "data/site) and uploaded to AQI_SITE_S3_BUCKET when set. Reads the latest hour of the history through "
        "aqi_readings_all (DuckDB plus the Parquet tier). Serve it locally with `make site`."
    ),
)
def public_site(
    context: dg.AssetExecutionContext,
    storage: AqiStorage,
    tiers: TierStorage,
    public_site: PublicSiteResource,
    aggregates_io_manager: dg.ResourceParam[AggregatesDuckDBIOManager],
) -> dg.MaterializeResult:
    started = time.perf_counter()
    hourly_table = aggregates_io_manager.table_name(AQI_HOURLY)
    try:
        with storage.readings() as connection:
            content = site_data(
                connection,
                hourly_table=hourly_table,
                location=tiers.location(),
                have_fingerprint=has_history_dir(public_site.site_path()),
            )
    except (HourlyTableError, HistoryError) as error:
        raise dg.Failure(description=str(error), metadata={"hourly_table": hourly_table}) from error
    read_s = time.perf_counter() - started  # the DuckDB file is released before any file is written
    build = write_site(
        content, public_site.site_path(), public_site.site_config(), keep_s=public_site.keep_old_files_s,
        started=started,
    )
    for note in build.notes:
        context.log.info(note)
    metadata: dict[str, object] = {
        **build.as_metadata(),
        "read_seconds": round(read_s, 3),
        **public_site.describe(),
        "index": dg.MetadataValue.path(str(public_site.site_path().resolve() / "index.html")),
    }
    if public_site.publishing:
        client = public_site.s3_client()
        try:
            published = publish_site(
                client,
                public_site.s3_bucket,
                public_site.site_path(),
                build.files,
                prefix=public_site.s3_prefix,
                concurrency=public_site.upload_concurrency,
            )
        finally:
            client.close()
        metadata.update({f"s3_{k}": v for k, v in published.as_metadata().items()})
    return dg.MaterializeResult(metadata=metadata)


public_assets: list = [public_site]
