"""Building the public site from a real DuckDB history (generated snapshots merged by the real ingest) and the
`aggregates.aqi_hourly` table computed over it by the real aggregate: official indices per sensor (the latest
reading's, labelled, where a sensor has no recent hour), a loud failure when the table or a column is missing,
the history read across the Parquet tier, valid JSON, rounding, gzip copies, atomic rebuilds."""

from __future__ import annotations

import gzip
import json
import stat
from datetime import date, datetime, time, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from aqi_assets.bench.sync_common import insert_readings, synthetic_readings
from aqi_assets.lib.air_quality.aggregates import HOURLY_SCHEMA
from aqi_assets.lib.common.location import open_location
from aqi_assets.lib.public_site.build import INDEX, POINTER, SiteConfig, build_site, read_pointer
from aqi_assets.lib.public_site.data import (
    HISTORY_DAYS,
    HOURLY_COLUMNS_READ,
    HourlyTableError,
    check_read_columns,
    find_anchor,
)
from aqi_assets.lib.public_site.files import cache_control, content_type, is_immutable
from aqi_assets.lib.readings.history import HISTORY_VIEW, HistoryError, attach_history
from aqi_assets.lib.readings.schema import readings_connection
from aqi_assets.lib.tiers.parquet_tier import export_day
from aqi_assets.lib.tiers.retention import prune_hot_tier
from aqi_assets_tests.support.site_data import (
    HOURLY_TABLE,
    ingest_hours,
    outdoor_pm_sensors,
    sensor_history,
    write_hourly,
)

END = datetime(2026, 11, 27, 12, 30, 0)  # naive UTC, like the table
NOW = END + timedelta(minutes=4)
HOURS = 30
FIRST_HOUR = (END - timedelta(hours=HOURS - 1)).replace(minute=0)
LAST_COMPLETE = END.replace(minute=0)  # the hour of the newest reading is not complete: aqi_hourly stops before it


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


def _build(connection, site: Path, **options):
    return build_site(connection, site, SiteConfig(tile_url=""), hourly_table=HOURLY_TABLE, **options)


def test_map_shows_every_outdoor_pm_sensor_with_official_indices_from_aqi_hourly(history, tmp_path: Path) -> None:
    database, records = history
    site = tmp_path / "site"
    with readings_connection(database, read_only=True) as connection:
        result = _build(connection, site, location=None, now=NOW)
        latest_rows = {
            row[0]: row[1:]
            for row in connection.execute(
                """SELECT sensor_id, sensor_type, pm25, pm10, aqi_us, aqi_us_category, daqi, daqi_band, "timestamp"
                   FROM aqi_readings QUALIFY row_number() OVER (PARTITION BY sensor_id ORDER BY "timestamp" DESC) = 1"""
            ).fetchall()
        }
        # The aggregate's own rows for the last complete hour (the newest within the 2 hours before the anchor).
        hourly = {
            row[0]: row[1:]
            for row in connection.execute(
                f"""SELECT sensor_id, aqi_us_nowcast, aqi_us_nowcast_category, daqi_24h, daqi_24h_band
                    FROM {HOURLY_TABLE} WHERE hour = ?""",
                [LAST_COMPLETE - timedelta(hours=1)],
            ).fetchall()
        }
    expected = outdoor_pm_sensors(records)
    pointer = read_pointer(site)
    geojson = _load(site, pointer["latest"])
    ids = [f["properties"]["id"] for f in geojson["features"]]
    assert sorted(ids) == sorted(expected), "the map must show exactly the outdoor PM sensors with coordinates"
    assert result.features == len(expected) == pointer["features"]
    assert result.indices_source == geojson["indices_source"] == pointer["indices_source"] == HOURLY_TABLE
    assert geojson["data_time"] == pointer["data_time"] == max(r[-1] for r in latest_rows.values()).isoformat() + "Z"
    hour_text = (LAST_COMPLETE - timedelta(hours=1)).isoformat() + "Z"
    for feature in geojson["features"]:
        p = feature["properties"]
        sensor_type, pm25, pm10, aqi_us, us_cat, daqi, band, ts = latest_rows[p["id"]]
        nowcast, nowcast_cat, daqi_24h, daqi_24h_band = hourly.get(p["id"], (None, None, None, None))
        if nowcast is not None:
            assert (p["us"], p["us_cat"], p["us_basis"], p["us_hour"]) == (nowcast, nowcast_cat, "nowcast", hour_text)
        else:  # no valid NowCast for this sensor: its reading's index, labelled as such
            assert (p["us"], p["us_cat"], p["us_basis"]) == (aqi_us, us_cat, "reading") and "us_hour" not in p
        if daqi_24h is not None:
            assert (p["uk"], p["uk_band"], p["uk_basis"], p["uk_hour"]) == (daqi_24h, daqi_24h_band, "24h", hour_text)
        else:
            assert (p["uk"], p["uk_band"], p["uk_basis"]) == (daqi, band, "reading") and "uk_hour" not in p
        assert p["time"] == ts.isoformat() + "Z"
        digits = 0 if sensor_type.startswith("PMS") else 1
        assert p["pm25"] == round(pm25, digits) and p["pm10"] == round(pm10, digits)
        if digits == 0:
            assert isinstance(p["pm25"], int)
        record = expected[p["id"]]
        lon, lat = feature["geometry"]["coordinates"]
        assert (lat, lon) == (float(record["location"]["latitude"]), float(record["location"]["longitude"]))
    official = [f for f in geojson["features"] if f["properties"]["us_basis"] == "nowcast"]
    daily = [f for f in geojson["features"] if f["properties"]["uk_basis"] == "24h"]
    assert len(official) > len(ids) // 2 and len(daily) > len(ids) // 2, "29 hours of data: official indices"

    # Temperature and humidity: the generator's climate sensor of the same station (location id), if any.
    climate = {}
    for record in records:
        values = {e["value_type"]: float(e["value"]) for e in record["sensordatavalues"]}
        if "temperature" in values:
            climate[record["location"]["id"]] = (round(values["temperature"], 1), round(values["humidity"]))
    shown = {f["properties"]["id"]: (f["properties"]["t"], f["properties"]["rh"]) for f in geojson["features"]}
    assert shown == {s: climate.get(expected[s]["location"]["id"], (None, None)) for s in shown}
    assert sum(t is not None for t, _ in shown.values()) > len(shown) // 2, "most stations have a climate sensor"


