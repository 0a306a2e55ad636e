"""The `covid19` asset group, its IO manager and schedule."""
