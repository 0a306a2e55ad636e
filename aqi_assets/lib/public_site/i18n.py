"""The page's texts: one catalogue per language (`static/i18n/<lang>.json`), published with the site.

Each catalogue holds every text of the page (`ui`), the names of the index categories, the labels of the
temperature and humidity classes, and the official health advice per category (`advice`: for the US AQI the
EPA's cautionary statements for PM2.5, for the UK DAQI Defra's advice; English is the official text, the German is
the project's translation, and the catalogue says so). `check_catalogues` fails a build whose catalogues
disagree (a key missing in one language, a category without advice), so no visitor meets a missing text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aqi_assets.lib.public_site.vendor import STATIC_DIR

I18N_DIR = STATIC_DIR / "i18n"
DEFAULT_LANG = "en"
# The categories the data carry (`us_cat`, `uk_band` in the GeoJSON), in scale order.
US_CATEGORIES = ("Good", "Moderate", "Unhealthy for Sensitive Groups", "Unhealthy", "Very Unhealthy", "Hazardous")
UK_BANDS = ("Low", "Moderate", "High", "Very High")
CATEGORIES = {"us": US_CATEGORIES, "uk": UK_BANDS}
CLIMATE_BIN_COUNTS = {"t": 6, "rh": 5}  # as many classes as app.js draws
PLACEHOLDER = re.compile(r"\{(\w+)\}")


class CatalogueError(ValueError):
    """A catalogue lacks a text, or disagrees with the others."""


def load_catalogues(directory: Path = I18N_DIR) -> dict[str, dict[str, Any]]:
    """language code → catalogue, for every `<lang>.json` in `directory`."""
    catalogues = {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}
    if DEFAULT_LANG not in catalogues:
        raise CatalogueError(f"no {DEFAULT_LANG}.json in {directory}")
    return catalogues


def check_catalogues(catalogues: dict[str, dict[str, Any]]) -> None:
    """Every language has every text the default language has, with the same placeholders, and advice (for the
    general population and for sensitive groups, with its source) for every category of both indices."""
    problems: list[str] = []
    reference = catalogues[DEFAULT_LANG]
    for lang, catalogue in catalogues.items():
        if catalogue.get("lang") != lang:
            problems.append(f"{lang}: 'lang' is {catalogue.get('lang')!r}")
        if lang != DEFAULT_LANG and not catalogue.get("translation_note"):
            problems.append(f"{lang}: no translation_note (the advice is the project's translation)")
        for key, text in reference["ui"].items():
            translated = catalogue.get("ui", {}).get(key)
            if not translated:
                problems.append(f"{lang}: ui.{key} missing")
            elif set(PLACEHOLDER.findall(translated)) != set(PLACEHOLDER.findall(text)):
                problems.append(f"{lang}: ui.{key} has other placeholders than {DEFAULT_LANG}")
        extra = set(catalogue.get("ui", {})) - set(reference["ui"])
        problems += [f"{lang}: ui.{key} not in {DEFAULT_LANG}" for key in sorted(extra)]
        for index in ("us", "uk", "t", "rh"):
            if not catalogue.get("indices", {}).get(index):
                problems.append(f"{lang}: indices.{index} missing")
        for index, bins in CLIMATE_BIN_COUNTS.items():
            if len(catalogue.get("climate_bins", {}).get(index, [])) != bins:
                problems.append(f"{lang}: climate_bins.{index} needs {bins} labels")
        for index, categories in CATEGORIES.items():
            advice = catalogue.get("advice", {}).get(index, {})
            for field in ("general_label", "sensitive_label", "source", "source_url"):
                if not advice.get(field):
                    problems.append(f"{lang}: advice.{index}.{field} missing")
            for category in categories:
                if not catalogue.get("categories", {}).get(index, {}).get(category):
                    problems.append(f"{lang}: categories.{index}.{category} missing")
                texts = advice.get("categories", {}).get(category, {})
                for group in ("general", "sensitive"):
                    if not texts.get(group):
                        problems.append(f"{lang}: advice.{index}.{category}.{group} missing")
    if problems:
        raise CatalogueError("; ".join(problems))


def ui_text(catalogue: dict[str, Any], key: str, **values: object) -> str:
    """A `ui` text with its `{placeholders}` filled (as app.js does)."""
    return PLACEHOLDER.sub(lambda match: str(values.get(match.group(1), match.group(0))), catalogue["ui"][key])
