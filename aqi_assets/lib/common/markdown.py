"""Markdown for Dagster's metadata panel: the project's one table renderer, and figures as inline PNG."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

EMPTY_CELL = "–"


def cell_text(value: Any, float_format: str = "{:.6g}") -> str:
    """One cell: floats formatted, dates as ISO text, missing values as a dash; `|` and line breaks escaped so
    a value from the data can never break the table."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY_CELL
    if isinstance(value, (float, np.floating)):
        text = float_format.format(value)
    elif isinstance(value, datetime):  # pandas Timestamps too
        text = value.strftime("%Y-%m-%d" if value.time() == time() else "%Y-%m-%d %H:%M:%S")
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    more_rows: int = 0,
    float_format: str = "{:.6g}",
    empty: str = "_none_",
) -> str:
    """A markdown table of ``rows``; ``more_rows`` > 0 adds a line saying how many rows were left out."""
    body = ["| " + " | ".join(cell_text(value, float_format) for value in row) + " |" for row in rows]
    if not body:
        return empty
    lines = ["| " + " | ".join(cell_text(column) for column in columns) + " |", "|" + "---|" * len(columns), *body]
    if more_rows > 0:
        lines.append(f"\n… {more_rows} more rows")
    return "\n".join(lines)


def frame_markdown(frame: pd.DataFrame, max_rows: int = 10, float_format: str = "{:.6g}") -> str:
    """The first ``max_rows`` rows of a DataFrame as a markdown table."""
    shown = frame.head(max_rows)
    return markdown_table(
        [str(c) for c in shown.columns],
        shown.itertuples(index=False),
        more_rows=len(frame) - len(shown),
        float_format=float_format,
    )


def figure_markdown(figure: Figure, title: str, dpi: int = 72) -> str:
    """Render a matplotlib ``figure`` to PNG (Agg, no pyplot state) and wrap it as a markdown image (data URI)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"![{title}](data:image/png;base64,{encoded})"
