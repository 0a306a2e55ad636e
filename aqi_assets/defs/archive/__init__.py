"""Backfilling history from the Sensor.Community archive (daily partitions)."""
