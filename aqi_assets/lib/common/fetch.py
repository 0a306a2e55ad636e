"""Download a snapshot to disk, byte for byte, before anything tries to parse it.

The body is streamed (bounded memory for any size), hashed, gzip-compressed and written under a temporary
name that is renamed only once complete, so a crash or a full disk never leaves a half-written file that
looks like a snapshot. HTTP retries (5xx, 429 with Retry-After, connect and read timeouts) are urllib3's
`Retry`; `file://` URLs are served from the paths the operator allowed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_USER_AGENT = "aqi_assets/0.1 (+https://github.com/aqi-assets/aqi_assets; open air-quality data platform)"
CHUNK_BYTES = 1 << 16
# Most decoded bytes one compressed chunk may yield at a time: a highly compressible body (gzip reaches
# ~1000:1) would otherwise inflate one 64 KiB chunk into tens of megabytes.
DECODED_PIECE_BYTES = 1 << 20
DECODED_ENCODINGS = ("gzip", "x-gzip", "deflate")
ALLOWED_SCHEMES = ("http", "https", "file")
RETRY_STATUSES = (429, 500, 502, 503, 504)


class FetchError(RuntimeError):
    """A snapshot could not be fetched; the message never contains credentials.

    ``permanent`` marks failures that retrying cannot fix (a refused URL, a missing file, a 4xx answer).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class FetchResult:
    path: Path
    url: str  # redacted
    status: int
    body_bytes: int
    stored_bytes: int
    sha256: str
    fetched_at: datetime
    last_modified: str | None
    etag: str | None
    content_type: str | None


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_QUERY = re.compile(r"(?i)((?:token|key|secret|password|signature|sig)=)[^&\s]+")


def redact_url(url: str) -> str:
    """The URL without user info or secret-looking query values, safe for logs and metadata."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub("***@", url))


def redact_text(text: str) -> str:
    """Redact every URL-like credential inside free text (error messages from libraries)."""
    return redact_url(text)


def parse_file_roots(text: str) -> list[str]:
    """The directories of an AQI_ALLOWED_FILE_ROOTS value: separated by ',' or the OS path separator, blanks
    around each dropped (one variable serves every resource, so every resource reads it the same way)."""
    return [root.strip() for root in re.split(rf"[,{re.escape(os.pathsep)}]", text) if root.strip()]


def file_roots_for(url: str, configured: str) -> list[str]:
    """Where a file:// ``url`` may read from: the configured roots (an AQI_ALLOWED_FILE_ROOTS value), else the
    URL's own directory. Never an empty list for a file URL: that would let it read anywhere."""
    roots = parse_file_roots(configured)
    if roots:
        return roots
    if url.lower().startswith("file:"):
        return [str(file_url_path(url).parent)]
    return []


def check_url(url: str, allowed_file_roots: Sequence[str | Path] = ()) -> str:
    """Return the scheme of ``url`` after checking it is one the platform accepts."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise FetchError(
            f"unsupported URL scheme {scheme!r} in {redact_url(url)}: use http, https or file", permanent=True
        )
    if scheme == "file":
        path = file_url_path(url)
        roots = [Path(root).resolve() for root in allowed_file_roots if str(root)]
        if roots and not any(path == root or root in path.parents for root in roots):
            raise FetchError(
                f"file URL {url} is outside the allowed roots {[str(r) for r in roots]} (AQI_ALLOWED_FILE_ROOTS)",
                permanent=True,
            )
    return scheme


def file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError(f"file URL with a host is not supported: {redact_url(url)}", permanent=True)
    return Path(unquote(parts.path)).resolve()


class _RedactingFilter(logging.Filter):
    """Redacts credentials in urllib3's own log lines (its retry warnings quote the request path and query)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        for secret in self.secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_REDACTING_FILTER = _RedactingFilter()


