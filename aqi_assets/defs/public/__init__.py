"""The public map site as an asset (thin over aqi_assets.lib.public_site)."""
