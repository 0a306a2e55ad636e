"""Concurrent `WriteRecords` with per-record outcomes.

- ≤ 100 records per call (the service limit), batches grouped by `period` so it rides in `CommonAttributes`.
- Several calls in flight on a thread pool (boto3 clients are thread-safe; sessions are not).
- Throttling and 5xx are retried with backoff by botocore's own retry handler (configured on the client,
  see `timestream_client_config`), not here.
- `RejectedRecordsException`: the records it names are reported rejected with `Reason` and
  `ExistingVersion`; the other records of that call were ingested (that is the service's contract).
- `ValidationException` on a multi-record call: the batch is split in halves until the bad record is
  isolated, so one malformed record cannot hold back the 99 others (or the watermark) forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aqi_assets.lib.sinks.columns import sink_columns
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
from aqi_assets.lib.sinks.timestream_records import (
    MAX_RECORDS_PER_WRITE,
    RecordError,
    TableWindow,
    build_record,
    classify_time,
    factor_common_attributes,
)


def timestream_client_config(max_attempts: int = 10, max_pool_connections: int = 50) -> Config:
    """AWS's recommended writer settings: generous retries (throttling means 'keep going, the service is
    scaling'), a pool large enough for the thread pool, and a read timeout for slow ingestion."""
    return Config(
        read_timeout=20,
        max_pool_connections=max_pool_connections,
        retries={"max_attempts": max_attempts, "mode": "standard"},
    )


def _period_of(record: dict[str, Any]) -> str:
    for dimension in record.get("Dimensions", []):
        if dimension["Name"] == "period":
            return dimension["Value"]
    return ""


def _retry_attempts(metadata: dict[str, Any] | None) -> int:
    return int((metadata or {}).get("RetryAttempts", 0) or 0)


class TimestreamWriter:
    def __init__(
        self,
        client: Any,
        database: str,
        table: str,
        max_workers: int = 8,
        batch_size: int = MAX_RECORDS_PER_WRITE,
    ) -> None:
        if not 1 <= batch_size <= MAX_RECORDS_PER_WRITE:
            raise ValueError(f"batch_size must be 1..{MAX_RECORDS_PER_WRITE}, got {batch_size}")
        self.client = client
        self.database = database
        self.table = table
        self.max_workers = max(1, max_workers)
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._requests = 0
        self._retries = 0
        self._errors: list[str] = []

    def batches(self, records: Sequence[dict[str, Any]]) -> list[list[int]]:
        """Indices of `records`, grouped by period and cut into chunks of ≤ batch_size."""
        by_period: dict[str, list[int]] = {}
        for index, record in enumerate(records):
            by_period.setdefault(_period_of(record), []).append(index)
        return [
            indices[start : start + self.batch_size]
            for indices in by_period.values()
            for start in range(0, len(indices), self.batch_size)
        ]

    def write(self, records: Sequence[dict[str, Any]]) -> WriteReport:
        outcomes: list[RecordOutcome | None] = [None] * len(records)
        started = time.perf_counter()
        self._requests = self._retries = 0
        self._errors = []
        batches = self.batches(records)
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="timestream-write") as pool:
            # list(): re-raise anything unexpected from a worker here rather than lose it.
            list(pool.map(lambda batch: self._send(records, batch, outcomes), batches))
        final = [o if o is not None else RecordOutcome(FAILED, "not sent") for o in outcomes]
        return WriteReport(
            outcomes=final,
            requests=self._requests,
            retries=self._retries,
            seconds=time.perf_counter() - started,
            errors=self._errors[:20],
        )

    def _note(self, retries: int, error: str | None = None) -> None:
        with self._lock:
            self._requests += 1
            self._retries += retries
            if error is not None:
                self._errors.append(error)

    def _send(self, records: Sequence[dict[str, Any]], batch: list[int], outcomes: list[RecordOutcome | None]) -> None:
        common, slim = factor_common_attributes([records[i] for i in batch])
        request: dict[str, Any] = {"DatabaseName": self.database, "TableName": self.table, "Records": slim}
        if common:
            request["CommonAttributes"] = common
        try:
            response = self.client.write_records(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            self._note(_retry_attempts(error.response.get("ResponseMetadata")), f"{code}: {message}")
            if code == "RejectedRecordsException":
                rejected = {int(item["RecordIndex"]): item for item in error.response.get("RejectedRecords", []) or []}
                for position, index in enumerate(batch):
                    item = rejected.get(position)
                    if item is None:
                        outcomes[index] = RecordOutcome(ACCEPTED)
                    else:
                        existing = item.get("ExistingVersion")
                        outcomes[index] = RecordOutcome(
                            REJECTED,
                            str(item.get("Reason") or "rejected"),
                            int(existing) if existing is not None else None,
                        )
                return
            if code == "ValidationException" and len(batch) > 1:
                middle = len(batch) // 2
                self._send(records, batch[:middle], outcomes)
                self._send(records, batch[middle:], outcomes)
                return
            status = REJECTED if code == "ValidationException" else FAILED
            for index in batch:
                outcomes[index] = RecordOutcome(status, f"{code}: {message}")
            return
        except BotoCoreError as error:  # connection refused, timeouts after retries, ...
            self._note(0, f"{type(error).__name__}: {error}")
            for index in batch:
                outcomes[index] = RecordOutcome(FAILED, f"{type(error).__name__}: {error}")
            return
        self._note(_retry_attempts(response.get("ResponseMetadata")))
        for index in batch:
            outcomes[index] = RecordOutcome(ACCEPTED)


def sync_to_timestream(
    open_connection: ConnectionFactory,
    writer: TimestreamWriter,
    window: TableWindow,
    now: datetime | None = None,
    limit: int | None = None,
) -> SyncSummary:
    """Send the readings newer than their watermark; record refusals and advance watermarks.

    The DuckDB file is opened twice, briefly, and never held while requests are in flight. A crash
    between sending and saving leaves the watermarks where they were: the next run re-sends the same
    records with the same `Version` and `Time`, which Timestream accepts as no-ops.
    """
    now = now or datetime.now(timezone.utc)
    columns = sink_columns()  # once per run: the same columns for the scan and every record
    batch = load_pending_batch(open_connection, "timestream", limit, columns)
    readings = batch.readings
    skipped: list[RefusedReading] = []
    to_send: list[dict[str, Any]] = []
    send_positions: list[int] = []
    for position, reading in enumerate(readings):
        try:
            record = build_record(reading, columns)
        except RecordError as error:
            skipped.append(RefusedReading(reading_key(reading), "skipped", str(error)))
            continue
        reason = classify_time(reading[columns.time], now, window)
        if reason is not None:
            skipped.append(RefusedReading(reading_key(reading), "skipped", reason, version=record["Version"]))
            continue
        to_send.append(record)
        send_positions.append(position)

    report = writer.write(to_send)
    versions = [record["Version"] for record in to_send]
    return finish_sync(open_connection, "timestream", batch, skipped, send_positions, report, versions)
