"""The snapshot probe and its cursor, against a real local HTTP server and real Sensor.Community records."""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aqi_assets.lib.air_quality.probe import (
    DUE_LEAD_S,
    CursorError,
    CursorState,
    ProbeKind,
    due_in,
    parse_http_date,
    probe,
)
from aqi_assets_tests.support.http import local_http_server
from aqi_assets_tests.support.samples import fragment_records

LM1 = "Tue, 16 Apr 2019 14:22:52 GMT"
LM2 = "Tue, 16 Apr 2019 14:23:52 GMT"
LM0 = "Tue, 16 Apr 2019 14:21:52 GMT"


@pytest.fixture(scope="module")
def sample_body() -> bytes:
    return json.dumps(fragment_records()).encode()


class ScriptedServer:
    """Answers each request with the next scripted handler and records the request headers."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.script: list[Callable[[Request], Response]] = []
        self.requests: list[dict[str, str]] = []
        server.expect_request("/data.json").respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        self.requests.append(dict(request.headers))
        if not self.script:
            return Response("no scripted answer left", status=599)
        return self.script.pop(0)(request)

    def url(self, path: str = "/data.json") -> str:
        return self.server.url_for(path)


@pytest.fixture()
def scripted() -> Iterator[ScriptedServer]:
    with local_http_server() as server:
        yield ScriptedServer(server)


def ok(body: bytes, **headers: str) -> Callable[[Request], Response]:
    return lambda request: Response(body, status=200, headers=headers, content_type="application/json")


def status(code: int) -> Callable[[Request], Response]:
    return lambda request: Response(b"", status=code)


def slow(seconds: float, body: bytes) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        time.sleep(seconds)
        return Response(body, status=200, headers={"Last-Modified": LM2})

    return handler


def test_new_snapshot_then_not_modified_then_newer(scripted: ScriptedServer, sample_body: bytes) -> None:
    scripted.script += [
        ok(sample_body, **{"Last-Modified": LM1}),
        status(304),
        ok(sample_body, **{"Last-Modified": LM2}),
    ]

    first = probe(scripted.url(), CursorState(), period="5min")
    assert first.kind is ProbeKind.CHANGED
    assert first.run_key == "5min:2019-04-16T14:22:52Z"
    assert first.cursor.last_modified == LM1
    assert "If-Modified-Since" not in scripted.requests[0]

    second = probe(scripted.url(), first.cursor, period="5min")
    assert (second.kind, second.detail, second.status) == (ProbeKind.UNCHANGED, "not_modified", 304)
    assert second.cursor == first.cursor
    assert scripted.requests[1]["If-Modified-Since"] == LM1
    assert "If-None-Match" not in scripted.requests[1]

    third = probe(scripted.url(), second.cursor, period="5min")
    assert third.kind is ProbeKind.CHANGED
    assert third.run_key == "5min:2019-04-16T14:23:52Z"
    assert CursorState.from_json(third.cursor.to_json()) == third.cursor


def test_etag_is_sent_back_as_if_none_match(scripted: ScriptedServer, sample_body: bytes) -> None:
    scripted.script += [ok(sample_body, **{"Last-Modified": LM1, "ETag": '"abc"'}), status(304)]
    first = probe(scripted.url(), CursorState(), period="24h")
    assert first.changed and first.cursor.etag == '"abc"'
    second = probe(scripted.url(), first.cursor, period="24h")
    assert second.detail == "not_modified"
    assert scripted.requests[1]["If-None-Match"] == '"abc"'
    assert scripted.requests[1]["If-Modified-Since"] == LM1


def test_server_ignoring_if_modified_since_is_not_a_new_snapshot(scripted: ScriptedServer, sample_body: bytes) -> None:
    scripted.script += [ok(sample_body, **{"Last-Modified": LM1})] * 2 + [ok(sample_body, **{"Last-Modified": LM0})]
    first = probe(scripted.url(), CursorState(), period="5min")
    same = probe(scripted.url(), first.cursor, period="5min")
    assert (same.kind, same.detail) == (ProbeKind.UNCHANGED, "same_snapshot")
    older = probe(scripted.url(), first.cursor, period="5min")  # a stale CDN edge
    assert (older.kind, older.detail) == (ProbeKind.UNCHANGED, "older_snapshot")
    assert same.cursor == older.cursor == first.cursor


def test_etag_only_and_no_validators(scripted: ScriptedServer, sample_body: bytes) -> None:
    scripted.script += [ok(sample_body, ETag='W/"v1"'), ok(sample_body, ETag='W/"v1"')]
    first = probe(scripted.url(), CursorState(), period="5min")
    assert first.run_key == '5min:etag:W/"v1"'
    # This server answers 200 again (it does not implement If-None-Match): same ETag, so the same snapshot.
    again = probe(scripted.url(), first.cursor, period="5min")
    assert (again.kind, again.detail) == (ProbeKind.UNCHANGED, "same_snapshot")
    assert scripted.requests[1]["If-None-Match"] == 'W/"v1"'

    scripted.script += [ok(sample_body), ok(sample_body), ok(sample_body[:-2] + b"]")]
    fresh = probe(scripted.url(), CursorState(), period="5min")
    assert fresh.changed and fresh.run_key.startswith("5min:sha256:")
    assert probe(scripted.url(), fresh.cursor, period="5min").detail == "same_snapshot"
    other = probe(scripted.url(), fresh.cursor, period="5min")
    assert other.changed and other.run_key != fresh.run_key


@pytest.mark.parametrize(
    ("body", "encoding"),
    [(b"", None), (b"  \n", None), (b"[]", None), (b"[ ]\n", None), (gzip.compress(b"[]"), "gzip")],
)
def test_empty_bodies_are_an_error_and_keep_the_cursor(scripted: ScriptedServer, body: bytes, encoding) -> None:
    headers = {"Last-Modified": LM2, **({"Content-Encoding": encoding} if encoding else {})}
    scripted.script.append(ok(body, **headers))
    cursor = CursorState(last_modified=LM1, modified_at="2019-04-16T14:22:52Z", run_key="5min:2019-04-16T14:22:52Z")
    outcome = probe(scripted.url(), cursor, period="5min")
    assert (outcome.kind, outcome.detail) == (ProbeKind.ERROR, "empty_body")
    assert "empty body" in outcome.reason
    assert outcome.cursor == cursor


def test_a_large_gzip_body_is_not_read_to_the_end(scripted: ScriptedServer, sample_body: bytes) -> None:
    # 64 MB of gzip (members of the real sample, one after another): far more than the socket buffers between
    # the server and the probe hold, so the bytes the server managed to send show how much the probe read.
    member = gzip.compress(sample_body)
    members = 64 * 2**20 // len(member)
    total = members * len(member)
    sent = {"bytes": 0}
    finished = threading.Event()

    def stream(request: Request) -> Response:
        def body() -> Iterator[bytes]:
            try:
                for _ in range(members):
                    yield member
                    sent["bytes"] += len(member)  # counted once the server wrote it to the socket
            finally:
                finished.set()  # the whole body, or the probe closed the connection

        headers = {"Last-Modified": LM1, "Content-Encoding": "gzip", "Content-Length": str(total)}
        return Response(body(), status=200, headers=headers, content_type="application/json")

    scripted.script.append(stream)
    outcome = probe(scripted.url(), CursorState(), period="5min", peek_bytes=4096)
    assert outcome.changed and outcome.run_key == "5min:2019-04-16T14:22:52Z"
    assert finished.wait(30), "the server was still sending 30 s after the probe returned"
    assert 0 < sent["bytes"] < total // 4, f"the probe let the server send {sent['bytes']} of {total} bytes"


def test_server_error_and_http_error(scripted: ScriptedServer) -> None:
    scripted.script += [status(503), status(404)]
    cursor = CursorState(last_modified=LM1)
    server_error = probe(scripted.url(), cursor, period="5min")
    assert (server_error.kind, server_error.detail, server_error.status) == (ProbeKind.ERROR, "server_error", 503)
    assert "HTTP 503" in server_error.reason
    not_found = probe(scripted.url(), cursor, period="5min")
    assert (not_found.detail, not_found.status) == ("http_error", 404)
    assert server_error.cursor == not_found.cursor == cursor
    assert len(scripted.requests) == 2  # no retries inside a probe: the next tick is the retry


def test_timeout_is_reported_within_the_limit(scripted: ScriptedServer, sample_body: bytes) -> None:
    scripted.script.append(slow(2.0, sample_body))
    started = time.monotonic()
    outcome = probe(scripted.url(), CursorState(), period="5min", read_timeout_s=0.3)
    assert time.monotonic() - started < 1.5
    assert (outcome.kind, outcome.detail) == (ProbeKind.ERROR, "timeout")
    assert "timed out" in outcome.reason


def test_unreachable_server_and_credentials_are_redacted() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bind, read the port, close
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = probe(f"http://user:hunter2@127.0.0.1:{port}/data.json?token=s3cret", CursorState(), period="5min")
    assert (outcome.kind, outcome.detail) == (ProbeKind.ERROR, "unreachable")
    assert "hunter2" not in outcome.reason and "s3cret" not in outcome.reason
    assert f"127.0.0.1:{port}" in outcome.reason


def test_bad_scheme_is_an_error() -> None:
    outcome = probe("ftp://example.org/data.json", CursorState(), period="5min")
    assert (outcome.kind, outcome.detail) == (ProbeKind.ERROR, "bad_url")


def test_file_url_uses_mtime(tmp_path: Path, sample_body: bytes) -> None:
    snapshot = tmp_path / "data.json"
    snapshot.write_bytes(sample_body)
    os.utime(snapshot, (1_555_424_572.25, 1_555_424_572.25))
    first = probe(snapshot.as_uri(), CursorState(), period="5min", allowed_file_roots=[tmp_path])
    assert first.changed
    assert first.run_key == "5min:2019-04-16T14:22:52.250000Z"
    assert probe(snapshot.as_uri(), first.cursor, period="5min").detail == "same_snapshot"
    os.utime(snapshot, (1_555_424_572.75, 1_555_424_572.75))  # same second, newer file
    newer = probe(snapshot.as_uri(), first.cursor, period="5min")
    assert newer.changed and newer.run_key == "5min:2019-04-16T14:22:52.750000Z"

    snapshot.write_bytes(b"[]")
    assert probe(snapshot.as_uri(), newer.cursor, period="5min").detail == "empty_body"
    missing = probe((tmp_path / "nope.json").as_uri(), CursorState(), period="5min")
    assert missing.detail == "file_missing"
    outside = probe(snapshot.as_uri(), CursorState(), period="5min", allowed_file_roots=[tmp_path / "elsewhere"])
    assert outside.detail == "bad_url"


def test_cursor_round_trip_and_rejections() -> None:
    state = CursorState(last_modified=LM1, etag='"x"', modified_at="2019-04-16T14:22:52Z", run_key="5min:k")
    text = state.to_json()
    assert json.loads(text)["version"] == 1
    assert CursorState.from_json(text) == state
    assert CursorState.from_json(None) == CursorState() == CursorState.from_json("")
    with pytest.raises(CursorError, match="not JSON"):
        CursorState.from_json("2019-04-16")
    with pytest.raises(CursorError, match="version"):
        CursorState.from_json(json.dumps({"version": 99, "last_modified": LM1}))
    with pytest.raises(CursorError, match="not a string"):
        CursorState.from_json(json.dumps({"version": 1, "etag": 5}))


def test_parse_http_date() -> None:
    assert parse_http_date(LM1) == datetime(2019, 4, 16, 14, 22, 52, tzinfo=timezone.utc)
    assert parse_http_date("Tuesday, 16-Apr-19 14:22:52 GMT") == datetime(2019, 4, 16, 14, 22, 52, tzinfo=timezone.utc)
    assert parse_http_date("not a date") is None
    assert parse_http_date(None) is None


NOW = datetime(2026, 12, 1, 12, 0, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("age_s", "expected"),
    [
        (58.5, 60 - 58.5 + DUE_LEAD_S),  # due in 1.5 s, probe a lead later
        (60.5, DUE_LEAD_S - 0.5),  # just due: still inside the lead
        (61.5, None),  # the lead has passed: the next is due a whole cadence later, beyond the horizon
        (119.0, 1.0 + DUE_LEAD_S),  # a snapshot missed: the schedule goes on from the last one seen
        (181.0, None),  # more than three cadences behind: the server is late, its schedule says nothing
        (-5.0, None),  # a clock ahead of ours
    ],
)
def test_the_next_snapshot_is_due_a_whole_number_of_cadences_after_the_last(age_s: float, expected) -> None:
    last = NOW.timestamp() - age_s
    stamp = datetime.fromtimestamp(last, timezone.utc).isoformat().replace("+00:00", "Z")
    wait = due_in(stamp, NOW, 60, horizon_s=12)
    assert wait == (None if expected is None else pytest.approx(expected))


def test_nothing_is_due_without_a_cadence_a_last_snapshot_or_a_horizon() -> None:
    assert due_in("2026-12-01T12:00:00Z", NOW, None, horizon_s=12) is None
    assert due_in(None, NOW, 60, horizon_s=12) is None
    assert due_in("2026-12-01T11:59:31Z", NOW, 60, horizon_s=0) is None
    assert due_in("2026-12-01T11:59:31Z", NOW, 60, horizon_s=12) == pytest.approx(1.0 + DUE_LEAD_S)
