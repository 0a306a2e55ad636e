"""The Dagster UI in a real browser: browse the lineage, materialise the 5-minute chain, see metadata and checks.

Starts `dagster dev -w workspace.yaml` (the real code location) on a free loopback port with a temporary
DAGSTER_HOME and DuckDB file, the snapshot URLs pointed at a local HTTP server serving the real Sensor.Community
sample, and drives Debian's Chromium with Playwright the way a person would. Screenshots land in
`test-output/ui/` (ignored by git); a step that does not appear in time fails with its name, the page URL, a
screenshot and the tail of the `dagster dev` log.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from aqi_assets.defs.air_quality.assets import ingest_jobs
from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets_tests.support.browser import OUTPUT_DIR, VIEWPORT, UiSession
from aqi_assets_tests.support.dagster_dev import DagsterDev
from aqi_assets_tests.support.samples import FRAGMENT, fragment_records

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
]
CHAIN_JOB = "ingest_5min_job"  # the 5-minute chain: raw_snapshot_5min → aqi_readings (+ its checks)
READINGS = "aqi_readings"
GRAPH_VIEWPORT = {"width": 1800, "height": 2600}  # the history and its 10 neighbours at full node size

# Where the lineage view draws things: asset nodes are <foreignObject>s (group boxes carry class "group") whose
# name label has a data-tooltip; edges are <path>s with an arrow marker, leaving a node's right side and
# ending just left of the target node. Returns the node names and the (from, to) pairs of every edge.
LINEAGE_JS = """
() => {
  const nodes = {};
  for (const label of document.querySelectorAll(
      'svg foreignObject:not(.group) [class*="AssetNode_assetName"] [data-tooltip]')) {
    const box = label.closest("foreignObject");
    const name = label.getAttribute("data-tooltip");
    if (box && !(name in nodes)) nodes[name] = ["x", "y", "width", "height"].map((a) => +box.getAttribute(a));
  }
  const touches = ([x, y, w, h], px, py, side) =>
    py >= y - 1 && py <= y + h + 1 && (side === "out" ? Math.abs(px - (x + w)) <= 3 : px >= x - 15 && px <= x + 3);
  const edges = [];
  for (const path of document.querySelectorAll("svg path[marker-end]")) {
    const n = ((path.getAttribute("d") || "").match(/-?\\d+(\\.\\d+)?/g) || []).map(parseFloat);
    if (n.length < 4) continue;
    const from = Object.keys(nodes).find((name) => touches(nodes[name], n[0], n[1], "out"));
    const to = Object.keys(nodes).find((name) => touches(nodes[name], n[n.length - 2], n[n.length - 1], "in"));
    edges.push([from || null, to || null]);
  }
  return { nodes: Object.keys(nodes), edges };
}
"""

# The asset page's metadata table: one row per entry, key first and value last.
METADATA_TABLE_JS = """
() => {
  const rows = {};
  for (const tr of document.querySelectorAll("table tr")) {
    const cells = tr.querySelectorAll("td");
    if (cells.length >= 3) rows[cells[0].innerText.trim()] = cells[cells.length - 1].innerText.trim();
  }
  const label = [...document.querySelectorAll("span")].find((s) => s.textContent.trim() === "Row count");
  const rowCount = label ? label.parentElement.innerText.replace("Row count", "").trim() : null;
  return { rows, rowCount };
}
"""

# The Checks tab lists one row per check: its name (title), status word and status icon.
CHECK_ROWS_JS = """
() => [...document.querySelectorAll('[class*="AssetChecks_checkRow"]')].map((row) => {
  const spans = row.querySelectorAll("span");
  return {
    name: (row.querySelector("[title]") || {}).title || null,
    status: spans.length ? spans[spans.length - 1].innerText.trim() : null,
    icon: (row.querySelector("[role=img]") || { getAttribute: () => null }).getAttribute("aria-label"),
  };
})
"""

METADATA_TYPES_QUERY = """
{ assetNodes(assetKeys: [{path: ["aqi_readings"]}]) {
    assetMaterializations(limit: 1) { metadataEntries { label __typename } } } }
