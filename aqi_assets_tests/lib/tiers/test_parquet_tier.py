"""Export, verify, prune and re-read across the tiers on a generated multi-day history, on a local directory
and on S3 (a moto server over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest

from aqi_assets.lib.common.location import TierLocation, open_location
from aqi_assets.lib.readings.history import attach_history, day_path, tier_dataset
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.sinks import sync_state
from aqi_assets.lib.tiers import glue_catalog
from aqi_assets.lib.tiers.parquet_tier import DayPrunedError, export_day, parquet_stats, verify_day
from aqi_assets.lib.tiers.retention import pending_on_day, prune_hot_tier
from aqi_assets_tests.support.moto_server import threaded_moto_server
from aqi_assets_tests.support.tier_history import insert_history, per_country_mean_pm25, per_day_counts

DAYS = [date(2026, 10, 1) + timedelta(days=i) for i in range(5)]
TODAY = DAYS[-1] + timedelta(days=1)  # every generated day is complete


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, list[dict]]:
    db = tmp_path / "aqi.duckdb"
    with readings_connection(db) as connection:
        rows = insert_history(connection, DAYS)
    return db, rows


@pytest.fixture
def s3_location(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TierLocation, str]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with threaded_moto_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="tier-bucket")
        yield open_location("s3://tier-bucket/aqi/readings", endpoint_url=endpoint), endpoint


def _all_view_figures(connection: duckdb.DuckDBPyConnection) -> tuple[dict[date, int], dict[str, float]]:
    counts = dict(
        connection.execute('SELECT CAST("timestamp" AS DATE), count(*) FROM aqi_readings_all GROUP BY ALL').fetchall()
    )
    means = dict(
        connection.execute(
            "SELECT country, avg(pm25) FROM aqi_readings_all WHERE pm25 IS NOT NULL GROUP BY ALL"
        ).fetchall()
    )
    return counts, means


def _round_trip(db: Path, rows: list[dict], location: TierLocation) -> None:
    with readings_connection(db) as connection:
        for day in DAYS:
            export = export_day(connection, location, day, row_group_rows=50)
            assert export.total_rows == per_day_counts(rows)[day]
            assert verify_day(connection, location, day).ok
        # Sorted by sensor and time, several row groups per file (row_group_rows=50).
        files = location.files_under(day_path(location, "5min", DAYS[0]))
        assert len(files) == 1
        table = pq.read_table(files[0].path, filesystem=location.filesystem)
        keys = list(zip(table["sensor_id"].to_pylist(), table["timestamp"].to_pylist(), strict=True))
        assert keys == sorted(keys)
        metadata = pq.ParquetFile(files[0].path, filesystem=location.filesystem).metadata
        assert metadata.num_row_groups >= 4
        assert metadata.row_group(0).column(0).compression == "ZSTD"

        report = prune_hot_tier(connection, location, today=TODAY, hot_days=2)
        assert report.days_pruned == DAYS[:3]  # before TODAY - 2 days
        assert report.skipped == {}
        assert report.rows_deleted == sum(per_day_counts(rows)[d] for d in DAYS[:3])
        hot_days = _hot_days(connection)
        assert hot_days == set(DAYS[3:])

        # One table over both tiers: exactly the original history, no day twice.
        # Stored in the file for a local tier; a TEMP view over the Arrow dataset for S3.
        attach_history(connection, location, persist=not location.is_s3)
        counts, means = _all_view_figures(connection)
        assert counts == per_day_counts(rows)
        expected_means = per_country_mean_pm25(rows)
        assert means.keys() == expected_means.keys()
        for country, mean in expected_means.items():
            assert means[country] == pytest.approx(mean, rel=1e-12)

        # The Parquet tier alone, as another engine sees it: typed partitions, a DATE filter selects a day.
        dataset = tier_dataset(location)
        connection.register("tier", dataset)
        assert connection.execute("SELECT count(*) FROM tier").fetchone()[0] == len(rows)
        one_day = connection.execute("SELECT count(*) FROM tier WHERE date = ?", [DAYS[1]]).fetchone()[0]
        assert one_day == per_day_counts(rows)[DAYS[1]]

        # A re-run replaces exactly that day (one file per period-day, nothing staged left behind) ...
        before = parquet_stats(location, "5min", DAYS[4])
        export_day(connection, location, DAYS[4])
        assert len(location.files_under(day_path(location, "5min", DAYS[4]))) == 1
        assert parquet_stats(location, "5min", DAYS[4]) == before
        assert location.files_under(location.path("_staging")) == []
        # ... but a pruned day, whose files are the only copy, is never overwritten: a re-export leaves it as
        # it is, and refuses it once rows of a pruned period are back in DuckDB.
        pruned_files = _files(location, DAYS[0])
        assert export_day(connection, location, DAYS[0]).kept_pruned == ["24h", "5min"]
        assert _files(location, DAYS[0]) == pruned_files
        assert verify_day(connection, location, DAYS[0]).ok  # against the logged figures
        connection.execute(
            "INSERT INTO aqi_readings BY NAME SELECT * FROM aqi_readings_all WHERE period = '5min' AND "
            '"timestamp" < ? LIMIT 3',
            [DAYS[1]],
        )
        with pytest.raises(DayPrunedError, match="3 '5min' rows"):
            export_day(connection, location, DAYS[0])
        assert _files(location, DAYS[0]) == pruned_files
        connection.execute('DELETE FROM aqi_readings WHERE "timestamp" < ?', [DAYS[1]])  # the day as pruned again


def _files(location: TierLocation, day: date) -> list[tuple[str, int, object]]:
    return [(f.path, f.size, f.mtime) for f in location.files_under(day_path(location, "5min", day))]


def test_local_tier_round_trip(history: tuple[Path, list[dict]], tmp_path: Path) -> None:
    db, rows = history
    location = open_location(str(tmp_path / "parquet"))
    _round_trip(db, rows, location)
    # The stored view works from a fresh connection (the `duckdb` shell's view of the file).
    with duckdb.connect(str(db), read_only=True) as reader:
        counts, _ = _all_view_figures(reader)
    assert counts == per_day_counts(rows)


def test_s3_tier_round_trip_and_glue(history: tuple[Path, list[dict]], s3_location) -> None:
    db, rows = history
    location, endpoint = s3_location
    _round_trip(db, rows, location)
    objects = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="tier-bucket", Prefix="aqi/readings/")
    keys = [o["Key"] for o in objects["Contents"]]
    assert any(k.startswith(f"aqi/readings/period=24h/date={DAYS[0]}/part-") for k in keys)

    glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1")
    target = glue_catalog.GlueTable("aqi", "readings")
    columns = glue_catalog.hive_columns()
    glue_catalog.ensure_table(glue, target, location, columns)
    glue_catalog.ensure_table(glue, target, location, columns)  # idempotent
    partitions = [(p, d) for p in ("5min", "24h") for d in DAYS]
    assert glue_catalog.register_partitions(glue, target, location, columns, partitions) == len(partitions)
    assert glue_catalog.register_partitions(glue, target, location, columns, partitions) == 0
    table = glue.get_table(DatabaseName="aqi", Name="readings")["Table"]
    assert table["StorageDescriptor"]["Location"] == "s3://tier-bucket/aqi/readings/"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["period", "date"]
    assert {"Name": "pm25", "Type": "double"} in table["StorageDescriptor"]["Columns"]
    assert {"Name": "other_values", "Type": "map<string,string>"} in table["StorageDescriptor"]["Columns"]
    found = glue_catalog.catalogued_partitions(glue, target, "period = '24h'")
    assert found == sorted(("24h", d.isoformat()) for d in DAYS)


def test_many_partitions_go_in_batches_of_100(s3_location) -> None:
    location, endpoint = s3_location
    glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1")
    target = glue_catalog.GlueTable("aqi", "year")
    columns = [{"Name": "sensor_id", "Type": "bigint"}]
    glue_catalog.ensure_table(glue, target, location, columns)
    year = [("5min", date(2026, 1, 1) + timedelta(days=i)) for i in range(250)]
    assert glue_catalog.register_partitions(glue, target, location, columns, year) == 250
    assert len(glue_catalog.catalogued_partitions(glue, target)) == 250


def test_corrupted_parquet_fails_verification_and_nothing_is_deleted(
    history: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    db, rows = history
    location = open_location(str(tmp_path / "parquet"))
    with readings_connection(db) as connection:
        for day in DAYS:
            export_day(connection, location, day)
        damaged = Path(location.files_under(day_path(location, "5min", DAYS[1]))[0].path)
        body = bytearray(damaged.read_bytes())
        middle = len(body) // 2
        body[middle : middle + 64] = b"\x00" * 64
        damaged.write_bytes(bytes(body))
        verification = verify_day(connection, location, DAYS[1])
        assert not verification.ok
        assert any("5min" in problem for problem in verification.problems)

        truncated = Path(location.files_under(day_path(location, "24h", DAYS[2]))[0].path)
        truncated.write_bytes(truncated.read_bytes()[:100])
        missing = location.files_under(day_path(location, "5min", DAYS[0]))[0].path
        Path(missing).unlink()

        report = prune_hot_tier(connection, location, today=TODAY, hot_days=0)
        assert report.days_pruned == [DAYS[3], DAYS[4]]
        assert set(report.skipped) == {d.isoformat() for d in DAYS[:3]}
        kept = dict(
            connection.execute('SELECT CAST("timestamp" AS DATE), count(*) FROM aqi_readings GROUP BY ALL').fetchall()
        )
    counts = per_day_counts(rows)
    assert kept == {d: counts[d] for d in DAYS[:3]}


def test_readings_pending_for_an_enabled_sink_stay_hot(history: tuple[Path, list[dict]], tmp_path: Path) -> None:
    db, rows = history
    location = open_location(str(tmp_path / "parquet"))
    with readings_connection(db) as connection:
        for day in DAYS:
            export_day(connection, location, day)
        # Per-day pending counts follow the sync module's own rule: they add up to its total.
        sync_state.ensure_sync_tables(connection, "timestream")
        assert sum(pending_on_day(connection, "timestream", d) for d in DAYS) == sync_state.count_pending(
            connection, "timestream"
        )
        # Nothing synced yet: an enabled sink keeps every day hot; a disabled one does not count.
        report = prune_hot_tier(connection, location, today=TODAY, hot_days=2, enabled_sinks=["timestream"])
        assert report.days_pruned == []
        assert all("not yet synced" in reason for reason in report.skipped.values())

        # The sink finishes the first two days' readings (watermark = each sensor's last reading of day 2).
        marks = {}
        for row in rows:
            if row["timestamp"].date() <= DAYS[1]:
                key = (row["period"], row["sensor_id"])
                marks[key] = max(marks.get(key, (0, row["timestamp"])), (row["ingest_seq"], row["timestamp"]))
        sync_state.save_sync_outcome(connection, "timestream", marks, [])
        assert sum(pending_on_day(connection, "timestream", d) for d in DAYS) == sync_state.count_pending(
            connection, "timestream"
        )
        report = prune_hot_tier(connection, location, today=TODAY, hot_days=2, enabled_sinks=["timestream"])
        assert report.days_pruned == DAYS[:2]
        assert list(report.skipped) == [DAYS[2].isoformat()]
        # The watermarks still work over what is left: exactly the later days are pending.
        assert sync_state.count_pending(connection, "timestream") == sum(per_day_counts(rows)[d] for d in DAYS[2:])


def _hot_days(connection: duckdb.DuckDBPyConnection) -> set[date]:
    return {r[0] for r in connection.execute('SELECT DISTINCT CAST("timestamp" AS DATE) FROM aqi_readings').fetchall()}


def test_a_day_sorted_in_sensor_ranges_is_one_sorted_file(
    history: tuple[Path, list[dict]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aqi_assets.lib.tiers import parquet_tier

    db, rows = history
    monkeypatch.setattr(parquet_tier, "SORT_CHUNK_ROWS", 37)  # 240 five-minute rows → 7 sensor ranges
    location = open_location(str(tmp_path / "parquet"))
    with readings_connection(db) as connection:
        export = export_day(connection, location, DAYS[2], row_group_rows=64)
        assert verify_day(connection, location, DAYS[2]).ok
    assert export.total_rows == per_day_counts(rows)[DAYS[2]]
    path = location.files_under(day_path(location, "5min", DAYS[2]))[0].path
    table = pq.read_table(path)
    keys = list(zip(table["sensor_id"].to_pylist(), table["timestamp"].to_pylist(), strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == export.rows["5min"]


def test_the_all_readings_view_skips_a_day_that_stayed_hot(history: tuple[Path, list[dict]], tmp_path: Path) -> None:
    db, rows = history
    location = open_location(str(tmp_path / "parquet"))
    with readings_connection(db) as connection:
        for day in DAYS:
            export_day(connection, location, day)
        damaged = Path(location.files_under(day_path(location, "24h", DAYS[1]))[0].path)
        damaged.write_bytes(damaged.read_bytes()[:-20])  # footer gone
        report = prune_hot_tier(connection, location, today=TODAY, hot_days=0)
        assert report.days_pruned == [DAYS[0], *DAYS[2:]]  # a hole at DAYS[1], which stays hot
        sql = attach_history(connection, location, persist=True).sql
        assert f"date NOT IN (DATE '{DAYS[1].isoformat()}')" in sql
        counts, _ = _all_view_figures(connection)
    assert counts == per_day_counts(rows)
