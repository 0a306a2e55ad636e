"""The readings contract, at the bottom of the air-quality domains: the periods (`periods`), the history's
columns, DDL and migrations (`schema`), and the one accessor that reads the history across the hot and cold
tiers (`history`). Every other module derives its lists from here; this package imports only `lib.common`."""
