"""COVID-19 analytics on the JHU CSSE global confirmed-cases time series: validation and the three queries.

The CSV is wide (one row per province/country, one cumulative column per day), so everything here works on
one (rows × days) int64 matrix: daily new cases are a `np.diff`, per-month and per-week groups are
contiguous column runs reduced with `np.add.reduceat`, per-country sums are contiguous row runs after a
sort, and OLS slopes are one matrix-vector product. Semantics: ../shared/reference/covid-queries.md.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aqi_assets.lib.covid.continents import ContinentPolygons, assign_continents
from aqi_assets.lib.covid.kmeans import canonical_labels, kmeans, labelled_inertia, optimal_partition_1d

ID_COLUMNS = ("Province/State", "Country/Region", "Lat", "Long")
DATE_FORMAT = "%m/%d/%y"  # JHU headers: 1/22/20 … 3/9/23
LONG_COLUMNS = ("source_row", "province_state", "country_region", "lat", "long", "date", "confirmed")


class CovidCsvError(ValueError):
    """The confirmed-cases CSV is malformed or changed shape; the message says where."""


@dataclass(frozen=True)
class ConfirmedSeries:
    """The validated CSV: per row its keys and coordinates, and the cumulative counts per day."""

    provinces: np.ndarray  # object; None where the CSV has no Province/State
    countries: np.ndarray  # object
    latitudes: np.ndarray  # float64; NaN where blank
    longitudes: np.ndarray  # float64; NaN where blank
    dates: pd.DatetimeIndex  # consecutive days
    cumulative: np.ndarray  # int64, (rows, days)

    @property
    def locations(self) -> np.ndarray:
        """Province/State when present, else Country/Region."""
        return np.where(pd.isna(self.provinces), self.countries, self.provinces)

    @property
    def has_coordinates(self) -> np.ndarray:
        return np.isfinite(self.latitudes) & np.isfinite(self.longitudes)


# --------------------------------------------------------------------------------------------------- ingestion


def _cell_error(rows: np.ndarray, bad: np.ndarray, header: list[str], what: str, source: str) -> CovidCsvError:
    row, column = (int(i) for i in np.argwhere(bad)[0])
    return CovidCsvError(
        f"{source}: {what} at line {row + 2}, column {header[column]!r}: {str(rows[row, column])!r} "
        f"({int(bad.sum())} such cell(s) in total)"
    )


def parse_confirmed_csv(data: bytes, source: str = "confirmed-cases CSV") -> ConfirmedSeries:
    """Validate and parse the JHU CSSE global confirmed-cases CSV; raise `CovidCsvError` on anything odd."""
    if not data.strip():
        raise CovidCsvError(f"{source}: the file is empty")
    if not data.endswith(b"\n"):
        raise CovidCsvError(f"{source}: the file does not end with a newline: it looks truncated")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CovidCsvError(f"{source}: not UTF-8 text ({error})") from error
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as error:
        raise CovidCsvError(f"{source}: not valid CSV ({error})") from error
    header, body = records[0], [record for record in records[1:] if record]
    if tuple(header[:4]) != ID_COLUMNS:
        raise CovidCsvError(f"{source}: the header must start with {list(ID_COLUMNS)}, found {header[:4]}")
    date_names = header[4:]
    dates = pd.to_datetime(pd.Series(date_names, dtype=object), format=DATE_FORMAT, errors="coerce")
    if dates.isna().any():
        bad = [name for name, date in zip(date_names, dates, strict=True) if pd.isna(date)]
        raise CovidCsvError(f"{source}: column(s) after {list(ID_COLUMNS)} must be dates like 1/22/20, found {bad[:5]}")
    if len(dates) < 2:
        raise CovidCsvError(f"{source}: at least two date columns are needed, found {len(dates)}")
    steps = np.diff(dates.to_numpy()).astype("timedelta64[D]").astype(np.int64)
    if np.any(steps != 1):
        where = int(np.flatnonzero(steps != 1)[0])
        raise CovidCsvError(
            f"{source}: date columns must be consecutive days; {date_names[where]!r} is followed by "
            f"{date_names[where + 1]!r}"
        )
    if not body:
        raise CovidCsvError(f"{source}: the file has a header but no data rows")
    for number, record in enumerate(body, start=2):
        if len(record) != len(header):
            raise CovidCsvError(
                f"{source}: line {number} has {len(record)} fields, the header has {len(header)} (truncated or "
                "shifted row)"
            )
    rows = np.array(body, dtype=str)
    counts = rows[:, 4:]
    bad = ~np.char.isdigit(counts)  # non-negative integers only; also catches empty cells
    if bad.any():
        raise _cell_error(counts, bad, date_names, "non-numeric or negative cumulative count", source)
    cumulative = counts.astype(np.int64)

    countries = np.char.strip(rows[:, 1]).astype(object)
    if np.any(countries == ""):
        raise CovidCsvError(f"{source}: line {int(np.flatnonzero(countries == '')[0]) + 2} has no Country/Region")
    provinces = np.char.strip(rows[:, 0]).astype(object)
    provinces[provinces == ""] = None
    coordinates = []
    for column, limit in ((2, 90.0), (3, 180.0)):
        raw = np.char.strip(rows[:, column])
        values = pd.to_numeric(pd.Series(raw).replace("", np.nan), errors="coerce").to_numpy(np.float64)
        broken = ((raw != "") & ~np.isfinite(values)) | (np.abs(values) > limit)
        if broken.any():
            raise _cell_error(rows, broken[:, None] & (np.arange(rows.shape[1]) == column), header,
                              f"invalid {ID_COLUMNS[column]}", source)
        coordinates.append(values)
    keys = pd.DataFrame({"province": provinces, "country": countries})
    duplicated = keys.duplicated(keep=False).to_numpy()
    if duplicated.any():
        raise CovidCsvError(f"{source}: duplicated (Province/State, Country/Region) rows: "
                            f"{keys[duplicated].drop_duplicates().to_numpy().tolist()[:5]}")
    return ConfirmedSeries(provinces, countries, coordinates[0], coordinates[1], pd.DatetimeIndex(dates), cumulative)


def to_long_frame(series: ConfirmedSeries) -> pd.DataFrame:
    """One row per (CSV row, day): a fixed schema however many days the file has (DuckDB-friendly)."""
    n_rows, n_days = series.cumulative.shape
    return pd.DataFrame(
        {
            "source_row": np.repeat(np.arange(n_rows, dtype=np.int32), n_days),
            "province_state": np.repeat(series.provinces, n_days),
            "country_region": np.repeat(series.countries, n_days),
            "lat": np.repeat(series.latitudes, n_days),
            "long": np.repeat(series.longitudes, n_days),
            "date": np.tile(series.dates.to_numpy(dtype="datetime64[ns]"), n_rows),
            "confirmed": series.cumulative.ravel(),
        }
    )


def from_long_frame(frame: pd.DataFrame) -> ConfirmedSeries:
    """Rebuild the matrix from `to_long_frame`'s output (e.g. as loaded back from DuckDB), checking the grid."""
    missing = [column for column in LONG_COLUMNS if column not in frame.columns]
    if missing:
        raise CovidCsvError(f"confirmed-cases table lacks column(s) {missing}")
    if frame.empty:
        raise CovidCsvError("confirmed-cases table is empty")
    source_row = frame["source_row"].to_numpy(np.int64)
    dates = pd.to_datetime(frame["date"]).to_numpy("datetime64[ns]")
    order = np.lexsort((dates, source_row))
    rows = np.unique(source_row)
    days = np.unique(dates)
    if len(frame) != rows.size * days.size or not np.array_equal(
        dates[order].reshape(rows.size, days.size), np.broadcast_to(days, (rows.size, days.size))
    ):
        raise CovidCsvError("confirmed-cases table is not a complete (row × day) grid")
    first = order.reshape(rows.size, days.size)[:, 0]
    provinces = frame["province_state"].to_numpy(object)[first]
    provinces[pd.isna(provinces)] = None
    return ConfirmedSeries(
        provinces,
        frame["country_region"].to_numpy(object)[first],
        frame["lat"].to_numpy(np.float64)[first],
        frame["long"].to_numpy(np.float64)[first],
        pd.DatetimeIndex(days),
        frame["confirmed"].to_numpy(np.int64)[order].reshape(rows.size, days.size),
    )


