"""COVID-19 analytics asset group `covid19`: the JHU CSSE confirmed-cases series and three queries.

Lineage: `covid_confirmed_csv` (download, validate, keep the raw file, store a long table) →
`covid_location_continents` (Esri polygons + bounding boxes) → `covid_weekly_continent_stats` (query 2);
`covid_confirmed_csv` → `covid_monthly_mean_daily_cases` (query 1) and `covid_monthly_clusters` (query 3).
Tables live in the DuckDB schema `covid19` through `covid_io_manager`; the logic is in `aqi_assets.lib.covid`.
"""

import gzip
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import numpy as np
import pandas as pd

from aqi_assets.defs.common.storage import AqiStorage
from aqi_assets.defs.covid.resources import CovidSource
from aqi_assets.lib.common.fetch import FetchError, FetchResult, download
from aqi_assets.lib.covid import figures as covid_figures
from aqi_assets.lib.covid import queries as covid
from aqi_assets.lib.covid.continents import METHOD_BBOX, METHOD_NONE, ContinentsError, load_continents

GROUP = "covid19"
OWNERS = ["team:aqi-analytics"]
TAGS = {"domain": "public-health", "source": "jhu-csse"}
IO_MANAGER = "covid_io_manager"
CLUSTER_MAP_MONTH = (2020, 3)
# Relative slack when comparing inertias computed from different partitions (floating-point rounding only).
INERTIA_RTOL = 1e-9

T = TypeVar("T")


def _covid_asset(kinds: set[str], description: str, query: str | None = None, **extra: Any) -> Any:
    """`dg.asset` with what every asset of the group shares: its tables go through the covid IO manager into
    the DuckDB file (hence the `duckdb` pool); a query's number is a tag."""
    return dg.asset(
        group_name=GROUP,
        io_manager_key=IO_MANAGER,
        pool="duckdb",
        kinds=kinds,
        owners=OWNERS,
        tags=TAGS if query is None else {**TAGS, "query": query},
        description=description,
        **extra,
    )


def _timed(query: Callable[..., T], *args: Any) -> tuple[T, float]:
    """The result of `query(*args)` and the seconds it took (reported as `query_seconds`)."""
    started = time.perf_counter()
    result = query(*args)
    return result, time.perf_counter() - started


def _query_output(
    frame: pd.DataFrame, seconds: float, figure: Any, figure_title: str, **metadata: Any
) -> dg.Output[pd.DataFrame]:
    """A query's table with what every query reports besides its own `metadata`: rows, time, preview, figure."""
    return dg.Output(
        frame,
        metadata={
            "dagster/row_count": len(frame),
            "query_seconds": float(seconds),
            **metadata,
            "preview": dg.MetadataValue.md(covid_figures.markdown_table(frame, 12)),
            "figure": dg.MetadataValue.md(covid_figures.figure_markdown(figure, figure_title)),
        },
    )


def _covid_dir(storage: AqiStorage) -> Path:
    return Path(storage.data_dir) / "covid19"


def _fetch(url: str, directory: Path, stem: str, suffix: str, source: CovidSource) -> tuple[FetchResult, bytes]:
    """Download into a dated, content-addressed name (kept gzip-compressed) and return the plain bytes."""

    def dated_name(sha256: str, fetched_at: datetime) -> str:
        return f"{stem}_{fetched_at:%Y-%m-%dT%H%M%SZ}_{sha256[:12]}{suffix}.gz"

    try:
        result = download(
            url,
            directory,
            dated_name,
            allowed_file_roots=source.file_roots(url),
            connect_timeout_s=source.connect_timeout_s,
            read_timeout_s=source.read_timeout_s,
        )
    except FetchError as error:
        raise dg.Failure(description=str(error)) from error
    return result, gzip.decompress(result.path.read_bytes())


def _fetch_metadata(result: FetchResult) -> dict[str, object]:
    return {
        "raw_file": dg.MetadataValue.path(str(result.path)),
        "source_url": dg.MetadataValue.url(result.url) if result.url.startswith("http") else result.url,
        "sha256": result.sha256,
        "body_bytes": result.body_bytes,
        "fetched_at": result.fetched_at.isoformat(),
        "last_modified": result.last_modified or "",
    }


