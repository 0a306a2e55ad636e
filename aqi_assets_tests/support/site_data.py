"""A DuckDB history for the public-site tests: generated snapshots (the seeded generator) merged by the real
ingest, one per hour, the same sensors each time with PM values that change from hour to hour."""

from __future__ import annotations

import gzip
import json
import os
import stat
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aqi_assets.lib.air_quality.generator import Quirks, generate_records
from aqi_assets.lib.air_quality.normalise import merge_snapshot
from aqi_assets.lib.readings.schema import readings_connection

XSS_TYPE = '<img src=x onerror="window.__xss=1">'


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
    database: Path, *, n_records: int, end: datetime, hours: int, seed: int = 7, work_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Merge `hours` hourly snapshots ending at `end` (naive UTC) into `database`; returns the last snapshot's
    records (the ones the map shows)."""
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="site-snapshots-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    last: list[dict[str, Any]] = []
    with readings_connection(database) as connection:
        for hours_ago in range(hours - 1, -1, -1):
            at = end - timedelta(hours=hours_ago)
            records = scaled_records(n_records, at, hour_factor(hours_ago), seed)
            path = work_dir / f"snapshot-{hours_ago}.json.gz"
            path.write_bytes(gzip.compress(json.dumps(records).encode(), compresslevel=1))
            merge_snapshot(connection, path, "5min", now=at)
            last = records
    return last


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
