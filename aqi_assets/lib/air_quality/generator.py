"""Seeded generator of v2-shaped Sensor.Community snapshots with the real-world quirks.

Used by tests and benchmarks (no full real snapshot is available offline). Stations pair a PM sensor
(SDS011/SPS30/PMS) with a climate sensor (DHT22/BME280) at the same `location.id`, as in real data.
Quirk rates are parameters so a test can ask for a clean or a dirty snapshot.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

COUNTRIES = ("DE", "NL", "BE", "FR", "PL", "BG", "IT", "AT", "CH", "CZ", "GB", "ES", "SE", "UA", "HU", "RO")
PM_TYPES = ((14, "SDS011", "Nova Fitness", "1"), (23, "SPS30", "Sensirion", "1"), (20, "PMS7003", "Plantower", "1"))
CLIMATE_TYPES = ((9, "DHT22", "various", "7"), (17, "BME280", "Bosch", "11"))


@dataclass(frozen=True)
class Quirks:
    """Probabilities per record (or per value) of each real-world quirk."""

    sentinel: float = 0.004  # 999.9 / 1999.9 failure values
    negative: float = 0.002
    non_numeric: float = 0.003  # "nan" or ""
    empty_values: float = 0.003  # empty sensordatavalues
    duplicate: float = 0.004  # the same (sensor, timestamp) twice
    empty_coordinates: float = 0.01
    missing_indoor_keys: float = 0.3
    unknown_type: float = 0.05
    numeric_values: float = 0.0  # values as JSON numbers (the 1h/24h files)

    @classmethod
    def clean(cls) -> Quirks:
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0)


def _value(rng: random.Random, value: float, as_number: bool) -> float | str:
    return round(value, 2) if as_number else f"{value:.2f}"


def generate_records(
    n_records: int,
    *,
    seed: int = 0,
    at: datetime | None = None,
    quirks: Quirks | None = None,
    first_sensor_id: int = 10_000,
) -> list[dict[str, Any]]:
    """`n_records` v2 records: half PM sensors, half climate sensors, paired per station."""
    rng = random.Random(seed)
    quirks = quirks or Quirks()
    at = at or datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)
    records: list[dict[str, Any]] = []
    measurement_id = 1_000_000 * (seed + 1)
    station = 0
    while len(records) < n_records:
        station += 1
        location_id = 50_000 + station
        country = COUNTRIES[station % len(COUNTRIES)]
        lat = f"{rng.uniform(36, 60):.3f}"
        lon = f"{rng.uniform(-8, 30):.3f}"
        location: dict[str, Any] = {
            "id": location_id,
            "latitude": lat,
            "longitude": lon,
            "altitude": f"{rng.uniform(0, 900):.1f}",
            "country": country,
        }
        if rng.random() < quirks.empty_coordinates:
            location["latitude"] = location["longitude"] = location["altitude"] = ""
        if rng.random() >= quirks.missing_indoor_keys:
            location["exact_location"] = int(rng.random() < 0.2)
            location["indoor"] = int(rng.random() < 0.03)
        for kind in ("pm", "climate"):
            if len(records) >= n_records:
                break
            sensor_id = first_sensor_id + 2 * station + (kind == "climate")
            timestamp = at - timedelta(seconds=rng.randint(0, 290))
            as_number = rng.random() < quirks.numeric_values
            if kind == "pm":
                type_id, name, maker, pin = rng.choice(PM_TYPES)
                pm25 = rng.lognormvariate(2.2, 0.8)
                pm10 = pm25 * rng.uniform(1.05, 2.5)
                values = [("P1", pm10), ("P2", pm25)]
                if name != "SDS011":
                    values += [("P0", pm25 * 0.7), ("P4", pm25 * 1.1)]
            else:
                type_id, name, maker, pin = rng.choice(CLIMATE_TYPES)
                humidity = 99.9 if rng.random() < 0.03 else rng.uniform(20, 98)
                values = [("temperature", rng.uniform(-10, 30)), ("humidity", humidity)]
                if name == "BME280":
                    values.append(("pressure", rng.uniform(95_000, 103_000)))
            entries: list[dict[str, Any]] = []
            for value_type, value in values:
                measurement_id += 1
                raw: float | str = _value(rng, value, as_number)
                roll = rng.random()
                if value_type in ("P1", "P2") and roll < quirks.sentinel:
                    raw = "1999.90" if value_type == "P1" else "999.90"
                elif roll < quirks.sentinel + quirks.negative:
                    raw = _value(rng, -abs(value) - 0.1, as_number)
                elif roll < quirks.sentinel + quirks.negative + quirks.non_numeric:
                    raw = rng.choice(("nan", ""))
                entries.append({"id": measurement_id, "value": raw, "value_type": value_type})
            if kind == "climate" and name == "BME280":
                # The real API sends this one as a JSON number without an id.
                entries.append({"value": round(rng.uniform(100_000, 103_500), 2), "value_type": "pressure_at_sealevel"})
            if rng.random() < quirks.unknown_type:
                measurement_id += 1
                entries.append({"id": measurement_id, "value": f"{rng.uniform(0, 50):.2f}", "value_type": "N05"})
            if rng.random() < quirks.empty_values:
                entries = []
            measurement_id += 1
            record = {
                "id": measurement_id,
                "sampling_rate": None,
                "timestamp": timestamp.strftime("%Y-%m-%d %H:%M:%S"),
                "location": location,
                "sensor": {
                    "id": sensor_id,
                    "pin": pin,
                    "sensor_type": {"id": type_id, "name": name, "manufacturer": maker},
                },
                "sensordatavalues": entries,
            }
            records.append(record)
            if rng.random() < quirks.duplicate and len(records) < n_records:
                twin = json.loads(json.dumps(record))
                twin["id"] = measurement_id + 1  # a later measurement of the same second
                measurement_id += 1
                for entry in twin["sensordatavalues"]:
                    if isinstance(entry.get("value"), str) and entry["value"] not in ("", "nan"):
                        entry["value"] = f"{float(entry['value']) * 1.01:.2f}"
                records.append(twin)
    return records


def generate_snapshot(n_records: int, **kwargs: Any) -> bytes:
    """A snapshot body (a JSON array) as the server would send it."""
    return json.dumps(generate_records(n_records, **kwargs), separators=(",", ":")).encode()
