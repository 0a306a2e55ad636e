"""Where the public site is written and, optionally, published (an S3 bucket)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from pydantic import Field

from aqi_assets.defs.common.env import from_env
from aqi_assets.lib.common.fetch import redact_url
from aqi_assets.lib.public_site.build import DEFAULT_TILE_ATTRIBUTION, DEFAULT_TILE_URL, SiteConfig


class PublicSiteResource(dg.ConfigurableResource):
    """The static map site: its directory, its map tiles and the bucket it is published to (if any).

    AWS credentials and region come from the standard chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_REGION, ...).
    """

    site_dir: str = Field(default="data/site", description="Directory the site is built into (AQI_SITE_DIR).")
    s3_bucket: str = Field(default="", description="Bucket to publish to (AQI_SITE_S3_BUCKET); empty = local only.")
    s3_prefix: str = Field(default="", description="Key prefix in the bucket (AQI_SITE_S3_PREFIX).")
    s3_endpoint_url: str = Field(
        default="", description="S3-compatible endpoint (AQI_SITE_S3_ENDPOINT_URL); empty = AWS."
    )
    tile_url: str = Field(
        default=DEFAULT_TILE_URL, description="Map tile URL template (AQI_SITE_TILE_URL); empty = no tiles."
    )
    tile_attribution: str = Field(
        default=DEFAULT_TILE_ATTRIBUTION, description="Attribution shown for the tiles (AQI_SITE_TILE_ATTRIBUTION)."
    )
    keep_old_files_s: float = Field(
        default=3600.0, description="How long files of earlier builds stay for pages loaded before a rebuild."
    )
    upload_concurrency: int = Field(default=16, description="S3 uploads in flight.")

    @property
    def publishing(self) -> bool:
        return bool(self.s3_bucket)

    def site_path(self) -> Path:
        return Path(self.site_dir)

    def site_config(self) -> SiteConfig:
        return SiteConfig(tile_url=self.tile_url, tile_attribution=self.tile_attribution)

    def describe(self) -> dict[str, str]:
        return {
            "site_dir": str(self.site_path().resolve()),
            "s3_bucket": self.s3_bucket or "(not published)",
            "s3_endpoint": redact_url(self.s3_endpoint_url) if self.s3_endpoint_url else "(AWS)",
        }

    def s3_client(self) -> Any:
        config = Config(
            max_pool_connections=max(10, self.upload_concurrency),
            retries={"max_attempts": 5, "mode": "standard"},
            # A custom endpoint (MinIO, a local emulator) is usually addressed by path, not by bucket subdomain.
            s3={"addressing_style": "path"} if self.s3_endpoint_url else None,
        )
        return boto3.session.Session().client("s3", endpoint_url=self.s3_endpoint_url or None, config=config)


# Resource field → environment variable, read when the code location loads (`from_env`).
PUBLIC_SITE_ENV = {
    "site_dir": "AQI_SITE_DIR",
    "s3_bucket": "AQI_SITE_S3_BUCKET",
    "s3_prefix": "AQI_SITE_S3_PREFIX",
    "s3_endpoint_url": "AQI_SITE_S3_ENDPOINT_URL",
    "tile_url": "AQI_SITE_TILE_URL",
    "tile_attribution": "AQI_SITE_TILE_ATTRIBUTION",
}


def public_resources() -> dict[str, Any]:
    return {"public_site": from_env(PublicSiteResource, PUBLIC_SITE_ENV)}