@_covid_asset(
    {"csv", "duckdb"},
    "The JHU CSSE global confirmed-cases time series (cumulative counts, one column per day): "
    "downloaded from AQI_COVID_CSV_URL into <data_dir>/covid19/ under a dated name (raw bytes kept, gzip), "
    "validated (header, consecutive dates, integer counts, complete rows) and stored as a long table "
    "(one row per CSV row and day). A malformed or changed file fails the run and stores nothing.",
)
def covid_confirmed_csv(
    context: dg.AssetExecutionContext, storage: AqiStorage, covid_source: CovidSource
) -> dg.Output[pd.DataFrame]:
    result, data = _fetch(
        covid_source.csv_url, _covid_dir(storage), "time_series_covid19_confirmed_global", ".csv", covid_source
    )
    try:
        series = covid.parse_confirmed_csv(data, source=result.url)
    except covid.CovidCsvError as error:
        raise dg.Failure(
            description=f"rejected the confirmed-cases CSV: {error}. The raw file is kept at {result.path}; "
            "no table was written.",
            metadata=_fetch_metadata(result),
        ) from error
    context.log.info("validated %s: %d rows × %d days", result.path.name, *series.cumulative.shape)
    frame = covid.to_long_frame(series)
    return dg.Output(
        frame,
        metadata={
            **_fetch_metadata(result),
            "dagster/row_count": len(frame),
            "csv_rows": int(series.cumulative.shape[0]),
            "csv_columns": int(series.cumulative.shape[1] + len(covid.ID_COLUMNS)),
            "first_date": series.dates[0].strftime("%Y-%m-%d"),
            "last_date": series.dates[-1].strftime("%Y-%m-%d"),
            "countries": int(pd.unique(series.countries).size),
            "preview": dg.MetadataValue.md(covid_figures.markdown_table(frame)),
        },
    )


