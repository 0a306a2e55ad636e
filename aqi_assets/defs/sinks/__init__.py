"""Sync assets to Timestream for LiveAnalytics and InfluxDB, and their resources."""
