"""Shared helpers of the COVID-19 tests: the real JHU CSSE CSV and Esri zip from ../shared/data/."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CSV_PATH = SHARED_DATA / "time_series_covid19_confirmed_global.csv"
CONTINENTS_PATH = SHARED_DATA / "World_Continents.zip"


def shared_file(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared test data missing: {path}")
    return path


@lru_cache(maxsize=1)
def _csv_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def csv_bytes() -> bytes:
    return _csv_bytes(str(shared_file(CSV_PATH)))


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
