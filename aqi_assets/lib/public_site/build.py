"""Build the public map site into a directory, atomically.

Layout (every URL relative, so the site works under any prefix of a web server or a bucket):

    index.html                      the page; replaced last (short cache)
    current.json                    the data pointer the page polls; replaced just before index.html
    assets/app.<hash>.js, assets/style.<hash>.css
    assets/i18n-<lang>.<hash>.json  the texts, one catalogue per language (`i18n.py`)
    assets/places.<hash>.json       the places the search knows
    vendor/leaflet-1.9.4/...        Leaflet from npm, vendored (and supercluster: every package of `vendor.py`)
    data/latest.<hash>.geojson      one feature per outdoor sensor
    data/countries.<hash>.json      per-country summaries
    data/history-<hash>/<k>.json.gz 7-day hourly histories of the sensors with id % shards == k (a directory
                                    renamed into place whole; the pointer says `history_shards`)

Each text file has a `.gz` copy; the histories exist only as `.gz` (a web server serves them decompressed to a
client without gzip: nginx's `gunzip`). A visitor never sees a half-written set: content-hashed files are complete
before the pointer names them. Files no pointer names any more are removed once older than `keep_s`, so a
page loaded just before a build can still fetch what its pointer named.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from aqi_assets.lib.common.location import TierLocation
from aqi_assets.lib.common.utc import naive_utc
from aqi_assets.lib.public_site import data as site_data_module
from aqi_assets.lib.public_site.files import (
    content_hash,
    make_dirs,
    write_gzip_only_fast,
    write_with_gzip,
)
from aqi_assets.lib.public_site.i18n import DEFAULT_LANG, check_catalogues, load_catalogues
from aqi_assets.lib.public_site.vendor import LEAFLET_DIR, STATIC_DIR, SUPERCLUSTER_DIR, vendored_packages

DEFAULT_TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
DEFAULT_TILE_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
STALE_AFTER_S = 30 * 60
POINTER = "current.json"
INDEX = "index.html"
VENDOR_DIR = f"vendor/{LEAFLET_DIR.name}"
SUPERCLUSTER_VENDOR_DIR = f"vendor/{SUPERCLUSTER_DIR.name}"
# The project's notes in a vendored package directory: not published.
UNPUBLISHED_VENDOR_FILES = ("MANIFEST.json", "README.md")

GEOJSON_SCHEMA = {
    "id": "Sensor.Community sensor id",
    "type": "sensor type",
    "country": "ISO-2 country code",
    "time": "time of the reading (UTC)",
    "pm25": "PM2.5 µg/m³ (rounded to the sensor's resolution)",
    "pm10": "PM10 µg/m³",
    "us": "US EPA AQI (2024 PM table)",
    "us_cat": "US AQI category",
    "us_basis": "'nowcast': NowCast from hourly means (official); 'reading': one 5-minute reading (indicative)",
    "uk": "UK DAQI 1-10",
    "uk_band": "DAQI band",
    "uk_basis": "'24h': 24-hour running mean (official); 'reading': one 5-minute reading (indicative)",
    "t": "temperature °C of the station's climate sensor (same location id, same hour), or null",
    "rh": "relative humidity % of the station's climate sensor, or null",
}


@dataclass(frozen=True)
class SiteConfig:
    tile_url: str = DEFAULT_TILE_URL  # empty: no tile layer (tests, offline use)
    tile_attribution: str = DEFAULT_TILE_ATTRIBUTION
    title: str = ""  # empty: the catalogue's title, in the visitor's language
    stale_after_s: int = STALE_AFTER_S
    refresh_s: int = 60  # how often the page re-reads the pointer


@dataclass
class BuildResult:
    site_dir: Path
    features: int
    history_sensors: int
    history_files_written: int
    countries: int
    latest_path: str
    latest_bytes: int
    latest_gzip_bytes: int
    data_time: str | None
    generated_at: str
    indices_source: str  # the aqi_hourly table the official indices came from
    notes: list[str]
    seconds: float
    removed: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every file the pointer names (relative), pointer excluded
    cold_days: int = 0  # days of the history read from the Parquet tier

    def as_metadata(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "history_sensors": self.history_sensors,
            "history_files_written": self.history_files_written,
            "countries": self.countries,
            "latest": self.latest_path,
            "latest_bytes": self.latest_bytes,
            "latest_gzip_bytes": self.latest_gzip_bytes,
            "data_time": self.data_time or "(no data)",
            "indices": f"{self.indices_source} (official; a sensor without a recent hour: its reading, labelled)",
            "seconds": round(self.seconds, 3),
            "removed_old_files": len(self.removed),
            "history_cold_days": self.cold_days,
        }


def _dumps(value: Any) -> bytes:
    # allow_nan=False: NaN is not JSON; data.py already turned every missing value into None.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _hashed_write(site_dir: Path, directory: str, stem: str, suffix: str, body: bytes) -> tuple[str, int]:
    relative = f"{directory}/{stem}.{content_hash(body)}{suffix}"
    target = site_dir / relative
    gz_size = len(body)
    if not (target.is_file() and Path(str(target) + ".gz").is_file()):
        make_dirs(target.parent)
        gz_size = write_with_gzip(target, body)
    else:
        gz_size = Path(str(target) + ".gz").stat().st_size
    return relative, gz_size


def history_dir(fingerprint: str) -> str:
    return f"data/history-{fingerprint}"


def has_history_dir(site_dir: Path) -> Callable[[str], bool]:
    """For `data.site_data`: whether the histories of a fingerprint are already written in `site_dir`."""
    return lambda fingerprint: (Path(site_dir) / history_dir(fingerprint)).is_dir()


def _write_history_dir(site_dir: Path, histories: site_data_module.Histories) -> tuple[str, int]:
    """All history shards in `data/history-<fingerprint>/`, written in a hidden directory then renamed into
    place whole (so a reader never sees a partial directory)."""
    relative = history_dir(histories.fingerprint)
    final = site_dir / relative
    if final.is_dir():
        return relative, 0
    if histories.bodies is None:
        raise RuntimeError(f"{relative} is missing and its histories were not computed")
    staging = site_dir / "data" / f".staging-history-{histories.fingerprint}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    make_dirs(staging)
    try:
        # Two threads compress and write while this one assembles the next shards (each releases the GIL).
        with ThreadPoolExecutor(max_workers=2) as pool:
            writes = [
                pool.submit(write_gzip_only_fast, staging / f"{shard}.json", body)
                for shard, body in histories.bodies
            ]
            for write in writes:
                write.result()
        written = len(writes)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return relative, written


def _static_assets(site_dir: Path) -> tuple[dict[str, str], list[str]]:
    """Copy the page's own script, style, text catalogues and places under hashed names, and every vendored
    package under its versioned path."""
    names = {}
    files = []
    sources = [("app.js", "app_js", "app"), ("style.css", "style_css", "style"), ("places.json", "places", "places")]
    sources += [(f"i18n/{lang}.json", f"i18n_{lang}", f"i18n-{lang}") for lang in sorted(load_catalogues())]
    for source_name, key, stem in sources:
        body = (STATIC_DIR / source_name).read_bytes()
        relative, _ = _hashed_write(site_dir, "assets", stem, "." + source_name.rsplit(".", 1)[1], body)
        names[key] = relative
        files.append(relative)
    for package in vendored_packages():
        for source in sorted(package.rglob("*")):
            if source.is_dir() or source.name in UNPUBLISHED_VENDOR_FILES:
                continue
            relative = f"vendor/{package.name}/{source.relative_to(package).as_posix()}"
            target = site_dir / relative
            if not target.is_file() or target.stat().st_size != source.stat().st_size:
                make_dirs(target.parent)
                write_with_gzip(target, source.read_bytes())
            files.append(relative)
    return names, files


def render_index(config: SiteConfig, assets: dict[str, str]) -> bytes:
    """index.html from the template: asset names, the configuration (JSON in a non-executed script tag, `<`
    escaped so no value can close the tag) and the texts of the default language (`{{t:key}}`; the script
    switches them to the visitor's language)."""
    template = (STATIC_DIR / "index.html").read_text()
    catalogues = load_catalogues()
    check_catalogues(catalogues)
    default = catalogues[DEFAULT_LANG]
    page_config = {
        "pointer": POINTER,
        "tileUrl": config.tile_url,
        "tileAttribution": config.tile_attribution,
        "staleAfterS": config.stale_after_s,
        "refreshS": config.refresh_s,
        "title": config.title,
        "defaultLang": DEFAULT_LANG,
        "i18n": {lang: assets[f"i18n_{lang}"] for lang in sorted(catalogues)},
        "languages": {lang: catalogues[lang]["language_name"] for lang in sorted(catalogues)},
        "places": assets["places"],
    }
    config_json = json.dumps(page_config).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    tile_origin = _origin(config.tile_url)
    replacements = {
        "{{TITLE}}": html.escape(config.title or default["ui"]["title"]),
        "{{LANG}}": DEFAULT_LANG,
        "{{CONFIG_JSON}}": config_json,
        "{{APP_JS}}": html.escape(assets["app_js"]),
        "{{STYLE_CSS}}": html.escape(assets["style_css"]),
        "{{LEAFLET_JS}}": html.escape(f"{VENDOR_DIR}/leaflet.js"),
        "{{LEAFLET_CSS}}": html.escape(f"{VENDOR_DIR}/leaflet.css"),
        "{{SUPERCLUSTER_JS}}": html.escape(f"{SUPERCLUSTER_VENDOR_DIR}/supercluster.min.js"),
        "{{TILE_ORIGIN}}": html.escape(tile_origin),
    }
    for placeholder, value in replacements.items():
        template = template.replace(placeholder, value)
    template = re.sub(r"\{\{t:(\w+)\}\}", lambda match: html.escape(default["ui"][match.group(1)]), template)
    return template.encode()


def _origin(url: str) -> str:
    """The scheme://host[:port] of the tile URL (for the page's Content-Security-Policy)."""
    if "://" not in url:
        return ""
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0]
    # Tile URL templates may use a {s} subdomain placeholder: allow any subdomain then.
    return f"{scheme}://{host.replace('{s}', '*')}"


