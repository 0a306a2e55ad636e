"""How far apart the map's colours stay for colour-blind visitors.

Each palette of the page (the official US AQI and UK DAQI scales, kept as published, and the project's own
temperature and humidity classes) is simulated for protanopia, deuteranopia and tritanopia (Machado, Oliveira &
Fernandes 2009, severity 1, in linear sRGB) and the smallest CIELAB distance (ΔE*ab 1976) between any two of its
colours is reported. Below about 10 two colours are hard to tell apart: the page then relies on its text (every
legend row, popup value, group and place-search result names the category), which is why the official scales may
stay as they are. `python -m aqi_assets.lib.public_site.palette` prints the table the README quotes.
"""

from __future__ import annotations

import itertools
import math

# The page's palettes, in scale order (app.js draws these; a test checks both agree).
PALETTES: dict[str, tuple[str, ...]] = {
    "US AQI": ("#00e400", "#ffff00", "#ff7e00", "#ff0000", "#8f3f97", "#7e0023"),
    "UK DAQI": ("#9cff9c", "#31ff00", "#31cf00", "#ffff00", "#ffcf00", "#ff9a00", "#ff6464", "#ff0000", "#990000",
                "#ce30ff"),
    "temperature": ("#4575b4", "#91bfdb", "#e0f3f8", "#fee090", "#fc8d59", "#d73027"),
    "humidity": ("#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c"),
}
# Machado et al. (2009) simulation matrices at severity 1.0, applied to linear sRGB.
DEFICIENCIES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}
HARD_TO_TELL_APART = 10.0  # ΔE*ab


def _linear(colour: str) -> tuple[float, ...]:
    channels = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return tuple(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)


def _lab(linear: tuple[float, ...]) -> tuple[float, float, float]:
    r, g, b = (min(1.0, max(0.0, c)) for c in linear)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
    fx, fy, fz = (v ** (1 / 3) if v > 0.008856 else 7.787 * v + 16 / 116 for v in (x, y, z))
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def simulate(colour: str, deficiency: str | None) -> tuple[float, float, float]:
    """The CIELAB colour a viewer with `deficiency` (None: typical vision) sees for `colour`."""
    linear = _linear(colour)
    if deficiency is not None:
        linear = tuple(sum(m * c for m, c in zip(row, linear, strict=True)) for row in DEFICIENCIES[deficiency])
    return _lab(linear)


def closest_pair(palette: tuple[str, ...], deficiency: str | None) -> tuple[float, int, int]:
    """(ΔE, i, j) of the two colours of the palette closest to each other (1-based classes)."""
    seen = [simulate(colour, deficiency) for colour in palette]
    return min((math.dist(seen[i], seen[j]), i + 1, j + 1) for i, j in itertools.combinations(range(len(seen)), 2))


def report() -> dict[str, dict[str, tuple[float, int, int]]]:
    return {name: {kind or "typical": closest_pair(palette, kind) for kind in (None, *DEFICIENCIES)}
            for name, palette in PALETTES.items()}


def main() -> int:
    for name, rows in report().items():
        cells = [f"{kind} {distance:.1f} ({i}/{j})" for kind, (distance, i, j) in rows.items()]
        print(f"{name}: closest classes, ΔE*ab: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
