"""The `public_site` asset: in the code location with both its inputs declared and its automation, materialised
on a real DuckDB history with `aqi_hourly` (failing loudly without it), written locally and published to a local
moto S3 over HTTP, configured from the environment."""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import dagster as dg
import pytest

from aqi_assets.defs.air_quality.aggregates_io import AggregatesDuckDBIOManager
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.public.assets import SITE_AUTOMATION, public_site
from aqi_assets.defs.public.resources import PUBLIC_SITE_ENV, PublicSiteResource, public_resources
from aqi_assets.defs.tiers.resources import TierStorage
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.public_site.build import POINTER, read_pointer
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.moto_server import threaded_moto_server
from aqi_assets_tests.support.site_data import HOURLY_TABLE, ingest_hours, outdoor_pm_sensors, write_hourly

READINGS = dg.AssetKey("aqi_readings")
HOURLY = dg.AssetKey("aqi_hourly")
PARQUET = dg.AssetKey("aqi_readings_parquet")
SITE = dg.AssetKey("public_site")


def _resources(storage: AqiStorage, tmp_path: Path, **aggregates: str) -> dict[str, object]:
    return {
        "storage": storage,
        "tiers": TierStorage(parquet_uri=str(tmp_path / "parquet")),
        "aggregates_io_manager": AggregatesDuckDBIOManager(storage=storage, **aggregates),
    }


def _failure(result: dg.ExecuteInProcessResult) -> str:
    [event] = result.get_step_failure_events()
    return event.step_failure_data.error.message


def test_public_site_is_in_the_code_location_and_declares_every_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from aqi_assets.definitions import defs

    monkeypatch.delenv("AQI_ARCHIVE_START", raising=False)
    graph = defs().resolve_asset_graph()
    node = graph.get(SITE)
    assert node.group_name == "public"
    assert set(node.parent_keys) == {READINGS, HOURLY, PARQUET}, (
        "it reads aqi_readings (pruned days from aqi_readings_parquet) and aggregates.aqi_hourly"
    )
    assert graph.get(HOURLY).partitions_def is not None, "aqi_hourly is the hourly-partitioned aggregate"
    assert graph.get(PARQUET).partitions_def.get_first_partition_key() == "2015-10-01", "the tier's days"
    assert isinstance(public_site.get_partition_mapping(HOURLY), dg.LastPartitionMapping)
    assert isinstance(public_site.get_partition_mapping(PARQUET), dg.LastPartitionMapping)
    assert node.automation_condition == SITE_AUTOMATION


def test_resource_reads_its_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in PUBLIC_SITE_ENV.values():
        monkeypatch.delenv(name, raising=False)
    assert PublicSiteResource().site_dir == "data/site" and not PublicSiteResource().publishing
    monkeypatch.setenv("AQI_SITE_DIR", str(tmp_path / "www"))
    monkeypatch.setenv("AQI_SITE_TILE_URL", "")  # empty counts as unset: the OpenStreetMap default
    storage = AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(tmp_path / "data" / "aqi.duckdb"))
    now = naive_utc().replace(minute=0, second=0, microsecond=0)
    with storage.readings() as connection:
        write_hourly(connection, now, now)  # aqi_hourly exists, no hour computed yet
    result = dg.materialize([public_site], resources={**_resources(storage, tmp_path), **public_resources()})
    assert result.success
    index = (tmp_path / "www" / "index.html").read_text()
    assert "https://tile.openstreetmap.org" in index and "OpenStreetMap" in index
    assert read_pointer(tmp_path / "www")["features"] == 0, "an empty history gives an empty map, not an error"


