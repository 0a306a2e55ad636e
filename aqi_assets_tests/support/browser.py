"""Browser tests of the real Dagster UI: `dagster dev` on a free loopback port, Debian's Chromium through
Playwright, and a page session whose failing steps explain themselves (screenshot, URL, log tail).

The fixtures (`snapshot_server`, `output_dir`, `dagster_dev`, `ui`) are registered for `aqi_assets_tests/system/`
by its conftest; a test module provides `aqi_env` (its whole AQI configuration) and may override `output_dir`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright import sync_api as playwright_api

from aqi_assets_tests.support.dagster_dev import DagsterDev, prepare_dagster_home, start_dagster_dev
from aqi_assets_tests.support.samples import PROJECT_ROOT, fragment_records

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: Playwright's own browser download is not used
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT_DIR = PROJECT_ROOT / "test-output" / "ui"
VIEWPORT = {"width": 1600, "height": 1000}

# The page scrolls inside a container, so Playwright's full_page alone would stop at the viewport.
CONTENT_HEIGHT_JS = """
() => Math.max(document.documentElement.scrollHeight, ...[...document.querySelectorAll("*")]
  .filter((el) => el.scrollHeight > el.clientHeight + 1 && /(auto|scroll)/.test(getComputedStyle(el).overflowY))
  .map((el) => el.getBoundingClientRect().top + el.scrollHeight))
"""

class UiSession:
    """One browser page plus what a failing step needs to explain itself."""

    def __init__(self, page, dev: DagsterDev, output_dir: Path) -> None:
        self.page = page
        self.dev = dev
        self.output_dir = output_dir

    def goto(self, path: str) -> None:
        self.page.goto(f"{self.dev.url}{path}")

    @contextmanager
    def step(self, title: str, timeout_s: float) -> Iterator[None]:
        """Run one step with a default timeout; on timeout or a failed assertion, fail with a screenshot."""
        self.page.set_default_timeout(timeout_s * 1000)
        started = time.monotonic()
        try:
            yield
        except (playwright_api.TimeoutError, AssertionError) as error:
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            screenshot = self.output_dir / f"failed-{slug}.png"
            try:
                self.page.screenshot(path=str(screenshot), full_page=True)
            except playwright_api.Error as screenshot_error:
                screenshot = Path(f"(no screenshot: {screenshot_error})")
            raise pytest.fail.Exception(
                f"UI step '{title}' failed after {time.monotonic() - started:.0f} s (timeout {timeout_s:.0f} s) "
                f"at {self.page.url}:\n{str(error).strip()}\nScreenshot: {screenshot}\n"
                f"--- last lines of the dagster dev log ({self.dev.log_path}) ---\n{self.dev.log_tail(15)}",
                pytrace=False,
            ) from None

    def poll(self, read, ready, timeout_s: float, what: str):
        """Re-read the page until `ready(value)`; raise AssertionError naming `what` and the last value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = read()
            if ready(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not shown within {timeout_s:.0f} s; the page shows: {value!r}")
            self.page.wait_for_timeout(500)

    def screenshot(self, name: str) -> Path:
        """A full-page screenshot, the viewport stretched to the height of the page's scrolling content."""
        path = self.output_dir / name
        original = self.page.viewport_size
        height = min(int(self.page.evaluate(CONTENT_HEIGHT_JS)) + 40, 8000)
        if height > original["height"]:
            self.page.set_viewport_size({"width": original["width"], "height": height})
            self.page.wait_for_timeout(800)  # let the layout follow the new size
        self.page.screenshot(path=str(path), full_page=True)
        self.page.set_viewport_size(original)
        return path


@pytest.fixture
def snapshot_server() -> Iterator[str]:
    """The real 243-record sample served as a Sensor.Community snapshot (JSON array) on 127.0.0.1."""
    from pytest_httpserver import HTTPServer

    body = json.dumps(fragment_records()).encode()
    server = HTTPServer(host="127.0.0.1", port=0)
    for path in ("/static/v2/data.json", "/static/v2/data.24h.json"):
        server.expect_request(path).respond_with_data(body, content_type="application/json")
    server.start()
    try:
        yield server.url_for("/static/v2")
    finally:
        server.clear()
        server.stop()


@pytest.fixture
def output_dir() -> Path:
    """Where screenshots and the dagster dev log go (a module of other browser tests overrides it)."""
    return OUTPUT_DIR


@pytest.fixture
def dagster_dev(tmp_path: Path, aqi_env: dict[str, str], output_dir: Path) -> Iterator[DagsterDev]:
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob("*.png"):  # from an earlier run: a failing run must not leave old pictures
        stale.unlink()
    dev = start_dagster_dev(
        PROJECT_ROOT / "workspace.yaml",
        prepare_dagster_home(tmp_path / "dagster_home"),
        aqi_env,
        output_dir / "dagster-dev.log",
    )
    try:
        dev.wait_until_ready(timeout_s=90)
        yield dev
    finally:
        dev.stop()


@pytest.fixture
def ui(tmp_path: Path, dagster_dev: DagsterDev, output_dir: Path) -> Iterator[UiSession]:
    # The first visit to a local UI offers a newsletter dialog over the page; mark it seen on this instance.
    assert dagster_dev.graphql("mutation { setNuxSeen }")["data"]["setNuxSeen"] is True
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        try:
            yield UiSession(context.pages[0] if context.pages else context.new_page(), dagster_dev, output_dir)
        finally:
            context.close()


