"""Shared by every domain: fetching (HTTP/file with retries), the DuckDB connection with a bounded lock wait,
webhook posts."""
