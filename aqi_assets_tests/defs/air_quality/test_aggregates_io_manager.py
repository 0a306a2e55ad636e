"""The partition-aware DuckDB IO manager: a partition (or a range) is replaced exactly, atomically, and
downstream assets load exactly their partitions through it."""


from datetime import datetime

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from aqi_assets.defs.air_quality.aggregates_io import AggregatesDuckDBIOManager
from aqi_assets.defs.air_quality.late_data import RANGE_END_TAG, RANGE_START_TAG
from aqi_assets.defs.common.intended_beta import asset_with_backfill_policy
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.lib.air_quality.aggregates import AGGREGATES_SCHEMA, AQI_HOURLY

HOURS = dg.HourlyPartitionsDefinition(start_date=datetime(2026, 1, 1), timezone="UTC")


class ValueConfig(dg.Config):
    value: float = 1.0
    broken: bool = False  # return a frame the table cannot take


@asset_with_backfill_policy(partitions_def=HOURS, io_manager_key="aggregates", metadata={"partition_expr": "hour"},
                            backfill_policy=dg.BackfillPolicy.single_run())
def readings_by_hour(context: dg.AssetExecutionContext, config: ValueConfig) -> pa.Table:
    hours = [datetime.strptime(key, HOURS.fmt) for key in context.partition_keys]
    rows = [(sensor, hour) for hour in hours for sensor in (1, 2)]
    value: object = "not a number" if config.broken else config.value
    return pa.table({
        "sensor_id": pa.array([s for s, _ in rows], pa.int64()),
        "hour": pa.array([h for _, h in rows], pa.timestamp("us")),
        "value": pa.array([value] * len(rows), pa.string() if config.broken else pa.float64()),
    })


@dg.asset(partitions_def=HOURS, io_manager_key="aggregates", metadata={"partition_expr": "hour"})
def doubled(readings_by_hour) -> pa.Table:
    frame = readings_by_hour.assign(value=readings_by_hour["value"] * 2)
    return pa.Table.from_pandas(frame, preserve_index=False)


def run(storage: AqiStorage, *, partition: str | None = None, tags: dict | None = None,
        value: float = 1.0, broken: bool = False, selection: list | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [readings_by_hour, doubled],
        selection=selection or [readings_by_hour],
        partition_key=partition,
        tags=tags,
        run_config=dg.RunConfig(
            {"readings_by_hour": ValueConfig(value=value, broken=broken)} if selection is None else {}
        ),
        resources={"aggregates": AggregatesDuckDBIOManager(storage=storage)},
        raise_on_error=False,
    )


def table(storage: AqiStorage, name: str = "readings_by_hour") -> list[tuple]:
    with duckdb.connect(storage.duckdb_path, read_only=True) as connection:
        sql = f"SELECT hour, sensor_id, value FROM {AGGREGATES_SCHEMA}.{name} ORDER BY ALL"
        return connection.execute(sql).fetchall()


def h(hour: int) -> datetime:
    return datetime(2026, 1, 1, hour)


def test_rerun_replaces_exactly_its_partition(storage: AqiStorage) -> None:
    assert run(storage, partition="2026-01-01-05:00", value=1.0).success
    assert run(storage, partition="2026-01-01-06:00", value=2.0).success
    assert run(storage, partition="2026-01-01-05:00", value=3.0).success  # re-run: replaced, not appended
    assert table(storage) == [(h(5), 1, 3.0), (h(5), 2, 3.0), (h(6), 1, 2.0), (h(6), 2, 2.0)]


def test_a_single_run_range_replaces_every_partition_of_the_range(storage: AqiStorage) -> None:
    assert run(storage, partition="2026-01-01-04:00", value=1.0).success
    assert run(storage, partition="2026-01-01-07:00", value=1.0).success
    result = run(storage, tags={RANGE_START_TAG: "2026-01-01-05:00", RANGE_END_TAG: "2026-01-01-06:00"}, value=5.0)
    assert result.success
    assert table(storage) == [
        (h(4), 1, 1.0), (h(4), 2, 1.0), (h(5), 1, 5.0), (h(5), 2, 5.0), (h(6), 1, 5.0), (h(6), 2, 5.0),
        (h(7), 1, 1.0), (h(7), 2, 1.0),
    ]
    metadata = result.asset_materializations_for_node("readings_by_hour")[0].metadata
    assert metadata["dagster/row_count"].value == 4
    assert metadata["dagster/table_name"].value == f"{AGGREGATES_SCHEMA}.readings_by_hour"


def test_a_failed_write_leaves_the_old_rows(storage: AqiStorage) -> None:
    assert run(storage, partition="2026-01-01-05:00", value=1.0).success
    failed = run(storage, partition="2026-01-01-05:00", broken=True)  # a string cannot go into DOUBLE
    assert not failed.success
    assert table(storage) == [(h(5), 1, 1.0), (h(5), 2, 1.0)]


def test_downstream_loads_exactly_its_partition(storage: AqiStorage) -> None:
    assert run(storage, partition="2026-01-01-05:00", value=1.0).success
    assert run(storage, partition="2026-01-01-06:00", value=2.0).success
    assert run(storage, partition="2026-01-01-06:00", selection=[doubled]).success
    assert table(storage, "doubled") == [(h(6), 1, 4.0), (h(6), 2, 4.0)]


def test_an_asset_without_partition_expr_is_refused(storage: AqiStorage) -> None:
    @dg.asset(partitions_def=HOURS, io_manager_key="aggregates")
    def unnamed() -> pa.Table:
        return pa.table({"hour": pa.array([h(1)], pa.timestamp("us"))})

    with pytest.raises(dg.Failure, match="partition_expr"):
        dg.materialize([unnamed], partition_key="2026-01-01-01:00",
                       resources={"aggregates": AggregatesDuckDBIOManager(storage=storage)})


def test_the_table_name_of_an_aggregate_follows_the_configured_schema(storage: AqiStorage) -> None:
    assert AggregatesDuckDBIOManager(storage=storage).table_name(AQI_HOURLY) == f"{AGGREGATES_SCHEMA}.{AQI_HOURLY}"
    other = AggregatesDuckDBIOManager(storage=storage, db_schema="indices")
    assert other.table_name("aqi_daily") == "indices.aqi_daily"
    with pytest.raises(ValueError, match="plain identifier"):
        AggregatesDuckDBIOManager(storage=storage).table_name("aqi_hourly; DROP TABLE aqi_readings")
