"""The public map in a real browser: Debian's Chromium (Playwright) on the site served by a real nginx, built
from generated snapshots merged by the real ingest and `aggregates.aqi_hourly` computed over them by the real
aggregate (the official US NowCast; the 24-hour DAQI needs 18 hours, so the readings' own, labelled). No
network: tiles are off and every request that is not for the local nginx is refused (and counted). Screenshots
land in `test-output/site/`.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest
from PIL import Image

from aqi_assets.lib.public_site.build import SiteConfig, build_site, read_pointer
from aqi_assets.lib.public_site.data import newest_reading
from aqi_assets.lib.public_site.nginx import NginxServer, serving
from aqi_assets.lib.readings.history import attach_history
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.http import free_port
from aqi_assets_tests.support.samples import PROJECT_ROOT
from aqi_assets_tests.support.site_data import (
    HOURLY_TABLE,
    XSS_TYPE,
    ingest_hours,
    outdoor_pm_sensors,
    world_readable_dir,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
OUTPUT_DIR = PROJECT_ROOT / "test-output" / "site"
VIEWPORT = {"width": 1400, "height": 900}

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# The official scales, written here independently of app.js: US EPA AQI by category, UK DAQI by index.
US_COLOURS = {
    "Good": (0x00, 0xE4, 0x00),
    "Moderate": (0xFF, 0xFF, 0x00),
    "Unhealthy for Sensitive Groups": (0xFF, 0x7E, 0x00),
    "Unhealthy": (0xFF, 0x00, 0x00),
    "Very Unhealthy": (0x8F, 0x3F, 0x97),
    "Hazardous": (0x7E, 0x00, 0x23),
}
UK_COLOURS = {
    1: (0x9C, 0xFF, 0x9C), 2: (0x31, 0xFF, 0x00), 3: (0x31, 0xCF, 0x00), 4: (0xFF, 0xFF, 0x00), 5: (0xFF, 0xCF, 0x00),
    6: (0xFF, 0x9A, 0x00), 7: (0xFF, 0x64, 0x64), 8: (0xFF, 0x00, 0x00), 9: (0x99, 0x00, 0x00), 10: (0xCE, 0x30, 0xFF),
}


# Each drawn marker's sensor id and fill colour.
FILLS_JS = "() => window.aqiSite.layer.getLayers().map((l) => [l.feature.properties.id, l.options.fillColor])"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


class Site:
    def __init__(self, root: Path, database: Path, records: list[dict], xss_sensor: int) -> None:
        self.root = root
        self.database = database
        self.records = records
        self.xss_sensor = xss_sensor


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Site, NginxServer]]:
    root = world_readable_dir("aqi-site-browser-")
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    fresh_db = root / "fresh.duckdb"
    records = ingest_hours(fresh_db, n_records=600, end=now - timedelta(minutes=2), hours=5, work_dir=root / "s1")
    with readings_connection(fresh_db) as connection:
        xss_sensor = connection.execute(
            "SELECT max(sensor_id) FROM aqi_readings WHERE sensor_type = 'SDS011' AND indoor = false "
            "AND latitude IS NOT NULL AND aqi_us IS NOT NULL"
        ).fetchone()[0]
        connection.execute("UPDATE aqi_readings SET sensor_type = ? WHERE sensor_id = ?", [XSS_TYPE, xss_sensor])
        build_site(connection, root / "www" / "fresh", SiteConfig(tile_url=""), hourly_table=HOURLY_TABLE,
                   location=None)
    stale_db = root / "stale.duckdb"
    ingest_hours(stale_db, n_records=100, end=now - timedelta(hours=3), hours=1, work_dir=root / "s2")
    with readings_connection(stale_db, read_only=True) as connection:
        build_site(connection, root / "www" / "stale", SiteConfig(tile_url=""), hourly_table=HOURLY_TABLE,
                   location=None)
    try:
        with serving(root / "www", free_port(), require_index=False) as server:
            yield Site(root, fresh_db, records, xss_sensor), server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def page(tmp_path: Path, sites) -> Iterator[object]:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    _, server = sites
    refused: list[str] = []
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT)

        def only_local(route) -> None:
            if route.request.url.startswith(server.url + "/"):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page
        finally:
            context.close()
            browser.close()
    assert refused == [], f"the page tried to reach the network: {refused[:5]}"
    assert errors == [], f"JavaScript errors: {errors}"


def _open(page, server: NginxServer, which: str) -> None:
    page.goto(f"{server.url}/{which}/")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)


def _pixel(page, sensor_id: int) -> tuple[int, int, int]:
    """The colour the screen shows at the centre of a sensor's marker."""
    x, y = page.evaluate(
        """(id) => { const m = window.aqiSite.markers.get(id); const p = window.aqiSite.map.latLngToContainerPoint(
             m.getLatLng()); const r = document.getElementById('map').getBoundingClientRect();
             return [Math.round(r.left + p.x), Math.round(r.top + p.y)]; }""",
        sensor_id,
    )
    page.wait_for_timeout(300)  # the canvas renderer redraws on the next animation frame
    png = page.screenshot(clip={"x": x - 1, "y": y - 1, "width": 3, "height": 3})
    return Image.open(io.BytesIO(png)).convert("RGB").getpixel((1, 1))


