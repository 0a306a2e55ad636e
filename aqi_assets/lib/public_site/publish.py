"""Publish a built site to an S3 bucket (or any S3-compatible store) with boto3.

Each text file is uploaded once, as its gzip copy with `Content-Encoding: gzip` (a bucket cannot negotiate
encodings; every browser accepts gzip). Content-hashed and vendored files get a year-long Cache-Control and
are skipped when the bucket already has them (their content cannot differ); the pointer (`current.json`) and
then `index.html` are uploaded last with a short Cache-Control, so a visitor never gets a pointer naming a file
that is not there yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqi_assets.lib.public_site.build import INDEX, POINTER
from aqi_assets.lib.public_site.files import cache_control, content_type, is_compressible, is_immutable


@dataclass
class PublishResult:
    bucket: str
    prefix: str
    uploaded: list[str] = field(default_factory=list)
    skipped: int = 0

    def as_metadata(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix or "(none)",
            "uploaded": len(self.uploaded),
            "skipped_existing": self.skipped,
        }


def _key(prefix: str, relative: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{relative}" if prefix else relative


def _existing_keys(client: Any, bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=_key(prefix, "")):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def upload_file(client: Any, bucket: str, prefix: str, site_dir: Path, relative: str) -> None:
    path = site_dir / relative
    extra: dict[str, Any] = {"ContentType": content_type(relative), "CacheControl": cache_control(relative)}
    gz = path.with_name(path.name + ".gz")
    if is_compressible(relative) and gz.is_file():
        body = gz.read_bytes()
        extra["ContentEncoding"] = "gzip"
    else:
        body = path.read_bytes()
    client.put_object(Bucket=bucket, Key=_key(prefix, relative), Body=body, **extra)


def publish_site(
    client: Any,
    bucket: str,
    site_dir: Path,
    files: Iterable[str],
    *,
    prefix: str = "",
    concurrency: int = 16,
) -> PublishResult:
    """Upload `files` (relative paths from `BuildResult.files`), then the pointer, then `index.html`."""
    site_dir = Path(site_dir)
    result = PublishResult(bucket, prefix)
    existing = _existing_keys(client, bucket, prefix)
    pending = []
    for relative in dict.fromkeys(files):  # keep order, drop repeats
        if relative in (POINTER, INDEX):
            continue
        if is_immutable(relative) and _key(prefix, relative) in existing:
            result.skipped += 1
            continue
        pending.append(relative)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        # list(): every upload must have succeeded (an exception is raised here) before the pointer goes up.
        list(pool.map(lambda relative: upload_file(client, bucket, prefix, site_dir, relative), pending))
    result.uploaded.extend(pending)
    for relative in (POINTER, INDEX):
        upload_file(client, bucket, prefix, site_dir, relative)
        result.uploaded.append(relative)
    return result
