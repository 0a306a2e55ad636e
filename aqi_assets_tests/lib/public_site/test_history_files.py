"""The sensor-history files of the public site (`data.history_bodies`), against a plain Python oracle on random
seeded values: one entry per hour, PM rounded to what each sensor resolves, whole indices, null for a gap, NaN,
an infinity or a value too large; every sensor in the file of its shard; both ways of formatting numbers."""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_UP, Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from aqi_assets.lib.public_site import data
from aqi_assets.lib.public_site.data import HISTORY_COLUMNS, history_bodies

HOURS = 12
SHARDS = 40  # three groups of SHARDS_PER_GROUP shards, the last one short
HEADER = {"format": data.HISTORY_FORMAT, "start": "2026-11-30T00:00:00Z", "step_s": 3600, "hours": HOURS}


def _half_up(value: float, digits: int, scale: int) -> float | None:
    """DuckDB's round (half away from zero, on the exact binary value), to `digits` decimals; None where the
    page shows a gap (no value, NaN, an infinity, or too large for an integer count of 1/scale units)."""
    if value is None or not math.isfinite(value) or abs(value) * scale >= 2**63:
        return None
    return float(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def _random_history(seed: int) -> tuple[np.ndarray, np.ndarray, pa.Table]:
    rng = np.random.default_rng(seed)
    sensors = np.sort(rng.choice(np.arange(1, 5000), size=150, replace=False)).astype(np.int64)
    digits = rng.choice([0, 1], size=len(sensors)).astype(np.int32)
    rows = [(int(s), slot) for s in sensors[:-3] for slot in range(HOURS) if rng.random() < 0.8]  # 3 without data
    rows += [(int(sensors[0]), -1), (int(sensors[0]), HOURS)]  # outside the window: ignored
    count = len(rows)

    def column(scale: float) -> np.ndarray:
        values = np.round(rng.gamma(2.0, scale, count), 3)
        values[rng.random(count) < 0.05] = np.nan
        return values

    table = pa.table({
        "sensor_id": pa.array([s for s, _ in rows], pa.int64()),
        "slot": pa.array([slot for _, slot in rows], pa.int64()),
        "pm25": column(10.0), "pm10": column(20.0), "us": column(40.0), "uk": column(1.5),
    })
    return sensors, digits, table


def _with(table: pa.Table, name: str, index: int, value: float) -> pa.Table:
    values = table.column(name).to_numpy().copy()
    values[index] = value
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


def _oracle(sensors: np.ndarray, digits: np.ndarray, table: pa.Table) -> dict[str, dict[str, list]]:
    expected = {str(s): {name: [None] * HOURS for name in HISTORY_COLUMNS} for s in sensors.tolist()}
    digit_of = dict(zip(sensors.tolist(), digits.tolist(), strict=True))
    for row in table.to_pylist():
        if not 0 <= row["slot"] < HOURS:
            continue
        lists = expected[str(row["sensor_id"])]
        for name in HISTORY_COLUMNS:
            index = name in ("us", "uk")
            digit = 0 if index else digit_of[row["sensor_id"]]
            lists[name][row["slot"]] = _half_up(row[name], digit, 1 if index else 10)
    return expected


def _files(sensors: np.ndarray, digits: np.ndarray, table: pa.Table) -> dict[int, dict]:
    with duckdb.connect() as connection:
        bodies = dict(history_bodies(connection, sensors, digits, table, HOURS, HEADER, shards=SHARDS))
    return {shard: json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
            for shard, body in bodies.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_sensor_is_in_its_shard_with_the_oracle_s_values(seed: int) -> None:
    sensors, digits, table = _random_history(seed)
    table = _with(table, "pm25", 5, float("inf"))
    table = _with(table, "pm10", 6, -0.04)  # rounds to zero
    table = _with(table, "pm25", 8, 11.45)  # 11.449999…: 11.4, though 11.45 * 10 is exactly 114.5
    table = _with(table, "pm25", 9, 0.25)  # an exact tie: away from zero
    table = _with(table, "us", 7, 1e30)  # too large for an integer: a gap
    files = _files(sensors, digits, table)
    expected = _oracle(sensors, digits, table)

    assert set(files) == {int(s) % SHARDS for s in sensors}, "a file for each shard holding a sensor, no other"
    found = {}
    for shard, content in files.items():
        assert {k: v for k, v in content.items() if k != "sensors"} == {**HEADER, "shards": SHARDS}
        for sensor, lists in content["sensors"].items():
            assert int(sensor) % SHARDS == shard
            found[sensor] = lists
    assert found == expected
    whole = {str(s) for s, d in zip(sensors.tolist(), digits.tolist(), strict=True) if d == 0}
    for sensor in whole:
        assert all(isinstance(v, int) for v in found[sensor]["pm25"] if v is not None), "whole µg/m³ as integers"
    assert all(v is None for v in found[str(sensors[-1])]["pm25"]), "a sensor without data: all gaps"


def test_a_wild_value_is_formatted_like_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """A range too wide for a table of every value in it takes the path that formats only the values present."""
    sensors, digits, table = _random_history(3)
    table = _with(table, "pm10", 3, 12_345_678.9)
    wide = _files(sensors, digits, table)
    assert wide and any(12_345_679 in lists["pm10"] or 12_345_678.9 in lists["pm10"]
                        for content in wide.values() for lists in content["sensors"].values())
    monkeypatch.setattr(data, "TEXT_TABLE_LIMIT", 0)  # every column through the values-present path
    assert _files(sensors, digits, table) == wide
    assert {k: lists for content in wide.values() for k, lists in content["sensors"].items()} == _oracle(
        sensors, digits, table
    )


def test_no_sensor_gives_no_file() -> None:
    empty = pa.table({"sensor_id": pa.array([], pa.int64()), "slot": pa.array([], pa.int64()),
                      **{name: pa.array([], pa.float64()) for name in HISTORY_COLUMNS}})
    assert _files(np.array([], np.int64), np.array([], np.int32), empty) == {}
