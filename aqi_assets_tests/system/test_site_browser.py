"""The public map in a real browser: Debian's Chromium (Playwright) on the site served by a real nginx, built
from generated snapshots merged by the real ingest and `aggregates.aqi_hourly` computed over them by the real
aggregate (the official US NowCast; the 24-hour DAQI needs 18 hours, so the readings' own, labelled). No
network: tiles are off and every request that is not for the local nginx is refused (and counted). One browser
serves the module (a fresh context per test). axe-core (vendored under the tests, never published) is served to
the page from a test-only URL of the same origin, so the page's Content-Security-Policy stays on. Screenshots
land in `test-output/site/`.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest
from PIL import Image

from aqi_assets.lib.public_site.build import SiteConfig, build_site, read_pointer
from aqi_assets.lib.public_site.data import newest_reading
from aqi_assets.lib.public_site.i18n import load_catalogues
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
PHONE = {"width": 390, "height": 844}
AXE_JS = PROJECT_ROOT / "aqi_assets_tests" / "data" / "vendor" / "axe-core-4.10.2" / "axe.min.js"
AXE_PATH = "/__test-tools__/axe.min.js"  # answered by the test's route, never by nginx
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SINGLE_ZOOM = 14  # from this zoom on the page draws every sensor on its own

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
US_ORDER = list(US_COLOURS)
UK_COLOURS = {
    1: (0x9C, 0xFF, 0x9C), 2: (0x31, 0xFF, 0x00), 3: (0x31, 0xCF, 0x00), 4: (0xFF, 0xFF, 0x00), 5: (0xFF, 0xCF, 0x00),
    6: (0xFF, 0x9A, 0x00), 7: (0xFF, 0x64, 0x64), 8: (0xFF, 0x00, 0x00), 9: (0x99, 0x00, 0x00), 10: (0xCE, 0x30, 0xFF),
}
# The climate layers: class lower bounds and the (ColorBrewer RdYlBu / Blues) colours the page promises.
CLIMATE = {
    "t": ([-10, 0, 10, 20, 30], ["#4575b4", "#91bfdb", "#e0f3f8", "#fee090", "#fc8d59", "#d73027"]),
    "rh": ([30, 50, 70, 90], ["#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c"]),
}
NO_VALUE = "#9e9e9e"
# Official advice, verbatim (EPA TAD 2024 for PM2.5; Defra UK-AIR DAQI), pinned here against the catalogue.
OFFICIAL_SAMPLES = {
    ("us", "Unhealthy for Sensitive Groups", "sensitive"): "People with heart or lung disease, older adults, children, "
    "and people of lower socioeconomic status should reduce prolonged or heavy exertion.",
    ("uk", "High", "general"): "Anyone experiencing discomfort such as sore eyes, cough or sore throat should consider "
    "reducing activity, particularly outdoors.",
}

# Each drawn single sensor's id and fill colour.
FILLS_JS = ("() => Array.from(window.aqiSite.markers.values())"
            ".map((m) => [m.feature.properties.id, m.options.fillColor])")
# Each drawn group: its count, the ids of its sensors, its colour and texts.
GROUPS_JS = """() => window.aqiSite.groups.map((g) => {
  const icon = g.getElement(); const badge = icon.querySelector('.group');
  return {count: g.cluster.properties.point_count, text: badge.textContent, title: icon.title,
          background: getComputedStyle(badge).backgroundColor,
          leaves: window.aqiSite.clusters.getLeaves(g.cluster.properties.cluster_id, Infinity)
                    .map((f) => f.properties.id)}; })"""
AXE_RUN_JS = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
  return result.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                        nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' '))}));
}"""


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _css_rgb(value: str) -> str:
    """`rgb(0, 228, 0)` → `#00e400`."""
    return _hex(tuple(int(v) for v in re.findall(r"\d+", value)[:3]))


def _class(properties: dict, layer: str) -> int | None:
    """The sensor's class on a layer, in scale order (None: no value), from the test's own scales."""
    if layer == "us":
        return None if properties["us"] is None else US_ORDER.index(properties["us_cat"])
    if layer == "uk":
        return None if properties["uk"] is None else int(properties["uk"]) - 1
    value = properties.get(layer)
    return None if value is None else sum(value >= bound for bound in CLIMATE[layer][0])