def test_sensor_history_holds_the_hourly_aggregate_of_complete_hours(history, tmp_path: Path) -> None:
    database, _ = history
    site = tmp_path / "site"
    with readings_connection(database, read_only=True) as connection:
        _build(connection, site, location=None, now=NOW)
        sensor_id, sensor_type = connection.execute(
            "SELECT sensor_id, sensor_type FROM aqi_readings WHERE pm25 IS NOT NULL AND sensor_type = 'SDS011' "
            "AND indoor = false AND latitude IS NOT NULL ORDER BY sensor_id LIMIT 1"
        ).fetchone()
        # Hourly means straight from the readings (independent of the aggregate), the indices from the aggregate.
        means = connection.execute(
            """SELECT date_trunc('hour', "timestamp") AS hour, avg(pm25), avg(pm10) FROM aqi_readings
               WHERE sensor_id = ? GROUP BY 1 ORDER BY 1""",
            [sensor_id],
        ).fetchall()
        indices = dict(
            (row[0], row[1:])
            for row in connection.execute(
                f"SELECT hour, aqi_us_nowcast, daqi_24h FROM {HOURLY_TABLE} WHERE sensor_id = ?", [sensor_id]
            ).fetchall()
        )
    pointer = read_pointer(site)
    history_json = sensor_history(site, pointer, sensor_id)
    hours = HISTORY_DAYS * 24
    assert len(history_json["pm25"]) == len(history_json["us"]) == hours
    start = datetime.fromisoformat(history_json["start"].rstrip("Z"))
    assert start == LAST_COMPLETE - timedelta(days=HISTORY_DAYS)
    filled = {i for i, v in enumerate(history_json["pm25"]) if v is not None}
    complete = [(hour, pm25, pm10) for hour, pm25, pm10 in means if hour < LAST_COMPLETE]
    assert len(filled) == len(complete) == HOURS - 1, "the hour of the newest reading is not complete"
    for hour, pm25, pm10 in complete:
        slot = int((hour - start) / timedelta(hours=1))
        assert history_json["pm25"][slot] == round(pm25, 1) and history_json["pm10"][slot] == round(pm10, 1)
        assert (history_json["us"][slot], history_json["uk"][slot]) == indices[hour]
    assert (history_json["us_basis"], history_json["uk_basis"]) == ("nowcast", "24h")
    assert sum(v is not None for v in history_json["us"]) >= HOURS - 2, "NowCast valid from the second hour"
    assert sum(v is not None for v in history_json["uk"]) == HOURS - 1 - 17, "24-hour means need 18 hours"
    assert sensor_type == "SDS011"


