"""The public map site: rebuilt after every `aqi_readings` update, then published to S3 when configured.

It reads `aggregates.aqi_hourly` (official US AQI NowCast, DAQI on the 24-hour mean) whenever that table
exists, at every rebuild; without it the page shows the indicative per-reading indices, labelled as such.
"""


import time

import dagster as dg

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.public.resources import PublicSiteResource
from aqi_assets.lib.public_site.build import has_history_dir, write_site
from aqi_assets.lib.public_site.data import site_data
from aqi_assets.lib.public_site.publish import publish_site


@dg.asset(
    deps=["aqi_readings"],
    group_name="public",
    kinds={"html", "s3"},
    pool="duckdb",  # it reads the DuckDB file (the write of the site itself happens after the read)
    automation_condition=(
        dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ),
    description=(
        "Static public map of the latest outdoor PM readings (Leaflet, vendored): latest.geojson, 7-day hourly "
        "histories (256 files by sensor id), per-country summary and index.html, written atomically to "
        "AQI_SITE_DIR (default data/site) and uploaded to AQI_SITE_S3_BUCKET when set. Serve it locally with "
        "`make site`."
    ),
)
def public_site(context: dg.AssetExecutionContext, storage: AqiStorage, public_site: PublicSiteResource):
    started = time.perf_counter()
    with storage.readings() as connection:
        content = site_data(connection, have_fingerprint=has_history_dir(public_site.site_path()))
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