def redact_urllib3_logs(*secrets: str) -> None:
    """Keep credentials out of urllib3's log lines: URL user info and token-like query values always, plus
    ``secrets`` (e.g. a webhook URL's path, which is its key)."""
    _REDACTING_FILTER.secrets.update(s for s in secrets if len(s) >= 4)
    logger = logging.getLogger("urllib3.connectionpool")
    if _REDACTING_FILTER not in logger.filters:
        logger.addFilter(_REDACTING_FILTER)


def retry_policy(
    retries: int,
    backoff_factor: float,
    allowed_methods: Iterable[str] | None,
    backoff_max: float = Retry.DEFAULT_BACKOFF_MAX,
) -> Retry:
    """urllib3 `Retry` for connect errors, read timeouts and 5xx/429 (honouring Retry-After), with exponential
    backoff. ``allowed_methods=None`` retries every method: only for idempotent requests. The last answer is
    returned rather than raised, so callers report the real status."""
    return Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=allowed_methods,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def build_session(
    user_agent: str = DEFAULT_USER_AGENT, retries: int = 4, backoff_factor: float = 1.0
) -> requests.Session:
    """A session whose adapter retries connect errors, read timeouts and 5xx/429 with exponential backoff."""
    redact_urllib3_logs()
    retry = retry_policy(retries, backoff_factor, frozenset({"GET", "HEAD"}), backoff_max=60)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@contextlib.contextmanager
def _atomic_gzip_writer(directory: Path) -> Iterator[tuple[gzip.GzipFile, Path]]:
    """A gzip stream into a temporary file in ``directory``; removed unless the caller renames it."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".partial-", suffix=".gz", dir=directory)
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
            yield gz, tmp_path
            gz.flush()
        with open(tmp_path, "rb") as done:
            os.fsync(done.fileno())
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _store(
    chunks: Iterable[bytes],
    directory: Path,
    final_name: Callable[[str, datetime], str],
    fetched_at: datetime,
) -> tuple[Path, int, str]:
    digest = hashlib.sha256()
    size = 0
    try:
        with _atomic_gzip_writer(directory) as (gz, tmp_path):
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                gz.write(chunk)
    except OSError as error:
        raise FetchError(
            f"could not write the raw snapshot into {directory}: {error}; no partial file was kept"
        ) from error
    sha = digest.hexdigest()
    final_path = directory / final_name(sha, fetched_at)
    os.replace(tmp_path, final_path)
    return final_path, size, sha


def _content_encoding(response: requests.Response) -> str | None:
    """The Content-Encoding this module decodes itself, or None when the body is stored as it comes."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    return encoding if encoding in DECODED_ENCODINGS else None


def _decoded_chunks(response: requests.Response, encoding: str | None, wire_copy: BinaryIO | None) -> Iterator[bytes]:
    """The body with Content-Encoding removed; the wire bytes are mirrored into ``wire_copy`` (a file, so a
    large body is never held in memory) for whoever debugs a failed decode."""
    decoder = zlib.decompressobj(wbits=47) if encoding is not None else None
    for wire in response.raw.stream(CHUNK_BYTES, decode_content=False):
        if decoder is None:
            yield wire
            continue
        if wire_copy is not None:
            wire_copy.write(wire)
        try:
            pending = wire
            while pending:
                piece = decoder.decompress(pending, DECODED_PIECE_BYTES)
                if piece:
                    yield piece
                pending = decoder.unconsumed_tail
        except zlib.error as error:
            message = f"body is not valid {encoding} although Content-Encoding says so ({error})"
            raise _EncodingMismatch(message) from None
    if decoder is not None:
        tail = decoder.flush()
        if tail:
            yield tail


@contextlib.contextmanager
def _wire_spool(directory: Path, wanted: bool) -> Iterator[tuple[BinaryIO, Path] | None]:
    """A temporary file beside the `.partial` one for the wire bytes of an encoded body (None when
    ``wanted`` is false); deleted on leaving unless the caller moved it."""
    if not wanted:
        yield None
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, spool_name = tempfile.mkstemp(prefix=".wire-", suffix=".bin", dir=directory)
    except OSError as error:
        raise FetchError(f"could not create a temporary file in {directory}: {error}") from error
    spool_path = Path(spool_name)
    try:
        with os.fdopen(handle, "wb") as spool:
            yield spool, spool_path
    finally:
        spool_path.unlink(missing_ok=True)