def test_a_sensor_without_a_recent_valid_hour_shows_its_reading_labelled(history, tmp_path: Path) -> None:
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    with readings_connection(database) as connection:
        sensors = [r[0] for r in connection.execute(
            "SELECT DISTINCT sensor_id FROM aqi_readings WHERE pm25 IS NOT NULL AND indoor = false "
            "AND latitude IS NOT NULL AND sensor_type = 'SDS011' ORDER BY 1 LIMIT 3"
        ).fetchall()]
        connection.execute(f"DELETE FROM {HOURLY_TABLE}")
        hour = LAST_COMPLETE - timedelta(hours=1)
        # Sensor 0: both official indices; sensor 1: NowCast not valid (NULL), DAQI valid; sensor 2: an hour too
        # old to count as current. Two earlier hours give the chart something to show.
        rows = [
            (sensors[0], hour, 20.5, 30.0, 20.1, 71, "Moderate", 2, "Low"),
            (sensors[0], hour - timedelta(hours=1), 10.0, 12.0, 10.0, 53, "Moderate", 1, "Low"),
            (sensors[1], hour, 80.0, 95.0, None, None, None, 9, "High"),
            (sensors[2], hour - timedelta(hours=5), 5.0, 7.0, 5.0, 28, "Good", 1, "Low"),
        ]
        connection.executemany(
            f"INSERT INTO {HOURLY_TABLE} (sensor_id, hour, pm25_mean, pm10_mean, pm25_nowcast, "
            "aqi_us_nowcast, aqi_us_nowcast_category, daqi_24h, daqi_24h_band) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        result = _build(connection, tmp_path / "site", location=None, now=NOW)
    site = tmp_path / "site"
    pointer = read_pointer(site)
    features = {f["properties"]["id"]: f["properties"] for f in _load(site, pointer["latest"])["features"]}
    first, second, third = (features[s] for s in sensors)
    assert (first["us"], first["us_cat"], first["us_basis"]) == (71, "Moderate", "nowcast")
    assert (first["uk"], first["uk_band"], first["uk_basis"]) == (2, "Low", "24h")
    assert first["us_hour"] == hour.isoformat() + "Z"
    assert second["us_basis"] == "reading"
    assert (second["uk"], second["uk_band"], second["uk_basis"]) == (9, "High", "24h")
    assert (third["us_basis"], third["uk_basis"]) == ("reading", "reading")
    others = [p for s, p in features.items() if s not in sensors]
    assert others and all(p["us_basis"] == "reading" for p in others)
    assert any(f"{len(features) - 1} of {len(features)} sensors show their latest reading's US" in note
               for note in result.notes), result.notes
    chart = sensor_history(site, pointer, sensors[0])
    assert (chart["us_basis"], chart["uk_basis"]) == ("nowcast", "24h")
    assert [v for v in chart["pm25"] if v is not None] == [10.0, 20.5]
    assert [v for v in chart["us"] if v is not None] == [53, 71]
    assert chart["us"][-1] == 71, "the last complete hour is the last slot"


def test_a_missing_hourly_table_fails_the_build_and_says_what_to_do(history, tmp_path: Path) -> None:
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    with readings_connection(database) as connection:
        connection.execute(f"DROP TABLE {HOURLY_TABLE}")
        with pytest.raises(HourlyTableError) as failure:
            _build(connection, tmp_path / "site", location=None, now=NOW)
    message = str(failure.value)
    assert f"{HOURLY_TABLE} does not exist" in message and "Materialise the `aqi_hourly` asset" in message
    assert not (tmp_path / "site" / POINTER).exists(), "nothing is published from a build without its input"


@pytest.mark.parametrize("change", ["RENAME COLUMN aqi_us_nowcast TO aqi_us_nowcast_v2", "DROP COLUMN daqi_24h_band"])
def test_a_missing_column_fails_the_build_and_names_it(history, tmp_path: Path, change: str) -> None:
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    column = change.split()[2]
    with readings_connection(database) as connection:
        connection.execute(f"ALTER TABLE {HOURLY_TABLE} {change}")
        with pytest.raises(HourlyTableError) as failure:
            _build(connection, tmp_path / "site", location=None, now=NOW)
    message = str(failure.value)
    assert f"{HOURLY_TABLE} lacks the column(s) {column} that the public site reads" in message
    assert "Materialise the `aqi_hourly` asset again" in message
    assert not (tmp_path / "site" / POINTER).exists()


def test_every_column_read_is_one_the_aggregate_defines() -> None:
    check_read_columns(HOURLY_SCHEMA)  # what the import ran
    renamed = HOURLY_SCHEMA.set(
        HOURLY_SCHEMA.get_field_index("daqi_24h"), pa.field("daqi_running_24h", pa.int8())
    )
    with pytest.raises(HourlyTableError, match="HOURLY_SCHEMA has no column daqi_24h, which the public site reads"):
        check_read_columns(renamed)
    assert set(HOURLY_COLUMNS_READ) <= set(HOURLY_SCHEMA.names)


def test_the_map_reads_readings_pruned_to_the_parquet_tier(history, tmp_path: Path) -> None:
    """Every reading moved to Parquet by the real export and retention: the same map and histories, through
    `aqi_readings_all`; without the tier's location the build fails instead of showing an empty map."""
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    location = open_location(str(tmp_path / "parquet"))
    with readings_connection(database) as connection:
        hot = _build(connection, tmp_path / "hot", location=None, now=NOW)
        for day in (date(2026, 11, 26), date(2026, 11, 27)):
            export_day(connection, location, day)
        pruned = prune_hot_tier(connection, location, today=date(2026, 11, 28), hot_days=0)
        assert pruned.days_pruned == [date(2026, 11, 26), date(2026, 11, 27)]
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0] == 0
        with pytest.raises(HistoryError, match="AQI_PARQUET_URI"):
            _build(connection, tmp_path / "nowhere", location=None, now=NOW)
        cold = _build(connection, tmp_path / "cold", location=location, now=NOW)
    assert cold.cold_days == 1 and hot.cold_days == 0, "the build reads the last hour: one Parquet day"
    assert cold.latest_path == hot.latest_path, "the same map, byte for byte"
    hot_pointer, cold_pointer = read_pointer(tmp_path / "hot"), read_pointer(tmp_path / "cold")
    assert cold_pointer["history"] == hot_pointer["history"] and cold.features == hot.features > 0


