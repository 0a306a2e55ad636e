"""Sync assets (placeholder until issue 5 lands)."""

sync_assets: list = []
sync_asset_checks: list = []