# --------------------------------------------------------------------------------------------------- helpers


def daily_new_cases(series: ConfirmedSeries) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Today's cumulative minus yesterday's, no clipping (corrections stay negative); the first day has none."""
    return np.diff(series.cumulative, axis=1), series.dates[1:]


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal consecutive keys."""
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return starts, np.diff(np.append(starts, keys.size))


def _month_keys(dates: pd.DatetimeIndex) -> np.ndarray:
    return (dates.year * 12 + dates.month - 1).to_numpy(np.int64)


def ols_slopes(values: np.ndarray) -> np.ndarray:
    """Slope of the least-squares line through each row of ``values`` against x = 0, 1, 2, …"""
    x = np.arange(values.shape[1], dtype=np.float64)
    centred = x - x.mean()
    return (values.astype(np.float64) @ centred) / float(centred @ centred)


def expanding_ols_slopes(values: np.ndarray) -> np.ndarray:
    """Column m: slope of each row's values 0..m against x = 0..m (0 for m = 0), from running sums."""
    y = values.astype(np.float64)
    n = np.arange(1, y.shape[1] + 1, dtype=np.float64)
    x = n - 1
    sum_y = np.cumsum(y, axis=1)
    sum_xy = np.cumsum(y * x, axis=1)
    sxx = n * (n * n - 1) / 12.0  # Σ(x − x̄)² of 0..m
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = (sum_xy - (x / 2.0) * sum_y) / sxx
    slopes[:, 0] = 0.0
    return slopes


