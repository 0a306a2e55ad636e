"""What the UI shows about one partition of `aqi_hourly` / `aqi_daily`: counts per category, coverage, the worst
sensors and a small figure of the distribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aqi_assets.lib.air_quality.indices import DAQI_BANDS, EPA_CATEGORIES
from aqi_assets.lib.common.markdown import markdown_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WORST_SENSORS = 10
# AirNow's category colours, and the Defra DAQI band colours.
EPA_COLOURS = ("#00e400", "#ffff00", "#ff7e00", "#ff0000", "#8f3f97", "#7e0023")
DAQI_COLOURS = ("#31ff00", "#ff9a00", "#ff0000", "#990099")
NO_INDEX = "no index"


@dataclass(frozen=True)
class IndexColumns:
    """Which columns of a partition hold its headline US index and DAQI."""

    time: str  # "hour" / "day"
    aqi: str  # "aqi_us_nowcast" / "aqi_us_daily"
    daqi: str  # "daqi_24h" / "daqi_daily"
    pm25: str  # the concentration behind the US index
    pm10: str

    @property
    def category(self) -> str:
        return f"{self.aqi}_category"

    @property
    def band(self) -> str:
        return f"{self.daqi}_band"


HOURLY_COLUMNS = IndexColumns("hour", "aqi_us_nowcast", "daqi_24h", "pm25_nowcast", "pm10_nowcast")
DAILY_COLUMNS = IndexColumns("day", "aqi_us_daily", "daqi_daily", "pm25_mean", "pm10_mean")


@dataclass
class PartitionSummary:
    rows: int
    sensors: int
    with_aqi: int
    with_daqi: int
    category_counts: dict[str, int]
    band_counts: dict[str, int]
    worst_markdown: str

    @property
    def aqi_coverage(self) -> float:
        return self.with_aqi / self.rows if self.rows else 0.0

    @property
    def daqi_coverage(self) -> float:
        return self.with_daqi / self.rows if self.rows else 0.0


def _counts(table: pa.Table, column: str, names: list[str]) -> dict[str, int]:
    values = table.column(column).to_pylist()
    counts = {name: 0 for name in [*names, NO_INDEX]}
    for value in values:
        counts[value if value is not None else NO_INDEX] += 1
    return counts


def summarise(table: pa.Table, columns: IndexColumns) -> PartitionSummary:
    """Counts per EPA category and DAQI band (sensor-hours or sensor-days), coverage, the worst sensors."""
    worst = table.filter(pc.is_valid(table.column(columns.aqi))).sort_by(
        [(columns.aqi, "descending"), (columns.daqi, "descending"), ("sensor_id", "ascending")]
    )
    shown = worst.slice(0, WORST_SENSORS)
    names = ["sensor_id", columns.time, "country", columns.pm25, columns.pm10, columns.aqi, columns.category,
             columns.daqi]
    worst_markdown = markdown_table(names, zip(*(shown.column(n).to_pylist() for n in names), strict=True),
                                    more_rows=0, float_format="{:.1f}")
    return PartitionSummary(
        rows=table.num_rows,
        sensors=len(pc.unique(table.column("sensor_id"))) if table.num_rows else 0,
        with_aqi=table.num_rows - table.column(columns.aqi).null_count,
        with_daqi=table.num_rows - table.column(columns.daqi).null_count,
        category_counts=_counts(table, columns.category, [name for _, _, name in EPA_CATEGORIES]),
        band_counts=_counts(table, columns.band, [name for _, _, name in DAQI_BANDS]),
        worst_markdown=worst_markdown,
    )


def distribution_figure(table: pa.Table, columns: IndexColumns, title: str) -> Figure:
    """Two small bar charts: sensors per US AQI category and per DAQI index (1..10), in the agencies' colours."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 2.6))
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    summary_counts = _counts(table, columns.category, [name for _, _, name in EPA_CATEGORIES])
    labels = [name for _, _, name in EPA_CATEGORIES]
    short = ["Good", "Moderate", "USG", "Unhealthy", "V. unh.", "Hazard."]
    left.bar(short, [summary_counts[label] for label in labels], color=EPA_COLOURS, edgecolor="#444444")
    left.set_title(f"US AQI ({columns.aqi})", fontsize=9)
    left.tick_params(labelsize=7)
    daqi = np.asarray(table.column(columns.daqi).to_numpy(zero_copy_only=False), dtype=np.float64)
    indices = np.arange(1, 11)
    per_index = [int(np.sum(daqi == i)) for i in indices]
    colours = [DAQI_COLOURS[next(k for k, (lo, hi, _) in enumerate(DAQI_BANDS) if lo <= i <= hi)] for i in indices]
    right.bar(indices, per_index, color=colours, edgecolor="#444444")
    right.set_xticks(indices)
    right.set_title(f"UK DAQI ({columns.daqi})", fontsize=9)
    right.tick_params(labelsize=7)
    for axes in (left, right):
        axes.set_ylabel("sensors", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def metadata_values(summary: PartitionSummary) -> dict[str, Any]:
    """Plain values for the materialisation metadata (the Dagster layer wraps them)."""
    return {
        "rows": summary.rows,
        "sensors": summary.sensors,
        "aqi_us_coverage": round(summary.aqi_coverage, 4),
        "daqi_coverage": round(summary.daqi_coverage, 4),
        "aqi_us_category_counts": summary.category_counts,
        "daqi_band_counts": summary.band_counts,
    }
