"""The public map site: built from DuckDB into static files (no Dagster here)."""
