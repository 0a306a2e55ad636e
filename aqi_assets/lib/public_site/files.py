"""How each file of the site is named, typed, cached and written.

One set of rules for the local directory, nginx and S3: a file whose name carries a content hash (or lives
under a versioned vendor directory) never changes, so it is cached for a year; the pointer files
(`index.html`, `current.json`) are cached briefly. Text files get a gzip copy next to them (`X.gz`), which nginx
serves with `gzip_static` and the S3 publisher uploads as `X` with `Content-Encoding: gzip`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
from pathlib import Path

HASH_CHARS = 12
# `name.<hash>.ext`, `name-<hash>/...` and everything under vendor/<package>-<version>/.
IMMUTABLE_PATTERN = re.compile(rf"(^|/)[^/]*[.-][0-9a-f]{{{HASH_CHARS}}}(\.[^/]+$|/)|^vendor/[^/]+-\d[^/]*/")
CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_POINTER = "public, max-age=60"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
}
COMPRESSIBLE = {".html", ".js", ".css", ".json", ".geojson", ".svg", ".md"}
GZIP_LEVEL = 9
FAST_GZIP_LEVEL = 3
FILE_MODE = 0o644  # nginx workers run as another user: the files must be world-readable
DIR_MODE = 0o755


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def is_immutable(relative_path: str) -> bool:
    return bool(IMMUTABLE_PATTERN.search(relative_path))


def cache_control(relative_path: str) -> str:
    return CACHE_IMMUTABLE if is_immutable(relative_path) else CACHE_POINTER


def content_type(relative_path: str) -> str:
    return CONTENT_TYPES.get(Path(relative_path).suffix.lower(), "text/plain; charset=utf-8")


def is_compressible(relative_path: str) -> bool:
    return Path(relative_path).suffix.lower() in COMPRESSIBLE


def gzip_bytes(data: bytes) -> bytes:
    # mtime=0: the same content always gives the same bytes (stable ETags, no needless uploads).
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def make_dirs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(DIR_MODE)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename over `path` (readers see old or new)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_with_gzip(path: Path, data: bytes) -> int:
    """`path` and, for text, `path.gz` (gzip first, so a server never finds a plain file without its copy
    newer than it); returns the gzip size (or the plain size for binary files)."""
    size = len(data)
    if is_compressible(path.name):
        compressed = gzip_bytes(data)
        write_atomic(path.with_name(path.name + ".gz"), compressed)
        size = len(compressed)
    write_atomic(path, data)
    return size


def write_gzip_only_fast(path: Path, data: bytes) -> None:
    """`path.gz` alone, for the hourly sensor histories (46 MB of JSON for 20,000 sensors): inside a directory
    nobody can see yet (renamed into place whole), so no temp-file dance; a faster gzip level (3 is 16 % larger
    than 6 and three times as fast). nginx serves it decompressed to a client without gzip (`gunzip on`), the
    S3 publisher uploads the `.gz` copy of every text file anyway."""
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(data, compresslevel=FAST_GZIP_LEVEL, mtime=0))
