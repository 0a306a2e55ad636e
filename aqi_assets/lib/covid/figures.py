"""Figures of the COVID-19 queries as markdown images (base64 PNG), for Dagster's metadata panel.

matplotlib is imported inside the functions (it costs a noticeable part of every step process's start-up).
matplotlib's Agg backend is selected per figure (`Figure` + `FigureCanvasAgg`), never through pyplot's
global state, so that rendering works headless and in parallel steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from aqi_assets.lib.common.markdown import figure_markdown, frame_markdown

__all__ = ["figure_markdown", "markdown_table"]

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONTINENT_COLOURS = {
    "Africa": "#d95f02",
    "America": "#1b9e77",
    "Antarctica": "#999999",
    "Asia": "#7570b3",
    "Europe": "#e7298a",
    "Oceania": "#66a61e",
}
CLUSTER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def monthly_means_figure(q1: pd.DataFrame, panels: int = 3) -> Figure:
    """Query 1: a heat map (countries × months) of the mean daily cases, split into ``panels`` columns."""
    from matplotlib.colors import SymLogNorm
    from matplotlib.figure import Figure

    table = q1.pivot_table(index="country", columns=["year", "month"], values="average", sort=True)
    months = [f"{year}-{month:02d}" for year, month in table.columns]
    chunks = np.array_split(np.arange(len(table)), panels)
    figure = Figure(figsize=(6 * panels, 0.11 * max(len(chunk) for chunk in chunks) + 2))
    axes = figure.subplots(1, panels)
    norm = SymLogNorm(linthresh=1.0, vmin=min(0.0, float(np.nanmin(table.values))), vmax=float(np.nanmax(table.values)))
    image = None
    for ax, chunk in zip(np.atleast_1d(axes), chunks, strict=True):
        image = ax.imshow(table.values[chunk], aspect="auto", cmap="magma_r", norm=norm, interpolation="nearest")
        ax.set_yticks(range(len(chunk)), table.index[chunk], fontsize=5)
        ticks = range(0, len(months), 6)
        ax.set_xticks(list(ticks), [months[i] for i in ticks], fontsize=6, rotation=90)
    figure.suptitle("Mean daily confirmed cases per month and country (JHU CSSE)")
    if image is not None:
        figure.colorbar(image, ax=axes, shrink=0.6, label="mean daily new cases (symlog)")
    return figure


def weekly_stats_figure(stats: pd.DataFrame) -> Figure:
    """Query 2: mean / std / min / max of the daily cases per week, one line per continent."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8))
    axes = figure.subplots(2, 2, sharex=True).ravel()
    for ax, column in zip(axes, ("mean", "std", "min", "max"), strict=True):
        for continent, group in stats.groupby("continent", sort=True):
            ax.plot(group["week_start"], group[column], label=continent, color=CONTINENT_COLOURS.get(continent),
                    linewidth=1)
        ax.set_yscale("symlog", linthresh=10)
        ax.set_title(f"weekly {column} of daily new cases")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    axes[0].legend(fontsize=8)
    figure.suptitle("Top-100 locations by slope: weekly statistics per continent (weeks Sunday–Saturday)")
    return figure


def cluster_map_figure(assignments: pd.DataFrame, year: int, month: int) -> Figure:
    """Query 3: lon/lat of the clustered locations in one month, coloured by cluster, per implementation."""
    from matplotlib.figure import Figure

    chosen = assignments[(assignments["year"] == year) & (assignments["month"] == month)]
    figure = Figure(figsize=(14, 5))
    axes = figure.subplots(1, 2, sharey=True)
    for ax, column, title in zip(axes, ("cluster_own", "cluster_sklearn"), ("own k-means (NumPy Lloyd)",
                                                                           "scikit-learn KMeans"), strict=True):
        colours = [CLUSTER_COLOURS[int(label) % len(CLUSTER_COLOURS)] for label in chosen[column]]
        ax.scatter(chosen["long"], chosen["lat"], c=colours, s=30, edgecolors="black", linewidths=0.3)
        for row in chosen.itertuples():
            ax.annotate(row.location, (row.long, row.lat), fontsize=5, xytext=(2, 2), textcoords="offset points")
        for label in sorted(chosen[column].unique()):
            ax.scatter([], [], color=CLUSTER_COLOURS[int(label) % len(CLUSTER_COLOURS)], label=f"cluster {label}")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_xlabel("longitude")
        ax.set_title(f"{title}, {year}-{month:02d}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("latitude")
    figure.suptitle("Top-50 locations clustered on their monthly slope (K = 4; 0 = lowest slope)")
    return figure


def markdown_table(frame: pd.DataFrame, max_rows: int = 10, float_format: str = "{:.6g}") -> str:
    """A small markdown table for metadata previews (the project's one renderer)."""
    return frame_markdown(frame, max_rows, float_format)
