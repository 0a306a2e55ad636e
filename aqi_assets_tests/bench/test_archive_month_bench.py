"""The monthly archive benchmark runs end to end on two small generated months (the timings are not asserted, the
rows are: every path must land the same readings)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from aqi_assets.bench.__main__ import main
from aqi_assets.bench.archive_month import _generate_month, _in_fresh_processes, _months


def _tier_sensors(tier: Path) -> set[int]:
    return {sensor for path in (tier / "period=archive").rglob("*.parquet")
            for sensor in pq.read_table(path, columns=["sensor_id"])["sensor_id"].to_pylist()}


def _tier_rows(tier: Path) -> dict[str, int]:
    """Rows per `date=` partition of a tier directory, read from the Parquet files themselves."""
    rows: dict[str, int] = {}
    for path in (tier / "period=archive").rglob("*.parquet"):
        day = next(part for part in path.parts if part.startswith("date="))
        rows[day] = rows.get(day, 0) + pq.ParquetFile(path).metadata.num_rows
    return rows


def test_archive_month_bench_lands_every_generated_reading_on_every_path(capsys, tmp_path: Path) -> None:
    workdir = tmp_path / "bench"
    assert main(["archive-month", "--sensors", "3", "--days", "2", "--workers", "2",
                 "--workdir", str(workdir)]) == 0
    result = json.loads(capsys.readouterr().out)

    assert result["months"] == ["2016-01", "2016-02"]
    generated_first, generated_second = result["generated"]["rows_per_month"]
    one_worker, one_thread = result["one_worker"], result["one_worker_one_thread"]
    first_parallel, second_parallel = result["workers_run"]["runs"]
    assert [run["month"] for run in (one_worker, one_thread, first_parallel, second_parallel)] == [
        "2016-01", "2016-01", "2016-01", "2016-02"]
    assert one_worker["threads"] == "all" and one_thread["threads"] == first_parallel["threads"] == 1

    # The same month gives the same readings whatever the threads or the company.
    month_rows = one_worker["rows"]
    assert one_thread["rows"] == first_parallel["rows"] == month_rows
    for run, generated in ((one_worker, generated_first), (second_parallel, generated_second)):
        # All days are cold, none is hot.
        assert run["days"] == 2 and run["hot_rows"] == 0
        # A generated row is lost only when its values were quarantined (the generator makes no duplicates; a row
        # whose every value is bad is a measurement that lands no reading).
        assert generated - run["values_quarantined"] <= run["rows"] <= run["measurements"] <= generated
        assert run["tier_rows_read_back"] == run["rows"]
    assert result["workers_run"]["rows"] == month_rows + second_parallel["rows"]

    # The tier directories hold what was reported, day by day.
    tier = workdir / "tier"
    for name, run in (("one_worker", one_worker), ("one_worker_one_thread", one_thread),
                      ("workers-2016-01", first_parallel), ("workers-2016-02", second_parallel)):
        rows = _tier_rows(tier / name)
        assert len(rows) == 2 and sum(rows.values()) == run["rows"], name
        assert _tier_sensors(tier / name) == {10_000, 10_001, 10_002}, name
    assert sorted(_tier_rows(tier / "one_worker")) == ["date=2016-01-01", "date=2016-01-02"]

    # The daily CSVs of the same month merge to the same readings; the floor copies every generated row.
    csv_path = result["per_day_csv"]
    assert csv_path["days_merged"] == 2 and csv_path["files"] == 6
    assert csv_path["rows"] == csv_path["measurements"] == month_rows
    assert result["floor"]["rows"] == generated_first

    # The figures the docs' estimate is built from are there and plausible.
    for run in (one_worker, one_thread, first_parallel, second_parallel):
        assert run["seconds"] > 0 and run["rows_per_s"] > 0 and run["peak_rss_mb"] > 0
        assert run["parquet_bytes"] > 0 and run["parquet_bytes_per_row"] > 0
    assert result["workers_run"]["speedup"] > 0 and result["workers_run"]["wall_seconds"] > 0
    assert result["floor"]["seconds"] > 0 and result["floor"]["ratio_to_floor"] > 0
    assert csv_path["ratio_to_one_worker"] > 0
    estimate = result["estimate"]
    assert estimate["rows_per_year"] == round(month_rows * 15_000 / 3 * 365 / 2)
    assert estimate["parquet_bytes_per_year"] > 0
    assert estimate["hours_on_this_machine"] > 0 and estimate["hours_on_50_workers"] > 0
    assert result["targets"]["met"] is None  # the targets are for 1,000 sensors x 31 days
    assert "cores" in result["machine"]


def test_archive_month_bench_removes_its_temporary_directory_and_can_skip_the_csv_path(
    capsys, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the default work directory is made
    assert main(["archive-month", "--sensors", "2", "--days", "1", "--workers", "1", "--no-csv"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(tmp_path.iterdir()) == []
    assert "per_day_csv" not in result
    assert result["workers_run"]["rows"] == result["one_worker"]["rows"] > 0


def test_months_of_the_bench_are_long_enough_for_the_days_asked() -> None:
    assert [f"{m:%Y-%m}" for m in _months(3, 31)] == ["2016-01", "2016-03", "2016-05"]  # no February
    assert [f"{m:%Y-%m}" for m in _months(3, 28)] == ["2016-01", "2016-02", "2016-03"]


def test_a_child_that_fails_fails_the_bench_instead_of_hanging_it(tmp_path: Path) -> None:
    # 0 days is refused by the generator inside the child: the parent must see it, not wait for figures forever.
    with pytest.raises(RuntimeError, match="_generate_month failed"):
        _in_fresh_processes(_generate_month, [(str(tmp_path), _months(1, 1)[0], 2, 0, 1, 0, 0)])
