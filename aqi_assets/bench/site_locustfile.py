"""Locust file of the `site-load` benchmark (run by `aqi_assets.bench.site_load`, configured by environment).

Each arrival is one visit as a browser makes it: index.html, the script, style and Leaflet files, the pointer,
latest.geojson and the history files of three sensors, all asking for gzip. Bodies are read in full and timed
but never decompressed (decoding 5 MB per visit would block Locust's event loop and inflate its own figures), except the
small pointer. A fixed arrival rate is `constant_pacing(P)` with rate × P users; the phases run one after
the other (`SITE_PHASES` = "seconds:arrivals_per_s,...").
"""

from __future__ import annotations

import gzip
import json
import os
import random
import time

from locust import LoadTestShape, constant_pacing, events, task
from locust.contrib.fasthttp import FastHttpUser

PACING_S = float(os.environ.get("SITE_PACING_S", "2"))
PHASES = [(float(d), float(r)) for d, r in (p.split(":") for p in os.environ.get("SITE_PHASES", "60:10").split(","))]
ASSETS = [a for a in os.environ.get("SITE_ASSETS", "").split(",") if a]
SENSOR_IDS = [int(s) for s in os.environ.get("SITE_SENSOR_IDS", "").split(",") if s]
RESULTS = os.environ.get("SITE_RESULTS", "locust-results.json")
GZIP = {"Accept-Encoding": "gzip"}

_started = {"at": None}
_samples: list[tuple[int, str, float, int, str | None]] = []  # (phase, name, ms, bytes, error)
_visits: list[int] = [0] * len(PHASES)


def _phase(at: float) -> int:
    elapsed = at - (_started["at"] or at)
    end = 0.0
    for index, (duration, _) in enumerate(PHASES):
        end += duration
        if elapsed < end:
            return index
    return len(PHASES) - 1


@events.test_start.add_listener
def _on_start(**_kwargs) -> None:
    _started["at"] = time.time()


@events.quitting.add_listener
def _on_quit(**_kwargs) -> None:
    with open(RESULTS, "w") as out:
        json.dump({"samples": _samples, "visits": _visits, "phases": PHASES, "pacing_s": PACING_S}, out)


class Visitor(FastHttpUser):
    wait_time = constant_pacing(PACING_S)
    connection_timeout = 10.0
    network_timeout = 10.0

    def _get(self, path: str, name: str, phase: int) -> bytes:
        started = time.perf_counter()
        body = b""
        error = None
        with self.client.get("/" + path, name=name, headers=GZIP, stream=True, catch_response=True) as response:
            try:
                chunks = []
                while True:
                    chunk = response._response.read(65536) if response._response else b""
                    if not chunk:
                        break
                    chunks.append(chunk)
                body = b"".join(chunks)
                if response.status_code != 200:
                    error = f"HTTP {response.status_code}"
                    response.failure(error)
                else:
                    response.success()
            except Exception as failure:  # any transport error is a failed request
                error = repr(failure)
                response.failure(error)
            elapsed_ms = (time.perf_counter() - started) * 1000
            response.request_meta["response_time"] = elapsed_ms  # the body included
            response.request_meta["response_length"] = len(body)
        _samples.append((phase, name, elapsed_ms, len(body), error))
        return body

    @task
    def visit(self) -> None:
        phase = _phase(time.time())
        _visits[phase] += 1
        self._get("", "index.html", phase)
        for asset in ASSETS:
            self._get(asset, asset.rsplit("/", 1)[-1].split(".")[0] + "." + asset.rsplit(".", 1)[-1], phase)
        raw = self._get("current.json", "current.json", phase)
        pointer = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        self._get(pointer["latest"], "latest.geojson", phase)
        for sensor in random.sample(SENSOR_IDS, min(3, len(SENSOR_IDS))):
            shard = int(sensor) % pointer["history_shards"]  # the file holding the sensor's history
            self._get(f"{pointer['history']}{shard}.json", "history.json", phase)


class Phases(LoadTestShape):
    """`rate × pacing` users per phase, started evenly over one pacing period."""

    def tick(self):
        run_time = self.get_run_time()
        end = 0.0
        for duration, rate in PHASES:
            end += duration
            if run_time < end:
                users = max(1, round(rate * PACING_S))
                return users, max(1.0, users / PACING_S)
        return None