"""


def _number(text: str | None) -> int:
    """An integer as the UI prints it (thousands separators included)."""
    digits = (text or "").replace(",", "").replace("\u202f", "").strip()
    if not re.fullmatch(r"\d+", digits):
        raise AssertionError(f"expected an integer in the UI, found {text!r}")
    return int(digits)


@pytest.fixture
def aqi_env(tmp_path: Path, snapshot_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The whole AQI configuration of this test, also applied here so Definitions load the same way."""
    env = {
        "AQI_SNAPSHOT_5MIN_URL": f"{snapshot_server}/data.json",
        "AQI_SNAPSHOT_24H_URL": f"{snapshot_server}/data.24h.json",
        "AQI_DATA_DIR": str(tmp_path / "data"),
        "AQI_DUCKDB_PATH": str(tmp_path / "data" / "aqi.duckdb"),
    }
    for name in [name for name in os.environ if name.startswith("AQI_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _loaded_definitions() -> dg.Definitions:
    """The code location as `dagster dev` loads it (same environment, set by the aqi_env fixture)."""
    from aqi_assets.definitions import defs

    return defs()


def _readings_from_duckdb(env: dict[str, str]) -> dict:
    storage = AqiStorage(data_dir=env["AQI_DATA_DIR"], duckdb_path=env["AQI_DUCKDB_PATH"])
    with storage.connect(read_only=True) as connection:
        rows = connection.execute("SELECT count(*), max(timestamp) FROM aqi_readings").fetchone()
        # The asset counts the current picture per period: each outdoor PM sensor once, with its latest reading
        # (the sample holds one reading per sensor, all outdoor).
        counts = {
            column: connection.execute(
                f"SELECT period || '/' || coalesce({column}, 'no index'), count(*) FROM aqi_readings "
                "WHERE pm25 IS NOT NULL OR pm10 IS NOT NULL GROUP BY 1"
            ).fetchall()
            for column in ("daqi_band", "aqi_us_category")
        }
    return {
        "rows": rows[0],
        "newest": rows[1],
        # Keys as in the metadata: "<period>/<label>", "no index" for NULL.
        "daqi_band": dict(counts["daqi_band"]),
        "aqi_us_category": dict(counts["aqi_us_category"]),
    }


def test_materialise_browse_lineage_and_checks_in_the_ui(
    ui: UiSession, dagster_dev: DagsterDev, aqi_env: dict[str, str]
) -> None:
    defs = _loaded_definitions()
    asset_graph = defs.resolve_asset_graph()
    chain = {key.to_user_string() for key in defs.resolve_job_def(CHAIN_JOB).asset_layer.selected_asset_keys}
    expected_edges = set()
    for name in chain:
        node = asset_graph.get(dg.AssetKey(name))
        expected_edges |= {(parent.to_user_string(), name) for parent in node.parent_keys}
        expected_edges |= {(name, child.to_user_string()) for child in node.child_keys}
    expected_nodes = {name for edge in expected_edges for name in edge} | chain
    readings_checks = {
        spec.name: spec.blocking
        for checks_def in defs.asset_checks
        for spec in checks_def.check_specs
        if spec.asset_key == dg.AssetKey(READINGS)
    }
    ingest_job_names = {job.name for job in ingest_jobs}
    all_sensors = {sensor.name for sensor in defs.sensors}
    ingestion_sensors = {
        sensor.name
        for sensor in defs.sensors
        if any(getattr(target, "job_name", None) in ingest_job_names for target in sensor.targets)
    }
    assert READINGS in chain and len(chain) >= 2, f"{CHAIN_JOB} selects {sorted(chain)}"
    assert sum(readings_checks.values()) >= 1, f"no blocking check on {READINGS}: {readings_checks}"
    page = ui.page

    with ui.step("1. asset graph shows the 5-minute chain and its lineage", timeout_s=90):
        page.set_viewport_size(GRAPH_VIEWPORT)
        # The whole platform no longer fits the global graph at full node size: the history's own Lineage tab
        # shows it with its upstream and downstream neighbours, as a person looking at aqi_readings sees it.
        ui.goto(f"/assets/{READINGS}?view=lineage&lineageScope=neighbors&lineageDepth=1")
        drawn = ui.poll(
            lambda: page.evaluate(LINEAGE_JS),
            lambda graph: (
                expected_nodes <= set(graph["nodes"]) and expected_edges <= {tuple(edge) for edge in graph["edges"]}
            ),
            timeout_s=45,
            what=f"assets {sorted(expected_nodes)} with edges {sorted(expected_edges)}",
        )
        assert expected_nodes <= set(drawn["nodes"])
        page.set_viewport_size(VIEWPORT)

    with ui.step(f"2. materialise {CHAIN_JOB} from the UI and see the run succeed", timeout_s=120):
        ui.goto(f"/locations/aqi_assets/jobs/{CHAIN_JOB}")
        page.get_by_role("button", name="Materialize all").click()
        # With raw_snapshot_24h never materialised the UI asks first; the merge does not need it.
        confirm = page.get_by_role("button", name="Confirm")
        launched = page.get_by_text(re.compile(r"^Launched run"))
        confirm.or_(launched).first.wait_for(timeout=30_000)
        if confirm.is_visible():
            confirm.click()
        launched.wait_for(timeout=30_000)
        page.get_by_role("link", name="View", exact=True).click()
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"), timeout=30_000)
        run_url = page.url
        final = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
        final.wait_for(timeout=120_000)  # queued (daemon dequeue), then two steps and nine checks
        status = final.inner_text().strip()
        assert status == "Success", f"run {run_url} ended with {status}"
        # The run header counts what ran: the chain's assets (step names are truncated in the timeline).
        page.get_by_text(f"{len(chain)} assets", exact=True).wait_for(timeout=10_000)

    database = _readings_from_duckdb(aqi_env)
    assert database["rows"] == len(fragment_records()), (
        f"DuckDB has {database['rows']} readings after merging the {FRAGMENT} sample"
    )

    with ui.step(f"3a. {READINGS} shows row count and band counts matching DuckDB", timeout_s=60):
        ui.goto(f"/assets/{READINGS}")
        shown = ui.poll(
            lambda: page.evaluate(METADATA_TABLE_JS),
            lambda seen: seen["rowCount"] and "daqi_band_counts" in seen["rows"],
            timeout_s=45,
            what="the Row count and the metadata table",
        )
        assert _number(shown["rowCount"]) == database["rows"]
        for prefix in ("daqi_band", "aqi_us_category"):
            ui_counts = {
                key.split("/", 1)[1]: _number(value)
                for key, value in shown["rows"].items()
                if key.startswith(f"{prefix}/")
            }
            assert ui_counts, f"no {prefix}/... metadata in the UI; rows shown: {sorted(shown['rows'])}"
            expected = {label: database[prefix].get(label, 0) for label in ui_counts}
            assert ui_counts == expected, f"{prefix} counts in the UI {ui_counts} != DuckDB {database[prefix]}"
            assert set(database[prefix]) <= set(ui_counts), f"{prefix} labels missing in the UI: {ui_counts}"
        band_json = {
            f"{period}/{label}": count
            for period, counts in json.loads(shown["rows"]["daqi_band_counts"]).items()
            for label, count in counts.items()
        }
        assert band_json == {label: database["daqi_band"].get(label, 0) for label in band_json}
        assert set(database["daqi_band"]) <= set(band_json)
        page.get_by_text("Upstream assets").wait_for()
        ui.screenshot("aqi_readings.png")

    # Typed metadata renders as numbers, tables and markdown: check the types the UI received.
    entries = dagster_dev.graphql(METADATA_TYPES_QUERY)["data"]["assetNodes"][0]["assetMaterializations"][0]
    types = {entry["label"]: entry["__typename"] for entry in entries["metadataEntries"]}
    assert types["dagster/row_count"] == "IntMetadataEntry"
    assert types["dagster/column_schema"] == "TableSchemaMetadataEntry"
    assert types["worst_outdoor_sensors"] == "MarkdownMetadataEntry"
    assert {t for label, t in types.items() if label.startswith(("daqi_band/", "aqi_us_category/"))} == {
        "IntMetadataEntry"
    }

    with ui.step(f"3b. {READINGS} checks show as passed", timeout_s=60):
        page.get_by_role("tab", name="Checks").or_(page.get_by_text("Checks", exact=True)).first.click()
        settled = {"Succeeded", "Failed"}
        rows = ui.poll(
            lambda: {row["name"]: row for row in page.evaluate(CHECK_ROWS_JS)},
            lambda seen: (
                set(readings_checks) <= set(seen) and all(seen[name]["status"] in settled for name in readings_checks)
            ),
            timeout_s=45,
            what=f"results of the checks {sorted(readings_checks)}",
        )
        for name, blocking in readings_checks.items():
            row = rows[name]
            if blocking:
                assert (row["status"], row["icon"]) == ("Succeeded", "check_circle"), f"blocking check {row}"
            else:  # a warning may pass or warn, never show as an error
                assert (row["status"], row["icon"]) in {("Succeeded", "check_circle"), ("Failed", "warning_outline")}, (
                    f"warning check {row}"
                )
        utc_now = datetime.now(timezone.utc).replace(tzinfo=None)  # the table stores naive UTC timestamps
        if "readings_fresh" in rows and database["newest"] < utc_now - timedelta(days=2):
            # The 2019 sample is stale: the freshness warning must show as a warning, not be hidden.
            assert rows["readings_fresh"]["icon"] == "warning_outline", rows["readings_fresh"]
        if "readings_fresh" in rows:  # show the warning's detail: what a person would open first
            page.locator('[class*="AssetChecks_checkRow"]', has=page.locator('[title="readings_fresh"]')).click()
            page.get_by_text("Evaluation result").wait_for()
        ui.screenshot("aqi_readings-checks.png")

    with ui.step("4. sensors page lists the ingestion sensors", timeout_s=45):
        assert ingestion_sensors, (
            f"the code location defines no sensor targeting {sorted(ingest_job_names)}; sensors: {sorted(all_sensors)}"
        )
        page.locator('a[href="/automation"]').first.click()  # the left navigation
        page.wait_for_url(re.compile(r"/automation"))
        for name in sorted(all_sensors):
            page.get_by_text(name, exact=True).first.wait_for()
        ui.screenshot("sensors.png")

    with ui.step("5. screenshot of the asset graph", timeout_s=45):
        page.set_viewport_size(GRAPH_VIEWPORT)
        # The whole platform's graph (groups as the browser profile left them); step 1 checked its lineage.
        ui.goto("/asset-groups")
        page.get_by_role("button", name="Materialize all").wait_for()
        page.locator("svg foreignObject").first.wait_for()
        page.wait_for_timeout(1500)  # the graph zooms to fit after layout
        page.screenshot(path=str(OUTPUT_DIR / "asset-graph.png"), full_page=True)
        page.set_viewport_size(VIEWPORT)

    for name in ("asset-graph.png", "aqi_readings.png", "aqi_readings-checks.png", "sensors.png"):
        assert (OUTPUT_DIR / name).stat().st_size > 10_000, f"screenshot {name} looks empty"
