"""Resources of the sync targets (placeholder until issue 5 lands)."""

from typing import Any


def sync_resources() -> dict[str, Any]:
    return {}
