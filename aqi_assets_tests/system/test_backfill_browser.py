"""Backfills launched from the Dagster UI in a real browser: three days of the archive (against a local archive
server), then the official daily indices of those days from `aqi_daily`'s Partitions tab."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from playwright import sync_api as playwright_api

from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.archive_server import ALL_GOOD_IDS, local_archive
from aqi_assets_tests.support.browser import UiSession
from aqi_assets_tests.support.samples import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]
DAYS = [date(2025, 10, 14), date(2025, 10, 15), date(2025, 10, 16)]
RANGE = f"[{DAYS[0]}...{DAYS[-1]}]"


@pytest.fixture
def output_dir() -> Path:
    return PROJECT_ROOT / "test-output" / "backfill"


@pytest.fixture
def archive_url() -> Iterator[str]:
    with local_archive(DAYS) as archive:
        yield archive.url


@pytest.fixture
def aqi_env(tmp_path: Path, snapshot_server: str, archive_url: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    env = {
        "AQI_SNAPSHOT_5MIN_URL": f"{snapshot_server}/data.json",
        "AQI_SNAPSHOT_24H_URL": f"{snapshot_server}/data.24h.json",
        "AQI_DATA_DIR": str(tmp_path / "data"),
        "AQI_DUCKDB_PATH": str(tmp_path / "data" / "aqi.duckdb"),
        "AQI_ARCHIVE_URL": archive_url,
        "AQI_ARCHIVE_SENSORS": ",".join(str(i) for i in ALL_GOOD_IDS),
        "AQI_ARCHIVE_START": "2025-10-01",
        "AQI_PARTITIONS_START": "2025-10-01",
    }
    for name in [name for name in os.environ if name.startswith("AQI_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _open_partitions_launch(ui: UiSession, asset: str) -> None:
    """The asset's Partitions tab, then its Materialize button; the UI asks first when an upstream asset was never
    materialised in this instance (aqi_readings: the archive merge writes the table itself)."""
    page = ui.page
    ui.goto(f"/assets/{asset}?view=partitions")
    page.get_by_text(re.compile(r"Partitions Selected")).first.wait_for()
    page.locator("button", has_text=re.compile(r"^Materialize")).first.click()
    confirm = page.get_by_role("button", name="Confirm")
    try:
        confirm.wait_for(timeout=5_000)
    except playwright_api.TimeoutError:
        return
    confirm.click()


def _launch_backfill(ui: UiSession, name: str) -> None:
    """In the open launch dialog: a custom range of all partitions (history is older than the default 90 days),
    then Launch backfill."""
    page = ui.page
    page.get_by_text("Show all partitions").first.click()  # the days are older than the dialog's 90-day default
    field = page.locator("[role=dialog] input[type=text]").first
    # On a loaded machine the dialog may re-render once its partition data arrives and reset the field: type the
    # range again until the dialog counts it (each attempt bounded, the step's timeout bounds them all).
    for attempt in range(1, 7):
        field.fill(RANGE)
        field.press("Enter")
        try:
            page.get_by_text("3 partitions").first.wait_for(timeout=15_000)
            break
        except playwright_api.TimeoutError:
            if attempt == 6:
                raise
    ui.screenshot(f"{name}-dialog.png")
    page.get_by_role("button", name=re.compile(r"^Launch")).last.click()


def _backfill_statuses(ui: UiSession) -> dict[str, list[str]]:
    """Each backfill's status, by the assets it covers (the automation adds one of its own: the tier's export of
    the merged archive days)."""
    data = ui.dev.graphql(
        "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status assetSelection { path } } } } }"
    )
    statuses: dict[str, list[str]] = {}
    for backfill in data["data"]["partitionBackfillsOrError"]["results"]:
        assets = ",".join(sorted("/".join(key["path"]) for key in backfill["assetSelection"] or []))
        statuses.setdefault(assets, []).append(backfill["status"])
    return statuses


def _materialized(ui: UiSession, asset: str) -> int:
    data = ui.dev.graphql(
        f'{{ assetNodeOrError(assetKey: {{path: ["{asset}"]}}) {{ ... on AssetNode {{ '
        "partitionStats { numMaterialized } } } }"
    )
    return int(data["data"]["assetNodeOrError"]["partitionStats"]["numMaterialized"])


def _rows(database: Path, sql: str) -> list[tuple]:
    with readings_connection(database, read_only=True, lock_timeout_s=30) as connection:
        return connection.execute(sql).fetchall()


def test_archive_then_daily_index_backfills_launched_from_the_ui(ui: UiSession, aqi_env: dict) -> None:
    page = ui.page
    database = Path(aqi_env["AQI_DUCKDB_PATH"])

    # The archive group also holds the monthly backfill (monthly partitions), so the daily assets are backfilled
    # each from its own Partitions tab: the fetch, then the merge.
    with ui.step("1. launch a 3-day archive fetch from raw_archive_day's Partitions tab", timeout_s=180):
        _open_partitions_launch(ui, "raw_archive_day")
        _launch_backfill(ui, "raw_archive_day")
    with ui.step("2a. the fetch completes, one run per day", timeout_s=300):
        ui.poll(lambda: _backfill_statuses(ui), lambda s: s.get("raw_archive_day") == ["COMPLETED_SUCCESS"], 280,
                "archive fetch done")
    with ui.step("1b. launch the merge of those days from archive_readings' Partitions tab", timeout_s=180):
        _open_partitions_launch(ui, "archive_readings")
        _launch_backfill(ui, "archive_readings")
    with ui.step("2. the archive backfill completes, one run per day", timeout_s=300):
        ui.poll(
            lambda: _backfill_statuses(ui),
            lambda s: s.get("archive_readings") == ["COMPLETED_SUCCESS"],
            280,
            "archive backfill done",
        )
        assert _materialized(ui, "archive_readings") == 3
        days = [row[0] for row in _rows(database, "SELECT day FROM archive_log ORDER BY day")]
        assert days == DAYS
        ui.goto("/overview/backfills")
        ui.screenshot("archive-backfill-done.png")

    with ui.step("3. launch the daily index backfill from aqi_daily's Partitions tab", timeout_s=180):
        ui.goto("/assets/aqi_daily?view=partitions")
        page.get_by_text(re.compile(r"Partitions Selected")).first.wait_for()
        page.locator("button", has_text=re.compile(r"^Materialize")).first.click()
        # aqi_readings has no materialisation in this instance (the archive merge writes the table), so the UI
        # asks first; the daily indices read the readings table itself.
        page.get_by_role("button", name="Confirm").click()
        _launch_backfill(ui, "aqi_daily")
    with ui.step("4. the three days turn green and aggregates.aqi_daily holds them", timeout_s=300):
        # Ours, and the one the automation launched when the archive days landed: the tier exports those days.
        # (one backfill or several, depending on the daemon's ticks).
        ui.poll(
            lambda: (_backfill_statuses(ui), _materialized(ui, "aqi_readings_parquet")),
            lambda found: found[0].get("aqi_daily") == ["COMPLETED_SUCCESS"]
            and set(found[0].get("aqi_readings_parquet", [])) <= {"COMPLETED_SUCCESS"}
            and found[1] == 3,
            280,
            "the daily index backfill and the tier's export of the archive days done",
        )
        assert _materialized(ui, "aqi_daily") == 3
        exported = _rows(database, "SELECT day, rows FROM parquet_tier_log WHERE period = 'archive' ORDER BY day")
        assert [day for day, rows in exported if rows] == DAYS
        per_day = _rows(
            database,
            "SELECT day, min(archive_hours), max(utc_offset_hours) FROM aggregates.aqi_daily GROUP BY day ORDER BY day",
        )
        # Each sensor's local standard-time day (European zones, ahead of UTC): the first day misses the hours
        # before the backfilled days began, the others are whole.
        first_offset = per_day[0][2]
        assert first_offset > 0
        assert [(day, archived) for day, archived, _offset in per_day] == [
            (day, 24 - first_offset if day == DAYS[0] else 24) for day in DAYS
        ]
        ui.goto("/assets/aqi_daily?view=partitions")
        page.get_by_text("Materialized (3)").first.wait_for()  # the three days' status filter, in green
        ui.screenshot("aqi_daily-partitions.png")
