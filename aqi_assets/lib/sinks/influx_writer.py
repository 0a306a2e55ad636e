"""`aqi_readings` -> InfluxDB line protocol, written through the v2 or the v1 HTTP API.

- v2 (`/api/v2/write?org=&bucket=&precision=`, `Authorization: Token …`): InfluxDB 2.x, Timestream for
  InfluxDB, and InfluxDB 3 (which accepts it too). Sent with the maintained `influxdb-client` library.
- v1 (`/write?db=&precision=`): InfluxDB 1.x and the v1-compatibility endpoint of 2.x/3.x. The only v1
  client on PyPI (`influxdb`) is no longer maintained, so this path is a plain urllib3 POST with urllib3's
  `Retry` (writes are idempotent: same series and timestamp, last write wins, so retrying a POST is safe).

A 400/413/422 answer means the body itself is refused (type conflict, bad line, too large): the batch is
split in halves until the refused line is isolated; that line is recorded, the rest is written.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3
from urllib3.util.retry import Retry

from aqi_assets.lib.common.fetch import retry_policy
from aqi_assets.lib.sinks.columns import SINK_COLUMNS, SinkColumns, sink_columns
from aqi_assets.lib.sinks.line_protocol import PRECISIONS, FieldValue, LineProtocolError, format_line
from aqi_assets.lib.sinks.sync_state import (
    ACCEPTED,
    FAILED,
    REJECTED,
    ConnectionFactory,
    RecordOutcome,
    RefusedReading,
    SyncSummary,
    WriteReport,
    finish_sync,
    load_pending_batch,
    reading_key,
)

MEASUREMENT = "air_quality"
# The contract as imported (readers and tests); a sync reads `sink_columns()` when it runs. The tags are the
# Timestream dimensions, the fields its measures, written as the Python type of their column.
TAG_COLUMNS: tuple[str, ...] = SINK_COLUMNS.dimensions
FIELD_TYPES: Mapping[str, type] = SINK_COLUMNS.fields

BODY_REFUSED_STATUSES = frozenset({400, 413, 422})


def reading_to_line(reading: Mapping[str, Any], precision: str = "ms", columns: SinkColumns | None = None) -> str:
    """One point per reading; `columns`: the contract's sink columns, `sink_columns()` unless given."""
    columns = columns or sink_columns()
    tags: dict[str, str | None] = {}
    for column in columns.dimensions:
        value = reading.get(column)
        if isinstance(value, bool):
            tags[column] = "true" if value else "false"
        else:
            tags[column] = None if value is None else str(value)
    fields: dict[str, FieldValue | None] = {
        column: (None if reading.get(column) is None else kind(reading[column]))
        for column, kind in columns.fields.items()
    }
    return format_line(MEASUREMENT, tags, fields, reading[columns.time], precision)


class InfluxWriteError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status

    @property
    def body_refused(self) -> bool:
        return self.status in BODY_REFUSED_STATUSES


class LineSender(Protocol):
    """Writes one newline-joined batch; raises `InfluxWriteError`."""

    def __call__(self, body: str) -> None: ...


def write_retry(total: int = 5) -> Retry:
    return retry_policy(total, backoff_factor=0.5, allowed_methods=None)  # retry POST too: a write is idempotent


class V1Sender:
    """POST `/write?db=&precision=` (InfluxDB 1.x, or v1 compatibility). Credentials go in headers, never
    in the URL, so they cannot leak into logs or error messages."""

    def __init__(
        self,
        url: str,
        database: str,
        precision: str = "ms",
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        retention_policy: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 5,
        pool_size: int = 8,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}")
        self.base_url = url.rstrip("/")
        query = {"db": database, "precision": precision}
        if retention_policy:
            query["rp"] = retention_policy
        self.write_url = f"{self.base_url}/write?{urlencode(query)}"
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        if token:
            self.headers["Authorization"] = f"Token {token}"
        elif username:
            basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {basic}"
        self.database = database
        self.pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=pool_size,
            retries=write_retry(retries),
            timeout=urllib3.Timeout(connect=10.0, read=timeout_s),
        )

    def create_database(self) -> None:
        """`CREATE DATABASE` is idempotent in InfluxDB 1.x; the name is quoted as an identifier."""
        quoted = '"' + self.database.replace("\\", "\\\\").replace('"', '\\"') + '"'
        response = self.pool.request(
            "POST",
            f"{self.base_url}/query",
            fields={"q": f"CREATE DATABASE {quoted}"},
            encode_multipart=False,
            headers={k: v for k, v in self.headers.items() if k == "Authorization"},
        )
        text = response.data[:2000].decode("utf-8", "replace")
        if response.status != 200:
            raise InfluxWriteError(response.status, text[:500])
        # InfluxDB 1.x answers 200 even when it refuses the statement: the error is in the JSON body.
        try:
            errors = [r["error"] for r in json.loads(text).get("results", []) if "error" in r]
        except (ValueError, AttributeError, TypeError):
            errors = []
        if errors:
            raise InfluxWriteError(response.status, f"CREATE DATABASE refused: {'; '.join(errors)}")

    def __call__(self, body: str) -> None:
        try:
            response = self.pool.request("POST", self.write_url, body=body.encode("utf-8"), headers=self.headers)
        except urllib3.exceptions.HTTPError as error:
            raise InfluxWriteError(None, f"{type(error).__name__}: {error}") from error
        if response.status != 204:
            raise InfluxWriteError(response.status, response.data[:500].decode("utf-8", "replace"))

    def close(self) -> None:
        self.pool.clear()  # closes every pooled connection


