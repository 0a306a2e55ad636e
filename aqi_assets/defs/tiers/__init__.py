"""Dagster objects of the tiers domain: the Parquet tier and retention."""
