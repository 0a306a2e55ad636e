"""The page's text catalogues (every text in every language, the official advice verbatim), its palettes as
colour-blind visitors see them, and the vendored npm packages (each file checked against its manifest and,
offline, against a tarball's copy)."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from aqi_assets.lib.public_site.build import SiteConfig, render_index
from aqi_assets.lib.public_site.i18n import (
    CATEGORIES,
    CatalogueError,
    check_catalogues,
    load_catalogues,
    ui_text,
)
from aqi_assets.lib.public_site.palette import HARD_TO_TELL_APART, PALETTES, closest_pair, simulate
from aqi_assets.lib.public_site.vendor import (
    SITE_VENDOR_ROOT,
    STATIC_DIR,
    VendorMismatch,
    check_against_npm_tarballs,
    check_vendored,
    main,
    vendored_packages,
)
from aqi_assets_tests.support.samples import PROJECT_ROOT

TEST_VENDOR_ROOT = PROJECT_ROOT / "aqi_assets_tests" / "data" / "vendor"

# The official texts, copied here from their sources independently of the catalogue (EPA-454/B-24-002 table of
# PM2.5 cautionary statements; Defra UK-AIR DAQI health advice).
EPA_PM25 = {
    "Moderate": "Unusually sensitive people should consider reducing prolonged or heavy exertion.",
    "Unhealthy": "People with heart or lung disease, older adults, children, and people of lower socioeconomic "
    "status should avoid prolonged or heavy exertion; everyone else should reduce prolonged or heavy exertion.",
    "Hazardous": "Everyone should avoid all physical activity outdoors; people with heart or lung disease, older "
    "adults, children, and people of lower socioeconomic status should remain indoors and keep activity levels low.",
}
DEFRA_DAQI = {
    ("Moderate", "sensitive"): "Adults and children with lung problems, and adults with heart problems, who "
    "experience symptoms, should consider reducing strenuous physical activity, particularly outdoors.",
    ("Very High", "general"): "Reduce physical exertion, particularly outdoors, especially if you experience "
    "symptoms such as cough or sore throat.",
}


def _sentences(text: str) -> set[str]:
    """The statement's parts (split at '; ' and '. '), first letter capitalised, ending in a full stop."""
    parts = [p.strip().rstrip(".") for p in re.split(r"; |\. ", text)]
    return {p[0].upper() + p[1:] + "." for p in parts if p}


def test_catalogues_agree_and_carry_advice_for_every_category() -> None:
    catalogues = load_catalogues()
    assert set(catalogues) == {"en", "de"}
    check_catalogues(catalogues)
    assert "Übersetzung" in catalogues["de"]["translation_note"], "the German advice is said to be a translation"
    assert ui_text(catalogues["de"], "find_none", id=7) == "Kein Außensensor 7 auf der Karte."
    for lang in catalogues:
        for index, categories in CATEGORIES.items():
            texts = catalogues[lang]["advice"][index]["categories"]
            assert list(texts) == list(categories)


def test_english_advice_is_the_official_text() -> None:
    advice = load_catalogues()["en"]["advice"]
    for category, statement in EPA_PM25.items():
        assert advice["us"]["categories"][category]["official"] == statement
    for (category, group), text in DEFRA_DAQI.items():
        assert advice["uk"]["categories"][category][group] == text
    # Split per group, the EPA's statements keep their words: each part is a sentence of the statement.
    for category, texts in advice["us"]["categories"].items():
        parts = _sentences(texts["official"]) | {"None."}
        assert {texts["general"], texts["sensitive"]} <= parts, category
    assert "EPA-454/B-24-002" in advice["us"]["source"] and "Defra" in advice["uk"]["source"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["de"]["ui"].pop("find_none"), "de: ui.find_none missing"),
        (lambda c: c["de"]["ui"].update(status="{n} Sensoren"), "de: ui.status has other placeholders"),
        (lambda c: c["de"]["advice"]["uk"]["categories"]["High"].pop("general"), "advice.uk.High.general"),
        (lambda c: c["de"].update(translation_note=""), "de: no translation_note"),
    ],
)
def test_a_catalogue_with_a_gap_fails(change, message: str) -> None:
    catalogues = copy.deepcopy(load_catalogues())
    change(catalogues)
    with pytest.raises(CatalogueError, match=re.escape(message)):
        check_catalogues(catalogues)


