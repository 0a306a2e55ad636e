"""Fetch one month of the archive into the raw lake: `raw/archive-monthly/YYYY-MM/<type>/<the archive's file name>`.

The archive publishes each month per sensor type as Spark Parquet (`parquet/YYYY-MM/<type>/part-*.parquet`, with
a `_SUCCESS` marker) and as one zipped CSV (`csv_per_month/YYYY-MM/YYYY-MM_<type>.zip`). A type's Parquet parts
are preferred; its zip is taken when the month has no Parquet folder for it (or the folder lists no part). Files
are stored like the daily fetch stores them (fetch.py): temporary name then rename, sha256 on the way, a file
already in the lake is not requested again, an HTML body fails naming the URL; in addition, a body must start
with its format's magic bytes (`PAR1`, `PK\\x03\\x04`), so an error page of another kind is not stored either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote, unquote

import requests

from aqi_assets.lib.archive.fetch import LISTING_MAX_BYTES, ArchiveFetchError, sha256_of, store_atomically
from aqi_assets.lib.archive.listing import LinkTargets, looks_like_html
from aqi_assets.lib.common.fetch import CHUNK_BYTES, FetchError, redact_text, redact_url

MONTHLY_LAKE = "archive-monthly"
PARQUET, CSV_ZIP = "parquet", "csv_zip"
MAGIC = {PARQUET: b"PAR1", CSV_ZIP: b"PK\x03\x04"}
FORMAT_NAMES = {PARQUET: "Parquet", CSV_ZIP: "zip"}
PART_NAME = re.compile(r"^part-[^/]*\.parquet$")  # Spark's part files; `_SUCCESS` and `.crc` files do not match
TYPE_FOLDER = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class MonthFile:
    """One source file of a month in the lake."""

    sensor_type: str  # lower case, as in the archive's paths
    kind: str  # "parquet" or "csv_zip"
    name: str
    path: Path
    bytes: int
    sha256: str
    downloaded: bool  # False: already in the lake, not requested


@dataclass
class MonthFetch:
    month: date  # first day of the month
    files: list[MonthFile] = field(default_factory=list)
    types_listed: list[str] = field(default_factory=list)  # types with a Parquet folder this month
    types_from_zip: list[str] = field(default_factory=list)  # selected types taken from csv_per_month
    types_missing: list[str] = field(default_factory=list)  # selected types in neither place
    listing_urls: list[str] = field(default_factory=list)  # the index pages read (redacted)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def downloaded(self) -> int:
        return sum(1 for f in self.files if f.downloaded)

    def fileset_sha256(self) -> str:
        """One digest of the month's file set (names and contents): equal across runs that stored the same files."""
        digest = hashlib.sha256()
        for stored in sorted(self.files, key=lambda f: (f.sensor_type, f.name)):
            digest.update(f"{stored.sensor_type}/{stored.name}\0{stored.sha256}\n".encode())
        return digest.hexdigest()


def month_key(month: date) -> str:
    return f"{month:%Y-%m}"


def month_lake_dir(raw_dir: Path, month: date) -> Path:
    return raw_dir / MONTHLY_LAKE / month_key(month)


def parquet_month_url(base_url: str, month: date) -> str:
    return f"{base_url.rstrip('/')}/parquet/{month_key(month)}/"


def zip_month_url(base_url: str, month: date) -> str:
    return f"{base_url.rstrip('/')}/csv_per_month/{month_key(month)}/"


def zip_name(month: date, sensor_type: str) -> str:
    return f"{month_key(month)}_{sensor_type.lower()}.zip"


def _kind_of(name: str) -> str | None:
    if PART_NAME.match(name):
        return PARQUET
    if name.endswith(".zip"):
        return CSV_ZIP
    return None


def lake_month_files(raw_dir: Path, month: date) -> list[MonthFile]:
    """The month's complete files in the lake, every type and kind (temporary and marker files are not listed)."""
    directory = month_lake_dir(raw_dir, month)
    if not directory.is_dir():
        return []
    found = []
    for type_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for path in sorted(type_dir.iterdir()):
            kind = _kind_of(path.name)
            if kind is not None and path.is_file():
                stat_bytes = path.stat().st_size
                found.append(MonthFile(type_dir.name, kind, path.name, path, stat_bytes, sha256_of(path), False))
    return found


def link_names(html: str) -> list[str]:
    """The last path segment of every link of an index page ("sds011/" keeps its slash: it is a folder)."""
    parser = LinkTargets()
    parser.feed(html)
    names = []
    for target in parser.targets:
        path = unquote(target.split("?", 1)[0])
        folder = path.endswith("/")
        segment = path.rstrip("/").rsplit("/", 1)[-1]
        if segment and segment not in (".", ".."):
            names.append(segment + ("/" if folder else ""))
    return names


