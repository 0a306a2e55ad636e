"""The documentation matches the code: the MkDocs site builds with --strict, the configuration page names exactly the
settings the code reads, the architecture page's tree is the package's, and the README stays a short front door.

Each finder (settings in Python sources, names in text, the tree on the page) is tested on a small synthetic input
first, so a finder that silently finds nothing cannot make the real checks pass."""

from __future__ import annotations

import ast
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import yaml

from aqi_assets.lib.readings.periods import registry
from aqi_assets_tests.support.samples import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
PACKAGE = PROJECT_ROOT / "aqi_assets"
TESTS = PROJECT_ROOT / "aqi_assets_tests"
README = PROJECT_ROOT / "README.md"
MKDOCS_YML = PROJECT_ROOT / "mkdocs.yml"
CONFIGURATION = DOCS / "configuration.md"
ARCHITECTURE = DOCS / "architecture.md"

# A whole setting name as a string literal (a prefix such as "AQI_TIMESTREAM_" ends with "_" and is not one).
SETTING_LITERAL = re.compile(r"^AQI_[A-Z0-9_]*[A-Z0-9]$")
# A setting named in text; `AQI_INFLUX_*` and `AQI_*` (families, not names) do not match.
SETTING_IN_TEXT = re.compile(r"\bAQI_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_*])")
# Files outside the package that pass settings to it (CI, make, containers, deployments).
CONFIG_FILES = (".ci/run", ".ci/system-deps", "Makefile", "Dockerfile", "deploy")
PLATFORM_SECTION = "Settings of the platform"
TEST_SUITE_SECTION = "Settings of the test suite"
TREE_SECTION = "The package tree"
README_MAX_LINES = 150
README_MAX_LINE_CHARS = 200
# Entries of the tree start at an even indentation left of this column; deeper text continues a description.
TREE_ENTRY_MAX_INDENT = 24


# --- finders -------------------------------------------------------------------------------------------------------


def python_files(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    excluded = {path.resolve() for path in exclude}
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts and p.resolve() not in excluded)


def setting_literals(source: str) -> set[str]:
    """Whole `AQI_…` names written as string literals in ``source``. Python names (`AQI_HOURLY = …`) are not
    literals, and the pieces of an f-string are messages, not names, so neither counts."""
    tree = ast.parse(source)
    in_fstrings = {id(value) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for value in node.values}
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in in_fstrings
        and SETTING_LITERAL.match(node.value)
    }


def built_setting_names(source: str) -> list[str]:
    """Setting names assembled at run time (`f"AQI_SNAPSHOT_{period}_URL"`, `"AQI_" + name`): a literal scan cannot
    see what they become, so each must be read from where its parts come from (see `registered_settings`)."""
    built = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            first = node.values[0] if node.values else None
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            first = node.left
        else:
            continue
        if (
            isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and re.match(r"^AQI_[A-Z0-9_]*$", first.value)
            and first.value.endswith("_")
        ):
            built.append(ast.unparse(node))
    return built


def env_constant_modules() -> list[str]:
    """Modules of the package that define a module-level `…_ENV` constant (a variable's name, or a mapping of
    resource fields to variable names)."""
    modules = []
    for path in python_files(PACKAGE):
        tree = ast.parse(path.read_text())
        names = [
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        ]
        if any(name.endswith("_ENV") for name in names):
            modules.append(".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts))
    return modules


def registered_settings() -> set[str]:
    """The names as the code holds them after import: the period registry's snapshot settings and the values of
    every `…_ENV` constant, however they were built."""
    names = set()
    for period in registry():
        if period.snapshot is not None:
            names |= {period.snapshot.url_env, period.snapshot.probe_interval_env}
    for module_name in env_constant_modules():
        module = importlib.import_module(module_name)
        for attribute, value in vars(module).items():
            if not attribute.endswith("_ENV"):
                continue
            values = value.values() if isinstance(value, dict) else [value]
            names |= {v for v in values if isinstance(v, str) and v.startswith("AQI_")}
    return names


@functools.cache
def platform_settings() -> frozenset[str]:
    found: set[str] = set()
    for path in python_files(PACKAGE):
        found |= setting_literals(path.read_text())
    return frozenset(found | registered_settings())


@functools.cache
def settings_of_the_test_suite() -> frozenset[str]:
    found: set[str] = set()
    for path in python_files(TESTS, exclude=[Path(__file__)]):
        found |= setting_literals(path.read_text())
    return frozenset(found - platform_settings())


def names_in_text(text: str) -> set[str]:
    return set(SETTING_IN_TEXT.findall(text))


def sections(markdown: str) -> dict[str, str]:
    """Level-2 sections of a page by heading (text outside code blocks decides what a heading is)."""
    found: dict[str, list[str]] = {"": []}
    current, in_code = "", False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("## "):
            current = line[3:].strip()
            found[current] = []
            continue
        found[current].append(line)
    return {heading: "\n".join(lines) for heading, lines in found.items()}


def documented_settings(section: str) -> set[str]:
    """Names in the first column of the section's tables."""
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("|") and line.count("|") > 2]
    return set().union(*(names_in_text(cell) for cell in first_cells)) if first_cells else set()