def _latest(database: Path, sensor_id: int) -> tuple:
    with readings_connection(database, read_only=True) as connection:
        return connection.execute(
            """SELECT "timestamp", pm25, pm10, aqi_us, aqi_us_category, daqi, daqi_band FROM aqi_readings
               WHERE sensor_id = ? ORDER BY "timestamp" DESC LIMIT 1""",
            [sensor_id],
        ).fetchone()


def _official(database: Path, sensor_id: int, before: datetime) -> tuple:
    """The sensor's NowCast and 24-hour DAQI (with category and band) of its newest hour in the 2 hours before
    `before`, from the aggregate's table (None each where not valid, or no such hour)."""
    with readings_connection(database, read_only=True) as connection:
        row = connection.execute(
            f"""SELECT aqi_us_nowcast, aqi_us_nowcast_category, daqi_24h, daqi_24h_band FROM {HOURLY_TABLE}
                WHERE sensor_id = ? AND hour > ? AND hour <= ? ORDER BY hour DESC LIMIT 1""",
            [sensor_id, before - timedelta(hours=2), before],
        ).fetchone()
    return row or (None, None, None, None)


def _last_complete_hour(database: Path, sensor_id: int, before: datetime) -> tuple:
    with readings_connection(database, read_only=True) as connection:
        return connection.execute(
            """SELECT date_trunc('hour', "timestamp") AS hour, avg(pm25), avg(pm10) FROM aqi_readings
               WHERE sensor_id = ? AND "timestamp" < ? GROUP BY 1 ORDER BY 1 DESC LIMIT 1""",
            [sensor_id, before],
        ).fetchone()


