"""UTC as DuckDB stores it: TIMESTAMP columns are naive and mean UTC."""

from __future__ import annotations

from datetime import datetime, timezone


def naive_utc(moment: datetime | None = None) -> datetime:
    """``moment`` (default: now) as a naive UTC datetime.

    An aware datetime is converted to UTC first (07:00−05:00 is 12:00 UTC); stripping its zone instead would
    shift it by the offset. A naive datetime is taken to be UTC already.
    """
    if moment is None:
        moment = datetime.now(timezone.utc)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.replace(tzinfo=None)


def aware_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime: a naive one is taken to be UTC (as DuckDB's TIMESTAMP columns are), an
    aware one is converted."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
