"""The `covid19` asset group materialised end to end against the real files served over local HTTP."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.covid.assets import covid_assets, covid_jobs, covid_schedules
from aqi_assets.defs.covid.resources import COVID_SCHEMA, CovidDuckDBIOManager, CovidSource, covid_resources
from aqi_assets.lib.common.fetch import FetchError, download
from aqi_assets_tests.support.covid_fixtures import (
    CONTINENTS_PATH,
    csv_bytes,
    non_numeric_cell_csv,
    renamed_column_csv,
    truncated_csv,
)
from aqi_assets_tests.support.http import local_http_server

CSV_ROUTE = "/covid/time_series_covid19_confirmed_global.csv"
ZIP_ROUTE = "/covid/World_Continents.zip"


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    with local_http_server(threaded=False) as http:
        yield http


def serve(server: HTTPServer, csv: bytes) -> None:
    server.clear()
    server.expect_request(CSV_ROUTE).respond_with_data(csv, content_type="text/csv")
    server.expect_request(ZIP_ROUTE).respond_with_data(
        CONTINENTS_PATH.read_bytes(), content_type="application/zip"
    )


def resources(server: HTTPServer, root: Path) -> dict[str, object]:
    database = str(root / "aqi.duckdb")
    return {
        "storage": AqiStorage(data_dir=str(root / "data"), duckdb_path=database),
        "covid_source": CovidSource(csv_url=server.url_for(CSV_ROUTE), continents_url=server.url_for(ZIP_ROUTE)),
        "covid_io_manager": CovidDuckDBIOManager(storage=AqiStorage(duckdb_path=database)),
    }


def covid_tables(database: Path) -> dict[str, int]:
    if not database.exists():
        return {}
    with duckdb.connect(str(database), read_only=True) as connection:
        names = connection.execute(
            "select table_name from information_schema.tables where table_schema = ?", [COVID_SCHEMA]
        ).fetchall()
        return {
            name: connection.execute(f"select count(*) from {COVID_SCHEMA}.{name}").fetchone()[0]
            for (name,) in names
        }


@pytest.fixture(scope="module")
def materialised(server: HTTPServer, tmp_path_factory: pytest.TempPathFactory):
    serve(server, csv_bytes())
    root = tmp_path_factory.mktemp("covid_group")
    result = dg.materialize(covid_assets, resources=resources(server, root))
    return result, root


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    return result.asset_materializations_for_node(asset)[0].metadata


def test_group_materialises_all_tables(materialised) -> None:
    result, root = materialised
    assert result.success
    assert covid_tables(root / "aqi.duckdb") == {
        "covid_confirmed_csv": 289 * 1143,
        "covid_location_continents": 287,
        "covid_monthly_mean_daily_cases": 7839,
        "covid_weekly_continent_stats": 5 * 164,
        "covid_monthly_clusters": 1950,
    }
    with duckdb.connect(str(root / "aqi.duckdb"), read_only=True) as connection:
        afghanistan = connection.execute(
            "select average from covid19.covid_monthly_mean_daily_cases where country = 'Afghanistan' "
            "and year = 2020 and month = 3"
        ).fetchone()[0]
        # The COVID IO manager writes its own schema only: no air-quality DDL runs on its connections.
        schemas = {row[0] for row in connection.execute("SELECT DISTINCT schema_name FROM duckdb_tables()").fetchall()}
        sequences = connection.execute("SELECT count(*) FROM duckdb_sequences()").fetchall()[0][0]
    assert afghanistan == pytest.approx(5.193548387096774, abs=1e-9)
    assert schemas == {"covid19"} and sequences == 0


def test_raw_csv_is_kept_under_a_dated_name_with_its_hash(materialised) -> None:
    result, root = materialised
    meta = metadata(result, "covid_confirmed_csv")
    kept = Path(meta["raw_file"].value)
    assert kept.parent == root / "data" / "covid19"
    assert kept.name.startswith("time_series_covid19_confirmed_global_20") and kept.name.endswith(".csv.gz")
    body = gzip.decompress(kept.read_bytes())
    assert body == csv_bytes()
    assert meta["sha256"].value == hashlib.sha256(body).hexdigest()
    assert meta["csv_rows"].value == 289 and meta["csv_columns"].value == 1147
    assert meta["dagster/row_count"].value == 289 * 1143


@pytest.mark.parametrize(
    "asset",
    ["covid_monthly_mean_daily_cases", "covid_weekly_continent_stats", "covid_monthly_clusters"],
)
def test_query_assets_carry_typed_metadata_and_a_figure(materialised, asset: str) -> None:
    result, _ = materialised
    meta = metadata(result, asset)
    assert isinstance(meta["dagster/row_count"], dg.IntMetadataValue)
    assert isinstance(meta["preview"], dg.MarkdownMetadataValue)
    assert meta["figure"].value.startswith("![") and "(data:image/png;base64,iVBORw0KGgo" in meta["figure"].value
    assert isinstance(meta["dagster/column_schema"], dg.TableSchemaMetadataValue)


def test_query2_and_query3_metadata(materialised) -> None:
    result, _ = materialised
    assert metadata(result, "covid_weekly_continent_stats")["continent_mix"].value == (
        "Europe 34, Asia 26, America 25, Oceania 10, Africa 5"
    )
    clusters = metadata(result, "covid_monthly_clusters")
    assert clusters["months"].value == 39
    assert "adjusted_rand_index" in clusters["per_month"].value
    checks = result.get_asset_check_evaluations()
    assert [(check.check_name, check.passed) for check in checks] == [("optimal_partition_bounds_both", True)]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (truncated_csv, "truncated"),
        (renamed_column_csv, "header must start with"),
        (non_numeric_cell_csv, "non-numeric"),
    ],
    ids=["truncated", "renamed-column", "non-numeric-cell"],
)
def test_broken_csv_fails_clearly_and_writes_no_table(server: HTTPServer, tmp_path: Path, mutate, message) -> None:
    serve(server, mutate(csv_bytes()))
    result = dg.materialize(covid_assets, resources=resources(server, tmp_path), raise_on_error=False)
    assert not result.success
    failures = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    assert [event.step_key for event in failures] == ["covid_confirmed_csv"]
    description = failures[0].step_failure_data.user_failure_data.description
    assert message in description and "no table was written" in description
    assert covid_tables(tmp_path / "aqi.duckdb") == {}
    kept = list((tmp_path / "data" / "covid19").glob("time_series_covid19_confirmed_global_*.csv.gz"))
    assert len(kept) == 1  # the rejected download is kept for inspection


def test_io_manager_replaces_changed_schema_and_refuses_empty_frames(tmp_path: Path) -> None:
    database = str(tmp_path / "io.duckdb")
    frames = [pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"b": ["x"], "c": [1.5]}), pd.DataFrame({"b": []})]

    def run(frame: pd.DataFrame) -> bool:
        @dg.asset(io_manager_key="covid_io_manager", name="replaced")
        def replaced() -> pd.DataFrame:
            return frame

        io_manager = CovidDuckDBIOManager(storage=AqiStorage(duckdb_path=database))
        return dg.materialize([replaced], resources={"covid_io_manager": io_manager}, raise_on_error=False).success

    assert run(frames[0]) and run(frames[1])
    with duckdb.connect(database, read_only=True) as connection:
        assert connection.execute("select * from covid19.replaced").fetchall() == [("x", 1.5)]
    assert not run(frames[2])  # empty: refused, the previous table stays
    with duckdb.connect(database, read_only=True) as connection:
        assert connection.execute("select * from covid19.replaced").fetchall() == [("x", 1.5)]


def test_definitions_job_and_schedule() -> None:
    assert {asset_def.group_names_by_key[key] for asset_def in covid_assets for key in asset_def.keys} == {"covid19"}
    (schedule,) = covid_schedules
    assert schedule.cron_schedule == "0 0 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == "covid19_job"
    defs = dg.Definitions(
        assets=covid_assets,
        jobs=covid_jobs,
        schedules=covid_schedules,
        resources={"storage": AqiStorage(), **covid_resources(AqiStorage())},
    )
    job = defs.resolve_job_def("covid19_job")
    assert {node.name for node in job.nodes} == {asset_def.node_def.name for asset_def in covid_assets}
    source = covid_resources(AqiStorage())["covid_source"]
    assert source.csv_url.startswith("https://raw.githubusercontent.com/CSSEGISandData/")


def test_file_urls_read_only_from_their_own_directory_unless_roots_are_configured(tmp_path: Path) -> None:
    """Without AQI_ALLOWED_FILE_ROOTS a file:// source may read its own directory only (as the snapshot
    source does), not any path of the machine."""
    inbox, shapes, elsewhere = tmp_path / "inbox", tmp_path / "shapes", tmp_path / "elsewhere"
    for directory in (inbox, shapes, elsewhere):
        directory.mkdir()
    csv, secret = inbox / "confirmed.csv", elsewhere / "secret.csv"
    csv.write_bytes(b"Province/State,Country/Region,Lat,Long,1/22/20\n,Chad,15.4,18.7,0\n")
    secret.write_bytes(b"not for the pipeline\n")
    source = CovidSource(csv_url=csv.as_uri(), continents_url=(shapes / "World_Continents.zip").as_uri())
    assert source.file_roots(source.csv_url) == [str(inbox.resolve())]
    assert source.file_roots(source.continents_url) == [str(shapes.resolve())]
    assert source.file_roots("https://example.org/covid.csv") == []

    out = tmp_path / "out"
    kept = download(csv.as_uri(), out, lambda sha, _: f"{sha}.gz", allowed_file_roots=source.file_roots(csv.as_uri()))
    assert gzip.decompress(kept.path.read_bytes()) == csv.read_bytes()
    with pytest.raises(FetchError, match="outside the allowed roots"):
        download(secret.as_uri(), out, lambda sha, _: f"{sha}.gz", allowed_file_roots=source.file_roots(csv.as_uri()))

    configured = CovidSource(csv_url=csv.as_uri(), allowed_file_roots=f" {elsewhere} , {inbox}")
    assert configured.file_roots(csv.as_uri()) == [str(elsewhere), str(inbox)]
    assert download(secret.as_uri(), out, lambda sha, _: f"{sha}.gz", allowed_file_roots=configured.file_roots(""))
