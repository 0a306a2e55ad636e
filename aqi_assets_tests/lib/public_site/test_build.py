"""Building the public site from a real DuckDB history (generated snapshots merged by the real ingest):
both index sources (aggregates.aqi_hourly present or not), valid JSON, rounding, gzip copies, atomic rebuilds."""

from __future__ import annotations

import gzip
import json
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aqi_assets.lib.air_quality.indices import compute_indices
from aqi_assets.lib.public_site.build import INDEX, POINTER, SiteConfig, build_site, read_pointer
from aqi_assets.lib.public_site.data import HISTORY_DAYS
from aqi_assets.lib.public_site.files import cache_control, content_type, is_immutable
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets_tests.support.site_data import ingest_hours, outdoor_pm_sensors, sensor_history

END = datetime(2026, 11, 27, 12, 30, 0)  # naive UTC, like the table
NOW = END + timedelta(minutes=4)
HOURS = 30


def _strict_json(data: bytes):
    def no_constants(name: str):
        raise AssertionError(f"{name} in JSON")

    return json.loads(data, parse_constant=no_constants)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    directory = tmp_path_factory.mktemp("site-history")
    database = directory / "aqi.duckdb"
    records = ingest_hours(database, n_records=400, end=END, hours=HOURS, work_dir=directory / "snapshots")
    return database, records


def _copy(database: Path, target: Path) -> Path:
    target.write_bytes(database.read_bytes())
    return target


def _load(site: Path, relative: str):
    return _strict_json((site / relative).read_bytes())


def test_fallback_build_shows_every_outdoor_pm_sensor_with_indicative_indices(history, tmp_path: Path) -> None:
    database, records = history
    site = tmp_path / "site"
    with readings_connection(database, read_only=True) as connection:
        result = build_site(connection, site, SiteConfig(tile_url=""), now=NOW)
        latest_rows = {
            row[0]: row[1:]
            for row in connection.execute(
                """SELECT sensor_id, sensor_type, pm25, pm10, aqi_us, aqi_us_category, daqi, daqi_band, "timestamp"
                   FROM aqi_readings QUALIFY row_number() OVER (PARTITION BY sensor_id ORDER BY "timestamp" DESC) = 1"""
            ).fetchall()
        }
    expected = outdoor_pm_sensors(records)
    pointer = read_pointer(site)
    geojson = _load(site, pointer["latest"])
    ids = [f["properties"]["id"] for f in geojson["features"]]
    assert sorted(ids) == sorted(expected), "the map must show exactly the outdoor PM sensors with coordinates"
    assert result.features == len(expected) == pointer["features"]
    assert not result.hourly_source and geojson["indices_source"] == "aqi_readings (indicative)"
    assert geojson["data_time"] == pointer["data_time"] == max(r[-1] for r in latest_rows.values()).isoformat() + "Z"
    for feature in geojson["features"]:
        p = feature["properties"]
        sensor_type, pm25, pm10, aqi_us, us_cat, daqi, band, ts = latest_rows[p["id"]]
        assert (p["us_basis"], p["uk_basis"]) == ("reading", "reading")
        assert (p["us"], p["us_cat"], p["uk"], p["uk_band"]) == (aqi_us, us_cat, daqi, band)
        assert p["time"] == ts.isoformat() + "Z"
        digits = 0 if sensor_type.startswith("PMS") else 1
        assert p["pm25"] == round(pm25, digits) and p["pm10"] == round(pm10, digits)
        if digits == 0:
            assert isinstance(p["pm25"], int)
        record = expected[p["id"]]
        lon, lat = feature["geometry"]["coordinates"]
        assert (lat, lon) == (float(record["location"]["latitude"]), float(record["location"]["longitude"]))


def test_sensor_history_holds_hourly_means_of_complete_hours(history, tmp_path: Path) -> None:
    database, _ = history
    site = tmp_path / "site"
    with readings_connection(database, read_only=True) as connection:
        build_site(connection, site, SiteConfig(tile_url=""), now=NOW)
        sensor_id, sensor_type = connection.execute(
            "SELECT sensor_id, sensor_type FROM aqi_readings WHERE pm25 IS NOT NULL AND sensor_type = 'SDS011' "
            "AND indoor = false ORDER BY sensor_id LIMIT 1"
        ).fetchone()
        means = connection.execute(
            """SELECT date_trunc('hour', "timestamp") AS hour, avg(pm25), avg(pm10) FROM aqi_readings
               WHERE sensor_id = ? GROUP BY 1 ORDER BY 1""",
            [sensor_id],
        ).fetchall()
    pointer = read_pointer(site)
    history_json = sensor_history(site, pointer, sensor_id)
    hours = HISTORY_DAYS * 24
    assert len(history_json["pm25"]) == len(history_json["us"]) == hours
    start = datetime.fromisoformat(history_json["start"].rstrip("Z"))
    assert start == END.replace(minute=0) - timedelta(days=HISTORY_DAYS)
    filled = {i for i, v in enumerate(history_json["pm25"]) if v is not None}
    complete = [(hour, pm25, pm10) for hour, pm25, pm10 in means if hour < END.replace(minute=0)]
    assert len(filled) == len(complete) == HOURS - 1, "the hour of the newest reading is not complete"
    for hour, pm25, pm10 in complete:
        slot = int((hour - start) / timedelta(hours=1))
        assert history_json["pm25"][slot] == round(pm25, 1) and history_json["pm10"][slot] == round(pm10, 1)
        indices = compute_indices([pm25], [pm10])
        assert history_json["us"][slot] == int(indices["aqi_us"][0])
        assert history_json["uk"][slot] == int(indices["daqi"][0])
    assert history_json["us_basis"] == "hourly"
    assert sensor_type == "SDS011"


