"""Sensors and schedules that make the platform run itself."""