def _class_colour(layer: str, k: int | None) -> str:
    if k is None:
        return NO_VALUE
    if layer == "us":
        return _hex(US_COLOURS[US_ORDER[k]])
    if layer == "uk":
        return _hex(UK_COLOURS[k + 1])
    return CLIMATE[layer][1][k]


def _expected_group_colour(features: dict[int, dict], leaves: list[int], layer: str) -> str:
    """The colour of the group's median: the class of its ceil(n/2)-th sensor in scale order (the lower median;
    sensors without a value left out)."""
    classes = sorted(k for k in (_class(features[i], layer) for i in leaves) if k is not None)
    return _class_colour(layer, classes[math.ceil(len(classes) / 2) - 1] if classes else None)


class Site:
    def __init__(self, root: Path, database: Path, records: list[dict], xss_sensor: int) -> None:
        self.root = root
        self.database = database
        self.records = records
        self.xss_sensor = xss_sensor

    def features(self, which: str = "fresh") -> dict[int, dict]:
        site = self.root / "www" / which
        geojson = json.loads((site / read_pointer(site)["latest"]).read_text())
        return {f["properties"]["id"]: {**f["properties"], "lonlat": f["geometry"]["coordinates"]}
                for f in geojson["features"]}


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


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _context_page(browser, server: NginxServer, viewport: dict, locale: str = "en-GB"):
    """A fresh context (its own storage) whose requests are all answered by the local nginx, except the test
    tool's URL (axe-core from the tests' vendor folder); anything else is refused and recorded."""
    refused: list[str] = []
    errors: list[str] = []
    context = browser.new_context(viewport=viewport, locale=locale)
    axe_body = AXE_JS.read_bytes()

    def only_local(route) -> None:
        url = route.request.url
        if url == server.url + AXE_PATH:
            route.fulfill(status=200, body=axe_body, content_type="text/javascript")
        elif url.startswith(server.url + "/"):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page, refused, errors


@pytest.fixture
def page(browser, sites) -> Iterator[object]:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    _, server = sites
    context, page, refused, errors = _context_page(browser, server, VIEWPORT)
    try:
        yield page
    finally:
        context.close()
    assert refused == [], f"the page tried to reach the network: {refused[:5]}"
    assert errors == [], f"JavaScript errors: {errors}"


def _open(page, server: NginxServer, which: str, suffix: str = "") -> None:
    page.goto(f"{server.url}/{which}/{suffix}")
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


def _set_view(page, lat: float, lon: float, zoom: int) -> None:
    page.evaluate("([lat, lon, zoom]) => window.aqiSite.map.setView([lat, lon], zoom, {animate: false})",
                  [lat, lon, zoom])
    page.wait_for_timeout(200)


def _check_symbols(page, features: dict[int, dict], layer: str) -> tuple[int, int]:
    """Every drawn symbol has its layer's colour: a single sensor its class's, a group its median's (with its
    count written on it); returns (groups, singles)."""
    fills = dict(page.evaluate(FILLS_JS))
    assert fills == {s: _class_colour(layer, _class(features[s], layer)) for s in fills}
    groups = page.evaluate(GROUPS_JS)
    for group in groups:
        assert len(group["leaves"]) == group["count"] >= 2
        assert group["text"] == str(group["count"]) and group["title"].startswith(f"{group['count']} sensors")
        assert _css_rgb(group["background"]) == _expected_group_colour(features, group["leaves"], layer), group
    return len(groups), len(fills)


def _axe_violations(page) -> list[dict]:
    """axe-core's serious and critical WCAG 2.1 A/AA violations on the page as it is now (once an open popup
    has faded in: axe measures contrast through the fade's opacity)."""
    page.wait_for_function("() => Array.from(document.querySelectorAll('.leaflet-popup'))"
                           ".every((p) => getComputedStyle(p).opacity === '1')")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=page.url.split("/fresh/")[0] + AXE_PATH)
    return [v for v in page.evaluate(AXE_RUN_JS, WCAG_TAGS) if v["impact"] in ("serious", "critical")]