@_covid_asset(
    {"shapely", "duckdb"},
    "Continent of every CSV location with coordinates: the Esri World Continents polygon containing "
    "it (AQI_CONTINENTS_URL, raw zip kept in <data_dir>/covid19/), else the bounding-box fallback; Australia → "
    "Oceania, North/South America → America; `method` says which rule matched.",
)
def covid_location_continents(
    context: dg.AssetExecutionContext,
    storage: AqiStorage,
    covid_source: CovidSource,
    covid_confirmed_csv: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    series = covid.from_long_frame(covid_confirmed_csv)
    result, data = _fetch(covid_source.continents_url, _covid_dir(storage), "World_Continents", ".zip", covid_source)
    try:
        polygons = load_continents(data)
    except ContinentsError as error:
        raise dg.Failure(description=f"rejected the continents file {result.path}: {error}") from error
    frame = covid.location_continents(series, polygons)
    methods = frame["method"].value_counts()
    unassigned = frame.loc[frame["method"] == METHOD_NONE, "location"].tolist()
    if unassigned:
        context.log.info("no continent for %s: they are left out of query 2", unassigned)
    return dg.Output(
        frame,
        metadata={
            **_fetch_metadata(result),
            "dagster/row_count": len(frame),
            "polygons": ", ".join(sorted(set(polygons.source_names))),
            "assigned_by_polygon": int(methods.get("polygon", 0)),
            "assigned_by_bounding_box": int(methods.get(METHOD_BBOX, 0)),
            "unassigned": ", ".join(unassigned),
            "per_continent": dg.MetadataValue.md(
                covid_figures.markdown_table(
                    frame["continent"].fillna("(none)").value_counts().rename_axis("continent").reset_index()
                )
            ),
        },
    )


@_covid_asset(
    {"duckdb", "pandas"},
    "Query 1: mean daily confirmed cases per country and calendar month (daily new cases = "
    "day-over-day difference without clipping, summed over a country's provinces per date).",
    query="1",
)
def covid_monthly_mean_daily_cases(
    context: dg.AssetExecutionContext, covid_confirmed_csv: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    frame, seconds = _timed(covid.monthly_mean_daily_cases, covid.from_long_frame(covid_confirmed_csv))
    return _query_output(
        frame,
        seconds,
        covid_figures.monthly_means_figure(frame),
        "monthly means",
        countries=int(frame["country"].nunique()),
        months=int(frame[["year", "month"]].drop_duplicates().shape[0]),
    )


@_covid_asset(
    {"duckdb", "pandas"},
    "Query 2: per continent and Sunday–Saturday week, mean / sample std / min / max of the daily new "
    "cases of the 100 locations with the steepest least-squares trend of daily cases.",
    query="2",
)
def covid_weekly_continent_stats(
    context: dg.AssetExecutionContext, covid_confirmed_csv: pd.DataFrame, covid_location_continents: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    result, seconds = _timed(
        covid.weekly_continent_stats, covid.from_long_frame(covid_confirmed_csv), covid_location_continents
    )
    mix = result.top_locations["continent"].fillna("(none)").value_counts()
    return _query_output(
        result.stats,
        seconds,
        covid_figures.weekly_stats_figure(result.stats),
        "weekly statistics",
        continent_mix=", ".join(f"{name} {count}" for name, count in mix.items()),
        top_locations=dg.MetadataValue.md(covid_figures.markdown_table(result.top_locations, 15)),
    )


@_covid_asset(
    {"python", "scikit-learn", "duckdb"},
    "Query 3: each month, k-means (K = 4) of the 50 locations with the highest mean expanding-window "
    "monthly slope, by the project's own NumPy Lloyd k-means and by scikit-learn's KMeans (labels ordered by "
    "cluster centre); metadata compares both with the exact optimal 1-D partition.",
    query="3",
    check_specs=[
        dg.AssetCheckSpec(
            "optimal_partition_bounds_both",
            asset="covid_monthly_clusters",
            description="The exact optimal 1-D partition's inertia is at most each implementation's, every month.",
        )
    ],
)
def covid_monthly_clusters(
    context: dg.AssetExecutionContext, covid_confirmed_csv: pd.DataFrame
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    result, seconds = _timed(covid.monthly_clusters, covid.from_long_frame(covid_confirmed_csv))
    months = result.months
    bound = months["inertia_optimal"].to_numpy()
    slack = INERTIA_RTOL * np.maximum(months[["inertia_own", "inertia_sklearn"]].to_numpy().max(axis=1), 1.0)
    violations = months[(bound > months["inertia_own"] + slack) | (bound > months["inertia_sklearn"] + slack)]
    own_optimal = int((months["inertia_own"] <= bound + slack).sum())
    library_optimal = int((months["inertia_sklearn"] <= bound + slack).sum())
    year, month = CLUSTER_MAP_MONTH
    yield _query_output(
        result.assignments,
        seconds,
        covid_figures.cluster_map_figure(result.assignments, year, month),
        f"clusters {year}-{month:02d}",
        months=len(months),
        months_own_optimal=own_optimal,
        months_sklearn_optimal=library_optimal,
        months_identical_partitions=int((months["adjusted_rand_index"] >= 1.0 - 1e-12).sum()),
        mean_adjusted_rand_index=float(months["adjusted_rand_index"].mean()),
        per_month=dg.MetadataValue.md(covid_figures.markdown_table(months, len(months))),
        top_locations=dg.MetadataValue.md(covid_figures.markdown_table(result.top_locations, 50)),
    )
    yield dg.AssetCheckResult(
        check_name="optimal_partition_bounds_both",
        passed=violations.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "violating_months": ", ".join(f"{row.year}-{row.month:02d}" for row in violations.itertuples()),
            "months_own_optimal": own_optimal,
            "months_sklearn_optimal": library_optimal,
        },
    )


covid_assets: list = [
    covid_confirmed_csv,
    covid_location_continents,
    covid_monthly_mean_daily_cases,
    covid_weekly_continent_stats,
    covid_monthly_clusters,
]
covid_asset_checks: list = []  # the clustering check is declared on its asset (check_specs)

# In-process: the five steps are short and all use the DuckDB file, so separate step processes would only add
# start-up time and lock waits (also when run headless without an instance's `duckdb` pool limit).
covid19_job = dg.define_asset_job(
    "covid19_job",
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=dg.in_process_executor,
    description="Download the JHU CSSE series and recompute the three COVID-19 queries.",
    tags=TAGS,
)
covid_jobs: list = [covid19_job]

covid19_daily_schedule = dg.ScheduleDefinition(
    name="covid19_daily_schedule",
    job=covid19_job,
    cron_schedule="0 0 * * *",
    execution_timezone="UTC",
    description="Daily at 00:00 UTC, like the original Airflow DAG.",
)
covid_schedules: list = [covid19_daily_schedule]