def test_a_build_never_opens_the_pruned_days_before_the_hour_it_shows(history, tmp_path: Path) -> None:
    """Two more weeks of older readings, all pruned with the map's own days, then every Parquet file before the
    newest pruned day overwritten with garbage: reading any of them fails, yet the build succeeds with the same
    map and histories (its anchor comes from the newest pruned day, its readings from the last hour)."""
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    location = open_location(str(tmp_path / "parquet"))
    old_days = [date(2026, 11, 10) + timedelta(days=i) for i in range(14)]  # 10 to 23 November
    map_days = [date(2026, 11, 26), date(2026, 11, 27)]
    with readings_connection(database) as connection:
        for seed, day in enumerate(old_days):
            insert_readings(connection, synthetic_readings(60, now=datetime.combine(day, time(12)), seed=seed))
        hot = _build(connection, tmp_path / "hot", location=None, now=NOW)
        for day in old_days + map_days:
            export_day(connection, location, day)
        report = prune_hot_tier(connection, location, today=date(2026, 11, 28), hot_days=0)
        assert report.days_pruned == old_days + map_days
        assert connection.execute("SELECT count(*) FROM aqi_readings").fetchone()[0] == 0
        spoiled = [
            path
            for day in old_days + map_days[:1]
            for path in (tmp_path / "parquet").glob(f"period=*/date={day.isoformat()}/*.parquet")
        ]
        assert len(spoiled) >= len(old_days) + 1
        for path in spoiled:
            path.write_bytes(b"not a parquet file")
        with pytest.raises((duckdb.Error, pa.ArrowException)):  # the whole history cannot be read any more
            attach_history(connection, location)
            connection.execute(f"SELECT count(*) FROM {HISTORY_VIEW}").fetchall()
        cold = _build(connection, tmp_path / "cold", location=location, now=NOW)
    assert cold.cold_days == 1 and hot.cold_days == 0
    assert cold.latest_path == hot.latest_path, "the same map, byte for byte"
    hot_pointer, cold_pointer = read_pointer(tmp_path / "hot"), read_pointer(tmp_path / "cold")
    assert cold_pointer["history"] == hot_pointer["history"] and cold.features == hot.features > 0
    assert cold_pointer["data_time"] == END.isoformat() + "Z"


def test_the_anchor_is_the_newest_reading_even_when_only_older_days_stayed_hot(history, tmp_path: Path) -> None:
    """An old day never exported stays in DuckDB while the map's days are pruned: the hot tier's newest reading
    is then days old, and the anchor is still the newest reading of the whole history."""
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    location = open_location(str(tmp_path / "parquet"))
    stale = datetime(2026, 11, 20, 12)
    with readings_connection(database) as connection:
        insert_readings(connection, synthetic_readings(20, now=stale, seed=3))
        hot = _build(connection, tmp_path / "hot", location=None, now=NOW)
        for day in (date(2026, 11, 26), date(2026, 11, 27)):
            export_day(connection, location, day)
        report = prune_hot_tier(connection, location, today=date(2026, 11, 28), hot_days=0)
        assert report.days_pruned == [date(2026, 11, 26), date(2026, 11, 27)] and "2026-11-20" in report.skipped
        assert find_anchor(connection, location, NOW) == END
        cold = _build(connection, tmp_path / "cold", location=location, now=NOW)
    assert cold.latest_path == hot.latest_path and cold.cold_days == 1