def _find(page, text: str) -> None:
    page.locator("#find-id").fill(text)
    page.locator("#find-id").press("Enter")


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


def test_first_view_groups_sensors_by_median_and_zoom_shows_every_sensor(page, sites) -> None:
    site, server = sites
    _open(page, server, "fresh")
    features = site.features()
    assert set(features) == set(outdoor_pm_sensors(site.records))
    assert page.evaluate("() => window.aqiSite.features") == len(features)
    page.screenshot(path=str(OUTPUT_DIR / "europe.png"))

    # The first view: far fewer symbols than sensors, every sensor in exactly one of them, each group coloured by
    # the median of its sensors on every layer (the layers chosen by keyboard).
    groups, singles = _check_symbols(page, features, "us")
    counted = sum(g["count"] for g in page.evaluate(GROUPS_JS)) + singles
    assert counted == len(features) and groups > 0 and groups + singles < len(features) / 2
    assert "median" in page.locator("#legend").inner_text()
    page.locator("input[name=index][value=us]").focus()
    for layer in ("uk", "t", "rh"):
        page.keyboard.press("ArrowDown")
        assert page.locator(f"input[name=index][value={layer}]").is_checked()
        assert _check_symbols(page, features, layer)[0] == groups
    assert sum(p["t"] is not None for p in features.values()) > len(features) / 2, "most stations have a climate sensor"

    # Zoomed in (SINGLE_ZOOM): every sensor in view drawn on its own, none grouped; and supercluster (what the
    # page draws from) has no group left at that zoom anywhere.
    sensor = min(features)
    lon, lat = features[sensor]["lonlat"]
    _set_view(page, lat, lon, SINGLE_ZOOM)
    bounds = page.evaluate("() => window.aqiSite.map.getBounds().toBBoxString()")
    west, south, east, north = map(float, bounds.split(","))
    in_view = {s for s, p in features.items() if west <= p["lonlat"][0] <= east and south <= p["lonlat"][1] <= north}
    assert sensor in in_view and _check_symbols(page, features, "rh")[0] == 0
    drawn = {s for s, _ in page.evaluate(FILLS_JS)}
    assert in_view <= drawn and page.evaluate("() => window.aqiSite.groups.length") == 0
    world = page.evaluate(f"() => window.aqiSite.clusters.getClusters([-180, -85, 180, 85], {SINGLE_ZOOM})"
                          ".map((f) => f.properties.cluster ? -1 : f.properties.id)")
    assert sorted(world) == sorted(features)


