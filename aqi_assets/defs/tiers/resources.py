"""The tier configuration: where Parquet goes, how long data stays hot, what happens to old raw snapshots."""

from __future__ import annotations

from typing import Any

import boto3
import dagster as dg
from pydantic import Field

from aqi_assets.lib.common.location import TierLocation, open_location
from aqi_assets.lib.tiers.glue_catalog import GlueTable


class TierStorage(dg.ConfigurableResource):
    """Parquet tier, hot-tier and raw-lake retention, Glue registration (off unless a database is named)."""

    parquet_uri: str = Field(default="data/parquet", description="Parquet tier: a path or s3://bucket/prefix.")
    s3_endpoint_url: str = Field(default="", description="S3-compatible endpoint (MinIO, moto); empty = AWS.")
    s3_region: str = Field(default="", description="Region of the bucket and of Glue (empty: us-east-1).")
    hot_days: int = Field(default=30, description="Days of readings kept in DuckDB (older ones: Parquet only).")
    raw_retention_days: int = Field(default=7, description="Days of raw snapshots kept in the lake.")
    raw_archive_uri: str = Field(default="", description="Where old raw snapshots go (empty: deleted).")
    glue_database: str = Field(default="", description="Glue database to register the tier in (empty: off).")
    glue_table: str = Field(default="aqi_readings", description="Glue table name.")
    row_group_rows: int = Field(default=250_000, description="Rows per Parquet row group.")

    def location(self) -> TierLocation:
        return open_location(self.parquet_uri, endpoint_url=self.s3_endpoint_url, region=self.s3_region)

    def archive_location(self) -> TierLocation | None:
        if not self.raw_archive_uri:
            return None
        return open_location(self.raw_archive_uri, endpoint_url=self.s3_endpoint_url, region=self.s3_region)

    @property
    def glue_enabled(self) -> bool:
        return bool(self.glue_database)

    def glue_target(self) -> GlueTable:
        return GlueTable(self.glue_database, self.glue_table)

    def glue_client(self) -> Any:
        return boto3.client(
            "glue", region_name=self.s3_region or "us-east-1", endpoint_url=self.s3_endpoint_url or None
        )


# Resource field → environment variable, read when the code location loads (`from_env`).
TIERS_ENV = {
    "parquet_uri": "AQI_PARQUET_URI",
    "s3_endpoint_url": "AQI_S3_ENDPOINT_URL",
    "s3_region": "AQI_S3_REGION",
    "hot_days": "AQI_HOT_DAYS",
    "raw_retention_days": "AQI_RAW_RETENTION_DAYS",
    "raw_archive_uri": "AQI_RAW_ARCHIVE_URI",
    "glue_database": "AQI_GLUE_DATABASE",
    "glue_table": "AQI_GLUE_TABLE",
}
