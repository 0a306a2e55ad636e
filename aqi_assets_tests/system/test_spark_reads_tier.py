"""Apache Spark (local mode, pyspark from PyPI) reads the exported Parquet tier and agrees with DuckDB.

Spark has no S3 connector here (no hadoop-aws jars offline), so it reads the local export; the layout and
files are the same on S3, where EMR, Glue and Athena read `s3://` natively.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from aqi_assets.lib.common.location import open_location
from aqi_assets.lib.readings.history import tier_dataset
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers.parquet_tier import export_day
from aqi_assets_tests.support.tier_history import insert_history

pytestmark = pytest.mark.spark

DAYS = [date(2026, 9, 1) + timedelta(days=i) for i in range(6)]


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    session = (
        SparkSession.builder.master("local[1]")
        .appName("aqi-tiers-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    base = tmp_path_factory.mktemp("spark")
    location = open_location(str(base / "parquet"))
    with readings_connection(base / "aqi.duckdb") as connection:
        insert_history(connection, DAYS, sensors=30, per_sensor=8)
        for day in DAYS:
            export_day(connection, location, day, row_group_rows=100)
        connection.register("tier", tier_dataset(location))
        counts = dict(connection.execute("SELECT date, count(*) FROM tier GROUP BY ALL").fetchall())
        means = dict(
            connection.execute("SELECT country, avg(pm25) FROM tier WHERE pm25 IS NOT NULL GROUP BY ALL").fetchall()
        )
    return Path(location.root), counts, means


def test_spark_gets_the_same_daily_counts_and_country_means_as_duckdb(spark, exported) -> None:
    from pyspark.sql import functions as F

    root, duck_counts, duck_means = exported
    frame = spark.read.option("basePath", str(root)).parquet(str(root))
    spark_counts = {row["date"]: row["n"] for row in frame.groupBy("date").agg(F.count("*").alias("n")).collect()}
    assert spark_counts == duck_counts
    assert sorted(duck_counts) == DAYS
    spark_means = {
        row["country"]: row["mean"]
        for row in frame.where(F.col("pm25").isNotNull()).groupBy("country").agg(F.avg("pm25").alias("mean")).collect()
    }
    assert spark_means.keys() == duck_means.keys()
    for country, mean in duck_means.items():
        assert spark_means[country] == pytest.approx(mean, rel=1e-12)


def test_spark_prunes_partitions_on_a_date_filter(spark, exported) -> None:
    root, duck_counts, _ = exported
    frame = spark.read.parquet(str(root)).where(f"date = DATE '{DAYS[2].isoformat()}' AND period = '5min'")
    plan = frame._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters" in plan and "isnotnull(date" in plan
    assert frame.count() == duck_counts[DAYS[2]] - 30  # minus the day's 24-hour readings (one per sensor)
    schema = {field.name: field.dataType.simpleString() for field in frame.schema.fields}
    assert schema["timestamp"] == "timestamp_ntz" and schema["date"] == "date" and schema["period"] == "string"
