"""COVID-19 analytics asset group (placeholder until issue 6 lands)."""

covid_assets: list = []
covid_asset_checks: list = []
covid_jobs: list = []
covid_schedules: list = []
