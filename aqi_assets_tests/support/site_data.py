"""A DuckDB history for the public-site tests: generated snapshots (the seeded generator) merged by the real
ingest, one per hour, the same sensors each time with PM values that change from hour to hour; and the
`aggregates.aqi_hourly` table the site reads, computed over that history by the real aggregate."""

from __future__ import annotations

import gzip
import json
import os
import stat
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from aqi_assets.lib.air_quality.aggregates import AGGREGATES_SCHEMA, AQI_HOURLY, HOURLY_SCHEMA, hourly_indices
from aqi_assets.lib.air_quality.generator import Quirks, generate_records
from aqi_assets.lib.air_quality.normalise import merge_snapshot
from aqi_assets.lib.common.duckdb_tables import replace_partition
from aqi_assets.lib.readings.history import attach_history
from aqi_assets.lib.readings.periods import FIVE_MINUTE
from aqi_assets.lib.readings.schema import readings_connection

XSS_TYPE = '<img src=x onerror="window.__xss=1">'
# Where the aggregates IO manager (its default db_schema) keeps the aqi_hourly asset.
HOURLY_TABLE = f"{AGGREGATES_SCHEMA}.{AQI_HOURLY}"


def hour_factor(hours_ago: int) -> float:
    """How much the PM values of the snapshot `hours_ago` hours before the last are scaled (deterministic)."""
    return 0.4 + ((hours_ago * 7) % 11) / 5.0


def scaled_records(n_records: int, at: datetime, factor: float, seed: int) -> list[dict[str, Any]]:
    records = generate_records(n_records, seed=seed, at=at, quirks=Quirks.clean())
    for record in records:
        for entry in record["sensordatavalues"]:
            if entry["value_type"] in ("P1", "P2", "P0", "P4"):
                entry["value"] = f"{float(entry['value']) * factor:.2f}"
    return records


def ingest_hours(
    database: Path,
    *,
    n_records: int,
    end: datetime,
    hours: int,
    seed: int = 7,
    work_dir: Path | None = None,
    hourly_end: datetime | None = None,
) -> list[dict[str, Any]]:
    """Merge `hours` hourly snapshots ending at `end` (naive UTC) into `database`, then write `aqi_hourly` for
    their hours up to `hourly_end` (default: the hour of `end`, not complete yet, excluded — as the pipeline's
    partitions); returns the last snapshot's records (the ones the map shows)."""
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="site-snapshots-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    last: list[dict[str, Any]] = []
    with readings_connection(database) as connection:
        for hours_ago in range(hours - 1, -1, -1):
            at = end - timedelta(hours=hours_ago)
            records = scaled_records(n_records, at, hour_factor(hours_ago), seed)
            path = work_dir / f"snapshot-{hours_ago}.json.gz"
            path.write_bytes(gzip.compress(json.dumps(records).encode(), compresslevel=1))
            merge_snapshot(connection, path, FIVE_MINUTE.name, now=at)
            last = records
        fill_hour_slots(connection, FIVE_MINUTE.name)
        first_hour = (end - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
        write_hourly(connection, first_hour, hourly_end or end.replace(minute=0, second=0, microsecond=0))
    return last


def fill_hour_slots(connection: duckdb.DuckDBPyConnection, period: str) -> None:
    """Each merged reading repeated in the other 5-minute slots of its clock hour (same values, same offset within
    the slot) up to the newest merged reading: a sensor reporting all hour at that level, so every complete hour
    of one snapshot is a valid hour of the official indices (>= 9 of 12 slots), while the newest reading stays the
    merged one."""
    slot_us = 300_000_000
    connection.execute(
        f"""
        INSERT INTO aqi_readings
        SELECT * EXCLUDE (k, newest) FROM (
            SELECT r.* REPLACE (make_timestamp(epoch_us(date_trunc('hour', "timestamp")) + k * {slot_us}
                                               + epoch_us("timestamp") % {slot_us}) AS "timestamp"),
                   k, (SELECT max("timestamp") FROM aqi_readings WHERE period = $period) AS newest
            FROM aqi_readings r, range(12) s(k)
            WHERE period = $period AND k <> (epoch_us("timestamp") % 3600000000) // {slot_us}
        )
        WHERE "timestamp" <= newest
        """,
        {"period": period},
    )


def write_hourly(connection: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pa.Table:
    """`aggregates.aqi_hourly` for the hours [start, end): computed over the history by the real aggregate and
    stored as the aggregates IO manager stores a partition range (no complete hour yet: the empty table)."""
    attach_history(connection, None)
    frame = hourly_indices(connection, start, end) if end > start else HOURLY_SCHEMA.empty_table()
    replace_partition(connection, AGGREGATES_SCHEMA, AQI_HOURLY, frame, "hour", (start, max(start, end)))
    return frame


def outdoor_pm_sensors(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """sensor_id → record for the PM sensors the map must show (outdoor, with coordinates), from the generator's
    own output (an oracle independent of the site's SQL)."""
    shown = {}
    for record in records:
        types = {entry["value_type"] for entry in record["sensordatavalues"]}
        location = record["location"]
        if "P2" in types and not location.get("indoor") and location["latitude"] != "":
            shown[record["sensor"]["id"]] = record
    return shown


def world_readable_dir(prefix: str) -> Path:
    """A temporary directory nginx's workers (user nobody) can enter (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return path


def sensor_history(site: Path, pointer: dict[str, Any], sensor_id: int) -> dict[str, Any]:
    """A sensor's 7-day history as the page reads it: from the file of its shard (`id % history_shards`, stored
    as `.gz` only), the file's header with the sensor's lists."""
    relative = f"{pointer['history']}{sensor_id % pointer['history_shards']}.json.gz"
    shard = json.loads(gzip.decompress((site / relative).read_bytes()), parse_constant=_no_constant)
    return {**{k: v for k, v in shard.items() if k != "sensors"}, **shard["sensors"][str(sensor_id)]}


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} in JSON")
