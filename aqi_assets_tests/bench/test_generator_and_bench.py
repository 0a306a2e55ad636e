"""The seeded snapshot generator and the benchmark entry points that later checks rely on."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from aqi_assets.bench import covid as covid_bench
from aqi_assets.lib.air_quality.generator import Quirks, generate_records, generate_snapshot
from aqi_assets_tests.support.samples import sample_bytes, sample_path


def test_same_seed_same_snapshot_other_seed_other_snapshot() -> None:
    assert generate_snapshot(500, seed=7) == generate_snapshot(500, seed=7)
    assert generate_snapshot(500, seed=7) != generate_snapshot(500, seed=8)


def test_generated_snapshots_carry_the_real_world_quirks() -> None:
    records = generate_records(5000, seed=1)
    assert len(records) == 5000
    values = [entry for record in records for entry in record["sensordatavalues"]]
    raw = [entry["value"] for entry in values]
    assert "1999.90" in raw and "999.90" in raw  # failure sentinels
    assert "nan" in raw and "" in raw  # non-numeric values
    assert any(isinstance(v, str) and v.startswith("-") for v in raw)  # negative values
    sealevel = [e for e in values if e["value_type"] == "pressure_at_sealevel"]
    assert sealevel and all("id" not in e and isinstance(e["value"], float) for e in sealevel)
    assert any(not r["sensordatavalues"] for r in records)  # empty sensordatavalues
    assert any("indoor" not in r["location"] for r in records) and any("indoor" in r["location"] for r in records)
    assert any(r["location"]["latitude"] == "" for r in records)
    assert any(e["value_type"] == "N05" for e in values)  # a value type without a column
    keys = [(r["sensor"]["id"], r["timestamp"]) for r in records]
    assert len(set(keys)) < len(keys)  # duplicate (sensor, timestamp) records
    stations = {}
    for record in records:
        stations.setdefault(record["location"]["id"], set()).add(record["sensor"]["sensor_type"]["name"])
    assert any({"SDS011", "DHT22"} <= names or {"SDS011", "BME280"} <= names for names in stations.values())


def test_clean_quirks_give_clean_records() -> None:
    records = generate_records(2000, seed=2, quirks=Quirks.clean())
    pm = [float(e["value"]) for r in records for e in r["sensordatavalues"] if e["value_type"] in ("P1", "P2")]
    assert pm and all(0 <= v < 900 for v in pm)  # no sentinel, no negative, no non-numeric (float() would fail)
    assert len({(r["sensor"]["id"], r["timestamp"]) for r in records}) == len(records)


def run_bench(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "aqi_assets.bench", *args], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(out.stdout)


def test_core_bench_on_a_generated_snapshot() -> None:
    result = run_bench("core", "--records", "2000", "--repeat", "1")
    assert result["records"] == 2000 and 1900 < result["rows"] <= 2000
    assert result["seconds"] > 0 and result["peak_rss_mb"] > 0 and result["indices_seconds"] > 0


def test_core_bench_on_a_given_snapshot_file(tmp_path: Path, real_snapshot_body: bytes) -> None:
    snapshot = tmp_path / "data.json"
    snapshot.write_bytes(real_snapshot_body)
    result = run_bench("core", "--snapshot", str(snapshot), "--repeat", "1")
    assert (result["records"], result["rows"]) == (243, 243)


def test_covid_bench_reads_the_repository_samples_by_default() -> None:
    parser = argparse.ArgumentParser()
    covid_bench.add_arguments(parser)  # in this process: the figures, not the start-up, are what is tested
    result = covid_bench.run(parser.parse_args(["--repeat", "1", "--n-init", "1"]))
    assert result["csv"].endswith("aqi_assets_tests/data/covid19/time_series_covid19_confirmed_global.csv.gz")
    assert (result["csv_rows"], result["days"]) == (289, 1143)  # 1/22/20 … 3/9/23
    assert result["rows"]["q1"] == 7839  # the README's figure for the final JHU file
    assert result["seconds"]["total"] > 0


def test_covid_bench_takes_the_csv_plain_or_gzip_compressed(tmp_path: Path) -> None:
    plain = tmp_path / "confirmed.csv"
    plain.write_bytes(sample_bytes("covid19/time_series_covid19_confirmed_global.csv.gz"))
    assert covid_bench.read_csv(plain) == plain.read_bytes()
    compressed = sample_path("covid19/time_series_covid19_confirmed_global.csv.gz")
    assert covid_bench.read_csv(compressed) == plain.read_bytes()