class V2Sender:
    """`/api/v2/write` through `influxdb-client` (synchronous write API, urllib3 retries)."""

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        precision: str = "ms",
        timeout_s: float = 30.0,
        retries: int = 5,
        pool_size: int = 8,
    ) -> None:
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS

        precisions = {"s": WritePrecision.S, "ms": WritePrecision.MS, "us": WritePrecision.US, "ns": WritePrecision.NS}
        if precision not in precisions:
            raise ValueError(f"precision must be one of {sorted(precisions)}")
        self.client = InfluxDBClient(
            url=url,
            token=token,
            org=org,
            timeout=int(timeout_s * 1000),
            retries=write_retry(retries),
            connection_pool_maxsize=pool_size,
        )
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)
        self.bucket = bucket
        self.org = org
        self.precision = precisions[precision]

    def __call__(self, body: str) -> None:
        from influxdb_client.rest import ApiException

        try:
            self.write_api.write(bucket=self.bucket, org=self.org, record=body, write_precision=self.precision)
        except ApiException as error:
            raise InfluxWriteError(error.status, str(error.body or error.reason or "")[:500]) from error
        except urllib3.exceptions.HTTPError as error:
            raise InfluxWriteError(None, f"{type(error).__name__}: {error}") from error

    def close(self) -> None:
        self.client.close()


class InfluxWriter:
    """Batches lines, several batches in flight, per-line outcomes."""

    def __init__(self, send: LineSender, batch_lines: int = 5000, max_workers: int = 4) -> None:
        if batch_lines < 1:
            raise ValueError("batch_lines must be ≥ 1")
        self.send = send
        self.batch_lines = batch_lines
        self.max_workers = max(1, max_workers)
        self._lock = threading.Lock()
        self._requests = 0
        self._errors: list[str] = []

    def write(self, lines: Sequence[str]) -> WriteReport:
        outcomes: list[RecordOutcome | None] = [None] * len(lines)
        self._requests = 0
        self._errors = []
        started = time.perf_counter()
        batches = [
            list(range(s, min(s + self.batch_lines, len(lines)))) for s in range(0, len(lines), self.batch_lines)
        ]
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="influx-write") as pool:
            list(pool.map(lambda batch: self._send(lines, batch, outcomes), batches))
        return WriteReport(
            outcomes=[o if o is not None else RecordOutcome(FAILED, "not sent") for o in outcomes],
            requests=self._requests,
            seconds=time.perf_counter() - started,
            errors=self._errors[:20],
        )

    def _send(self, lines: Sequence[str], batch: list[int], outcomes: list[RecordOutcome | None]) -> None:
        error: InfluxWriteError | None = None
        try:
            self.send("\n".join(lines[i] for i in batch))
        except InfluxWriteError as caught:
            error = caught
        with self._lock:
            self._requests += 1
            if error is not None:
                self._errors.append(str(error))
        if error is None:
            for index in batch:
                outcomes[index] = RecordOutcome(ACCEPTED)
        elif error.body_refused and len(batch) > 1:
            middle = len(batch) // 2
            self._send(lines, batch[:middle], outcomes)
            self._send(lines, batch[middle:], outcomes)
        else:
            status = REJECTED if error.body_refused else FAILED
            for index in batch:
                outcomes[index] = RecordOutcome(status, str(error))


def sync_to_influxdb(
    open_connection: ConnectionFactory,
    writer: InfluxWriter,
    precision: str = "ms",
    limit: int | None = None,
) -> SyncSummary:
    """Same rules as `sync_to_timestream`: DuckDB is not held during the writes, refusals are recorded in
    `influxdb_rejected`, watermarks advance over finished readings only; a re-send overwrites the same
    point (same series and timestamp) with the same values."""
    columns = sink_columns()  # once per run: the same columns for the scan and every line
    batch = load_pending_batch(open_connection, "influxdb", limit, columns)
    readings = batch.readings
    skipped: list[RefusedReading] = []
    lines: list[str] = []
    positions: list[int] = []
    for position, reading in enumerate(readings):
        try:
            lines.append(reading_to_line(reading, precision, columns))
        except (LineProtocolError, TypeError, ValueError) as error:
            skipped.append(RefusedReading(reading_key(reading), "skipped", f"line protocol: {error}"))
            continue
        positions.append(position)
    report = writer.write(lines)
    return finish_sync(open_connection, "influxdb", batch, skipped, positions, report)
