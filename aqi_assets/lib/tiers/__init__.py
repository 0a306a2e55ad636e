"""Tiered storage of the reading history: hot in DuckDB, older days as Parquet on a filesystem or S3."""
