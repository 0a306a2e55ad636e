"""Layout of the raw snapshot lake: `raw/<period>/<YYYY>/<MM>/<DD>/<period>_<fetched-at>_<sha12>.json.gz`.

A name carries the period, the fetch time (UTC) and the content hash, so names sort by fetch time and two
fetches of the same content stay distinguishable. Unparseable bodies are renamed with an `.invalid` suffix:
they are kept for inspection and replays, but never taken for a snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from aqi_assets.lib.readings.periods import snapshot_periods

SNAPSHOT_NAME = re.compile(r"^(?P<period>[0-9a-z]+)_(?P<stamp>\d{8}T\d{6}\d{0,6}Z)_(?P<sha>[0-9a-f]{12})\.json\.gz$")
INVALID_SUFFIX = ".invalid"


def _check_period(period: str) -> None:
    # The period becomes part of a path: only the known ones (no "..", no separators).
    if period not in snapshot_periods():
        raise ValueError(f"unknown period {period!r} for a raw snapshot; expected one of {tuple(snapshot_periods())}")


def day_directory(raw_dir: Path, period: str, day: date) -> Path:
    _check_period(period)
    return raw_dir / period / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"


def snapshot_name(period: str, sha256: str, fetched_at: datetime) -> str:
    _check_period(period)
    return f"{period}_{fetched_at:%Y%m%dT%H%M%S%f}Z_{sha256[:12]}.json.gz"


def snapshot_day(name: str) -> date | None:
    match = SNAPSHOT_NAME.match(name)
    if not match:
        return None
    return datetime.strptime(match["stamp"][:8], "%Y%m%d").date()


def list_snapshots(raw_dir: Path, period: str, since: date | None = None) -> list[Path]:
    """Snapshot files of ``period`` in fetch order, from day directories on or after ``since``."""
    _check_period(period)
    base = raw_dir / period
    if not base.exists():
        return []
    days: Iterable[Path] = (p for p in base.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]") if p.is_dir())
    if since is not None:
        days = (d for d in days if date(int(d.parent.parent.name), int(d.parent.name), int(d.name)) >= since)
    files = [f for d in days for f in d.iterdir() if SNAPSHOT_NAME.match(f.name)]
    return sorted(files, key=lambda f: f.name)


def scan_start(latest_merged_name: str | None) -> date | None:
    """Where a scan for new snapshots can start: the day before the newest merged one (clock skew)."""
    if latest_merged_name is None:
        return None
    day = snapshot_day(latest_merged_name)
    return None if day is None else day - timedelta(days=1)


def mark_invalid(path: Path) -> Path:
    target = path.with_name(path.name + INVALID_SUFFIX)
    path.rename(target)
    return target


def pending_snapshots(connection: Any, raw_dir: Path, period: str, *, full_rescan: bool = False) -> list[Path]:
    """Snapshot files of ``period`` not yet in `snapshot_log` (merged or unreadable), in fetch order.

    Only day directories from the day before the newest logged snapshot on are listed, so the cost follows
    the new data, not the size of the lake; ``full_rescan`` lists every day (after restoring old files).
    """
    latest = connection.execute("SELECT max(snapshot) FROM snapshot_log WHERE period = ?", [period]).fetchone()[0]
    since = None if full_rescan else scan_start(latest)
    done = {
        row[0]
        for row in connection.execute(
            "SELECT snapshot FROM snapshot_log WHERE period = ? AND snapshot >= ?",
            [period, "" if since is None else f"{period}_{since:%Y%m%d}"],
        ).fetchall()
    }
    return [path for path in list_snapshots(raw_dir, period, since) if path.name not in done]