def test_materialise_writes_the_site_and_publishes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    end = naive_utc().replace(microsecond=0) - timedelta(minutes=3)
    database = tmp_path / "data" / "aqi.duckdb"
    records = ingest_hours(database, n_records=200, end=end, hours=2, work_dir=tmp_path / "snapshots")
    storage = AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(database))
    with threaded_moto_server() as url:
        for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        site = PublicSiteResource(
            site_dir=str(tmp_path / "site"), s3_bucket="public", s3_prefix="map", s3_endpoint_url=url, tile_url=""
        )
        client = site.s3_client()
        client.create_bucket(Bucket="public")
        result = dg.materialize([public_site], resources={**_resources(storage, tmp_path), "public_site": site})
        assert result.success
        metadata = result.asset_materializations_for_node("public_site")[0].metadata
        pointer = read_pointer(tmp_path / "site")
        assert metadata["features"].value == len(outdoor_pm_sensors(records)) == pointer["features"]
        assert pointer["indices_source"] == HOURLY_TABLE and metadata["indices"].value.startswith(HOURLY_TABLE)
        assert metadata["s3_uploaded"].value >= pointer["features"] + 3
        published = json.loads(gzip.decompress(client.get_object(Bucket="public", Key=f"map/{POINTER}")["Body"].read()))
        assert published == pointer
        s3 = boto3.client("s3", endpoint_url=url)
        assert s3.head_object(Bucket="public", Key=f"map/{pointer['latest']}")["ContentType"] == "application/geo+json"
    assert os.access(tmp_path / "site" / "index.html", os.R_OK)


def test_the_table_is_the_one_the_aggregates_io_manager_names_and_a_missing_one_fails(tmp_path: Path) -> None:
    """With the IO manager configured for schema "official", the table in "aggregates" is not read: the build
    fails naming official.aqi_hourly and what to do; once the aggregate is there, it is read."""
    end = naive_utc().replace(microsecond=0) - timedelta(minutes=3)
    database = tmp_path / "data" / "aqi.duckdb"
    ingest_hours(database, n_records=120, end=end, hours=3, work_dir=tmp_path / "snapshots")
    storage = AqiStorage(data_dir=str(tmp_path / "data"), duckdb_path=str(database))
    resources = {
        **_resources(storage, tmp_path, db_schema="official"),
        "public_site": PublicSiteResource(site_dir=str(tmp_path / "site"), tile_url=""),
    }
    failed = dg.materialize([public_site], resources=resources, raise_on_error=False)
    assert not failed.success
    message = _failure(failed)
    assert "official.aqi_hourly does not exist" in message and "Materialise the `aqi_hourly` asset" in message
    assert not (tmp_path / "site" / POINTER).exists(), "no site from a build without its input"

    with readings_connection(database) as connection:
        connection.execute("CREATE SCHEMA official")
        connection.execute(
            f"CREATE TABLE official.aqi_hourly AS SELECT * EXCLUDE (aqi_us_nowcast_category) FROM {HOURLY_TABLE}"
        )
    renamed = dg.materialize([public_site], resources=resources, raise_on_error=False)
    assert not renamed.success
    assert "official.aqi_hourly lacks the column(s) aqi_us_nowcast_category" in _failure(renamed)

    with readings_connection(database) as connection:
        connection.execute(f"CREATE OR REPLACE TABLE official.aqi_hourly AS SELECT * FROM {HOURLY_TABLE}")
        connection.execute(f"DROP TABLE {HOURLY_TABLE}")
    built = dg.materialize([public_site], resources=resources)
    assert built.success
    pointer = read_pointer(tmp_path / "site")
    assert pointer["indices_source"] == "official.aqi_hourly"
    features = json.loads((tmp_path / "site" / pointer["latest"]).read_bytes())["features"]
    assert any(f["properties"]["us_basis"] == "nowcast" for f in features), "the official indices were read"


# ---------------------------------------------------------------------------------------------------------
# Automation: evaluated against a Dagster instance on stand-in upstream assets (real runs, real checks).

HOURS = dg.HourlyPartitionsDefinition(start_date="2025-01-01-00:00", timezone="UTC")  # 16,000+ hours back
DAYS = dg.DailyPartitionsDefinition(start_date="2015-10-01", timezone="UTC")  # the tier's days
OUTCOME = {"aqi_readings": True, "aqi_hourly": True, "aqi_readings_parquet": True}  # the blocking checks' reports
# The tier stand-in's run waits for EXPORT_MAY_FINISH (set unless a test holds an export in progress).
EXPORT_STARTED, EXPORT_MAY_FINISH = threading.Event(), threading.Event()
EXPORT_MAY_FINISH.set()


