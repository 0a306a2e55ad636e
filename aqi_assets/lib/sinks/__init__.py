"""Sinks: sync state (watermarks), Timestream records and writer, InfluxDB line protocol and writer."""
