"""Definitions scaffolded with `dg scaffold defs …` (the `[tool.dg.project]` defs_module): Dagster's defs-folder
loading picks up every module here, and `aqi_assets.definitions` merges them with the hand-built domains of
`aqi_assets.defs`. Empty until someone scaffolds something."""