def tree_paths(text: str) -> list[str]:
    """Paths of a tree drawn with two spaces of indentation per level, each entry followed by its description;
    directories end with "/" and a child's path is its parent's plus its own name."""
    stack: list[tuple[int, str]] = []
    paths = []
    for line in text.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match:
            continue
        indent, name = len(match.group(1)), match.group(2)
        if indent >= TREE_ENTRY_MAX_INDENT or indent % 2:
            continue  # the continuation of a description
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (stack[-1][1] if stack else "") + name
        paths.append(path)
        if name.endswith("/"):
            stack.append((indent, path))
    return paths


def code_block(section: str) -> str:
    match = re.search(r"^```[a-z]*\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match, "no code block in the section"
    return match.group(1)


def package_directories() -> set[str]:
    return {
        f"{path.parent.relative_to(PROJECT_ROOT).as_posix()}/"
        for path in PACKAGE.rglob("__init__.py")
        if "__pycache__" not in path.parts
    }


def nav_pages() -> list[str]:
    def walk(items: object) -> Iterator[str]:
        if isinstance(items, str):
            yield items
        elif isinstance(items, list):
            for item in items:
                yield from walk(item)
        elif isinstance(items, dict):
            for value in items.values():
                yield from walk(value)

    return list(walk(yaml.safe_load(MKDOCS_YML.read_text())["nav"]))


def relative_links(markdown: str) -> list[str]:
    """Targets of markdown links and images that point into the repository (no scheme, no bare anchor)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def build_site(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's banner about its future, not a build warning
    )


# --- the finders on synthetic input --------------------------------------------------------------------------------


def test_setting_literals_are_string_literals_not_python_names_or_message_pieces() -> None:
    source = (
        'AQI_HOURLY = "aqi_hourly"\n'
        'URL_ENV = "AQI_EXAMPLE_URL"\n'
        'TABLE = {"table": "AQI_EXAMPLE_TABLE"}\n'
        'PREFIX = "AQI_"\n'
        'error = f"AQI_EXAMPLE_API must be v1 or v2, not {x!r}"\n'
        'setting("AQI_EXAMPLE_DAYS", "7")\n'
    )
    assert setting_literals(source) == {"AQI_EXAMPLE_URL", "AQI_EXAMPLE_TABLE", "AQI_EXAMPLE_DAYS"}


def test_names_built_at_run_time_are_found() -> None:
    source = 'a = f"AQI_SNAPSHOT_{period}_URL"\nb = "AQI_" + name\nc = f"AQI_EXAMPLE_URL is {value}"\n'
    assert built_setting_names(source) == ["f'AQI_SNAPSHOT_{period}_URL'", "'AQI_' + name"]


def test_names_in_text_leave_out_families() -> None:
    text = "`AQI_INFLUX_URL`, any `AQI_INFLUX_*` without it; `.ci/run` clears `AQI_*`; AQI_HOT_DAYS=7"
    assert names_in_text(text) == {"AQI_INFLUX_URL", "AQI_HOT_DAYS"}


def test_documented_settings_come_from_the_first_column() -> None:
    section = (
        "Prose naming `AQI_NOT_IN_A_TABLE`.\n\n| variable | default | what |\n|---|---|---|\n"
        "| `AQI_ONE`, `AQI_TWO` | `1` | see `AQI_THREE` |\n| `DAGSTER_HOME` | `.dagster` | instance |\n"
    )
    assert documented_settings(section) == {"AQI_ONE", "AQI_TWO"}


def test_tree_paths_follow_the_indentation() -> None:
    tree = (
        "pkg/                   the package\n"
        "  a.py                 a module whose description\n"
        "                       goes on here (not_an_entry.py)\n"
        "  sub/                 a sub-package\n"
        "    b.py               deeper\n"
        "  c.py                 back up\n"
        "deploy/helm/values.yaml   a nested path at the top\n"
    )
    assert tree_paths(tree) == ["pkg/", "pkg/a.py", "pkg/sub/", "pkg/sub/b.py", "pkg/c.py", "deploy/helm/values.yaml"]


# --- the site ------------------------------------------------------------------------------------------------------


def test_the_site_builds_strictly_with_every_page_in_the_nav(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = build_site(MKDOCS_YML, site)
    assert result.returncode == 0, result.stdout + result.stderr
    pages = nav_pages()
    assert sorted(pages) == sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    for page in pages:
        built = site / ("index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html")
        assert built.is_file(), f"{page} was not built"


def copy_of_the_docs(tmp_path: Path) -> Path:
    """mkdocs.yml and docs/ copied, so a test can break the copy."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(MKDOCS_YML, tmp_path / "mkdocs.yml")
    return tmp_path / "mkdocs.yml"


@pytest.mark.parametrize(
    ("page", "addition", "complaint"),
    [
        ("index.md", "\nA [broken link](no-such-page.md).\n", "no-such-page.md"),
        ("index.md", "\nA [broken anchor](configuration.md#no-such-heading).\n", "no-such-heading"),
        ("unlisted.md", "# A page missing from the nav\n", "unlisted.md"),
    ],
)
def test_the_strict_build_fails_on_a_broken_link_or_an_unlisted_page(
    tmp_path: Path, page: str, addition: str, complaint: str
) -> None:
    config = copy_of_the_docs(tmp_path)
    path = tmp_path / "docs" / page
    path.write_text((path.read_text() if path.exists() else "") + addition)
    result = build_site(config, tmp_path / "site")
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


# --- settings ------------------------------------------------------------------------------------------------------


def test_no_setting_name_is_built_at_run_time_where_this_test_cannot_see_it() -> None:
    built = {str(p.relative_to(PROJECT_ROOT)): built_setting_names(p.read_text()) for p in python_files(PACKAGE)}
    assert {path: names for path, names in built.items() if names} == {}, (
        "derive these names in registered_settings() from where their parts come from"
    )


def test_the_finders_see_the_settings_the_code_reads() -> None:
    # A few the platform cannot do without, reached by each path: a literal in a mapping, a registry entry, a
    # `…_ENV` constant read through `setting()`.
    assert {"AQI_DUCKDB_PATH", "AQI_SNAPSHOT_5MIN_URL", "AQI_SENSOR_24H_INTERVAL_S", "AQI_PARTITIONS_START"} <= (
        platform_settings()
    )
    assert {"AQI_SNAPSHOT_5MIN_URL", "AQI_ARCHIVE_START", "AQI_PARQUET_URI"} <= registered_settings()


def test_the_configuration_page_names_every_setting_the_platform_reads_and_no_other() -> None:
    documented = documented_settings(sections(CONFIGURATION.read_text())[PLATFORM_SECTION])
    read = platform_settings()
    assert sorted(read - documented) == [], "read by aqi_assets but missing from the configuration table"
    assert sorted(documented - read) == [], "in the configuration table but read nowhere in aqi_assets"


def test_the_configuration_page_names_every_setting_of_the_test_suite_and_no_other() -> None:
    documented = documented_settings(sections(CONFIGURATION.read_text())[TEST_SUITE_SECTION])
    assert documented == settings_of_the_test_suite()


def test_settings_passed_by_ci_make_and_deployments_are_documented_and_read() -> None:
    documented = documented_settings(CONFIGURATION.read_text())
    read = platform_settings() | settings_of_the_test_suite()
    for entry in CONFIG_FILES:
        path = PROJECT_ROOT / entry
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            names = names_in_text(file.read_text())
            where = file.relative_to(PROJECT_ROOT)
            assert sorted(names - documented) == [], f"{where} sets settings the configuration page does not name"
            assert sorted(names - read) == [], f"{where} sets settings no code reads"


def test_every_setting_the_docs_and_readme_name_is_read_by_the_code() -> None:
    read = platform_settings() | settings_of_the_test_suite()
    for page in [README, *sorted(DOCS.rglob("*.md"))]:
        named = names_in_text(page.read_text())
        assert sorted(named - read) == [], f"{page.relative_to(PROJECT_ROOT)} names settings no code reads"


# --- the architecture page -----------------------------------------------------------------------------------------


def test_the_architecture_tree_names_every_package_and_only_paths_that_exist() -> None:
    paths = tree_paths(code_block(sections(ARCHITECTURE.read_text())[TREE_SECTION]))
    assert len(paths) == len(set(paths)), "a path is named twice"
    missing = [p for p in paths if not (PROJECT_ROOT / p).exists() or p.endswith("/") != (PROJECT_ROOT / p).is_dir()]
    assert missing == [], "named on the architecture page but not in the repository (as named)"
    assert sorted(package_directories() - set(paths)) == [], "packages the architecture page does not name"


# --- the README ----------------------------------------------------------------------------------------------------


def test_the_readme_is_short_and_its_lines_are_readable() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES
    assert [n for n, line in enumerate(lines, start=1) if len(line) > README_MAX_LINE_CHARS] == []


def test_every_link_of_the_readme_and_the_docs_points_at_a_file_that_exists() -> None:
    for page in [README, *sorted(DOCS.rglob("*.md"))]:
        for target in relative_links(page.read_text()):
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(PROJECT_ROOT)} links {target}, which does not exist"


def test_the_readme_says_what_a_newcomer_needs_first() -> None:
    text = README.read_text()
    for command in ("make run", "make test", "make docs"):
        assert command in text, command
    assert re.search(r"`make test` is what CI runs", text)
    linked = {target.split("#")[0] for target in relative_links(text)}
    assert sorted(f"docs/{page}" for page in nav_pages() if f"docs/{page}" not in linked) == [], (
        "documentation pages the README does not link"
    )
    assert "## Dependencies" in text
