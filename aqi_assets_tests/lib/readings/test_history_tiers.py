"""The history accessor against a real tier: a column added to the contract after days went to Parquet, a window
that bounds the file listing, a pruned day whose files are gone. Every path is exercised: DuckDB reading a local
tier (TEMP view, windowed globs, the stored view read from another connection) and the Arrow dataset (a local
tier's whole-history TEMP view, and S3 on a moto server, windowed or not)."""

from __future__ import annotations

import fnmatch
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import boto3
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.lib.common.location import TierLocation, open_location
from aqi_assets.lib.readings import schema
from aqi_assets.lib.readings.history import (
    HISTORY_VIEW,
    HistoryError,
    attach_history,
    date_patterns,
    day_path,
    tier_dataset,
    tier_schema,
)
from aqi_assets.lib.readings.schema import (
    MIGRATIONS,
    READINGS_COLUMNS,
    Column,
    SchemaError,
    SinkRole,
    ensure_schema,
    readings_connection,
    readings_migrations,
)
from aqi_assets.lib.tiers.parquet_tier import export_day
from aqi_assets.lib.tiers.retention import prune_hot_tier
from aqi_assets_tests.support.moto_server import threaded_moto_server

FIRST, SECOND, THIRD = date(2016, 3, 1), date(2016, 3, 2), date(2016, 3, 3)
EXTRA = Column("extra", "DOUBLE", "a measure added to the contract after days were pruned", SinkRole.MEASURE)


def _day_rows(day: date, seed: int) -> list[dict]:
    rows = synthetic_readings(12, now=datetime.combine(day, datetime.min.time()) + timedelta(hours=12), seed=seed,
                              per_sensor=4)  # fmt: skip
    for row in rows:
        row["ingest_seq"] = 1
    return rows


def _export_and_prune(connection: duckdb.DuckDBPyConnection, location: TierLocation, day: date) -> None:
    export_day(connection, location, day)
    report = prune_hot_tier(connection, location, today=day + timedelta(days=8), hot_days=7)
    assert report.days_pruned == [day], report.skipped


@dataclass
class History:
    path: Path
    location: TierLocation
    rows: dict[date, list[dict]]  # per day, `extra` set on the days exported after the column was added


def _day_figures(rows: list[dict]) -> tuple[int, int, float | None]:
    extras = [r["extra"] for r in rows if r.get("extra") is not None]
    return len(rows), len(extras), (sum(extras) if extras else None)


def _expected(history: History, days: tuple[date, ...]) -> dict[date, tuple[int, int, float | None]]:
    return {day: _day_figures(history.rows[day]) for day in days}


def _read_figures(connection: duckdb.DuckDBPyConnection) -> dict[date, tuple[int, int, float | None]]:
    found = connection.execute(
        f'SELECT CAST("timestamp" AS DATE), count(*), count(extra), sum(extra) FROM {HISTORY_VIEW} GROUP BY ALL'
    ).fetchall()
    return {day: (rows, extras, total) for day, rows, extras, total in found}


def _build(tmp_path: Path, location: TierLocation, monkeypatch: pytest.MonkeyPatch) -> History:
    """FIRST exported and pruned under the original contract; then `extra` added (the one edit) and SECOND
    exported and pruned with values in it; THIRD stays hot."""
    path = tmp_path / "aqi.duckdb"
    rows = {FIRST: _day_rows(FIRST, 1)}
    with readings_connection(path) as connection:
        insert_readings(connection, rows[FIRST])
        _export_and_prune(connection, location, FIRST)
    monkeypatch.setattr(schema, "READINGS_COLUMNS", (*READINGS_COLUMNS, EXTRA))
    rows[SECOND], rows[THIRD] = _day_rows(SECOND, 2), _day_rows(THIRD, 3)
    for number, row in enumerate(rows[SECOND] + rows[THIRD]):
        row["extra"] = number + 0.5
    with duckdb.connect(str(path)) as connection:
        ensure_schema(connection)  # the migration derived from the contract adds the column
        assert "extra" in {r[0] for r in connection.execute("DESCRIBE aqi_readings").fetchall()}
        insert_readings(connection, rows[SECOND] + rows[THIRD])
        _export_and_prune(connection, location, SECOND)
    # The scenario is real: the first day's file has no `extra`, the second's has it.
    for day, has_extra in ((FIRST, False), (SECOND, True)):
        (info,) = location.files_under(day_path(location, "5min", day))
        with location.filesystem.open_input_file(info.path) as handle:
            written = pq.read_schema(handle)
        assert ("extra" in written.names) is has_extra
    # The Arrow types the accessor declares are the ones the export writes, column for column.
    assert [(f.name, f.type) for f in written] == [
        (f.name, f.type) for f in tier_schema() if f.name not in ("period", "date")
    ]
    return History(path, location, rows)