class _EncodingMismatch(Exception):
    pass


def download(
    url: str,
    directory: Path,
    final_name: Callable[[str, datetime], str],
    *,
    session: requests.Session | None = None,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 60.0,
    allowed_file_roots: Sequence[str | Path] = (),
    headers: dict[str, str] | None = None,
) -> FetchResult:
    """Fetch ``url`` into ``directory / final_name(sha256, fetched_at)`` (gzip-compressed body bytes)."""
    scheme = check_url(url, allowed_file_roots)
    fetched_at = utc_now()
    safe_url = redact_url(url)
    if scheme == "file":
        source = file_url_path(url)
        try:
            with open(source, "rb") as body:
                path, size, sha = _store(iter(lambda: body.read(CHUNK_BYTES), b""), directory, final_name, fetched_at)
        except FileNotFoundError as error:
            raise FetchError(f"snapshot file not found: {source}", permanent=True) from error
        modified = datetime.fromtimestamp(source.stat().st_mtime, timezone.utc)
        return FetchResult(
            path, safe_url, 200, size, path.stat().st_size, sha, fetched_at,
            modified.strftime("%a, %d %b %Y %H:%M:%S GMT"), None, None,
        )

    timeout = (connect_timeout_s, read_timeout_s)
    if session is not None:
        return _download_http(url, directory, final_name, session, timeout, headers, fetched_at)
    with build_session() as own_session:  # made here, so closed here (a caller's session stays open)
        return _download_http(url, directory, final_name, own_session, timeout, headers, fetched_at)


def _download_http(
    url: str,
    directory: Path,
    final_name: Callable[[str, datetime], str],
    session: requests.Session,
    timeout: tuple[float, float],
    headers: dict[str, str] | None,
    fetched_at: datetime,
) -> FetchResult:
    """The http(s) part of `download`, through ``session``."""
    safe_url = redact_url(url)
    try:
        response = session.get(url, stream=True, timeout=timeout, headers=headers or {})
    except requests.RequestException as error:
        raise FetchError(f"GET {safe_url} failed after retries: {redact_text(str(error))}") from error
    with response:
        if response.status_code != 200:
            # 4xx (but 408 / 429, which urllib3 already retried) will not change by trying again.
            permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
            raise FetchError(
                f"GET {safe_url} answered HTTP {response.status_code} {response.reason}", permanent=permanent
            )
        encoding = _content_encoding(response)
        try:
            with _wire_spool(directory, wanted=encoding is not None) as spool:
                try:
                    chunks = _decoded_chunks(response, encoding, spool[0] if spool else None)
                    path, size, sha = _store(chunks, directory, final_name, fetched_at)
                except _EncodingMismatch as error:
                    if spool is None:  # not reached: only an encoded body is decoded, and it is spooled
                        raise
                    spool_file, spool_path = spool
                    spool_file.close()
                    kept = directory / f"undecodable_{fetched_at:%Y%m%dT%H%M%S%fZ}.bin"
                    os.replace(spool_path, kept)  # the exact wire bytes, for whoever debugs the server
                    raise FetchError(f"GET {safe_url}: {error}; the raw bytes are kept in {kept}") from None
        except requests.RequestException as error:
            raise FetchError(f"GET {safe_url} broke off while reading: {redact_text(str(error))}") from error
        except Exception as error:  # urllib3 read errors surface as their own types
            if isinstance(error, FetchError):
                raise
            raise FetchError(f"GET {safe_url} broke off while reading: {redact_text(str(error))}") from error
        return FetchResult(
            path,
            safe_url,
            response.status_code,
            size,
            path.stat().st_size,
            sha,
            fetched_at,
            response.headers.get("Last-Modified"),
            response.headers.get("ETag"),
            response.headers.get("Content-Type"),
        )


def copy_file(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