def test_official_indices_from_aggregates_aqi_hourly_when_present(history, tmp_path: Path) -> None:
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    with readings_connection(database) as connection:
        sensors = [r[0] for r in connection.execute(
            "SELECT DISTINCT sensor_id FROM aqi_readings WHERE pm25 IS NOT NULL AND indoor = false "
            "AND latitude IS NOT NULL AND sensor_type = 'SDS011' ORDER BY 1 LIMIT 3"
        ).fetchall()]
        connection.execute("CREATE SCHEMA aggregates")
        connection.execute(
            """CREATE TABLE aggregates.aqi_hourly (sensor_id BIGINT, hour TIMESTAMP, country VARCHAR,
               pm25_mean DOUBLE, pm10_mean DOUBLE, pm25_nowcast DOUBLE, aqi_us_nowcast SMALLINT,
               aqi_us_nowcast_category VARCHAR, daqi_24h TINYINT, daqi_24h_band VARCHAR)"""
        )
        hour = END.replace(minute=0) - timedelta(hours=1)
        # Sensor 0: both official indices; sensor 1: NowCast not valid (NULL), DAQI valid; sensor 2: an hour too
        # old to count as current. Two earlier hours give the chart something to show.
        rows = [
            (sensors[0], hour, 20.5, 30.0, 20.1, 71, "Moderate", 2, "Low"),
            (sensors[0], hour - timedelta(hours=1), 10.0, 12.0, 10.0, 53, "Moderate", 1, "Low"),
            (sensors[1], hour, 80.0, 95.0, None, None, None, 9, "High"),
            (sensors[2], hour - timedelta(hours=5), 5.0, 7.0, 5.0, 28, "Good", 1, "Low"),
        ]
        connection.executemany(
            "INSERT INTO aggregates.aqi_hourly (sensor_id, hour, pm25_mean, pm10_mean, pm25_nowcast, "
            "aqi_us_nowcast, aqi_us_nowcast_category, daqi_24h, daqi_24h_band) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        result = build_site(connection, tmp_path / "site", SiteConfig(tile_url=""), now=NOW)
    site = tmp_path / "site"
    pointer = read_pointer(site)
    features = {f["properties"]["id"]: f["properties"] for f in _load(site, pointer["latest"])["features"]}
    assert result.hourly_source and pointer["indices_source"] == "aggregates.aqi_hourly"
    first, second, third = (features[s] for s in sensors)
    assert (first["us"], first["us_cat"], first["us_basis"]) == (71, "Moderate", "nowcast")
    assert (first["uk"], first["uk_band"], first["uk_basis"]) == (2, "Low", "24h")
    assert first["us_hour"] == hour.isoformat() + "Z"
    assert second["us_basis"] == "reading"
    assert (second["uk"], second["uk_band"], second["uk_basis"]) == (9, "High", "24h")
    assert (third["us_basis"], third["uk_basis"]) == ("reading", "reading")
    others = [p for s, p in features.items() if s not in sensors]
    assert others and all(p["us_basis"] == "reading" for p in others)
    chart = sensor_history(site, pointer, sensors[0])
    assert (chart["us_basis"], chart["uk_basis"]) == ("nowcast", "24h")
    assert [v for v in chart["pm25"] if v is not None] == [10.0, 20.5]
    assert [v for v in chart["us"] if v is not None] == [53, 71]
    assert chart["us"][-1] == 71, "the last complete hour is the last slot"


def test_aqi_hourly_without_its_key_columns_falls_back_cleanly(history, tmp_path: Path) -> None:
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    with readings_connection(database) as connection:
        connection.execute("CREATE SCHEMA aggregates")
        connection.execute("CREATE TABLE aggregates.aqi_hourly (sensor BIGINT, ts TIMESTAMP)")
        result = build_site(connection, tmp_path / "site", SiteConfig(tile_url=""), now=NOW)
    assert not result.hourly_source and result.features > 0
    assert any("lacks sensor_id, hour" in note for note in result.notes)


def test_files_are_complete_gzip_copies_world_readable_and_named_by_content(history, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with readings_connection(history[0], read_only=True) as connection:
        result = build_site(connection, site, SiteConfig(tile_url=""), now=NOW)
    histories = read_pointer(site)["history"]
    assert any(relative.startswith(histories) for relative in result.files)
    for relative in [*result.files, POINTER, INDEX]:
        path = site / relative
        gz = Path(f"{path}.gz")
        if relative.startswith(histories):  # stored as gzip only
            assert not path.exists() and gz.stat().st_mode & stat.S_IROTH, relative
            _strict_json(gzip.decompress(gz.read_bytes()))
            continue
        assert path.stat().st_mode & stat.S_IROTH, f"{relative} not world-readable"
        if relative.endswith((".json", ".geojson", ".html", ".js", ".css")):
            assert gzip.decompress(gz.read_bytes()) == path.read_bytes(), relative
        if relative.endswith((".json", ".geojson")):
            _strict_json(path.read_bytes())
    assert is_immutable(result.latest_path) and cache_control(POINTER) == cache_control(INDEX) == "public, max-age=60"
    assert content_type(result.latest_path) == "application/geo+json"
    index = (site / INDEX).read_text()
    for asset in ("assets/app.", "assets/style.", "vendor/leaflet-1.9.4/leaflet.js"):
        assert asset in index
    for relative in [r for r in result.files if r.startswith("assets/")]:
        assert relative.split("/")[-1].split(".")[1] in index


def test_rebuild_replaces_the_pointer_and_keeps_older_files_for_loaded_pages(history, tmp_path: Path) -> None:
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    site = tmp_path / "site"
    with readings_connection(database) as connection:
        first = build_site(connection, site, SiteConfig(tile_url=""), now=NOW)
        again = build_site(connection, site, SiteConfig(tile_url=""), now=NOW)
        assert again.latest_path == first.latest_path and again.history_files_written == 0, "nothing changed"
        connection.execute(
            'UPDATE aqi_readings SET pm25 = pm25 + 1 WHERE "timestamp" > ?', [END - timedelta(minutes=30)]
        )
        second = build_site(connection, site, SiteConfig(tile_url=""), now=NOW, keep_s=3600)
        assert second.latest_path != first.latest_path
        assert second.history_files_written == 0, "a reading in the hour not yet complete leaves the histories"
        assert (site / first.latest_path).is_file(), "a page loaded before the rebuild still finds its data"
        assert read_pointer(site)["latest"] == second.latest_path
        third = build_site(connection, site, SiteConfig(tile_url=""), now=NOW, keep_s=0)
        # A late reading of a complete hour changes that sensor's history: a new set of sensor files.
        connection.execute(
            'UPDATE aqi_readings SET pm10 = pm10 + 2 WHERE "timestamp" < ? AND sensor_id = '
            "(SELECT min(sensor_id) FROM aqi_readings WHERE pm10 IS NOT NULL)",
            [END - timedelta(hours=3)],
        )
        fourth = build_site(connection, site, SiteConfig(tile_url=""), now=NOW, keep_s=3600)
    history_dir = read_pointer(site)["history"]
    shard_files = [f for f in fourth.files if f.startswith(history_dir)]
    assert fourth.history_files_written == len(shard_files) > 0, "every shard file of the new set is written"
    assert not any(f.startswith(history_dir) for f in third.files), "a new directory, named by the new content"

    assert third.latest_path == second.latest_path
    assert not (site / first.latest_path).exists() and f"{first.latest_path}" in third.removed
    assert (site / second.latest_path).is_file() and (site / history_dir).is_dir()


def test_empty_history_builds_a_valid_empty_map(tmp_path: Path) -> None:
    with readings_connection(tmp_path / "empty.duckdb") as connection:
        result = build_site(connection, tmp_path / "site", SiteConfig(tile_url=""))
    pointer = read_pointer(tmp_path / "site")
    assert result.features == 0 and pointer["data_time"] is None
    assert _load(tmp_path / "site", pointer["latest"])["features"] == []


def test_nan_in_the_table_becomes_null(history, tmp_path: Path) -> None:
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    with readings_connection(database) as connection:
        sensor = connection.execute(
            "SELECT sensor_id FROM aqi_readings WHERE sensor_type = 'SDS011' AND indoor = false "
            "AND latitude IS NOT NULL ORDER BY sensor_id LIMIT 1"
        ).fetchone()[0]
        connection.execute("UPDATE aqi_readings SET pm10 = 'NaN'::DOUBLE WHERE sensor_id = ?", [sensor])
        build_site(connection, tmp_path / "site", SiteConfig(tile_url=""), now=NOW)
    pointer = read_pointer(tmp_path / "site")
    raw = (tmp_path / "site" / pointer["latest"]).read_bytes()
    features = {f["properties"]["id"]: f["properties"] for f in _strict_json(raw)["features"]}
    assert features[sensor]["pm10"] is None
    assert b"NaN" not in raw