def test_popup_values_advice_colours_toggle_and_search(page, sites) -> None:
    site, server = sites
    _open(page, server, "fresh")
    features = site.features()
    english = load_catalogues()["en"]
    assert "outdoor sensors" in page.locator("#status").inner_text()
    assert page.locator("#stale").is_hidden(), "fresh data must not be flagged as stale"

    # A known sensor, found by keyboard: its popup shows the DuckDB values and the advice of its category.
    sensor = next(s for s, p in sorted(features.items())
                  if _hex(US_COLOURS[p["us_cat"]]) != _hex(UK_COLOURS[p["uk"]]) and s != site.xss_sensor
                  and p["us_basis"] == "nowcast")
    page.locator("#find-id").focus()
    page.keyboard.type(str(sensor))
    page.keyboard.press("Enter")
    popup = page.locator(f".leaflet-popup .sensor[data-sensor='{sensor}']")
    popup.wait_for()
    assert page.evaluate("() => document.activeElement.classList.contains('sensor')"), "focus moves to the popup"
    assert page.evaluate("() => window.aqiSite.map.getZoom()") >= SINGLE_ZOOM
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
    t = features[sensor]["t"]
    assert field("t") == ("–" if t is None else f"{t:.1f} °C")
    advice = english["advice"]["us"]["categories"][nowcast_cat]
    assert f"What to do (US AQI: {nowcast_cat})" in field("advice")
    assert advice["general"] in field("advice") and advice["sensitive"] in field("advice")
    assert "EPA-454/B-24-002" in field("advice"), "the source is named"
    popup.locator("svg path.pm25-line").wait_for()
    # The chart ends with the last complete hour before the hour of the anchor, which may be a later hour than
    # this sensor's own latest reading.
    _, hour_pm25, hour_pm10 = _last_complete_hour(site.database, sensor, anchor.replace(minute=0, second=0))
    caption = popup.locator("figcaption").inner_text()
    assert f"Last hour: PM2.5 {round(hour_pm25, digits):g} µg/m³, PM10 {round(hour_pm10, digits):g} µg/m³" in caption
    assert page.url.endswith(f"#sensor={sensor}"), "the address links to the open sensor"
    page.screenshot(path=str(OUTPUT_DIR / "popup.png"))
    page.keyboard.press("Escape")
    page.locator(".leaflet-popup").wait_for(state="detached")

    # What the screen shows at the marker: the US colour; after the toggle (by keyboard), the DAQI colour.
    assert _pixel(page, sensor) == US_COLOURS[nowcast_cat]
    page.locator("input[name=index][value=us]").focus()
    page.keyboard.press("ArrowDown")
    assert page.locator("input[name=index][value=uk]").is_checked()
    assert _pixel(page, sensor) == UK_COLOURS[daqi]
    assert "UK DAQI colours" in page.locator("#legend").inner_text()
    page.screenshot(path=str(OUTPUT_DIR / "city.png"))

    _find(page, "999999999")
    assert "No outdoor sensor 999999999" in page.locator("#find-result").inner_text()

    # By place: the nearest sensors as buttons, the first focused; Enter opens it with the focus in its popup.
    _find(page, "münchen")
    assert "Sensors nearest to Munich" in page.locator("#find-result").inner_text()
    buttons = page.locator("#place-sensors button")
    assert buttons.count() == 8
    nearest = int(buttons.first.get_attribute("data-sensor"))
    munich = (11.58, 48.14)
    distance = lambda s: math.dist(  # noqa: E731
        (features[s]["lonlat"][0] * math.cos(math.radians(48.14)), features[s]["lonlat"][1]),
        (munich[0] * math.cos(math.radians(48.14)), munich[1]))
    assert nearest == min(features, key=distance)
    assert page.evaluate("() => document.activeElement.dataset.sensor") == str(nearest)
    page.keyboard.press("Enter")
    page.locator(f".leaflet-popup .sensor[data-sensor='{nearest}']").wait_for()
    assert page.evaluate("() => document.activeElement.dataset.sensor") == str(nearest)


def test_advice_for_every_category_in_the_legend_in_english_and_german(page, sites) -> None:
    _, server = sites
    _open(page, server, "fresh", "?lang=en")
    catalogues = load_catalogues()
    for (index, category, group), text in OFFICIAL_SAMPLES.items():
        assert catalogues["en"]["advice"][index]["categories"][category][group] == text

    def legend_shows(lang: str) -> None:
        catalogue = catalogues[lang]
        for index in ("us", "uk"):
            page.locator(f"input[name=index][value={index}]").check()
            legend = page.locator("#legend")
            advice = catalogue["advice"][index]
            assert advice["source"] in legend.inner_text()
            for category, texts in advice["categories"].items():
                item = legend.locator(f"li[data-category='{category}']")
                item.locator("summary").click()  # open it: the advice is read, not only present
                shown = item.inner_text()
                assert catalogue["categories"][index][category] in shown
                assert f"{advice['general_label']}: {texts['general']}" in shown
                assert f"{advice['sensitive_label']}: {texts['sensitive']}" in shown

    legend_shows("en")
    assert page.evaluate("() => document.documentElement.lang") == "en"
    page.locator("#languages button[value=de]").click()
    page.wait_for_function("() => document.documentElement.lang === 'de'")
    assert "lang=de" in page.url
    legend_shows("de")
    assert "Übersetzung" in page.locator("#translation-note").inner_text()
    assert page.title() == catalogues["de"]["ui"]["title"]


