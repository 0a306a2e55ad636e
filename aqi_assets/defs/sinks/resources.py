"""Resources of the sync targets: Timestream for LiveAnalytics and InfluxDB (incl. Timestream for InfluxDB).

Both are disabled (the assets succeed and say so) until configured, so the local pipeline never needs an
AWS account or an InfluxDB server. Secrets (AWS keys, InfluxDB token/password) are never put in metadata
or messages: `describe()` gives the safe summary.
"""

from __future__ import annotations

from typing import Any

import boto3
import dagster as dg
from botocore.exceptions import ClientError
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import Field

from aqi_assets.defs.common.env import from_env
from aqi_assets.lib.common.fetch import redact_url
from aqi_assets.lib.sinks.influx_writer import InfluxWriter, V1Sender, V2Sender
from aqi_assets.lib.sinks.timestream_records import TableWindow
from aqi_assets.lib.sinks.timestream_writer import TimestreamWriter, timestream_client_config


class SyncConfigError(ValueError):
    """A sync target is partly configured (a variable is set, another one it needs is not)."""


class TimestreamResource(ResourceWithBoto3Configuration):
    """Timestream for LiveAnalytics table the readings are copied to.

    Credentials and region come from the standard AWS chain (AWS_REGION / AWS_DEFAULT_REGION,
    AWS_ACCESS_KEY_ID, AWS_PROFILE, instance roles, ...) unless given explicitly.
    """

    database: str = Field(default="", description="Timestream database (AQI_TIMESTREAM_DATABASE); empty = off.")
    table: str = Field(default="", description="Timestream table (AQI_TIMESTREAM_TABLE); empty = off.")
    max_attempts: int = Field(default=10, description="botocore attempts per call (throttling, 5xx).")
    concurrency: int = Field(default=8, description="WriteRecords calls in flight.")
    create_if_missing: bool = Field(default=False, description="Create the database and table when missing.")
    create_memory_store_hours: int = Field(default=24, description="Memory-store retention of a created table.")
    create_magnetic_store_days: int = Field(default=3650, description="Magnetic-store retention of a created table.")
    create_magnetic_store_writes: bool = Field(
        default=True, description="Let a created table accept records older than the memory-store window."
    )
    max_records_per_run: int = Field(default=0, description="Cap per run (0 = all pending readings).")
    chunk_rows: int = Field(default=50_000, description="Readings loaded from DuckDB at a time (bounds memory).")

    @property
    def enabled(self) -> bool:
        return bool(self.database and self.table)

    def describe(self) -> dict[str, str]:
        return {
            "database": self.database,
            "table": self.table,
            "region": self.region_name or "(AWS default chain)",
            "endpoint": redact_url(self.endpoint_url) if self.endpoint_url else "(endpoint discovery)",
        }

    def check_config(self) -> None:
        if bool(self.database) != bool(self.table):
            raise SyncConfigError(
                "Timestream sync needs both AQI_TIMESTREAM_DATABASE and AQI_TIMESTREAM_TABLE (only one is set)"
            )

    def client(self) -> Any:
        session = boto3.session.Session(
            profile_name=self.profile_name,
            region_name=self.region_name,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
        )
        # endpoint_url must be passed to the client itself: it is what skips endpoint discovery for a local
        # emulator (AWS_ENDPOINT_URL alone does not).
        return session.client(
            "timestream-write",
            endpoint_url=self.endpoint_url or None,
            use_ssl=self.use_ssl,
            verify=self.verify,
            config=timestream_client_config(self.max_attempts, max_pool_connections=max(10, 2 * self.concurrency)),
        )

    def table_window(self, client: Any) -> TableWindow:
        """The table's write window (DescribeTable: one control-plane call, not a query)."""
        try:
            description = client.describe_table(DatabaseName=self.database, TableName=self.table)["Table"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException" or not self.create_if_missing:
                raise
            description = self._create(client)
        return TableWindow.from_description(description)

    def _create(self, client: Any) -> dict[str, Any]:
        try:
            client.create_database(DatabaseName=self.database)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConflictException":
                raise
        return client.create_table(
            DatabaseName=self.database,
            TableName=self.table,
            RetentionProperties={
                "MemoryStoreRetentionPeriodInHours": self.create_memory_store_hours,
                "MagneticStoreRetentionPeriodInDays": self.create_magnetic_store_days,
            },
            MagneticStoreWriteProperties={"EnableMagneticStoreWrites": self.create_magnetic_store_writes},
        )["Table"]

    def writer(self, client: Any) -> TimestreamWriter:
        return TimestreamWriter(client, self.database, self.table, max_workers=self.concurrency)


class InfluxDBResource(dg.ConfigurableResource):
    """InfluxDB 1.x/2.x/3.x or Timestream for InfluxDB, written through the v2 or the v1 API."""

    url: str = Field(default="", description="Server URL (AQI_INFLUX_URL); empty = off.")
    api: str = Field(default="v2", description="'v2' (/api/v2/write) or 'v1' (/write?db=) (AQI_INFLUX_API).")
    token: str = Field(default="", description="API token (AQI_INFLUX_TOKEN); sent as 'Authorization: Token'.")
    org: str = Field(default="", description="Organisation, v2 API (AQI_INFLUX_ORG).")
    bucket: str = Field(default="", description="Bucket, v2 API (AQI_INFLUX_BUCKET).")
    database: str = Field(default="", description="Database, v1 API (AQI_INFLUX_DB).")
    username: str = Field(default="", description="v1 basic-auth user, when no token (AQI_INFLUX_USERNAME).")
    password: str = Field(default="", description="v1 basic-auth password (AQI_INFLUX_PASSWORD).")
    precision: str = Field(default="ms", description="Timestamp precision sent with every write.")
    batch_lines: int = Field(default=5000, description="Lines per write request.")
    concurrency: int = Field(default=4, description="Write requests in flight.")
    retries: int = Field(default=5, description="urllib3 retries (backoff) on 429/5xx and connection errors.")
    create_database: bool = Field(default=False, description="v1 API: CREATE DATABASE first (idempotent).")
    max_records_per_run: int = Field(default=0, description="Cap per run (0 = all pending readings).")
    chunk_rows: int = Field(default=50_000, description="Readings loaded from DuckDB at a time (bounds memory).")

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def describe(self) -> dict[str, str]:
        target = self.bucket if self.api == "v2" else self.database
        return {"url": redact_url(self.url), "api": self.api, "target": target}

    def check_config(self) -> None:
        """Off (nothing set) or complete; a partial setup fails clearly instead of silently syncing nothing."""
        if not self.url:
            set_without_url = [
                variable
                for variable, value in (
                    ("AQI_INFLUX_TOKEN", self.token),
                    ("AQI_INFLUX_ORG", self.org),
                    ("AQI_INFLUX_BUCKET", self.bucket),
                    ("AQI_INFLUX_DB", self.database),
                    ("AQI_INFLUX_USERNAME", self.username),
                    ("AQI_INFLUX_PASSWORD", self.password),
                )
                if value
            ]
            if set_without_url:
                raise SyncConfigError(
                    f"InfluxDB sync needs AQI_INFLUX_URL ({', '.join(set_without_url)} set, but no URL)"
                )
            return
        if self.api not in ("v1", "v2"):
            raise SyncConfigError(f"AQI_INFLUX_API must be 'v1' or 'v2', not {self.api!r}")
        if self.api == "v2" and not (self.org and self.bucket):
            raise SyncConfigError("InfluxDB v2 API needs AQI_INFLUX_ORG and AQI_INFLUX_BUCKET")
        if self.api == "v1" and not self.database:
            raise SyncConfigError("InfluxDB v1 API needs AQI_INFLUX_DB")

    def sender(self) -> V1Sender | V2Sender:
        self.check_config()
        pool_size = max(4, self.concurrency)
        if self.api == "v2":
            return V2Sender(
                self.url, self.token, self.org, self.bucket, self.precision, retries=self.retries, pool_size=pool_size
            )
        sender = V1Sender(
            self.url,
            self.database,
            self.precision,
            token=self.token or None,
            username=self.username or None,
            password=self.password or None,
            retries=self.retries,
            pool_size=pool_size,
        )
        if self.create_database:
            try:
                sender.create_database()
            except BaseException:
                sender.close()
                raise
        return sender

    def writer(self, sender: V1Sender | V2Sender) -> InfluxWriter:
        return InfluxWriter(sender, batch_lines=self.batch_lines, max_workers=self.concurrency)


# Resource field → environment variable, read when the code location loads (`from_env`); unset = disabled.
TIMESTREAM_ENV = {
    "database": "AQI_TIMESTREAM_DATABASE",
    "table": "AQI_TIMESTREAM_TABLE",
    "endpoint_url": "AQI_TIMESTREAM_ENDPOINT_URL",
}
INFLUXDB_ENV = {
    "url": "AQI_INFLUX_URL",
    "api": "AQI_INFLUX_API",
    "token": "AQI_INFLUX_TOKEN",
    "org": "AQI_INFLUX_ORG",
    "bucket": "AQI_INFLUX_BUCKET",
    "database": "AQI_INFLUX_DB",
    "username": "AQI_INFLUX_USERNAME",
    "password": "AQI_INFLUX_PASSWORD",
}


def sync_resources() -> dict[str, Any]:
    """Resource instances from the environment (read when the code location loads); empty = disabled."""
    return {
        "timestream": from_env(TimestreamResource, TIMESTREAM_ENV),
        "influxdb": from_env(InfluxDBResource, INFLUXDB_ENV),
    }
