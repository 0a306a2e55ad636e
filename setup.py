from setuptools import find_packages, setup

# Dagster and its integration libraries are released together and pin each other exactly:
# upgrade them as one set.
DAGSTER = "1.13.27"
DAGSTER_LIBS = "0.29.27"

setup(
    name="aqi_assets",
    version="0.1.0",
    description="Sensor.Community air-quality data platform on Dagster (DuckDB, Timestream, InfluxDB)",
    packages=find_packages(exclude=["aqi_assets_tests", "aqi_assets_tests.*"]),
    # The public site's page, script, style and vendored Leaflet are files inside the package.
    package_data={"aqi_assets.lib.public_site": ["static/*", "static/vendor/*/*", "static/vendor/*/images/*"]},
    python_requires=">=3.10",
    install_requires=[
        f"dagster=={DAGSTER}",
        f"dagster-webserver=={DAGSTER}",
        f"dagster-dg-cli=={DAGSTER}",
        f"dagster-aws=={DAGSTER_LIBS}",
        f"dagster-postgres=={DAGSTER_LIBS}",  # the production instance's storage (deploy/dagster.yaml)
        "duckdb>=2.0.1,<2.1",  # SQL features (lambda syntax, read_json options) move between minor releases
        "pandas>=2.2,<3",  # the COVID tables; the queries were checked against 2.x semantics
        "pyarrow>=16",
        "numpy>=1.26",
        "requests>=2.32",
        "urllib3>=2.2",
        "boto3>=1.35",
        "influxdb-client>=1.45",
        "scikit-learn>=1.5",
        "shapely>=2.0",
        "pyshp>=2.3",
        "matplotlib>=3.8",
        "tzfpy>=2.1,<3",  # offline coordinates → IANA time zone, for the local standard day (air_quality.local_time)
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-httpserver>=1.1",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.6,<4",  # `make test-fast` runs on every core
            "hypothesis>=6.100",
            "moto[server]>=5.1,<6",
            "playwright>=1.45",
            "psutil>=5.9",
            "wheel>=0.43",  # the Dockerfile test installs the project offline (--no-build-isolation)
            "pyspark>=4.0,<5",  # the Spark test reads the Parquet tier (local mode; needs Java 17)
            "locust>=2.30,<3",  # the site-load benchmark (python -m aqi_assets.bench site-load)
            "ruff==0.17.6",  # lint rules change between releases; CI must not turn red by itself
        ],
        # The documentation site (mkdocs.yml, docs/): `make docs` serves it, a test builds it with --strict.
        "docs": [
            "mkdocs>=1.6,<2",
            "mkdocs-material>=9.5,<10",
        ],
    },
)
