"""Downloading snapshots: exact bytes, retries, timeouts, refusals and redaction, against local servers."""

from __future__ import annotations

import gzip
import socket
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from aqi_assets.lib.air_quality.lake import snapshot_name
from aqi_assets.lib.common.fetch import FetchError, build_session, check_url, download, redact_url
from aqi_assets_tests.support.http import free_port


def name(sha: str, fetched_at) -> str:
    return snapshot_name("5min", sha, fetched_at)


def fast_session(retries: int = 3):
    return build_session(retries=retries, backoff_factor=0.01)


def test_exact_bytes_are_kept_compressed_under_a_hashed_name(httpserver: HTTPServer, tmp_path: Path) -> None:
    body = b'[{"id": 1, "value": "\xc3\xa9"}]'
    httpserver.expect_request("/d.json").respond_with_data(body, headers={"Last-Modified": "Fri, 27 Nov 2026"})
    result = download(httpserver.url_for("/d.json"), tmp_path, name, session=fast_session())
    assert gzip.decompress(result.path.read_bytes()) == body
    assert result.body_bytes == len(body) and result.last_modified == "Fri, 27 Nov 2026"
    assert result.sha256[:12] in result.path.name
    assert [p.name for p in tmp_path.iterdir()] == [result.path.name]  # no temporary file left


def test_gzip_content_encoding_is_decoded(httpserver: HTTPServer, tmp_path: Path) -> None:
    body = b"[]"
    httpserver.expect_request("/d.json").respond_with_data(gzip.compress(body), headers={"Content-Encoding": "gzip"})
    result = download(httpserver.url_for("/d.json"), tmp_path, name, session=fast_session())
    assert gzip.decompress(result.path.read_bytes()) == body


def test_content_encoding_mismatch_fails_and_keeps_the_wire_bytes(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/d.json").respond_with_data(b"[1, 2, 3] not gzip", headers={"Content-Encoding": "gzip"})
    with pytest.raises(FetchError, match="not valid gzip") as failure:
        download(httpserver.url_for("/d.json"), tmp_path, name, session=fast_session())
    kept = Path(str(failure.value).split("kept in ")[1])
    assert kept.read_bytes() == b"[1, 2, 3] not gzip"
    assert not list(tmp_path.glob("*.json.gz"))


def test_5xx_is_retried_then_succeeds(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_ordered_request("/d.json").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/d.json").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/d.json").respond_with_data("[]")
    result = download(httpserver.url_for("/d.json"), tmp_path, name, session=fast_session())
    assert gzip.decompress(result.path.read_bytes()) == b"[]"
    assert len(httpserver.log) == 3


def test_429_retry_after_is_respected(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_ordered_request("/d.json").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_ordered_request("/d.json").respond_with_data("[]")
    started = time.monotonic()
    download(httpserver.url_for("/d.json"), tmp_path, name, session=fast_session())
    assert time.monotonic() - started >= 0.9
    assert len(httpserver.log) == 2


def test_persistent_5xx_fails_with_the_status(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/d.json").respond_with_data("down", status=502)
    with pytest.raises(FetchError, match="HTTP 502"):
        download(httpserver.url_for("/d.json"), tmp_path, name, session=fast_session(retries=2))
    assert len(httpserver.log) == 3  # first try + 2 retries
    assert not list(tmp_path.iterdir())


def test_connection_refused_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/d.json"
    with pytest.raises(FetchError, match="failed after retries"):
        download(url, tmp_path, name, session=fast_session(retries=1))


def test_dns_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's resolver is never asked: the lookup of this one host fails as a real one does.
    looked_up: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def no_such_host(host, *args, **kwargs):
        if host == "no-such-host.example":
            looked_up.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(FetchError, match=r"failed after retries: .*Failed to resolve 'no-such-host\.example'"):
        download("http://no-such-host.example/d.json", tmp_path, name, session=fast_session(retries=2))
    assert looked_up == ["no-such-host.example"] * 3  # the first try and 2 retries, each a fresh lookup
    assert not list(tmp_path.iterdir())


def test_read_timeout_is_retried_then_fails(httpserver: HTTPServer, tmp_path: Path) -> None:
    def slow(_request):
        time.sleep(1.5)
        return Response("[]")

    httpserver.expect_request("/d.json").respond_with_handler(slow)
    with pytest.raises(FetchError, match=r"(?i)timed? ?out"):
        download(httpserver.url_for("/d.json"), tmp_path, name, session=fast_session(retries=1), read_timeout_s=0.3)
    assert not list(tmp_path.glob("*.json.gz"))


def test_disk_full_leaves_no_partial_file(httpserver: HTTPServer, tmp_path: Path, monkeypatch) -> None:
    httpserver.expect_request("/d.json").respond_with_data(b"[" + b"1," * 200_000 + b"1]")
    import gzip as gzip_module

    real_write = gzip_module.GzipFile.write
    written = {"bytes": 0}

    def write_until_full(self, data):
        written["bytes"] += len(data)
        if written["bytes"] > 100_000:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(gzip_module.GzipFile, "write", write_until_full)
    with pytest.raises(FetchError, match=r"No space left on device.*no partial file"):
        download(httpserver.url_for("/d.json"), tmp_path, name, session=fast_session())
    assert list(tmp_path.iterdir()) == []


def test_file_urls_are_limited_to_allowed_roots(tmp_path: Path) -> None:
    allowed = tmp_path / "incoming"
    allowed.mkdir()
    (allowed / "d.json").write_text("[]")
    (tmp_path / "secret.json").write_text("[]")
    out = tmp_path / "out"
    result = download((allowed / "d.json").as_uri(), out, name, allowed_file_roots=[allowed])
    assert gzip.decompress(result.path.read_bytes()) == b"[]"
    with pytest.raises(FetchError, match="outside the allowed roots"):
        download((tmp_path / "secret.json").as_uri(), out, name, allowed_file_roots=[allowed])
    with pytest.raises(FetchError, match="outside the allowed roots"):
        download((allowed / ".." / "secret.json").as_uri(), out, name, allowed_file_roots=[allowed])


@pytest.mark.parametrize("url", ["ftp://example.org/d.json", "gopher://x/", "s3://bucket/key", "javascript:alert(1)"])
def test_only_http_https_and_file_urls(url: str) -> None:
    with pytest.raises(FetchError, match="unsupported URL scheme"):
        check_url(url)


def test_credentials_are_redacted_in_urls_and_errors(tmp_path: Path) -> None:
    assert redact_url("https://user:s3cret@host/p?token=abc&x=1") == "https://***@host/p?token=***&x=1"
    url = f"http://user:s3cret@127.0.0.1:{free_port()}/d.json?api_key=k3y"
    with pytest.raises(FetchError) as failure:
        download(url, tmp_path, name, session=fast_session(retries=0))
    assert "s3cret" not in str(failure.value) and "k3y" not in str(failure.value)