@pytest.fixture
def local_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> History:
    return _build(tmp_path, open_location(str(tmp_path / "parquet")), monkeypatch)


@pytest.fixture
def s3_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[History]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with threaded_moto_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="tier-bucket")
        yield _build(tmp_path, open_location("s3://tier-bucket/aqi", endpoint_url=endpoint), monkeypatch)


def _window(first: date, days: int = 1) -> tuple[datetime, datetime]:
    start = datetime.combine(first, datetime.min.time())
    return start, start + timedelta(days=days)


def test_an_added_column_reads_as_null_on_older_days_on_every_local_path(local_history: History) -> None:
    every_day = (FIRST, SECOND, THIRD)
    with duckdb.connect(str(local_history.path)) as connection:
        # Whole history, TEMP view: the Arrow dataset over the pruned days' files, in the contract's schema.
        view = attach_history(connection, local_history.location)
        assert "aqi_readings_parquet_dataset" in view.sql
        assert _read_figures(connection) == _expected(local_history, every_day)
        assert _read_figures(connection)[FIRST][1:] == (0, None)  # the first day: `extra` NULL, its rows all there
        # A window over the first day only: no file in scope has `extra`; DuckDB's own reader still gives it.
        view = attach_history(connection, local_history.location, window=_window(FIRST))
        assert "read_parquet([" in view.sql and "union_by_name = true" in view.sql
        assert _read_figures(connection) == _expected(local_history, (FIRST,))
        # A window over all three days: old and new files unioned by name.
        attach_history(connection, local_history.location, window=_window(FIRST, 3))
        assert _read_figures(connection) == _expected(local_history, every_day)
        # The stored view, for a user's `duckdb` shell.
        attach_history(connection, local_history.location, persist=True)
    with duckdb.connect(str(local_history.path), read_only=True) as other:
        assert _read_figures(other) == _expected(local_history, every_day)


def test_an_added_column_reads_as_null_on_older_days_through_the_arrow_dataset_on_s3(s3_history: History) -> None:
    with duckdb.connect(str(s3_history.path)) as connection:
        view = attach_history(connection, s3_history.location)
        assert "aqi_readings_parquet_dataset" in view.sql and len(view.files) == 2
        assert _read_figures(connection) == _expected(s3_history, (FIRST, SECOND, THIRD))
        view = attach_history(connection, s3_history.location, window=_window(FIRST))
        assert [f.split("/")[-3:-1] for f in view.files] == [["period=5min", "date=2016-03-01"]]
        assert _read_figures(connection) == _expected(s3_history, (FIRST,))
        # The whole tier as other engines see it: the contract's schema whatever file is found first.
        dataset = tier_dataset(s3_history.location)
        assert dataset.schema.field("extra").type == tier_schema().field("extra").type
        first = dataset.to_table(columns=["extra"], filter=ds.field("date") == FIRST)["extra"]
        assert len(first) == first.null_count == len(s3_history.rows[FIRST])


