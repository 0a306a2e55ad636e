"""The archive's layout: day directory URLs, its HTML index pages, and its file names.

A day lives under `/{YYYY-MM-DD}/` (recent years, plain CSV) or `/{YYYY}/{YYYY-MM-DD}/` (older years, moved
and gzipped); both are tried, recent first. The index page is the web server's directory listing: the file
names are the targets of its links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from html.parser import HTMLParser
from urllib.parse import unquote

ARCHIVE_NAME = re.compile(
    r"^(?P<day>\d{4}-\d{2}-\d{2})_(?P<type>[A-Za-z0-9-]+)_sensor_(?P<sensor>\d+)(?P<suffix>\.csv(?:\.gz)?)$"
)


@dataclass(frozen=True)
class ArchiveFile:
    name: str
    day: date
    sensor_type: str  # upper case, e.g. SDS011
    sensor_id: int


def parse_name(name: str) -> ArchiveFile | None:
    """The facts in an archive file name, or None for anything else (indoor files, zips, other links)."""
    match = ARCHIVE_NAME.match(name)
    if not match:
        return None
    try:
        day = date.fromisoformat(match["day"])
    except ValueError:
        return None
    return ArchiveFile(name, day, match["type"].upper(), int(match["sensor"]))


def day_urls(base_url: str, day: date) -> list[str]:
    """The day's directory URLs to try, in order: the recent layout, then the yearly folder."""
    base = base_url.rstrip("/")
    return [f"{base}/{day.isoformat()}/", f"{base}/{day:%Y}/{day.isoformat()}/"]


class LinkTargets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.lower() == "a":
            for name, value in attrs:
                if name.lower() == "href" and value:
                    self.targets.append(value)


def listed_files(html: str, day: date) -> list[ArchiveFile]:
    """The day's archive files linked from a directory index page (other links are ignored)."""
    parser = LinkTargets()
    parser.feed(html)
    files: dict[str, ArchiveFile] = {}
    for target in parser.targets:
        name = unquote(target.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
        parsed = parse_name(name)
        if parsed is not None and parsed.day == day:
            files[parsed.name] = parsed
    return sorted(files.values(), key=lambda f: f.name)


def looks_like_html(head: bytes) -> bool:
    """True when a body's first bytes are an HTML page (an error page served with status 200)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<title"))