def test_files_are_complete_gzip_copies_world_readable_and_named_by_content(history, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with readings_connection(history[0], read_only=True) as connection:
        result = _build(connection, site, location=None, now=NOW)
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
    for asset in ("assets/app.", "assets/style.", "vendor/leaflet-1.9.4/leaflet.js",
                  "vendor/supercluster-8.0.1/supercluster.min.js", "assets/i18n-en.", "assets/i18n-de.",
                  "assets/places."):
        assert asset in index
    published = {r.split("/")[1] for r in result.files if r.startswith("vendor/")}
    assert published == {"leaflet-1.9.4", "supercluster-8.0.1"}, "axe-core is a test tool: never published"
    assert not [r for r in result.files if r.endswith(("MANIFEST.json", "README.md"))]
    assert (site / "vendor/supercluster-8.0.1/LICENSE-kdbush").is_file()
    for relative in [r for r in result.files if r.startswith("assets/")]:
        assert relative.split("/")[-1].split(".")[1] in index


def test_rebuild_replaces_the_pointer_and_keeps_older_files_for_loaded_pages(history, tmp_path: Path) -> None:
    database = _copy(history[0], tmp_path / "aqi.duckdb")
    site = tmp_path / "site"
    with readings_connection(database) as connection:
        first = _build(connection, site, location=None, now=NOW)
        again = _build(connection, site, location=None, now=NOW)
        assert again.latest_path == first.latest_path and again.history_files_written == 0, "nothing changed"
        connection.execute(
            'UPDATE aqi_readings SET pm25 = pm25 + 1 WHERE "timestamp" > ?', [END - timedelta(minutes=30)]
        )
        second = _build(connection, site, location=None, now=NOW, keep_s=3600)
        assert second.latest_path != first.latest_path
        assert second.history_files_written == 0, "a reading in the hour not yet complete leaves the histories"
        assert (site / first.latest_path).is_file(), "a page loaded before the rebuild still finds its data"
        assert read_pointer(site)["latest"] == second.latest_path
        third = _build(connection, site, location=None, now=NOW, keep_s=0)
        # A late reading of a complete hour: until aqi_hourly is recomputed (the late-data sensor's run) the
        # histories stay; then that sensor's history changes: a new set of sensor files.
        connection.execute(
            'UPDATE aqi_readings SET pm10 = pm10 + 2 WHERE "timestamp" < ? AND sensor_id = '
            "(SELECT min(sensor_id) FROM aqi_readings WHERE pm10 IS NOT NULL)",
            [END - timedelta(hours=3)],
        )
        assert _build(connection, site, location=None, now=NOW, keep_s=3600).history_files_written == 0
        write_hourly(connection, FIRST_HOUR, LAST_COMPLETE)
        fourth = _build(connection, site, location=None, now=NOW, keep_s=3600)
    history_dir = read_pointer(site)["history"]
    shard_files = [f for f in fourth.files if f.startswith(history_dir)]
    assert fourth.history_files_written == len(shard_files) > 0, "every shard file of the new set is written"
    assert not any(f.startswith(history_dir) for f in third.files), "a new directory, named by the new content"

    assert third.latest_path == second.latest_path
    assert not (site / first.latest_path).exists() and f"{first.latest_path}" in third.removed
    assert (site / second.latest_path).is_file() and (site / history_dir).is_dir()


def test_empty_history_builds_a_valid_empty_map(tmp_path: Path) -> None:
    with readings_connection(tmp_path / "empty.duckdb") as connection:
        write_hourly(connection, LAST_COMPLETE, LAST_COMPLETE)  # the table exists, with no hour yet
        result = _build(connection, tmp_path / "site", location=None)
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
        _build(connection, tmp_path / "site", location=None, now=NOW)
    pointer = read_pointer(tmp_path / "site")
    raw = (tmp_path / "site" / pointer["latest"]).read_bytes()
    features = {f["properties"]["id"]: f["properties"] for f in _strict_json(raw)["features"]}
    assert features[sensor]["pm10"] is None
    assert b"NaN" not in raw
