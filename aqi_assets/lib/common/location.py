"""Where a tier lives: a local directory or `s3://bucket/prefix`, opened as a pyarrow filesystem.

DuckDB 2.0's `httpfs` extension cannot be installed on every machine (it is downloaded at run time), so S3
goes through pyarrow's own S3 filesystem (the AWS SDK's credential chain: AWS_ACCESS_KEY_ID, profiles,
instance roles) and DuckDB reads the Arrow datasets built on it. An endpoint URL points it at any
S3-compatible store (MinIO, Ceph, a local moto server).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs


class LocationError(ValueError):
    """A tier URI that cannot be used (unknown scheme, no bucket)."""


@dataclass(frozen=True)
class TierLocation:
    """A directory of a filesystem: `root` is the path inside `filesystem` (no trailing slash)."""

    filesystem: pafs.FileSystem
    root: str
    uri: str  # what users and catalogs see: an absolute local path or s3://bucket/prefix

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts)) if parts else self.root

    def uri_of(self, *parts: str) -> str:
        return "/".join((self.uri.rstrip("/"), *parts)) if parts else self.uri

    def exists(self, path: str) -> bool:
        return self.filesystem.get_file_info(path).type != pafs.FileType.NotFound

    def files_under(self, path: str) -> list[pafs.FileInfo]:
        if self.filesystem.get_file_info(path).type != pafs.FileType.Directory:
            return []
        selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
        return [info for info in self.filesystem.get_file_info(selector) if info.type == pafs.FileType.File]


def open_location(uri: str, *, endpoint_url: str = "", region: str = "") -> TierLocation:
    """`uri` as a `TierLocation`: a path (relative to the working directory) or `s3://bucket[/prefix]`."""
    if not uri:
        raise LocationError("empty tier URI")
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        root = Path(parsed.path if parsed.scheme == "file" else uri).resolve()
        root.mkdir(parents=True, exist_ok=True)
        return TierLocation(pafs.LocalFileSystem(), root.as_posix(), root.as_posix())
    if parsed.scheme not in ("s3", "s3a"):
        raise LocationError(f"unsupported tier URI {uri!r}: use a local path or s3://bucket/prefix")
    if not parsed.netloc:
        raise LocationError(f"tier URI {uri!r} names no bucket")
    options: dict[str, object] = {"region": region or "us-east-1"}
    if endpoint_url:
        endpoint = urlparse(endpoint_url)
        options["endpoint_override"] = endpoint.netloc or endpoint.path
        options["scheme"] = endpoint.scheme or "https"
    prefix = parsed.path.strip("/")
    root = f"{parsed.netloc}/{prefix}" if prefix else parsed.netloc
    return TierLocation(pafs.S3FileSystem(**options), root, f"s3://{root}")
