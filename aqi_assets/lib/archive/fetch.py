"""Fetch one archive day into the raw lake: `raw/archive/YYYY/MM/DD/<the archive's file name>`, byte for byte.

Each file is written under a temporary name and renamed once complete (sha256 computed on the way), so a file
in the lake is always whole; a file already in the lake is not requested again, so a re-run downloads nothing
it has. Requests go through the platform's retrying session (5xx, 429 and timeouts, with backoff), at most
``concurrency`` at a time. A body that is an HTML page instead of CSV fails with the URL named.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import requests

from aqi_assets.lib.archive.listing import ArchiveFile, day_urls, listed_files, looks_like_html
from aqi_assets.lib.archive.selection import ResolvedSelection
from aqi_assets.lib.common.fetch import CHUNK_BYTES, FetchError, redact_text, redact_url

LISTING_MAX_BYTES = 64 << 20  # a day's index page is a few MB


class ArchiveFetchError(FetchError):
    """The archive answered with something that is not what was asked for; the message names the URL."""


@dataclass(frozen=True)
class StoredFile:
    name: str
    sensor_id: int
    sensor_type: str
    path: Path
    bytes: int
    sha256: str
    downloaded: bool  # False: already in the lake, not requested


@dataclass
class DayFetch:
    day: date
    listing_url: str
    layout: str  # "day" (/{day}/) or "year" (/{YYYY}/{day}/)
    listed_files: int
    stored: list[StoredFile] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)  # listed but answered 404
    sensors_without_file: list[int] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.stored)

    @property
    def downloaded(self) -> int:
        return sum(1 for f in self.stored if f.downloaded)

    def fileset_sha256(self) -> str:
        digest = hashlib.sha256()
        for stored in sorted(self.stored, key=lambda f: f.name):
            digest.update(f"{stored.name}\0{stored.sha256}\n".encode())
        return digest.hexdigest()


def archive_day_dir(raw_dir: Path, day: date) -> Path:
    return raw_dir / "archive" / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"


def lake_files(raw_dir: Path, day: date) -> list[Path]:
    """The day's complete archive files in the lake (temporary files are not listed)."""
    directory = archive_day_dir(raw_dir, day)
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.endswith((".csv", ".csv.gz"))
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as body:
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_listing(
    session: requests.Session, base_url: str, day: date, timeout: tuple[float, float]
) -> tuple[str, str, str]:
    """(URL, layout, HTML) of the day's index page; both layouts are tried. Raises ArchiveFetchError when
    neither exists (the day is not published yet, or not in the archive)."""
    tried = []
    for layout, url in zip(("day", "year"), day_urls(base_url, day), strict=True):
        try:
            response = session.get(url, timeout=timeout)
        except requests.RequestException as error:
            raise FetchError(f"GET {redact_url(url)} failed after retries: {redact_text(str(error))}") from error
        with response:
            if response.status_code == 404:
                tried.append(redact_url(url))
                continue
            if response.status_code != 200:
                permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
                raise FetchError(
                    f"GET {redact_url(url)} answered HTTP {response.status_code} {response.reason}",
                    permanent=permanent,
                )
            if len(response.content) > LISTING_MAX_BYTES:
                raise ArchiveFetchError(f"GET {redact_url(url)}: index page larger than {LISTING_MAX_BYTES} bytes")
            return url, layout, response.text
    raise ArchiveFetchError(
        f"the archive has no directory for {day.isoformat()} (tried {', '.join(tried)}): not published yet "
        "(new days appear around 08:00 UTC) or not in the archive",
        permanent=True,
    )


def fetch_file(
    session: requests.Session, url: str, directory: Path, archive_file: ArchiveFile, timeout: tuple[float, float]
) -> StoredFile | None:
    """Store one file byte for byte (None when the archive answers 404: the sensor has no file)."""
    target = directory / archive_file.name
    if target.is_file():
        return StoredFile(
            archive_file.name, archive_file.sensor_id, archive_file.sensor_type, target, target.stat().st_size,
            sha256_of(target), downloaded=False,
        )
    safe_url = redact_url(url)
    try:
        response = session.get(url, stream=True, timeout=timeout)
    except requests.RequestException as error:
        raise FetchError(f"GET {safe_url} failed after retries: {redact_text(str(error))}") from error
    with response:
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
            raise FetchError(f"GET {safe_url} answered HTTP {response.status_code} {response.reason}",
                             permanent=permanent)
        content_type = response.headers.get("Content-Type", "").lower()
        chunks = response.iter_content(CHUNK_BYTES)
        head = b""
        with contextlib.suppress(StopIteration):
            head = next(chunks)
        if "text/html" in content_type or looks_like_html(head):
            raise ArchiveFetchError(
                f"GET {safe_url} answered status {response.status_code} with an HTML page instead of CSV "
                f"(Content-Type {content_type or 'unset'}): the archive is failing; nothing was stored"
            )
        try:
            size, sha = store_atomically(directory, target, head, chunks)
        except requests.RequestException as error:
            raise FetchError(f"GET {safe_url} broke off while reading: {redact_text(str(error))}") from error
    return StoredFile(archive_file.name, archive_file.sensor_id, archive_file.sensor_type, target, size, sha, True)


def store_atomically(directory: Path, target: Path, head: bytes, chunks) -> tuple[int, str]:
    directory.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=directory)
    tmp_path = Path(tmp_name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in _chain(head, chunks):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def _chain(head: bytes, chunks):
    if head:
        yield head
    yield from chunks


def fetch_day(
    base_url: str,
    day: date,
    sensor_ids: Collection[int] | ResolvedSelection,
    raw_dir: Path,
    *,
    session: requests.Session,
    concurrency: int = 4,
    timeout: tuple[float, float] = (10.0, 60.0),
) -> DayFetch:
    """Fetch the day's files of ``sensor_ids`` into the lake. Every file is attempted; when some fail, the
    others stay stored (a re-run fetches only what is missing) and the first failure is raised."""
    listing_url, layout, html = fetch_listing(session, base_url, day, timeout)
    listed = listed_files(html, day)
    if isinstance(sensor_ids, ResolvedSelection):  # ids, whole types or everything
        selected = set(sensor_ids.sensor_ids)
        wanted = [f for f in listed if sensor_ids.matches(f.sensor_id, f.sensor_type)]
    else:
        selected = set(sensor_ids)
        wanted = [f for f in listed if f.sensor_id in selected]
    directory = archive_day_dir(raw_dir, day)
    result = DayFetch(day, redact_url(listing_url), layout, len(listed))
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="archive-fetch") as pool:
        futures = [
            (archive_file, pool.submit(fetch_file, session, listing_url + archive_file.name, directory,
                                       archive_file, timeout))
            for archive_file in wanted
        ]
        errors: list[BaseException] = []
        for archive_file, future in futures:
            try:
                stored = future.result()
            except Exception as error:  # collected; the first one is raised below
                errors.append(error)
                continue
            if stored is None:
                result.not_found.append(archive_file.name)
            else:
                result.stored.append(stored)
    if errors:
        raise errors[0]
    with_file = {f.sensor_id for f in result.stored}
    result.sensors_without_file = sorted(selected - with_file)
    return result