def _get_index(session: requests.Session, url: str, timeout: tuple[float, float]) -> str | None:
    """The index page at ``url``, or None when the archive answers 404 (no such folder)."""
    safe_url = redact_url(url)
    try:
        response = session.get(url, timeout=timeout)
    except requests.RequestException as error:
        raise FetchError(f"GET {safe_url} failed after retries: {redact_text(str(error))}") from error
    with response:
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
            raise FetchError(f"GET {safe_url} answered HTTP {response.status_code} {response.reason}",
                             permanent=permanent)
        if len(response.content) > LISTING_MAX_BYTES:
            raise ArchiveFetchError(f"GET {safe_url}: index page larger than {LISTING_MAX_BYTES} bytes")
        return response.text


def fetch_month_file(
    session: requests.Session, url: str, target: Path, sensor_type: str, kind: str, timeout: tuple[float, float]
) -> MonthFile:
    """Store one listed file byte for byte (nothing is requested when it is already in the lake)."""
    if target.is_file():
        return MonthFile(sensor_type, kind, target.name, target, target.stat().st_size, sha256_of(target), False)
    safe_url = redact_url(url)
    try:
        response = session.get(url, stream=True, timeout=timeout)
    except requests.RequestException as error:
        raise FetchError(f"GET {safe_url} failed after retries: {redact_text(str(error))}") from error
    with response:
        if response.status_code != 200:
            # A listed file that is gone means the listing changed under us: retry later, do not skip it.
            permanent = 400 <= response.status_code < 500 and response.status_code not in (404, 408, 429)
            raise FetchError(f"GET {safe_url} answered HTTP {response.status_code} {response.reason} for a "
                             "listed file", permanent=permanent)
        content_type = response.headers.get("Content-Type", "").lower()
        chunks = response.iter_content(CHUNK_BYTES)
        try:
            head = _head(chunks, len(MAGIC[kind]))
        except requests.RequestException as error:
            raise FetchError(f"GET {safe_url} broke off while reading: {redact_text(str(error))}") from error
        if "text/html" in content_type or looks_like_html(head):
            raise ArchiveFetchError(
                f"GET {safe_url} answered status 200 with an HTML page instead of {FORMAT_NAMES[kind]} "
                f"(Content-Type {content_type or 'unset'}): the archive is failing; nothing was stored"
            )
        if not head.startswith(MAGIC[kind]):
            raise ArchiveFetchError(
                f"GET {safe_url} is not a {FORMAT_NAMES[kind]} file (starts with {head[:8]!r}, expected "
                f"{MAGIC[kind]!r}); nothing was stored"
            )
        try:
            size, sha = store_atomically(target.parent, target, head, chunks)
        except requests.RequestException as error:
            raise FetchError(f"GET {safe_url} broke off while reading: {redact_text(str(error))}") from error
    return MonthFile(sensor_type, kind, target.name, target, size, sha, True)


def _head(chunks: Iterator[bytes], at_least: int) -> bytes:
    """The first chunks of a body, joined until they hold ``at_least`` bytes (or the body ends)."""
    head = b""
    with contextlib.suppress(StopIteration):
        while len(head) < at_least:
            head += next(chunks)
    return head