def _remove_unreferenced(site_dir: Path, keep: set[str], keep_s: float) -> list[str]:
    """Delete hashed files and sensor directories no longer named, once older than `keep_s`."""
    removed = []
    cutoff = time.time() - keep_s
    for directory in ("data", "assets"):
        root = site_dir / directory
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            relative = f"{directory}/{entry.name}"
            base = relative[:-3] if relative.endswith(".gz") else relative
            if base in keep or entry.lstat().st_mtime > cutoff:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(relative)
    return sorted(removed)


def build_site(
    connection: duckdb.DuckDBPyConnection,
    site_dir: Path,
    config: SiteConfig | None = None,
    *,
    hourly_table: str,
    location: TierLocation | None,
    now: datetime | None = None,
    keep_s: float = 3600.0,
) -> BuildResult:
    """Read the data (`data.site_data`: `hourly_table` is the aqi_hourly table, `location` the Parquet tier's)
    and write the site (`write_site`)."""
    started = time.perf_counter()
    now = naive_utc(now)
    content = site_data_module.site_data(
        connection, hourly_table=hourly_table, location=location, now=now, have_fingerprint=has_history_dir(site_dir)
    )
    return write_site(content, site_dir, config, now=now, keep_s=keep_s, started=started)


def write_site(
    content: site_data_module.SiteData,
    site_dir: Path,
    config: SiteConfig | None = None,
    *,
    now: datetime | None = None,
    keep_s: float = 3600.0,
    started: float | None = None,
) -> BuildResult:
    """Write one build: data files, then the pointer, then index.html; then remove unreferenced old files."""
    started = time.perf_counter() if started is None else started
    config = config or SiteConfig()
    now = naive_utc(now)
    site_dir = Path(site_dir)
    make_dirs(site_dir)
    make_dirs(site_dir / "data")
    generated_at = site_data_module.iso_utc(now)
    data_time = site_data_module.iso_utc(content.anchor)

    geojson = {
        "type": "FeatureCollection",
        "generated_at": generated_at,
        "data_time": data_time,
        "indices_source": content.hourly_table,
        "properties_schema": GEOJSON_SCHEMA,
        "features": content.features,
    }
    latest_body = _dumps(geojson)
    with ThreadPoolExecutor(max_workers=1) as background:
        # The map's gzip (level 9, the file every visitor loads) runs beside the histories' assembly.
        latest_write = background.submit(_hashed_write, site_dir, "data", "latest", ".geojson", latest_body)
        history, written = _write_history_dir(site_dir, content.histories)
        latest, latest_gzip = latest_write.result()
    countries, _ = _hashed_write(
        site_dir, "data", "countries", ".json",
        _dumps({"generated_at": generated_at, "data_time": data_time, "countries": content.countries}),
    )
    assets, asset_files = _static_assets(site_dir)

    pointer = {
        "version": 1,
        "generated_at": generated_at,
        "data_time": data_time,
        "features": len(content.features),
        "latest": latest,
        "countries": countries,
        "history": f"{history}/",
        "history_shards": content.histories.shards,
        "indices_source": geojson["indices_source"],
    }
    write_with_gzip(site_dir / POINTER, _dumps(pointer))
    write_with_gzip(site_dir / INDEX, render_index(config, assets))  # last: the page that names everything

    referenced = {latest, countries, history, *assets.values()}
    removed = _remove_unreferenced(site_dir, referenced, keep_s)
    history_files = [f"{history}/{shard}.json" for shard in sorted(content.histories.shard_numbers())]
    return BuildResult(
        site_dir=site_dir,
        features=len(content.features),
        history_sensors=len(content.histories.sensor_ids),
        history_files_written=written,
        countries=len(content.countries),
        latest_path=latest,
        latest_bytes=len(latest_body),
        latest_gzip_bytes=latest_gzip,
        data_time=data_time,
        generated_at=generated_at or "",
        indices_source=content.hourly_table,
        notes=content.notes,
        seconds=time.perf_counter() - started,
        removed=removed,
        files=[latest, countries, *history_files, *asset_files],
        cold_days=content.cold_days,
    )


def read_pointer(site_dir: Path) -> dict[str, Any]:
    return json.loads((Path(site_dir) / POINTER).read_text())
