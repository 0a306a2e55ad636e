"""Shared helpers of the COVID-19 tests: the real JHU CSSE CSV and Esri zip of aqi_assets_tests/data."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from aqi_assets_tests.support.samples import sample_bytes, sample_path

CSV_SAMPLE = "covid19/time_series_covid19_confirmed_global.csv.gz"
CONTINENTS_PATH: Path = sample_path("covid19/World_Continents.zip")


@lru_cache(maxsize=1)
def csv_bytes() -> bytes:
    return sample_bytes(CSV_SAMPLE)


def truncated_csv(data: bytes) -> bytes:
    """The file cut off in the middle of a data row, as an interrupted download leaves it."""
    return data[: len(data) // 2]


def renamed_column_csv(data: bytes) -> bytes:
    return data.replace(b"Country/Region", b"Country_Region", 1)


def non_numeric_cell_csv(data: bytes) -> bytes:
    """Line 3 (the second data row) gets "n/a" instead of its tenth count."""
    lines = data.split(b"\n")
    fields = lines[2].split(b",")
    fields[4 + 9] = b"n/a"
    lines[2] = b",".join(fields)
    return b"\n".join(lines)