def fetch_month(
    base_url: str,
    month: date,
    sensor_types: Collection[str] | None,
    raw_dir: Path,
    *,
    session: requests.Session,
    concurrency: int = 4,
    timeout: tuple[float, float] = (10.0, 60.0),
) -> MonthFetch:
    """Fetch ``month`` of ``sensor_types`` (None: every type the month has) into the lake: per type its Parquet
    parts, else its csv_per_month zip, else it is reported missing. Every file is attempted; when some fail, the
    others stay stored (a re-run fetches only what is missing) and the first failure is raised."""
    month = month.replace(day=1)
    selected = None if sensor_types is None else sorted({t.lower() for t in sensor_types})
    result = MonthFetch(month)
    parquet_url, zips_url = parquet_month_url(base_url, month), zip_month_url(base_url, month)

    parquet_html = _get_index(session, parquet_url, timeout)
    result.listing_urls.append(redact_url(parquet_url))
    folders = [] if parquet_html is None else [n[:-1] for n in link_names(parquet_html) if n.endswith("/")]
    result.types_listed = sorted({name for name in folders if TYPE_FOLDER.match(name)})
    candidates = result.types_listed if selected is None else [t for t in selected if t in result.types_listed]

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="archive-month") as pool:
        part_listings = dict(zip(candidates, pool.map(
            lambda sensor_type: _get_index(session, f"{parquet_url}{quote(sensor_type)}/", timeout), candidates
        ), strict=True))
        result.listing_urls += [redact_url(f"{parquet_url}{quote(t)}/") for t in candidates]
        parts = {
            sensor_type: sorted({n for n in link_names(html) if PART_NAME.match(n)})
            for sensor_type, html in part_listings.items() if html is not None
        }
        parts = {sensor_type: names for sensor_type, names in parts.items() if names}

        # csv_per_month is read only when some type is not covered by Parquet (or every type is wanted).
        zips: dict[str, str] = {}
        if selected is None or any(t not in parts for t in selected):
            zips_html = _get_index(session, zips_url, timeout)
            result.listing_urls.append(redact_url(zips_url))
            if zips_html is None and parquet_html is None:
                raise ArchiveFetchError(
                    f"the archive has no month {month_key(month)} (tried {redact_url(parquet_url)}, "
                    f"{redact_url(zips_url)}): not published yet or not in the archive",
                    permanent=True,
                )
            zip_pattern = re.compile(rf"^{month_key(month)}_(?P<type>[A-Za-z0-9_-]+)\.zip$")
            for name in link_names(zips_html or ""):
                match = zip_pattern.match(name)
                if match:
                    zips[match["type"].lower()] = name

        wanted = selected if selected is not None else sorted(set(result.types_listed) | set(zips))
        jobs: list[tuple[str, str, str, str]] = []  # (type, kind, name, URL)
        for sensor_type in wanted:
            if sensor_type in parts:
                jobs += [(sensor_type, PARQUET, name, f"{parquet_url}{quote(sensor_type)}/{quote(name)}")
                         for name in parts[sensor_type]]
            elif sensor_type in zips:
                result.types_from_zip.append(sensor_type)
                jobs.append((sensor_type, CSV_ZIP, zips[sensor_type], f"{zips_url}{quote(zips[sensor_type])}"))
            else:
                result.types_missing.append(sensor_type)

        directory = month_lake_dir(raw_dir, month)
        futures = [
            pool.submit(fetch_month_file, session, url, directory / sensor_type / name, sensor_type, kind, timeout)
            for sensor_type, kind, name, url in jobs
        ]
        errors: list[BaseException] = []
        for future in futures:
            try:
                result.files.append(future.result())
            except Exception as error:  # collected; the first one is raised below
                errors.append(error)
    if errors:
        raise errors[0]
    return result


FILESET_NAME = "_fileset.json"  # in the month's lake directory: what the last fetch stored, for the merge


class FilesetError(RuntimeError):
    """The month's fetched file set is missing or no longer what was fetched; the message says which."""


def write_fileset(raw_dir: Path, fetch: MonthFetch, selection: dict) -> Path:
    """Record the files the month's fetch stored (and the selection it served), so the merge reads exactly those:
    not a file an earlier fetch left in the lake (a type that moved from its zip to Parquet, a Spark rewrite with
    new part names). Written whole or not at all."""
    directory = month_lake_dir(raw_dir, fetch.month)
    directory.mkdir(parents=True, exist_ok=True)
    content = {
        "month": month_key(fetch.month),
        "files": [
            {"sensor_type": f.sensor_type, "kind": f.kind, "name": f.name, "bytes": f.bytes, "sha256": f.sha256}
            for f in sorted(fetch.files, key=lambda f: (f.sensor_type, f.name))
        ],
        "fileset_sha256": fetch.fileset_sha256(),
        "selection": selection,
    }
    target = directory / FILESET_NAME
    partial = directory / f".{FILESET_NAME}.partial"
    partial.write_text(json.dumps(content, indent=1, sort_keys=True))
    os.replace(partial, target)
    return target


def read_fileset(raw_dir: Path, month: date, *, check_hashes: bool = True) -> tuple[list[MonthFile], dict]:
    """The files the month's last fetch stored, each checked to be in the lake unchanged (its sha256), and the
    selection recorded with them."""
    path = month_lake_dir(raw_dir, month) / FILESET_NAME
    if not path.is_file():
        raise FilesetError(f"{month_key(month)}: no fetched file set at {path}: materialise raw_archive_month first")
    content = json.loads(path.read_text())
    files = []
    for entry in content["files"]:
        file_path = month_lake_dir(raw_dir, month) / entry["sensor_type"] / entry["name"]
        if not file_path.is_file():
            raise FilesetError(f"{month_key(month)}: {file_path} was fetched but is no longer in the lake")
        if check_hashes and sha256_of(file_path) != entry["sha256"]:
            raise FilesetError(f"{month_key(month)}: {file_path} changed since it was fetched (sha256 differs)")
        files.append(MonthFile(entry["sensor_type"], entry["kind"], entry["name"], file_path, entry["bytes"],
                               entry["sha256"], False))
    return files, content["selection"]
