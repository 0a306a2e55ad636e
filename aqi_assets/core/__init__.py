"""Pure logic (no Dagster import): parsing, indices, storage, line protocol, k-means.

Everything here is unit-tested directly; the Dagster layer in ``aqi_assets.assets`` is thin on top.
"""
