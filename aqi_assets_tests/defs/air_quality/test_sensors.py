"""Snapshot sensors evaluated like the daemon does, against a local HTTP server; and the loaded Definitions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import dagster as dg
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aqi_assets.defs.air_quality.resources import SnapshotSource
from aqi_assets.defs.air_quality.sensors import build_snapshot_sensor, build_snapshot_sensors, snapshot_sensor_name
from aqi_assets.defs.ops.automation import AUTOMATION_SENSOR_NAME
from aqi_assets.lib.air_quality.probe import CursorState
from aqi_assets_tests.support.http import local_http_server
from aqi_assets_tests.support.samples import fragment_records

LM1 = "Tue, 16 Apr 2019 14:22:52 GMT"
LM2 = "Tue, 16 Apr 2019 14:27:52 GMT"


@pytest.fixture(scope="module")
def sample_body() -> bytes:
    return json.dumps(fragment_records()).encode()


@pytest.fixture()
def server() -> Iterator[HTTPServer]:
    with local_http_server() as http:
        yield http


def scripted(server: HTTPServer, answers: list[Callable[[Request], Response]]) -> list[dict[str, str]]:
    """Serve ``answers`` in order on /data.json; returns the list the request headers are recorded in."""
    seen: list[dict[str, str]] = []

    def handle(request: Request) -> Response:
        seen.append(dict(request.headers))
        return answers.pop(0)(request) if answers else Response(b"unexpected request", status=599)

    server.clear_all_handlers()
    server.expect_request("/data.json").respond_with_handler(handle)
    return seen


def evaluate(sensor: dg.SensorDefinition, cursor: str | None, snapshots: SnapshotSource):
    context = dg.build_sensor_context(cursor=cursor, resources={"snapshots": snapshots}, sensor_name=sensor.name)
    return sensor.evaluate_tick(context)


def test_sensor_requests_exactly_one_run_per_new_snapshot(server: HTTPServer, sample_body: bytes) -> None:
    def slow(request: Request) -> Response:
        time.sleep(2.0)
        return Response(sample_body, headers={"Last-Modified": LM2})

    seen = scripted(
        server,
        [
            lambda r: Response(sample_body, headers={"Last-Modified": LM1}, content_type="application/json"),
            lambda r: Response(b"", status=304),
            lambda r: Response(sample_body, headers={"Last-Modified": LM2}, content_type="application/json"),
            lambda r: Response(b"oops", status=500),
            slow,
        ],
    )
    snapshots = SnapshotSource(url_5min=server.url_for("/data.json"), read_timeout_s=0.5)
    sensor = build_snapshot_sensor("5min")

    cursor: str | None = None
    run_keys: list[str] = []
    skips: list[str] = []
    cursors: list[str | None] = []
    for _ in range(5):
        started = time.monotonic()
        result = evaluate(sensor, cursor, snapshots)
        assert time.monotonic() - started < 5  # far inside Dagster's 60 s evaluation budget
        run_keys += [request.run_key for request in result.run_requests or []]
        if result.skip_message:
            skips.append(result.skip_message)
        cursor = result.cursor if result.cursor is not None else cursor
        cursors.append(cursor)

    assert run_keys == ["5min:2019-04-16T14:22:52Z", "5min:2019-04-16T14:27:52Z"]
    assert len(skips) == 3
    assert "[not_modified]" in skips[0] and "304" in skips[0]
    assert "[server_error]" in skips[1] and "HTTP 500" in skips[1]
    assert "[timeout]" in skips[2] and "timed out" in skips[2]
    # The cursor moves with each run request and stays put on 304, 500 and the timeout.
    assert cursors[0] != cursors[2]
    assert cursors[2] == cursors[3] == cursors[4]
    final = json.loads(cursors[4])
    assert final["version"] == 1 and final["last_modified"] == LM2
    assert [headers.get("If-Modified-Since") for headers in seen] == [None, LM1, LM1, LM2, LM2]
    # Restarting with a lost cursor asks for the same run key again, which Dagster de-duplicates.
    seen_again = scripted(server, [lambda r: Response(sample_body, headers={"Last-Modified": LM2})])
    assert [request.run_key for request in evaluate(sensor, None, snapshots).run_requests] == [run_keys[1]]
    assert "If-Modified-Since" not in seen_again[0]


def test_sensor_skip_reasons_for_unreachable_and_empty(server: HTTPServer) -> None:
    scripted(server, [lambda r: Response(b"[]", headers={"Last-Modified": LM1})])
    snapshots = SnapshotSource(url_24h=server.url_for("/data.json"))
    sensor = build_snapshot_sensor("24h")
    empty = evaluate(sensor, None, snapshots)
    assert not empty.run_requests and "[empty_body]" in empty.skip_message

    port = server.port
    server.clear()
    server.stop()  # nothing listens on the port any more
    unreachable = evaluate(sensor, None, SnapshotSource(url_24h=f"http://user:pw@127.0.0.1:{port}/data.json"))
    assert not unreachable.run_requests and "[unreachable]" in unreachable.skip_message
    assert "user:pw" not in unreachable.skip_message
    server.start()  # the fixture stops it again


def test_unreadable_cursor_starts_afresh(server: HTTPServer, sample_body: bytes) -> None:
    scripted(server, [lambda r: Response(sample_body, headers={"Last-Modified": LM1})])
    snapshots = SnapshotSource(url_5min=server.url_for("/data.json"))
    result = evaluate(build_snapshot_sensor("5min"), "not-json", snapshots)
    assert [request.run_key for request in result.run_requests] == ["5min:2019-04-16T14:22:52Z"]
    assert CursorState.from_json(result.cursor).last_modified == LM1


def test_file_snapshot_sensor(tmp_path: Path, sample_body: bytes) -> None:
    snapshot = tmp_path / "data.json"
    snapshot.write_bytes(sample_body)
    snapshots = SnapshotSource(url_5min=snapshot.as_uri())
    sensor = build_snapshot_sensor("5min")
    first = evaluate(sensor, None, snapshots)
    assert len(first.run_requests) == 1
    assert first.run_requests[0].tags["aqi/period"] == "5min"
    second = evaluate(sensor, first.cursor, snapshots)
    assert not second.run_requests and "[same_snapshot]" in second.skip_message


def test_a_tick_waits_for_a_snapshot_due_before_the_next_tick(server: HTTPServer, sample_body: bytes) -> None:
    """The 5-minute file is rewritten every minute: a tick that finds nothing new probes again when the next
    one is due (and a second after, for a late one), so it is requested a moment after it appears."""
    last = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=58)
    seen = scripted(
        server,
        [
            lambda r: Response(sample_body, headers={"Last-Modified": format_datetime(last, usegmt=True)}),
            lambda r: Response(b"", status=304),  # the tick's first probe: nothing new yet
            lambda r: Response(b"", status=304),  # at the due moment: the server is a little late
            lambda r: Response(sample_body, headers={"Last-Modified": format_datetime(
                last + timedelta(seconds=60), usegmt=True)}),
        ],
    )
    snapshots = SnapshotSource(url_5min=server.url_for("/data.json"))
    sensor = build_snapshot_sensor("5min", minimum_interval_seconds=15)
    first = evaluate(sensor, None, snapshots)
    started = time.monotonic()
    second = evaluate(sensor, first.cursor, snapshots)
    took = time.monotonic() - started
    assert len(seen) == 4 and len(second.run_requests) == 1, second.skip_message
    assert second.run_requests[0].run_key != first.run_requests[0].run_key
    assert 1.5 < took < 12, "waited for the due moment, within the tick's interval"

    # With the next one due beyond this tick's reach, or no cadence at all (24h), a tick probes once.
    for period, cursor in (("5min", second.cursor), ("24h", first.cursor)):
        seen = scripted(server, [lambda r: Response(b"", status=304)])
        started = time.monotonic()
        skipped = evaluate(build_snapshot_sensor(period, minimum_interval_seconds=15), cursor,
                           SnapshotSource(**{f"url_{period}": server.url_for("/data.json")}))
        assert not skipped.run_requests and len(seen) == 1 and time.monotonic() - started < 1.5, period


def test_intervals_and_default_status_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AQI_SENSOR_5MIN_INTERVAL_S", "AQI_SENSOR_24H_INTERVAL_S", "AQI_SENSORS_DEFAULT_RUNNING"):
        monkeypatch.delenv(name, raising=False)
    defaults = {sensor.name: sensor for sensor in build_snapshot_sensors()}
    assert defaults[snapshot_sensor_name("5min")].minimum_interval_seconds == 60
    assert defaults[snapshot_sensor_name("24h")].minimum_interval_seconds == 300
    assert {sensor.default_status for sensor in defaults.values()} == {dg.DefaultSensorStatus.STOPPED}
    assert defaults[snapshot_sensor_name("5min")].job_name == "ingest_5min_job"
    assert defaults[snapshot_sensor_name("24h")].job_name == "ingest_24h_job"

    monkeypatch.setenv("AQI_SENSOR_5MIN_INTERVAL_S", "90")
    monkeypatch.setenv("AQI_SENSOR_24H_INTERVAL_S", "600")
    monkeypatch.setenv("AQI_SENSORS_DEFAULT_RUNNING", "1")
    configured = {sensor.name: sensor for sensor in build_snapshot_sensors()}
    assert configured[snapshot_sensor_name("5min")].minimum_interval_seconds == 90
    assert configured[snapshot_sensor_name("24h")].minimum_interval_seconds == 600
    assert {sensor.default_status for sensor in configured.values()} == {dg.DefaultSensorStatus.RUNNING}

    monkeypatch.setenv("AQI_SENSOR_5MIN_INTERVAL_S", "soon")
    with pytest.raises(ValueError, match="AQI_SENSOR_5MIN_INTERVAL_S"):
        build_snapshot_sensors()
    monkeypatch.setenv("AQI_SENSOR_5MIN_INTERVAL_S", "1")
    with pytest.raises(ValueError, match="minimum"):
        build_snapshot_sensors()


# --- the loaded Definitions -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from aqi_assets.definitions import defs as load_defs

    with pytest.MonkeyPatch.context() as patch:
        for name in ("AQI_SENSOR_5MIN_INTERVAL_S", "AQI_SENSOR_24H_INTERVAL_S", "AQI_SENSORS_DEFAULT_RUNNING"):
            patch.delenv(name, raising=False)
        loaded = load_defs()
    assert isinstance(loaded, dg.Definitions)
    return loaded


def test_definitions_hold_the_sensors_and_their_jobs(defs: dg.Definitions) -> None:
    sensors = {sensor.name: sensor for sensor in defs.sensors}
    for period, job_name in (("5min", "ingest_5min_job"), ("24h", "ingest_24h_job")):
        sensor = sensors[snapshot_sensor_name(period)]
        assert sensor.job_name == job_name
        assert defs.resolve_job_def(job_name).name == job_name
    assert sensors[snapshot_sensor_name("5min")].minimum_interval_seconds == 60
    assert sensors[snapshot_sensor_name("24h")].minimum_interval_seconds == 300
    assert sensors[AUTOMATION_SENSOR_NAME].default_status is dg.DefaultSensorStatus.RUNNING
    assert sensors["aqi_run_failure_alert"].default_status is dg.DefaultSensorStatus.RUNNING
    assert "alert_webhook" in defs.resources and "snapshots" in defs.resources
    # Every sensor's resources resolve (this is what `dagster dev` checks when it loads the location).
    defs.resolve_all_job_defs()
    repository = defs.get_repository_def()
    assert {snapshot_sensor_name("5min"), snapshot_sensor_name("24h")} <= {s.name for s in repository.sensor_defs}


def test_downstream_assets_follow_declaratively(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    readings = dg.AssetKey("aqi_readings")
    assert graph.get(readings).automation_condition == dg.AutomationCondition.eager()
    assert {dg.AssetKey("raw_snapshot_5min"), dg.AssetKey("raw_snapshot_24h")} <= graph.get(readings).parent_keys
    # Everything downstream of the history (AQI views, sync targets) carries an automation condition, and the
    # one automation-condition sensor of the location covers it (so no default sensor is added behind our back).
    downstream: set[dg.AssetKey] = set()
    frontier = set(graph.get(readings).child_keys)
    while frontier:
        downstream |= frontier
        frontier = {child for key in frontier for child in graph.get(key).child_keys} - downstream
    assert downstream, "nothing is downstream of aqi_readings"
    # ... or a schedule of its own (the Parquet tier exports each completed day once, at a fixed time).
    scheduled = {
        key
        for schedule in defs.get_repository_def().schedule_defs
        for key in defs.resolve_job_def(schedule.job_name).asset_layer.selected_asset_keys
    }
    # The archive backfill reads the history (the locations a country selects) but is launched by people, never
    # automatically: it fetches years of files on request.
    launched_by_people = {
        dg.AssetKey(k) for k in ("raw_archive_day", "archive_readings", "raw_archive_month", "archive_month_readings",
                                 "archive_month_hot")
    }
    assert launched_by_people <= downstream
    for key in downstream - launched_by_people | {readings}:
        assert graph.get(key).automation_condition is not None or key in scheduled, (
            f"{key.to_user_string()} has neither an automation condition nor a schedule"
        )
    automation_sensors = [
        s for s in defs.get_repository_def().sensor_defs if isinstance(s, dg.AutomationConditionSensorDefinition)
    ]
    assert [s.name for s in automation_sensors] == [AUTOMATION_SENSOR_NAME]
    covered = automation_sensors[0].asset_selection.resolve(graph)
    assert {key for key in downstream if graph.get(key).automation_condition is not None} | {readings} <= covered
    assert all(graph.get(key).automation_condition is None for key in launched_by_people)
    # Raw snapshots are fetched by the sensors' runs only, never automatically.
    assert graph.get(dg.AssetKey("raw_snapshot_5min")).automation_condition is None


def test_covid_schedule_runs_daily_at_midnight_utc(defs: dg.Definitions) -> None:
    schedules = list(defs.schedules or [])
    daily = [s for s in schedules if s.cron_schedule == "0 0 * * *" and s.execution_timezone == "UTC"]
    assert daily, f"no daily 00:00 UTC schedule among {[s.name for s in schedules]}"
    job = defs.resolve_job_def(daily[0].job_name)
    covid_keys = {key for key in defs.resolve_asset_graph().get_all_asset_keys() if "covid" in key.to_user_string()}
    assert covid_keys and covid_keys <= set(job.asset_layer.selected_asset_keys)
