# Two commands for a newcomer: `make run` (install + ingest into the embedded DuckDB) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.PHONY: install install-test run run-24h covid dev test lint bench system-deps prod prod-stop site vendor-leaflet

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

run: install
	$(BIN)/dagster job execute -m aqi_assets.definitions -j ingest_5min_job

run-24h: install
	$(BIN)/dagster job execute -m aqi_assets.definitions -j ingest_24h_job

covid: install
	$(BIN)/dagster job execute -m aqi_assets.definitions -j covid19_job

dev: install
	$(BIN)/dagster dev -w workspace.yaml

# Debian packages the tests use as real components: InfluxDB 1.6 server and Chromium (root or sudo needed).
system-deps:
	bash .ci/system-deps

test: install-test system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install-test
	$(BIN)/ruff check .

bench: install-test
	$(BIN)/python -m aqi_assets.bench core --records 20000
	$(BIN)/python -m aqi_assets.bench core --records 200000 --repeat 1

# The production topology on this machine: gRPC code server, daemon and webserver as separate processes on
# 127.0.0.1 with deploy/dagster.yaml (PostgreSQL from DAGSTER_PG_*; without them, a throwaway local cluster).
# State, logs and pids in .prod/; `make prod-stop` stops exactly those pids.
PROD_FLAGS ?= $(if $(DAGSTER_PG_HOST),,--local-postgres)
prod: install
	$(BIN)/python -m aqi_assets.lib.deploy.service start --state-dir .prod $(PROD_FLAGS)

prod-stop:
	$(BIN)/python -m aqi_assets.lib.deploy.service stop --state-dir .prod

# The public map site: build it from the DuckDB history (after `make run`), then serve it with nginx on
# http://127.0.0.1:8080 (SITE_PORT to change; Ctrl-C stops it). Needs Debian's nginx (make system-deps).
SITE_PORT ?= 8080
# The site reads aqi_hourly (declared input, no fallback): the last complete UTC hour is materialised first.
LAST_HOUR = $(shell $(PYTHON) -c "from datetime import datetime, timedelta, timezone as z; print((datetime.now(z.utc) - timedelta(hours=1)).strftime('%Y-%m-%d-%H:00'))")
site: install
	$(BIN)/dagster asset materialize -m aqi_assets.definitions --select aqi_hourly --partition $(LAST_HOUR)
	$(BIN)/dagster asset materialize -m aqi_assets.definitions --select public_site
	$(BIN)/python -m aqi_assets.lib.public_site.nginx --root $${AQI_SITE_DIR:-data/site} --port $(SITE_PORT)

# Re-check the vendored Leaflet against the npm registry (npm pack; integrity and file contents).
vendor-leaflet: install
	$(BIN)/python -m aqi_assets.lib.public_site.vendor --from-npm