def test_german_page_popup_and_axe_without_serious_violations(page, sites) -> None:
    site, server = sites
    _open(page, server, "fresh", "?lang=en")
    assert _axe_violations(page) == [], "the map"
    sensor = next(s for s, p in sorted(site.features().items()) if p["us_cat"] and s != site.xss_sensor)
    _find(page, str(sensor))
    page.locator(".leaflet-popup svg path.pm25-line").wait_for()
    assert _axe_violations(page) == [], "the map with a popup open"

    _open(page, server, "fresh", "?lang=de")
    assert page.evaluate("() => document.documentElement.lang") == "de"
    assert "Außensensoren" in page.locator("#status").inner_text()
    assert page.locator("#find-id").get_attribute("placeholder").startswith("z. B.")
    _find(page, str(sensor))
    popup = page.locator(f".leaflet-popup .sensor[data-sensor='{sensor}']")
    popup.locator("svg path.pm25-line").wait_for()
    german = load_catalogues()["de"]
    category = site.features()[sensor]["us_cat"]
    advice = popup.locator("[data-field=advice]").inner_text()
    assert f"Was tun? (US-AQI: {german['categories']['us'][category]})" in advice
    assert german["advice"]["us"]["categories"][category]["sensitive"] in advice
    assert _axe_violations(page) == [], "in German, with a popup open"
    box = page.locator(".leaflet-popup").bounding_box()
    assert box["y"] >= page.locator("#map").bounding_box()["y"], "the popup opens inside the map"
    page.screenshot(path=str(OUTPUT_DIR / "popup-de.png"))


def test_link_to_a_sensor_opens_its_popup(page, sites) -> None:
    site, server = sites
    sensor = sorted(site.features())[len(site.features()) // 2]
    _open(page, server, "fresh", f"#sensor={sensor}")
    page.locator(f".leaflet-popup .sensor[data-sensor='{sensor}']").wait_for()
    assert page.evaluate("() => document.activeElement.dataset.sensor") == str(sensor)
    assert page.evaluate("() => window.aqiSite.map.getZoom()") >= SINGLE_ZOOM
    assert sensor in dict(page.evaluate(FILLS_JS)), "drawn on its own"
    _open(page, server, "fresh", "#sensor=999999999")
    assert "No outdoor sensor 999999999" in page.locator("#find-result").inner_text()


def test_phone_layout_map_fills_the_screen_and_panel_folds(browser, sites) -> None:
    site, server = sites
    context, page, refused, errors = _context_page(browser, server, PHONE, locale="de-AT")
    try:
        _open(page, server, "fresh")
        assert page.evaluate("() => document.documentElement.lang") == "de", "the browser's language by default"
        no_scroll = "() => document.documentElement.scrollWidth <= window.innerWidth"
        assert page.evaluate(no_scroll), "no horizontal scrolling"
        assert page.locator("#panel").is_hidden()
        header = page.locator("header").bounding_box()
        box = page.locator("#map").bounding_box()
        assert box["width"] == PHONE["width"] and box["y"] == header["height"]
        assert box["y"] + box["height"] == PHONE["height"], "the map fills the screen below the header"
        page.screenshot(path=str(OUTPUT_DIR / "phone.png"))

        toggle = page.locator("#panel-toggle")
        assert toggle.get_attribute("aria-expanded") == "false" and toggle.inner_text() == "Legende und Suche"
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "true" and page.locator("#panel").is_visible()
        assert page.evaluate("() => document.activeElement.id") == "find-id"
        assert page.evaluate(no_scroll)
        page.screenshot(path=str(OUTPUT_DIR / "phone-panel.png"))
        sensor = min(site.features())
        page.keyboard.type(str(sensor))
        page.keyboard.press("Enter")
        page.locator(f".leaflet-popup .sensor[data-sensor='{sensor}']").wait_for()
        assert page.locator("#panel").is_hidden(), "the panel folds away for the popup"
        popup = page.locator(".leaflet-popup").bounding_box()
        assert popup["x"] >= 0 and popup["x"] + popup["width"] <= PHONE["width"]
        assert page.evaluate(no_scroll)
        page.wait_for_function("() => getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'")
        page.screenshot(path=str(OUTPUT_DIR / "phone-popup.png"))
    finally:
        context.close()
    assert refused == [] and errors == []


def test_sensor_type_with_html_renders_as_text(page, sites) -> None:
    site, server = sites
    _open(page, server, "fresh")
    _find(page, str(site.xss_sensor))
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