def test_the_page_is_rendered_in_the_default_language_and_names_every_catalogue() -> None:
    assets = {"app_js": "assets/app.1.js", "style_css": "assets/style.1.css", "places": "assets/places.1.json",
              "i18n_en": "assets/i18n-en.1.json", "i18n_de": "assets/i18n-de.1.json"}
    page = render_index(SiteConfig(tile_url=""), assets).decode()
    assert "{{" not in page and '<html lang="en">' in page
    assert "<title>Air quality now: Sensor.Community outdoor sensors</title>" in page
    config = json.loads(page.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    assert config["i18n"] == {"de": "assets/i18n-de.1.json", "en": "assets/i18n-en.1.json"}
    assert config["places"] == "assets/places.1.json" and config["defaultLang"] == "en"
    assert "script-src 'self'" in page and "<script>" not in page, "no inline script: the CSP stays strict"


def test_every_vendored_package_matches_its_manifest() -> None:
    site = {p.name: check_vendored(p) for p in vendored_packages()}
    assert {"leaflet.js", "LICENSE"} <= set(site["leaflet-1.9.4"])
    assert set(site["supercluster-8.0.1"]) == {"supercluster.min.js", "LICENSE", "LICENSE-kdbush"}
    tests = {p.name: check_vendored(p) for p in vendored_packages(TEST_VENDOR_ROOT)}
    assert set(tests["axe-core-4.10.2"]) == {"axe.min.js", "LICENSE"}
    assert main([str(SITE_VENDOR_ROOT), str(TEST_VENDOR_ROOT)]) == 0


def _tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def _integrity(body: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(body).digest()).decode()


def test_a_changed_or_unlisted_file_and_a_wrong_tarball_are_caught(tmp_path: Path) -> None:
    package = tmp_path / "supercluster-8.0.1"
    shutil.copytree(SITE_VENDOR_ROOT / "supercluster-8.0.1", package)
    own = _tarball({"package/LICENSE": (package / "LICENSE").read_bytes(),
                    "package/dist/supercluster.min.js": (package / "supercluster.min.js").read_bytes()})
    bundled = _tarball({"package/LICENSE": (package / "LICENSE-kdbush").read_bytes()})
    (tmp_path / "own.tgz").write_bytes(own)
    (tmp_path / "kdbush.tgz").write_bytes(bundled)
    manifest = json.loads((package / "MANIFEST.json").read_text())
    manifest["tarball_integrity"] = _integrity(own)
    manifest["extra_tarballs"]["kdbush@4.0.2"]["integrity"] = _integrity(bundled)
    (package / "MANIFEST.json").write_text(json.dumps(manifest))
    tarballs = {"supercluster@8.0.1": tmp_path / "own.tgz", "kdbush@4.0.2": tmp_path / "kdbush.tgz"}
    check_against_npm_tarballs(tarballs, package)  # each file from its own tarball

    (tmp_path / "kdbush.tgz").write_bytes(own)
    with pytest.raises(VendorMismatch, match="integrity"):
        check_against_npm_tarballs(tarballs, package)
    (tmp_path / "kdbush.tgz").write_bytes(bundled)
    (package / "LICENSE-kdbush").write_bytes(b"changed")
    with pytest.raises(VendorMismatch, match="LICENSE-kdbush: content differs"):
        check_vendored(package)
    with pytest.raises(VendorMismatch, match="LICENSE-kdbush differs from package/LICENSE"):
        check_against_npm_tarballs(tarballs, package)
    (package / "LICENSE-kdbush").write_bytes((SITE_VENDOR_ROOT / "supercluster-8.0.1" / "LICENSE-kdbush").read_bytes())
    (package / "extra.js").write_text("alert(1)")
    with pytest.raises(VendorMismatch, match=re.escape("extra.js: not in MANIFEST.json")):
        check_vendored(package)


def test_palettes_are_the_page_s_and_the_project_s_own_stay_apart_for_colour_blind_viewers() -> None:
    script = (STATIC_DIR / "app.js").read_text()
    for name, palette in PALETTES.items():
        # The colours one after the other in one list of app.js (a scale's entries may carry other fields).
        pattern = "[^#]*".join(re.escape(f'"{colour}"') for colour in palette)
        assert re.search(pattern, script), f"app.js draws another {name} palette"
    assert simulate("#ffffff", "deuteranopia") == pytest.approx((100.0, 0.0, 0.0), abs=0.5), "white stays white"
    assert simulate("#ff0000", None) == pytest.approx((53.2, 80.1, 67.2), abs=0.3), "sRGB red in CIELAB"
    # The temperature and humidity classes (ColorBrewer) stay apart for every deficiency ...
    for name in ("temperature", "humidity"):
        for deficiency in ("protanopia", "deuteranopia", "tritanopia"):
            assert closest_pair(PALETTES[name], deficiency)[0] > HARD_TO_TELL_APART, (name, deficiency)
    # ... the official scales do not (hence the category named in text everywhere): US "Good" green and
    # "Unhealthy for Sensitive Groups" orange merge for deuteranopes.
    assert closest_pair(PALETTES["US AQI"], "deuteranopia")[1:] == (1, 3)
    assert closest_pair(PALETTES["US AQI"], "deuteranopia")[0] < HARD_TO_TELL_APART < closest_pair(
        PALETTES["US AQI"], None)[0]
