"""Resources of the COVID-19 group (placeholder until issue 6 lands)."""

from typing import Any


def covid_resources(duckdb_path: Any) -> dict[str, Any]:
    return {}