@dg.asset(name="aqi_readings")
def readings_stand_in() -> None: ...


@dg.asset_check(asset=readings_stand_in, name="readings_valid", blocking=True)
def readings_valid() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=OUTCOME["aqi_readings"])


@dg.asset(
    name="aqi_hourly", partitions_def=HOURS,
    check_specs=[dg.AssetCheckSpec("hour_valid", asset="aqi_hourly", blocking=True)],
)
def hourly_stand_in():
    yield dg.Output(None)
    yield dg.AssetCheckResult(passed=OUTCOME["aqi_hourly"])


@dg.asset(
    name="aqi_readings_parquet", partitions_def=DAYS,
    check_specs=[dg.AssetCheckSpec("day_verified", asset="aqi_readings_parquet", blocking=True)],
)
def parquet_stand_in():
    EXPORT_STARTED.set()
    assert EXPORT_MAY_FINISH.wait(timeout=60)
    yield dg.Output(None)
    yield dg.AssetCheckResult(passed=OUTCOME["aqi_readings_parquet"])


@dg.asset(
    name="export_in_progress_probe",
    deps=[dg.AssetDep(PARQUET, partition_mapping=dg.LastPartitionMapping())],
    automation_condition=dg.AutomationCondition.any_deps_in_progress(),
)
def export_in_progress_probe() -> None:
    """Requested exactly while the tier's latest day is being exported: shows the instance sees that run."""


class Ticks:
    """The automation sensor's ticks for `public_site`; a requested run is reported done before the next one."""

    def __init__(self, site: dg.AssetsDefinition, instance: dg.DagsterInstance, start: datetime) -> None:
        storage = AqiStorage()
        self.defs = dg.Definitions(
            assets=[readings_stand_in, hourly_stand_in, parquet_stand_in, export_in_progress_probe, site],
            asset_checks=[readings_valid],
            resources={"storage": storage, "tiers": TierStorage(), "public_site": PublicSiteResource(),
                       "aggregates_io_manager": AggregatesDuckDBIOManager(storage=storage)},
        )
        self.instance = instance
        self.now = start
        self.cursor = None

    def _evaluate(self) -> int:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, asset_selection=dg.AssetSelection.assets(SITE),
            evaluation_time=self.now, cursor=self.cursor,
        )
        self.cursor = result.cursor
        return result.get_num_requested(SITE)

    def tick(self, minutes: float = 1) -> int:
        """Requests of `public_site` at the next tick (`minutes` later)."""
        self.now += timedelta(minutes=minutes)
        requested = self._evaluate()
        if requested:  # the run happens; the next tick sees it done
            self.instance.report_runless_asset_event(dg.AssetMaterialization(SITE))
            self.now += timedelta(seconds=20)
            assert self._evaluate() == 0
        return requested

    def readings(self, passed: bool = True) -> None:
        OUTCOME["aqi_readings"] = passed
        dg.materialize([readings_stand_in, readings_valid], instance=self.instance, raise_on_error=False)

    def hour(self, key: str, passed: bool = True) -> None:
        OUTCOME["aqi_hourly"] = passed
        dg.materialize([hourly_stand_in], partition_key=key, instance=self.instance, raise_on_error=False)

    def export(self, key: str, passed: bool = True) -> None:
        OUTCOME["aqi_readings_parquet"] = passed
        dg.materialize([parquet_stand_in], partition_key=key, instance=self.instance, raise_on_error=False)

    @contextmanager
    def export_running(self, key: str) -> Iterator[None]:
        """An export of the tier's day `key` in progress (a real run, held until the block ends)."""
        EXPORT_STARTED.clear()
        EXPORT_MAY_FINISH.clear()
        worker = threading.Thread(target=self.export, args=(key,))
        worker.start()
        try:
            assert EXPORT_STARTED.wait(timeout=60), "the export run did not start"
            yield
        finally:
            EXPORT_MAY_FINISH.set()
            worker.join(timeout=60)

    def export_seen_in_progress(self) -> bool:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance,
            asset_selection=dg.AssetSelection.assets("export_in_progress_probe"), evaluation_time=self.now,
        )
        return result.get_num_requested(dg.AssetKey("export_in_progress_probe")) == 1


