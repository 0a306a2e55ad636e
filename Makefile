# Two commands for a newcomer: `make run` (install + ingest into the embedded DuckDB) and `make test`.
# Every install takes its versions from requirements/lock.txt (pip constraints); `make lock` upgrades the lock.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.PHONY: install install-test lock run run-24h demo covid dev test test-fast lint docs bench system-deps prod prod-stop site \
	vendor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -c requirements/lock.txt -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -c requirements/lock.txt -e ".[test,docs]"

# Re-resolve the lock to the newest versions setup.py allows, then `make install-test` and `make test`. The lock
# is for Python 3.11 on Linux x86_64 (the machines, CI and the image): resolve it there.
lock: $(BIN)/python
	$(BIN)/python -c "import platform, sys; assert sys.version_info[:2] == (3, 11) and platform.system() == 'Linux' \
		and platform.machine() == 'x86_64', 'resolve the lock on Python 3.11, Linux x86_64'"
	$(BIN)/pip install --quiet "pip-tools==7.7.0"
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --upgrade --strip-extras --allow-unsafe \
		--extra test --extra docs --no-emit-options --output-file requirements/lock.txt setup.py
	{ echo '# pip constraints for Python 3.11 on Linux x86_64, used by every install (Makefile, Dockerfile).'; \
		cat requirements/lock.txt; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt

# The ingest job, quietly, then what landed and what next (`--verbose` for Dagster's debug log); without network it
# fails within seconds and names `make demo`.
run: install
	$(BIN)/python -m aqi_assets.first_run $(RUN_ARGS)

run-24h: install
	$(BIN)/python -m aqi_assets.first_run --period 24h $(RUN_ARGS)

# The whole platform offline on the samples in the repository (data/demo/), then the map on :8080 and the UI on :3000.
demo: install
	$(BIN)/python -m aqi_assets.demo $(DEMO_ARGS)

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

# The quick loop while coding (under 3 minutes on 2 cores): every test that needs no server process (nginx,
# PostgreSQL, influxd, dagster dev), no browser, no Spark and no system-deps, except the few slow end-to-end ones,
# on every core. `make test` (CI) runs them all, one at a time.
FAST_TESTS = not soak and not browser and not influxdb and not deployment and not spark and not server and not slow
test-fast: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest -n auto --dist worksteal -m "$(FAST_TESTS)"

lint: install-test
	$(BIN)/ruff check .

# The documentation site (mkdocs.yml, docs/) with live reload on http://127.0.0.1:8000.
docs: install-test
	$(BIN)/mkdocs serve

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

# Re-check every vendored npm package (the site's Leaflet and supercluster, the tests' axe-core) against the npm
# registry (npm pack; integrity and file contents).
vendor: install
	$(BIN)/python -m aqi_assets.lib.public_site.vendor --from-npm aqi_assets/lib/public_site/static/vendor \
		aqi_assets_tests/data/vendor
