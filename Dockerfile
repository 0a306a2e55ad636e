# User-code image of the aqi_assets code location: the gRPC code server, and each run's process or task.
# The install steps are the README's own (`make install`: a venv, pip upgraded, `pip install -e .` constrained to
# the lock, requirements/lock.txt, so the image runs the versions the tests ran);
# aqi_assets_tests/system/deployment/test_dockerfile.py checks that they stay so and runs them.
# Build: docker build -t aqi-assets:0.1.0 .   (daemon and webserver use the same image with another command)
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    PATH=/opt/dagster/app/.venv/bin:$PATH

WORKDIR /opt/dagster/app
COPY setup.py pyproject.toml README.md workspace.yaml ./
COPY requirements ./requirements
COPY aqi_assets ./aqi_assets

RUN python3 -m venv .venv
RUN .venv/bin/pip install --quiet --upgrade pip
RUN .venv/bin/pip install --quiet -c requirements/lock.txt -e .

# The ECS instance and workspace; the Helm chart mounts its own dagster.yaml over this one.
COPY deploy/ecs/dagster.yaml deploy/ecs/workspace.yaml /opt/dagster/dagster_home/

# No root at run time; the data volume (DuckDB file and raw lake) is mounted at /mnt/aqi/data.
RUN useradd --uid 10001 --create-home dagster && mkdir -p /mnt/aqi/data && chown dagster /mnt/aqi/data
USER dagster
ENV AQI_DATA_DIR=/mnt/aqi/data AQI_DUCKDB_PATH=/mnt/aqi/data/aqi.duckdb

EXPOSE 4266
CMD ["dagster", "code-server", "start", "-m", "aqi_assets.definitions", "--location-name", "aqi_assets", \
     "-h", "0.0.0.0", "-p", "4266"]
