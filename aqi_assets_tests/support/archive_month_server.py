"""A local stand-in for the archive's monthly tree, shaped like archive.sensor.community's:

- `/parquet/YYYY-MM/` lists a folder per type; `sds011/` is written with another column order and `bme280/` with
  every number as text and an extra column (the Parquet schema is not documented: readers must read by name and
  cast); each folder holds Spark's part files, `_SUCCESS` and `.crc` links;
- `/csv_per_month/YYYY-MM/` holds a zip per type, PMS5003's included, which has no Parquet folder that month;
- `/YYYY-MM-DD/` holds the same readings as daily per-sensor CSVs (the layout `fetch_day` reads), so a test can
  backfill the same month both ways and compare.
With ``corrupt=True`` the last SDS011 part file is served cut in half (it starts with `PAR1` but has no footer).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
from pytest_httpserver import HTTPServer

from aqi_assets.bench.archive_month_data import (
    month_readings,
    write_day_csvs,
    write_month_zip,
    write_spark_parquet,
)
from aqi_assets_tests.support.archive_server import index_page
from aqi_assets_tests.support.http import local_http_server

FIRST_IDS = {"SDS011": 10_000, "BME280": 20_000, "PMS5003": 30_000}
PARQUET_TYPES = ("SDS011", "BME280")  # PMS5003 has only its csv_per_month zip
SDS011_COLUMN_ORDER = ["timestamp", "sensor_id", "P2", "P1", "lat", "lon", "location", "sensor_type",
                       "durP1", "ratioP1", "durP2", "ratioP2"]
BME280_EXTRA_COLUMNS = {"source_file": "csv_per_day"}
CONTENT_TYPES = {".parquet": "application/octet-stream", ".zip": "application/zip", ".csv": "text/csv"}


@dataclass
class LocalMonthArchive:
    server: HTTPServer
    url: str
    month: date
    days: list[date]
    tables: dict[str, pa.Table]  # type (upper case) → the canonical readings served
    published: dict[str, bytes] = field(default_factory=dict)  # URL path → body as served
    corrupt_path: str | None = None  # the truncated part file's URL path (corrupt=True)

    def file_requests(self) -> list[str]:
        """Paths of the file (not index) requests the server has seen, in order."""
        return [request.path for request, _ in self.server.log if not request.path.endswith("/")]

    def parquet_paths(self, sensor_type: str) -> list[str]:
        """URL paths of a type's published Parquet part files."""
        prefix = f"/parquet/{self.month:%Y-%m}/{sensor_type.lower()}/part-"
        return sorted(path for path in self.published if path.startswith(prefix))

    def zip_path(self, sensor_type: str) -> str:
        return f"/csv_per_month/{self.month:%Y-%m}/{self.month:%Y-%m}_{sensor_type.lower()}.zip"


def serve_folder(server: HTTPServer, folder: str, files: dict[str, bytes], extra_links: list[str],
                  published: dict[str, bytes]) -> None:
    """An index page of ``files`` and ``extra_links`` (listed, not served) and a handler per file."""
    server.expect_request(folder).respond_with_data(
        index_page(folder, sorted([*files, *extra_links])), content_type="text/html"
    )
    for name, body in files.items():
        content_type = CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
        server.expect_request(folder + name).respond_with_data(body, content_type=content_type)
        published[folder + name] = body


@contextlib.contextmanager
def local_month_archive(
    month: date, sensors_per_type: int, days: int, *, corrupt: bool = False, seed: int = 0
) -> Iterator[LocalMonthArchive]:
    """Serve the first ``days`` days of ``month`` for SDS011, BME280 and PMS5003, ``sensors_per_type`` each."""
    month = month.replace(day=1)
    key = f"{month:%Y-%m}"
    tables = {
        sensor_type: month_readings(month, sensors_per_type, days, sensor_type=sensor_type, first_id=first_id,
                                    seed=seed)
        for sensor_type, first_id in FIRST_IDS.items()
    }
    with local_http_server() as server, tempfile.TemporaryDirectory(prefix="aqi-month-archive-") as tmp:
        server.no_handler_status_code = 404
        work = Path(tmp)
        archive = LocalMonthArchive(server, server.url_for("").rstrip("/"), month,
                                    [month + timedelta(days=i) for i in range(days)], tables)

        folders = {
            "SDS011": write_spark_parquet(tables["SDS011"], work / "sds011", column_order=SDS011_COLUMN_ORDER),
            "BME280": write_spark_parquet(tables["BME280"], work / "bme280", numbers_as_strings=True,
                                          extra_columns=BME280_EXTRA_COLUMNS),
        }
        server.expect_request("/parquet/").respond_with_data(index_page("/parquet/", [f"{key}/"]),
                                                             content_type="text/html")
        server.expect_request(f"/parquet/{key}/").respond_with_data(
            index_page(f"/parquet/{key}/", [f"{t.lower()}/" for t in PARQUET_TYPES]), content_type="text/html"
        )
        for sensor_type, parts in folders.items():
            files = {path.name: path.read_bytes() for path in parts}
            if corrupt and sensor_type == "SDS011":
                last = parts[-1].name
                files[last] = files[last][: len(files[last]) // 2]
                archive.corrupt_path = f"/parquet/{key}/sds011/{last}"
            files["_SUCCESS"] = b""
            # Spark's checksum files are listed (a local Hadoop file system writes them) but not served.
            crcs = ["._SUCCESS.crc", *(f".{path.name}.crc" for path in parts)]
            serve_folder(server, f"/parquet/{key}/{sensor_type.lower()}/", files, crcs, archive.published)

        zips = {f"{key}_{t.lower()}.zip": write_month_zip(table, work / f"{key}_{t.lower()}.zip").read_bytes()
                for t, table in tables.items()}
        serve_folder(server, f"/csv_per_month/{key}/", zips, [], archive.published)

        by_day: dict[date, dict[str, bytes]] = {}
        for table in tables.values():
            for day, paths in write_day_csvs(table, work / "days").items():
                by_day.setdefault(day, {}).update({path.name: path.read_bytes() for path in paths})
        for day, files in by_day.items():
            serve_folder(server, f"/{day.isoformat()}/", files, [], archive.published)
        yield archive
