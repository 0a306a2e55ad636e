"""The code location as a whole: every public name resolves, and the pure logic stays free of Dagster."""

from __future__ import annotations

import ast
from pathlib import Path

import dagster as dg
import pytest

import aqi_assets
from aqi_assets.definitions import defs as load_defs

PACKAGE = Path(aqi_assets.__file__).resolve().parent

ASSETS = {
    "raw_snapshot_5min",
    "raw_snapshot_24h",
    "aqi_readings",
    "aqi_hourly",
    "aqi_daily",
    "timestream_readings",
    "influxdb_readings",
    "covid_confirmed_csv",
    "covid_location_continents",
    "covid_monthly_mean_daily_cases",
    "covid_weekly_continent_stats",
    "covid_monthly_clusters",
    "public_site",
    "aqi_readings_parquet",
    "aqi_tiers_retention",
    "raw_archive_day",
    "archive_readings",
}
CHECKS = {
    ("aqi_readings", "indices_match_concentrations"),
    ("aqi_readings", "indices_in_range"),
    ("aqi_readings", "overall_index_is_max_sub_index"),
    ("aqi_readings", "daqi_band_matches_index"),
    ("aqi_readings", "no_duplicate_readings"),
    ("aqi_readings", "quarantine_share"),
    ("aqi_readings", "humid_pm_share"),
    ("aqi_readings", "readings_fresh"),
    ("aqi_readings", "pm25_not_above_pm10"),
    ("aqi_hourly", "indices_match_concentrations"),
    ("aqi_hourly", "nowcast_within_hourly_range"),
    ("aqi_hourly", "completeness_rules"),
    ("aqi_hourly", "means_match_history"),
    ("aqi_daily", "indices_match_concentrations"),
    ("aqi_daily", "daily_mean_within_hourly_range"),
    ("aqi_daily", "completeness_rules"),
    ("aqi_daily", "means_match_history"),
    ("covid_monthly_clusters", "optimal_partition_bounds_both"),
}
JOBS = {
    "ingest_5min_job",
    "ingest_24h_job",
    "covid19_job",
    "aqi_history_audit_job",
    "aqi_hourly_job",
    "aqi_daily_job",
    "aqi_readings_parquet_job",
    "aqi_tiers_retention_job",
}
SENSORS = {"snapshot_5min_sensor", "snapshot_24h_sensor", "aqi_automation_condition_sensor", "aqi_run_failure_alert"}
SENSORS |= {"aqi_late_data_sensor"}
SCHEDULES = {
    "covid19_daily_schedule",
    "aqi_history_audit_schedule",
    "aqi_tiers_retention_schedule",
}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    loaded = load_defs()
    assert isinstance(loaded, dg.Definitions)
    return loaded


def test_every_asset_and_check_resolves_by_name(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys >= ASSETS, f"missing assets: {ASSETS - keys}"
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert checks >= CHECKS, f"missing checks: {CHECKS - checks}"


def test_every_job_sensor_and_schedule_resolves_by_name(defs: dg.Definitions) -> None:
    for name in JOBS:
        assert defs.resolve_job_def(name).name == name
    repository = defs.get_repository_def()
    assert {sensor.name for sensor in repository.sensor_defs} >= SENSORS
    assert {schedule.name for schedule in repository.schedule_defs} >= SCHEDULES
    for name in SENSORS:
        assert defs.resolve_sensor_def(name).name == name
    for name in SCHEDULES:
        assert defs.resolve_schedule_def(name).name == name


def _dagster_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [
            f"{path.relative_to(PACKAGE)}:{node.lineno} {name}"
            for name in names
            if name.split(".")[0].startswith("dagster")
        ]
    return found


def test_lib_never_imports_dagster() -> None:
    modules = sorted((PACKAGE / "lib").rglob("*.py"))
    assert len(modules) > 20, "lib/ should hold the project's logic"
    offenders = [hit for module in modules for hit in _dagster_imports(module)]
    assert offenders == [], f"lib/ must stay free of Dagster: {offenders}"


def test_no_private_dagster_api_in_the_package() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "dagster._" in line
    ]
    assert offenders == []
