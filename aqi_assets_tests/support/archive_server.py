"""A local stand-in for archive.sensor.community: directory index pages like the real server's, the two real
archive CSVs of the test data (moved to other days by rewriting their dates), generated files of other sensor
types, an older day in the yearly folder as `.csv.gz`, a listed file that answers 404, and a listed file that
answers an HTML error page with status 200."""

from __future__ import annotations

import contextlib
import gzip
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pytest_httpserver import HTTPServer

from aqi_assets_tests.support.http import local_http_server
from aqi_assets_tests.support.samples import sample_bytes

REAL_DAY = date(2025, 10, 15)
REAL_SDS011 = "sensor-community/archive_2025-10-15_sds011_sensor_82312.csv"
REAL_BME280 = "sensor-community/archive_2025-10-15_bme280_sensor_82313.csv"
SDS011_ID, BME280_ID = 82312, 82313
SPS30_ID, PMS_ID, BME280_GENERATED_ID, DHT22_ID = 90001, 90002, 90003, 90004
MISSING_ID = 90005  # listed in the index, answers 404
HTML_ERROR_ID = 90006  # listed in the index, answers an HTML page with status 200
ALL_GOOD_IDS = (SDS011_ID, BME280_ID, SPS30_ID, PMS_ID, BME280_GENERATED_ID, DHT22_ID)

HEADERS = {
    "SPS30": "sensor_id;sensor_type;location;lat;lon;timestamp;P1;P4;P2;P0;N10;N4;N25;N1;N05;TS",
    "PMS5003": "sensor_id;sensor_type;location;lat;lon;timestamp;P1;P2;P0",
    "BME280": "sensor_id;sensor_type;location;lat;lon;timestamp;pressure;altitude;pressure_sealevel;temperature;"
    "humidity",
    "DHT22": "sensor_id;sensor_type;location;lat;lon;timestamp;temperature;humidity",
}
HTML_ERROR_PAGE = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>upstream error</body></html>"


def generated_csv(sensor_type: str, sensor_id: int, day: date, rows: int = 576, seed: int = 0) -> bytes:
    """A file of ``sensor_type`` in the archive's shape (CRLF lines): ``rows`` measurements spread over the day, by
    default one every 150 s like a real sensor's (so every hour is a valid hour of the official indices)."""
    rng = random.Random(f"{sensor_type}-{sensor_id}-{day}-{seed}")
    lines = [HEADERS[sensor_type]]
    start = datetime.combine(day, datetime.min.time())
    for index in range(rows):
        moment = start + timedelta(seconds=86_400 * index // rows + rng.randint(0, 59))
        base = f"{sensor_id};{sensor_type};{sensor_id + 1000};50.{sensor_id % 1000:03d};8.{sensor_id % 997:03d};" \
               f"{moment:%Y-%m-%dT%H:%M:%S}"
        if sensor_type == "SPS30":
            pm = [round(rng.uniform(1, 40), 2) for _ in range(4)]
            values = [pm[3], pm[2], pm[1], pm[0], *(round(rng.uniform(1, 60), 2) for _ in range(5)), 0.6]
        elif sensor_type == "PMS5003":
            values = [round(rng.uniform(1, 50), 1), round(rng.uniform(1, 30), 1), round(rng.uniform(1, 20), 1)]
        elif sensor_type == "BME280":
            values = [round(rng.uniform(98_000, 102_000), 2), "", "", round(rng.uniform(-5, 25), 2),
                      round(rng.uniform(30, 99), 2)]
        else:
            values = [round(rng.uniform(-5, 25), 1), round(rng.uniform(30, 99), 1)]
        lines.append(base + ";" + ";".join(str(v) for v in values))
    return ("\r\n".join(lines) + "\r\n").encode()


def real_csv(relative: str, day: date) -> bytes:
    """A real archive file with its dates moved to ``day`` (measurement times unchanged)."""
    return sample_bytes(relative).replace(REAL_DAY.isoformat().encode(), day.isoformat().encode())


def day_files(day: date) -> dict[str, bytes]:
    """The good files of a recent day (the two real ones and one generated file of each other type)."""
    stem = day.isoformat()
    return {
        f"{stem}_sds011_sensor_{SDS011_ID}.csv": real_csv(REAL_SDS011, day),
        f"{stem}_bme280_sensor_{BME280_ID}.csv": real_csv(REAL_BME280, day),
        f"{stem}_sps30_sensor_{SPS30_ID}.csv": generated_csv("SPS30", SPS30_ID, day),
        f"{stem}_pms5003_sensor_{PMS_ID}.csv": generated_csv("PMS5003", PMS_ID, day),
        f"{stem}_bme280_sensor_{BME280_GENERATED_ID}.csv": generated_csv("BME280", BME280_GENERATED_ID, day),
        f"{stem}_dht22_sensor_{DHT22_ID}.csv": generated_csv("DHT22", DHT22_ID, day),
    }


def index_page(path: str, names: list[str]) -> bytes:
    """A directory listing in the shape of the archive server's (nginx autoindex)."""
    rows = "\n".join(
        f'<a href="{name}">{name}</a>{" " * max(1, 52 - len(name))}16-Oct-2025 01:35{" " * 8}{1000 + i}'
        for i, name in enumerate(names)
    )
    return (
        f"<html>\r\n<head><title>Index of {path}</title></head>\r\n<body>\r\n<h1>Index of {path}</h1><hr><pre>"
        f'<a href="../">../</a>\r\n{rows}\r\n</pre><hr></body>\r\n</html>\r\n'
    ).encode()


@dataclass
class LocalArchive:
    server: HTTPServer
    url: str
    days: list[date]
    year_day: date
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # day → name → body as published

    def file_requests(self) -> list[str]:
        """Paths of the file (not index) requests the server has seen."""
        return [request.path for request, _ in self.server.log if not request.path.endswith("/")]


@contextlib.contextmanager
def local_archive(days: list[date], year_day: date = date(2017, 12, 31)) -> Iterator[LocalArchive]:
    """Serve ``days`` in the recent layout and ``year_day`` in the yearly, gzipped layout."""
    with local_http_server() as server:
        server.no_handler_status_code = 404
        archive = LocalArchive(server, server.url_for("").rstrip("/"), days, year_day)
        for day in days:
            files = day_files(day)
            archive.files[day.isoformat()] = files
            listed = [*files, f"{day}_sds011_sensor_{MISSING_ID}.csv", f"{day}_sds011_sensor_{HTML_ERROR_ID}.csv"]
            server.expect_request(f"/{day}/").respond_with_data(
                index_page(f"/{day}/", sorted(listed)), content_type="text/html"
            )
            for name, body in files.items():
                server.expect_request(f"/{day}/{name}").respond_with_data(body, content_type="text/csv")
            server.expect_request(f"/{day}/{day}_sds011_sensor_{HTML_ERROR_ID}.csv").respond_with_data(
                HTML_ERROR_PAGE, status=200, content_type="text/html"
            )
        old = {
            f"{year_day}_sds011_sensor_{SDS011_ID}.csv.gz": gzip.compress(real_csv(REAL_SDS011, year_day)),
            f"{year_day}_dht22_sensor_{DHT22_ID}.csv.gz": gzip.compress(generated_csv("DHT22", DHT22_ID, year_day)),
        }
        archive.files[year_day.isoformat()] = old
        folder = f"/{year_day:%Y}/{year_day}/"
        server.expect_request(folder).respond_with_data(index_page(folder, sorted(old)), content_type="text/html")
        for name, body in old.items():
            server.expect_request(folder + name).respond_with_data(body, content_type="application/gzip")
        yield archive