def _top(scores: np.ndarray, names: np.ndarray, countries: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` highest scores; ties broken by name then country for a stable result."""
    order = np.lexsort((countries.astype(str), names.astype(str), -scores))
    return order[:count]


# --------------------------------------------------------------------------------------------------- query 1


def monthly_mean_daily_cases(series: ConfirmedSeries) -> pd.DataFrame:
    """Query 1: per country and calendar month, the mean of the country's daily new cases (provinces summed)."""
    daily, days = daily_new_cases(series)
    order = np.argsort(series.countries.astype(str), kind="stable")
    countries = series.countries[order]
    country_starts, _ = _runs(countries.astype(str))
    per_country = np.add.reduceat(daily[order], country_starts, axis=0)  # exact int64 sums
    month_keys = _month_keys(days)
    month_starts, month_days = _runs(month_keys)
    sums = np.add.reduceat(per_country, month_starts, axis=1)
    n_countries, n_months = sums.shape
    keys = month_keys[month_starts]
    return pd.DataFrame(
        {
            "country": np.repeat(countries[country_starts], n_months).astype(str),
            "year": np.tile(keys // 12, n_countries).astype(np.int32),
            "month": np.tile(keys % 12 + 1, n_countries).astype(np.int32),
            "average": (sums / month_days).ravel(),
            "days": np.tile(month_days, n_countries).astype(np.int32),
        }
    )


# --------------------------------------------------------------------------------------------------- query 2


def location_continents(series: ConfirmedSeries, polygons: ContinentPolygons) -> pd.DataFrame:
    """Each CSV row with coordinates: its location name and continent (None where no polygon or box fits)."""
    rows = np.flatnonzero(series.has_coordinates)
    continent, method = assign_continents(series.longitudes[rows], series.latitudes[rows], polygons)
    return pd.DataFrame(
        {
            "source_row": rows.astype(np.int32),
            "location": series.locations[rows].astype(str),
            "country": series.countries[rows].astype(str),
            "lat": series.latitudes[rows],
            "long": series.longitudes[rows],
            "continent": continent,
            "method": method.astype(str),
        }
    )


@dataclass(frozen=True)
class WeeklyContinentStats:
    stats: pd.DataFrame  # continent, week, week_start, mean, std, min, max, n_values, n_locations
    top_locations: pd.DataFrame  # rank, location, country, lat, long, slope, continent


def week_label(start: pd.Timestamp) -> str:
    return f"{start:%d/%m/%Y}-{start + pd.Timedelta(days=6):%d/%m/%Y}"


def weekly_continent_stats(
    series: ConfirmedSeries, continents: pd.DataFrame, top_n: int = 100
) -> WeeklyContinentStats:
    """Query 2: Sunday–Saturday weekly mean / sample std / min / max per continent over the top-N locations.

    ``continents`` is `location_continents`' frame (source_row → continent); rows with no coordinates are
    not candidates, and top locations with no continent are dropped after the ranking.
    """
    daily, days = daily_new_cases(series)
    candidates = continents["source_row"].to_numpy(np.int64)
    slopes = ols_slopes(daily[candidates])
    top = _top(slopes, continents["location"].to_numpy(), continents["country"].to_numpy(), top_n)
    chosen = continents.iloc[top].reset_index(drop=True)
    top_locations = pd.DataFrame(
        {
            "rank": np.arange(1, len(chosen) + 1, dtype=np.int32),
            "location": chosen["location"].astype(str),
            "country": chosen["country"].astype(str),
            "lat": chosen["lat"].astype(np.float64),
            "long": chosen["long"].astype(np.float64),
            "slope": slopes[top],
            "continent": chosen["continent"],
        }
    )
    days_since_sunday = (days.dayofweek.to_numpy() + 1) % 7  # pandas: Monday = 0
    week_starts = days.to_numpy("datetime64[D]") - days_since_sunday.astype("timedelta64[D]")
    starts, lengths = _runs(week_starts.astype(np.int64))
    frames = []
    assigned = chosen[chosen["continent"].notna()]
    for continent, group in assigned.groupby("continent", sort=True):
        block = daily[group["source_row"].to_numpy(np.int64)].astype(np.float64)
        n_values = lengths * block.shape[0]
        mean = np.add.reduceat(block, starts, axis=1).sum(axis=0) / n_values
        deviation = block - np.repeat(mean, lengths)[None, :]  # two-pass: no cancellation on large counts
        squares = np.add.reduceat(deviation * deviation, starts, axis=1).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            std = np.sqrt(squares / (n_values - 1))  # sample standard deviation (NaN for a single value)
        week_start = pd.DatetimeIndex(week_starts[starts])
        frames.append(
            pd.DataFrame(
                {
                    "continent": continent,
                    "week": [week_label(start) for start in week_start],
                    "week_start": week_start.astype("datetime64[ns]"),
                    "mean": mean,
                    "std": std,
                    "min": np.minimum.reduceat(block, starts, axis=1).min(axis=0).astype(np.int64),
                    "max": np.maximum.reduceat(block, starts, axis=1).max(axis=0).astype(np.int64),
                    "n_values": n_values.astype(np.int32),
                    "n_locations": np.int32(block.shape[0]),
                }
            )
        )
    stats = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return WeeklyContinentStats(stats, top_locations)


# --------------------------------------------------------------------------------------------------- query 3


@dataclass(frozen=True)
class MonthlyClusters:
    assignments: pd.DataFrame  # one row per (location, month): both implementations' labels
    months: pd.DataFrame  # one row per month: inertias, adjusted Rand index, optimal inertia
    top_locations: pd.DataFrame  # rank, location, country, lat, long, mean_slope


def sklearn_kmeans_labels(values: np.ndarray, n_clusters: int, seed: int, n_init: int) -> np.ndarray:
    # scikit-learn is imported where it is used: it takes about a second to import, and every Dagster step
    # process imports the whole code location.
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # Expected when a month has fewer distinct values than clusters (2020-01: all zero).
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed, algorithm="lloyd")
        return model.fit_predict(values.reshape(-1, 1)).astype(np.int64)


@dataclass(frozen=True)
class MonthlySlopes:
    ranking: pd.DataFrame  # every location with coordinates: rank, location, country, lat, long, mean_slope
    monthly_cases: np.ndarray  # (locations in ranking order, months)
    slopes: np.ndarray  # expanding-window slope, same shape
    month_keys: np.ndarray  # year * 12 + month - 1 per month column


def monthly_slope_ranking(series: ConfirmedSeries) -> MonthlySlopes:
    """Monthly cases and expanding-window monthly slopes of every located row, ranked by their mean slope."""
    rows = np.flatnonzero(series.has_coordinates)
    daily, days = daily_new_cases(series)
    month_keys = _month_keys(days)
    month_starts, _ = _runs(month_keys)
    monthly_cases = np.add.reduceat(daily[rows], month_starts, axis=1)
    slopes = expanding_ols_slopes(monthly_cases)
    mean_slope = slopes.mean(axis=1)
    locations = series.locations[rows]
    countries = series.countries[rows]
    order = _top(mean_slope, locations, countries, rows.size)
    ranking = pd.DataFrame(
        {
            "rank": np.arange(1, rows.size + 1, dtype=np.int32),
            "location": locations[order].astype(str),
            "country": countries[order].astype(str),
            "lat": series.latitudes[rows][order],
            "long": series.longitudes[rows][order],
            "mean_slope": mean_slope[order],
        }
    )
    return MonthlySlopes(ranking, monthly_cases[order], slopes[order], month_keys[month_starts])


def monthly_clusters(
    series: ConfirmedSeries,
    top_n: int = 50,
    n_clusters: int = 4,
    seed: int = 1,
    n_init: int = 10,
    own_max_iter: int = 20,
    own_tol: float = 1e-4,
) -> MonthlyClusters:
    """Query 3: k-means (K = 4) per month of the top-N locations on their expanding-window monthly slope.

    The own k-means keeps the original's max 20 iterations and tol 1e-4 (relative, as scikit-learn's);
    both implementations use k-means++ seeding, ``n_init`` starts and ``seed``.
    """
    from sklearn.metrics import adjusted_rand_score  # imported on use, see sklearn_kmeans_labels
    from threadpoolctl import threadpool_limits

    ranked = monthly_slope_ranking(series)
    top_locations = ranked.ranking.head(top_n).reset_index(drop=True)
    features = ranked.slopes[:top_n]
    monthly_cases = ranked.monthly_cases[:top_n]
    keys = ranked.month_keys
    n_top, n_months = features.shape
    own = np.empty((n_top, n_months), dtype=np.int64)
    library = np.empty((n_top, n_months), dtype=np.int64)
    month_rows = []
    # 50 one-dimensional points: OpenMP threads only add hand-off cost (and stall badly on a busy machine).
    with threadpool_limits(limits=1, user_api="openmp"):
        for month in range(n_months):
            values = features[:, month]
            own_result = kmeans(values, n_clusters, seed=seed, n_init=n_init, max_iter=own_max_iter, tol=own_tol)
            own[:, month] = own_result.labels
            library[:, month] = canonical_labels(values, sklearn_kmeans_labels(values, n_clusters, seed, n_init))
            optimal = optimal_partition_1d(values, n_clusters)
            key = int(keys[month])
            month_rows.append(
                {
                    "year": key // 12,
                    "month": key % 12 + 1,
                    "month_index": month,
                    "inertia_own": own_result.inertia,
                    "inertia_sklearn": labelled_inertia(values, library[:, month]),
                    "inertia_optimal": optimal.inertia,
                    "adjusted_rand_index": float(adjusted_rand_score(own[:, month], library[:, month])),
                    "clusters_own": int(own[:, month].max()) + 1,
                    "clusters_sklearn": int(library[:, month].max()) + 1,
                }
            )
    months = pd.DataFrame(month_rows)
    assignments = pd.DataFrame(
        {
            "location": np.repeat(top_locations["location"].to_numpy(), n_months),
            "country": np.repeat(top_locations["country"].to_numpy(), n_months),
            "lat": np.repeat(top_locations["lat"].to_numpy(), n_months),
            "long": np.repeat(top_locations["long"].to_numpy(), n_months),
            "rank": np.repeat(top_locations["rank"].to_numpy(), n_months),
            "year": np.tile(keys // 12, n_top).astype(np.int32),
            "month": np.tile(keys % 12 + 1, n_top).astype(np.int32),
            "month_index": np.tile(np.arange(n_months), n_top).astype(np.int32),
            "monthly_cases": monthly_cases.ravel(),
            "monthly_slope": features.ravel(),
            "cluster_own": own.ravel(),
            "cluster_sklearn": library.ravel(),
        }
    )
    return MonthlyClusters(assignments, months, top_locations)