def test_map_markers_colours_popup_toggle_and_search(page, sites) -> None:
    site, server = sites
    _open(page, server, "fresh")
    fresh = site.root / "www" / "fresh"
    geojson = json.loads((fresh / read_pointer(fresh)["latest"]).read_text())
    features = {f["properties"]["id"]: f["properties"] for f in geojson["features"]}
    assert set(features) == set(outdoor_pm_sensors(site.records))
    drawn = page.evaluate("() => window.aqiSite.layer.getLayers().length")
    assert drawn == len(features) == page.evaluate("() => window.aqiSite.features")
    page.screenshot(path=str(OUTPUT_DIR / "map.png"))

    # Every marker's fill is the official colour of its band (US AQI first).
    fills = page.evaluate(FILLS_JS)
    assert {sensor: fill for sensor, fill in fills} == {s: _hex(US_COLOURS[p["us_cat"]]) for s, p in features.items()}
    assert page.locator("#stale").is_hidden(), "fresh data must not be flagged as stale"
    assert "outdoor sensors" in page.locator("#status").inner_text()

    # A known sensor, found by keyboard: its popup shows the DuckDB values.
    sensor = next(s for s, p in sorted(features.items())
                  if _hex(US_COLOURS[p["us_cat"]]) != _hex(UK_COLOURS[p["uk"]]) and s != site.xss_sensor
                  and p["us_basis"] == "nowcast")
    page.locator("#find-id").focus()
    page.keyboard.type(str(sensor))
    page.keyboard.press("Enter")
    popup = page.locator(f".leaflet-popup .sensor[data-sensor='{sensor}']")
    popup.wait_for()
    assert page.evaluate("() => document.activeElement.classList.contains('sensor')"), "focus moves to the popup"
    ts, pm25, pm10, _, _, daqi, band = _latest(site.database, sensor)
    # The site's anchor: the newest 5-minute reading of the whole history.
    with readings_connection(site.database, read_only=True) as connection:
        attach_history(connection, None)
        anchor = newest_reading(connection, datetime.now(timezone.utc))
    nowcast, nowcast_cat, daqi_24h, _ = _official(site.database, sensor, anchor)
    assert nowcast is not None and daqi_24h is None, "4 complete hours: a NowCast, no 24-hour DAQI yet"
    digits = 0 if features[sensor]["type"].startswith("PMS") else 1
    field = lambda name: popup.locator(f"[data-field={name}]").inner_text()  # noqa: E731
    assert field("pm25") == f"{round(pm25, digits):g} µg/m³" and field("pm10") == f"{round(pm10, digits):g} µg/m³"
    assert field("us") == f"{nowcast} – {nowcast_cat}" and field("uk") == f"{daqi} – {band}"
    assert field("time") == ts.strftime("%Y-%m-%d %H:%M UTC")
    assert "NowCast" in field("us_basis") and "official" in field("us_basis")
    assert "indicative" in field("uk_basis"), "no valid 24-hour DAQI: the reading's, labelled"
    popup.locator("svg path.pm25-line").wait_for()
    # The chart ends with the last complete hour before the hour of the anchor, which may be a later hour than
    # this sensor's own latest reading.
    _, hour_pm25, hour_pm10 = _last_complete_hour(site.database, sensor, anchor.replace(minute=0, second=0))
    caption = popup.locator("figcaption").inner_text()
    assert f"Last hour: PM2.5 {round(hour_pm25, digits):g} µg/m³, PM10 {round(hour_pm10, digits):g} µg/m³" in caption
    page.screenshot(path=str(OUTPUT_DIR / "popup.png"))
    page.keyboard.press("Escape")
    page.locator(".leaflet-popup").wait_for(state="detached")

    # What the screen shows at the marker: the US colour; after the toggle (by keyboard), the DAQI colour.
    assert _pixel(page, sensor) == US_COLOURS[nowcast_cat]
    page.locator("input[name=index][value=us]").focus()
    page.keyboard.press("ArrowDown")
    assert page.locator("input[name=index][value=uk]").is_checked()
    assert _pixel(page, sensor) == UK_COLOURS[daqi]
    fills = dict(page.evaluate(FILLS_JS))
    assert fills == {s: _hex(UK_COLOURS[p["uk"]]) for s, p in features.items()}
    assert "UK DAQI colours" in page.locator("#legend").inner_text()
    page.evaluate("() => { window.aqiSite.map.setView([48, 11], 4, {animate: false}); }")
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUTPUT_DIR / "map-daqi.png"))

    page.locator("#find-id").fill("999999999")
    page.locator("#find button").click()
    assert "No outdoor sensor 999999999" in page.locator("#find-result").inner_text()


def test_sensor_type_with_html_renders_as_text(page, sites) -> None:
    site, server = sites
    _open(page, server, "fresh")
    page.locator("#find-id").fill(str(site.xss_sensor))
    page.locator("#find-id").press("Enter")
    popup = page.locator(f".leaflet-popup .sensor[data-sensor='{site.xss_sensor}']")
    popup.wait_for()
    assert popup.locator("[data-field=type]").inner_text() == XSS_TYPE
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("() => window.__xss") is None
    page.screenshot(path=str(OUTPUT_DIR / "xss-as-text.png"))


def test_old_data_show_a_stale_warning(page, sites) -> None:
    _, server = sites
    _open(page, server, "stale")
    warning = page.locator("#stale")
    warning.wait_for(state="visible")
    assert "old" in warning.inner_text() and "30 minutes" in warning.inner_text()
    page.screenshot(path=str(OUTPUT_DIR / "stale.png"))
