"""Sensors (placeholder until issue 4 lands)."""

automation_sensors: list = []
automation_schedules: list = []
