"""A failed blocking check on `aqi_readings` stops publication through automation too, not only in its own run.

The 5-minute chain runs for real (a `file://` copy of the real sample, a temporary DuckDB file) on one
Dagster instance; then the automation conditions are evaluated against that instance as the automation
sensor's tick would evaluate them.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from aqi_assets.defs.air_quality.assets import ingest_assets
from aqi_assets.defs.air_quality.checks import readings_asset_checks
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.sinks.assets import sync_assets
from aqi_assets.defs.sinks.resources import InfluxDBResource, TimestreamResource
from aqi_assets_tests.support.http import snapshot_source

SYNC_KEYS = (dg.AssetKey("timestream_readings"), dg.AssetKey("influxdb_readings"))
# Sensor 13554 has PM2.5 and PM10 in the sample: its stored DAQI no longer matches them after this.
CORRUPTION = "UPDATE aqi_readings SET daqi_pm25 = 3, daqi = 3, daqi_band = 'Low' WHERE sensor_id = 13554"


def chain_definitions(storage: AqiStorage, source_url: str) -> dg.Definitions:
    # The sync targets stay unconfigured (their assets succeed as "disabled"): what matters here is
    # whether automation asks for them at all.
    return dg.Definitions(
        assets=[*ingest_assets, *sync_assets],
        asset_checks=readings_asset_checks,
        resources={
            "storage": storage,
            "snapshots": snapshot_source(source_url),
            "timestream": TimestreamResource(),
            "influxdb": InfluxDBResource(),
        },
    )


def materialize(
    defs: dg.Definitions, instance: dg.DagsterInstance, selection: list[str]
) -> dg.ExecuteInProcessResult:
    """Run `selection` (with the checks of the selected assets) the way a job of these definitions would."""
    job = dg.define_asset_job("automation_blocking_test_job", selection=selection)
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)
    return resolved.execute_in_process(instance=instance, raise_on_error=False)


def requested(result: dg.EvaluateAutomationConditionsResult) -> dict[str, int]:
    return {key.to_user_string(): result.get_num_requested(key) for key in SYNC_KEYS}


@pytest.mark.parametrize("corrupted", [True, False], ids=["blocking_check_failed", "checks_passed"])
def test_automation_publishes_only_readings_whose_blocking_checks_passed(
    tmp_path: Path, storage: AqiStorage, real_snapshot_body: bytes, corrupted: bool
) -> None:
    source = tmp_path / "data.json"
    source.write_bytes(real_snapshot_body)
    defs = chain_definitions(storage, source.as_uri())

    with dg.instance_for_test() as instance:
        # The whole chain once: fetch, merge, checks, both (disabled) sync assets.
        first = materialize(
            defs, instance, ["raw_snapshot_5min", "aqi_readings", "timestream_readings", "influxdb_readings"]
        )
        assert first.success
        assert all(first.asset_materializations_for_node(key.path[-1]) for key in SYNC_KEYS)
        # A tick with everything up to date requests nothing and gives the cursor the next tick starts from.
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert requested(quiet) == {"timestream_readings": 0, "influxdb_readings": 0}

        if corrupted:
            with duckdb.connect(storage.duckdb_path) as connection:
                connection.execute(CORRUPTION)
        again = materialize(defs, instance, ["aqi_readings"])
        # A blocking check's failure fails the run; the new aqi_readings materialisation is recorded anyway.
        assert again.success is not corrupted
        assert again.asset_materializations_for_node("aqi_readings")
        evaluations = {e.check_name: e.passed for e in again.get_asset_check_evaluations()}
        assert evaluations["indices_match_concentrations"] is not corrupted

        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        expected = 0 if corrupted else 1
        assert requested(tick) == {"timestream_readings": expected, "influxdb_readings": expected}
        assert tick.total_requested == 2 * expected
