"""Where the tests find the repository and its real samples (aqi_assets_tests/data, see its README)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEST_DATA = PROJECT_ROOT / "aqi_assets_tests" / "data"
FRAGMENT = "sensor-community/v1-data-json_2019-04-16T142252Z_fragment_243-records.jsonfrag.gz"


def sample_path(relative: str) -> Path:
    """A file of the test data; a missing one is an error (the repository ships every sample)."""
    path = TEST_DATA / relative
    if not path.is_file():
        raise FileNotFoundError(f"test sample missing from the repository: {path}")
    return path


def sample_bytes(relative: str) -> bytes:
    """A sample's bytes as published (gzip-compressed samples are decompressed)."""
    data = sample_path(relative).read_bytes()
    return gzip.decompress(data) if relative.endswith(".gz") else data


def fragment_records() -> list[dict]:
    """The 243 real records (the fragment has no enclosing brackets and ends every line with a comma)."""
    text = sample_bytes(FRAGMENT).decode()
    return json.loads("[" + text.rstrip().rstrip(",") + "]")
