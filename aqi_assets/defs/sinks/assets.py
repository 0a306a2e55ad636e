"""Sync assets: copy new `aqi_readings` rows to Timestream for LiveAnalytics and to InfluxDB.

Thin on top of `aqi_assets.lib.sinks.timestream_writer` / `influx_writer`; the DuckDB file is opened as the
history's (`storage.readings`: its tables ensured), briefly, twice per chunk. Plain downstream assets (not
observations), so a blocking check on `aqi_readings` stops them in the same run; their automation condition
also waits for those checks, so a later tick of the automation sensor does not publish what a check failed.
A run that could not write some readings fails after saving the progress it made; the next run re-sends the
rest.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.resources import InfluxDBResource, TimestreamResource
from aqi_assets.lib.common.fetch import redact_text
from aqi_assets.lib.sinks.influx_writer import sync_to_influxdb
from aqi_assets.lib.sinks.sync_state import SyncSummary, sync_in_chunks
from aqi_assets.lib.sinks.timestream_writer import sync_to_timestream


def _sync_asset(kind: str, description: str) -> Callable[..., dg.AssetsDefinition]:
    """Both sync assets: downstream of `aqi_readings` (so its blocking checks stop them in the same run),
    materialised as soon as it changes and its blocking checks passed (`eager()` alone ignores checks, so the
    automation sensor would publish readings a check had just failed), and in the `duckdb` pool (they read
    and write the DuckDB file)."""
    return dg.asset(
        deps=["aqi_readings"],
        group_name="sync",
        kinds={kind},
        pool="duckdb",
        automation_condition=(
            dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
        ),
        description=description,
    )


def _disabled(what: str) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"status": "disabled", "reason": f"{what} not configured"})


def _result(context: dg.AssetExecutionContext, summary: SyncSummary, target: dict[str, str]) -> dg.MaterializeResult:
    metadata: dict[str, Any] = {"status": "synced", **summary.as_metadata(), **target}
    context.log.info(f"sync summary: {summary.as_metadata()}")
    if summary.failed:
        errors = "\n".join(redact_text(e) for e in summary.errors[:5])
        raise dg.Failure(
            description=f"{summary.failed} readings were not written (they will be re-sent next run):\n{errors}",
            metadata={**metadata, "status": "partial"},
        )
    return dg.MaterializeResult(metadata=metadata)


@_sync_asset(
    "timestream",
    "New aqi_readings rows written to Timestream for LiveAnalytics as multi-measure records "
    "(incremental per-sensor watermark in DuckDB; refusals in timestream_rejected). "
    "Disabled until AQI_TIMESTREAM_DATABASE and AQI_TIMESTREAM_TABLE are set.",
)
def timestream_readings(
    context: dg.AssetExecutionContext, storage: AqiStorage, timestream: TimestreamResource
) -> dg.MaterializeResult:
    timestream.check_config()
    if not timestream.enabled:
        return _disabled("Timestream")
    client = timestream.client()
    try:
        window = timestream.table_window(client)
        writer = timestream.writer(client)
        summary = sync_in_chunks(
            lambda limit: sync_to_timestream(storage.readings, writer, window, limit=limit),
            timestream.chunk_rows,
            timestream.max_records_per_run,
        )
    finally:
        client.close()  # its connection pool
    return _result(context, summary, timestream.describe())


@_sync_asset(
    "influxdb",
    "New aqi_readings rows written to InfluxDB (v2 or v1 write API; Timestream for InfluxDB included) as "
    "line protocol (incremental per-sensor watermark in DuckDB; refusals in influxdb_rejected). "
    "Disabled until AQI_INFLUX_URL is set (a token, bucket or database set without it fails the run).",
)
def influxdb_readings(
    context: dg.AssetExecutionContext, storage: AqiStorage, influxdb: InfluxDBResource
) -> dg.MaterializeResult:
    influxdb.check_config()
    if not influxdb.enabled:
        return _disabled("InfluxDB")
    sender = influxdb.sender()
    try:
        writer = influxdb.writer(sender)
        summary = sync_in_chunks(
            lambda limit: sync_to_influxdb(storage.readings, writer, precision=influxdb.precision, limit=limit),
            influxdb.chunk_rows,
            influxdb.max_records_per_run,
        )
    finally:
        sender.close()
    return _result(context, summary, influxdb.describe())


sync_assets: list = [timestream_readings, influxdb_readings]
sync_asset_checks: list = []