class _RecordingHandler(pafs.FileSystemHandler):
    """A filesystem that notes every path it is asked to list or stat, then asks the real one."""

    def __init__(self, inner: pafs.FileSystem) -> None:
        self.inner, self.asked = inner, []

    def get_type_name(self) -> str:
        return "recording"

    def equals(self, other: object) -> bool:
        return other is self

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        self.asked += paths
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        self.asked.append(selector.base_dir)
        return self.inner.get_file_info(selector)

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.inner.open_input_file(path)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.inner.open_input_stream(path)

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("read only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def _recording(location: TierLocation) -> tuple[TierLocation, _RecordingHandler]:
    handler = _RecordingHandler(location.filesystem)
    return TierLocation(pafs.PyFileSystem(handler), location.root, location.uri), handler


@pytest.mark.parametrize("tier", ["local", "s3"])
def test_a_window_lists_and_reads_only_its_days(tier: str, request: pytest.FixtureRequest) -> None:
    history: History = request.getfixturevalue(f"{tier}_history")
    second_dir = day_path(history.location, "5min", SECOND)
    # The second day's file replaced by garbage: reading it would fail, so a window that opens it would too.
    (info,) = history.location.files_under(second_dir)
    with history.location.filesystem.open_output_stream(info.path) as handle:
        handle.write(b"not parquet")
    location, handler = _recording(history.location)
    with duckdb.connect(str(history.path)) as connection:
        view = attach_history(connection, location, window=_window(FIRST))
        assert view.pruned == {"5min": [FIRST]}
        assert _read_figures(connection) == _expected(history, (FIRST,))
        assert handler.asked and not [p for p in handler.asked if "date=2016-03-02" in p or p == location.root]
        assert all("date=2016-03-01" in f for f in view.files) and view.files
        if tier == "local":  # DuckDB's own reader: the globs name the window's day directories only
            assert "date=2016-03-01" in view.sql and "date=2016-03-02" not in view.sql and "date=*" not in view.sql
        # The whole history does open it, and fails loudly.
        attach_history(connection, location)
        with pytest.raises(duckdb.InvalidInputException, match=r"date=2016-03-02.*Parquet magic bytes"):
            _read_figures(connection)


@pytest.mark.parametrize("tier", ["local", "s3"])
def test_a_pruned_day_without_files_fails_the_attach(tier: str, request: pytest.FixtureRequest) -> None:
    history: History = request.getfixturevalue(f"{tier}_history")
    history.location.filesystem.delete_dir(day_path(history.location, "5min", SECOND))
    with duckdb.connect(str(history.path)) as connection:
        for window in (None, _window(SECOND), _window(FIRST, 3)):
            with pytest.raises(HistoryError, match=r"1 pruned \(period, day\) pairs have no Parquet file .*5min "
                                                   r"2016-03-02"):  # fmt: skip
                attach_history(connection, history.location, window=window)
        with pytest.raises(HistoryError, match="no Parquet file"):
            attach_history(connection, history.location, persist=tier == "local")
        # Outside the missing day the history still reads.
        attach_history(connection, history.location, window=_window(FIRST))
        assert _read_figures(connection) == _expected(history, (FIRST,))


def test_many_missing_days_are_counted_and_the_first_named(tmp_path: Path) -> None:
    location = open_location(str(tmp_path / "parquet"))
    days = [FIRST + timedelta(days=i) for i in range(7)]
    with readings_connection(tmp_path / "aqi.duckdb") as connection:
        for number, day in enumerate(days):
            insert_readings(connection, _day_rows(day, number))
            _export_and_prune(connection, location, day)
        shutil.rmtree(location.root)
        with pytest.raises(HistoryError) as raised:
            attach_history(connection, open_location(location.root))
    message = str(raised.value)
    assert message.startswith("7 pruned (period, day) pairs have no Parquet file")
    assert "5min 2016-03-05 …" in message and "2016-03-06" not in message


def test_the_readings_migrations_follow_the_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not [m for m in MIGRATIONS if "aqi_readings" in m]  # derived, not typed
    nullable = [c.name for c in READINGS_COLUMNS if not c.not_null]
    assert [m.split('"')[1] for m in readings_migrations()] == nullable
    path = tmp_path / "aqi.duckdb"
    with readings_connection(path):
        pass
    monkeypatch.setattr(schema, "READINGS_COLUMNS", (*READINGS_COLUMNS, EXTRA))
    assert readings_migrations()[-1] == 'ALTER TABLE aqi_readings ADD COLUMN IF NOT EXISTS "extra" DOUBLE'
    with readings_connection(path) as connection:
        assert connection.execute("DESCRIBE aqi_readings").fetchall()[-1][:2] == ("extra", "DOUBLE")
    required = Column("required", "BIGINT", "a NOT NULL column added later", None, True)
    monkeypatch.setattr(schema, "READINGS_COLUMNS", (*READINGS_COLUMNS, EXTRA, required))
    with (
        pytest.raises(SchemaError, match=r"lacks the NOT NULL contract columns \['required'\]"),
        readings_connection(path),
    ):
        pass


def test_date_patterns_match_exactly_the_days() -> None:
    span = _calendar_days(date(2015, 12, 1), date(2018, 3, 1))
    chooser = random.Random(5)
    for keep in (1.0, 0.97, 0.5, 0.0):
        days = sorted(d for d in span if chooser.random() < keep or (date(2016, 1, 1) <= d < date(2017, 2, 1)))
        patterns = date_patterns(days)
        matched = [d for d in span if any(fnmatch.fnmatchcase(d.isoformat(), p) for p in patterns)]
        assert matched == days
        assert "2016-*" in patterns  # a whole year in one pattern
    assert date_patterns([date(2016, 2, 29), date(2016, 3, 1)]) == ["2016-02-29", "2016-03-01"]
    assert date_patterns([*_calendar_days(date(2016, 2, 1), date(2016, 3, 1)), date(2016, 12, 31)]) == [
        "2016-02-*", "2016-12-31"
    ]  # fmt: skip


def _calendar_days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]