def test_automation_follows_readings_and_each_new_hour_without_waiting_for_the_hours() -> None:
    with dg.instance_for_test() as instance:
        ticks = Ticks(public_site, instance, datetime(2026, 12, 1, 12, 5, tzinfo=timezone.utc))
        ticks.readings()
        ticks.hour("2026-11-30-10:00")  # one hour of 16,000 materialised; the latest (11:00) missing
        assert ticks.tick() == 0, "the first tick starts the record"
        ticks.readings()
        assert ticks.tick() == 1, "a readings update rebuilds, though aqi_hourly's latest hour is missing"
        assert ticks.tick() == 0, "nothing new, no rebuild"
        ticks.hour("2026-12-01-11:00")
        assert ticks.tick(5) == 1, "the new latest hour rebuilds"
        ticks.hour("2026-12-01-08:00")
        assert ticks.tick() == 0, "a recomputed older hour does not (the next readings update picks it up)"
        ticks.readings(passed=False)
        assert ticks.tick() == 0, "readings whose blocking check failed are not published"
        ticks.readings()
        assert ticks.tick() == 1
        ticks.hour("2026-12-01-11:00", passed=False)
        assert ticks.tick() == 1, "the latest hour recomputed rebuilds (a failed hourly check never stalls it)"
        ticks.readings()
        assert ticks.tick() == 1, "and the next readings update too"
        assert ticks.tick(60) == 0, "a new hour starting (not yet computed) is no reason to rebuild"


def test_the_parquet_tier_neither_triggers_a_rebuild_nor_holds_one_back() -> None:
    """aqi_readings_parquet is declared for lineage only: its latest day is never exported when the site builds
    (a day is exported after it ends), a nightly export changes nothing the map shows, and an export failing or
    running says nothing about the readings."""
    with dg.instance_for_test() as instance:
        ticks = Ticks(public_site, instance, datetime(2026, 12, 1, 12, 5, tzinfo=timezone.utc))
        ticks.readings()
        ticks.hour("2026-12-01-11:00")
        assert ticks.tick() == 0, "the first tick starts the record"
        ticks.readings()
        assert ticks.tick() == 1, "the tier's latest day (2026-11-30) not exported: not waited for"
        ticks.export("2026-11-30")
        assert ticks.tick() == 0, "an export does not rebuild the site"
        ticks.export("2026-11-29")
        ticks.export("2026-11-30", passed=False)
        assert ticks.tick() == 0, "nor does a failed one"
        ticks.readings()
        assert ticks.tick() == 1, "a failed export check does not hold the next readings update back"
        with ticks.export_running("2026-11-30"):
            ticks.readings()
            assert ticks.export_seen_in_progress()
            assert ticks.tick() == 1, "nor does an export in progress"
        assert not ticks.export_seen_in_progress()
        assert ticks.tick() == 0, "the export's end does not rebuild either"


def test_plain_eager_would_stall_the_site_on_aqi_hourly() -> None:
    """The reason for SITE_AUTOMATION: eager() with the blocking-check rule waits for the latest hour (and its
    checks), so readings updates in the first minutes of every hour would not reach the map."""
    @dg.asset(
        name="public_site",
        deps=[READINGS, dg.AssetDep(HOURLY, partition_mapping=dg.LastPartitionMapping())],
        automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    )
    def plain() -> None: ...

    with dg.instance_for_test() as instance:
        ticks = Ticks(plain, instance, datetime(2026, 12, 1, 12, 5, tzinfo=timezone.utc))
        ticks.readings()
        ticks.hour("2026-11-30-10:00")
        assert ticks.tick() == 0
        ticks.readings()
        assert ticks.tick() == 0, "held back by the missing latest hour"
