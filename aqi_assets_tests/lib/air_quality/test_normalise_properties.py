"""Property-based: arbitrary (and corrupted) v2-shaped records never break normalisation, and every input
value ends up either in a reading or in `rejected_values`."""

from __future__ import annotations

import gzip
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aqi_assets.lib.air_quality.normalise import merge_snapshot
from aqi_assets.lib.readings.schema import MEASUREMENT_COLUMNS, readings_connection

NOW = datetime(2026, 11, 27, 12, 5, tzinfo=timezone.utc)

value_types = st.sampled_from(
    ["P0", "P1", "P2", "P4", "temperature", "humidity", "pressure", "pressure_at_sealevel", "N05", "noise_LAeq",
     "durP1", "samples", "", "P1 ", "ünïcode"]
) | st.none() | st.text(max_size=8)
raw_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: f"{f}"),
    st.floats(min_value=-10, max_value=3000, allow_nan=False).map(lambda f: f"{f:.2f}"),
    st.floats(min_value=-10, max_value=3000, allow_nan=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["nan", "inf", "-inf", "", "1e400", "NaN", " 12.5 ", "12,5", "null"]),
    st.none(),
    st.text(max_size=20),
    st.just("x" * 5000),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.booleans(),
)
entries = st.one_of(
    st.fixed_dictionaries({"value": raw_values, "value_type": value_types}, optional={"id": st.integers(0, 10**12)}),
    st.integers(),  # not an object at all
    st.none(),
)
timestamps = st.one_of(
    st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2027, 1, 1)).map(
        lambda d: d.strftime("%Y-%m-%d %H:%M:%S")
    ),
    st.sampled_from(["2026-11-27T12:00:00Z", "27.11.2026 12:00", "", "2026-13-45 99:99:99"]),
    st.none(),
    st.integers(),
)
coordinates = st.one_of(st.floats(-200, 200).map(lambda f: f"{f:.4f}"), st.sampled_from(["", "abc"]), st.none())
locations = st.one_of(
    st.fixed_dictionaries(
        {"id": st.one_of(st.integers(0, 10**6), st.text(max_size=3)), "latitude": coordinates,
         "longitude": coordinates, "country": st.one_of(st.sampled_from(["DE", "NL", ""]), st.none())},
        optional={"indoor": st.sampled_from([0, 1, "1", None]), "altitude": coordinates},
    ),
    st.none(),
    st.integers(),
)
sensors = st.one_of(
    st.fixed_dictionaries(
        {"id": st.one_of(st.integers(1, 50), st.text(max_size=3), st.none())},
        optional={"sensor_type": st.fixed_dictionaries({"name": st.sampled_from(["SDS011", "DHT22"])})},
    ),
    st.none(),
    st.text(max_size=3),
)
records = st.one_of(
    st.fixed_dictionaries(
        {"id": st.integers(0, 10**9), "timestamp": timestamps, "sensor": sensors,
         "sensordatavalues": st.one_of(st.lists(entries, max_size=6), st.text(max_size=4), st.none())},
        optional={"location": locations, "sampling_rate": st.none()},
    ),
    st.integers(),
    st.text(max_size=5),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, max_size=25))
def test_every_value_lands_in_a_reading_or_in_quarantine(snapshot: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.json.gz"
        path.write_bytes(gzip.compress(json.dumps(snapshot).encode()))
        with readings_connection(Path(tmp) / "h.duckdb") as connection:
            stats = merge_snapshot(connection, path, "5min", now=NOW)
            assert stats.records == len(snapshot)
            measures = " + ".join(f"({c} IS NOT NULL)::INT" for c in MEASUREMENT_COLUMNS)
            kept = connection.execute(
                f"SELECT coalesce(sum({measures} + coalesce(cardinality(other_values), 0)), 0) FROM aqi_readings"
            ).fetchone()[0]
            rejected = dict(connection.execute("SELECT scope, count(*) FROM rejected_values GROUP BY 1").fetchall())
    values_in = sum(
        len(r["sensordatavalues"])
        for r in snapshot
        if isinstance(r, dict) and isinstance(r.get("sensordatavalues"), list)
    )
    assert kept + rejected.get("value", 0) == values_in
    malformed = sum(
        1 for r in snapshot
        if not isinstance(r, dict)
        or not isinstance(r.get("sensordatavalues"), list | type(None))
        or not isinstance(r.get("location"), dict | type(None))
        or not isinstance(r.get("sensor"), dict | type(None))
    )
    assert rejected.get("record", 0) >= malformed
