"""The package's imports run one way: `lib/common` at the bottom, the readings contract above it, the domains
above that; no `lib/` module imports a layer above its own, and no two `lib/` domains import each other.

Each rule is a function from the imports found to the offending ones, so it is tested twice: on synthetic
violations (it must catch them) and on the real package (it must find none)."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pytest

import aqi_assets

PACKAGE = Path(aqi_assets.__file__).resolve().parent
LIB = PACKAGE / "lib"

# Bottom first. A domain may import its own modules and those of the layers below it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"common"}),
    frozenset({"readings"}),
    frozenset({"air_quality", "covid", "deploy"}),
    frozenset({"archive", "sinks", "public_site"}),
    frozenset({"tiers"}),
)
LAYER_OF = {domain: number for number, layer in enumerate(LAYERS) for domain in layer}
# Packages whose names import a sub-package rather than a module's contents (`from aqi_assets.lib import tiers`).
_NAMESPACES = ("aqi_assets", "aqi_assets.lib")


class Import(NamedTuple):
    domain: str  # the importing module's lib/ domain
    path: str  # the importing file, relative to the package
    line: int
    module: str  # the imported module, absolute


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, a module of ``package`` (function-level ones
    included; relative ones resolved against ``package``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            if base in _NAMESPACES:
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def _absolute(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    if level > len(parts):
        raise ValueError(f"relative import beyond the top of {package!r}")
    base = parts[: len(parts) - level + 1]
    return ".".join(base + ([module] if module else []))


def package_of(path: Path) -> str:
    """The package a file's relative imports are resolved against: its own for an `__init__.py`."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(relative[:-1])


def lib_domain(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["aqi_assets", "lib"] and len(parts) > 2:
        return parts[2]
    return None


def package_imports(domain: str, path: str, source: str, package: str) -> list[Import]:
    """The imports of `aqi_assets` modules in one module of a lib/ domain (third-party ones are no concern)."""
    return [
        Import(domain, path, line, module)
        for line, module in imported_modules(source, package)
        if module.split(".")[0] == "aqi_assets"
    ]


def lib_imports() -> list[Import]:
    """Every import of an `aqi_assets` module by a module of a lib/ domain."""
    rows = []
    for path in sorted(LIB.rglob("*.py")):
        relative = path.relative_to(LIB)
        if len(relative.parts) >= 2:
            rows += package_imports(relative.parts[0], str(path.relative_to(PACKAGE)), path.read_text(),
                                    package_of(path))  # fmt: skip
    return rows


# The rules: each returns the offending imports, described.


def outside_lib(imports: Iterable[Import]) -> list[str]:
    """lib/ imports nothing of the package outside lib/ (defs/, bench/)."""
    return [f"{i.path}:{i.line} imports {i.module}" for i in imports if lib_domain(i.module) is None]


def common_importing_a_domain(imports: Iterable[Import]) -> list[str]:
    return [
        f"{i.path}:{i.line} imports {i.module}"
        for i in imports
        if i.domain == "common" and lib_domain(i.module) not in (None, "common")
    ]


def upward_or_sideways(imports: Iterable[Import]) -> list[str]:
    """A domain imports only its own modules and those of lower layers (not one of its own layer's domains)."""
    offenders = []
    for i in imports:
        target = lib_domain(i.module)
        if target is None or target == i.domain:
            continue
        if i.domain not in LAYER_OF or target not in LAYER_OF:
            offenders.append(f"{i.path}:{i.line} imports {i.module}: place {i.domain} and {target} in LAYERS")
        elif LAYER_OF[target] >= LAYER_OF[i.domain]:
            offenders.append(f"{i.path}:{i.line} imports {i.module} (layer {LAYER_OF[target]} from layer "
                             f"{LAYER_OF[i.domain]})")  # fmt: skip
    return offenders


def domain_cycles(imports: Iterable[Import]) -> list[tuple[str, str]]:
    """(a, b): domain a imports b, and b reaches a again through the imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for i in imports:
        target = lib_domain(i.module)
        if target is not None and target != i.domain:
            graph[i.domain].add(target)

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(graph[node])
        return False

    return sorted((a, b) for a in list(graph) for b in graph[a] if reaches(b, a))


RULES = (outside_lib, common_importing_a_domain, upward_or_sideways, domain_cycles)


def test_every_lib_domain_has_a_layer() -> None:
    domains = {p.name for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert domains == set(LAYER_OF), f"place each lib/ domain in LAYERS: {domains ^ set(LAYER_OF)}"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_the_package_keeps_the_rule(rule) -> None:
    imports = lib_imports()
    assert {i.domain for i in imports} >= {"readings", "tiers", "air_quality"}  # the scan saw the package
    assert rule(imports) == []


def _synthetic(domain: str, source: str) -> list[Import]:
    return package_imports(domain, f"lib/{domain}/probe.py", source, f"aqi_assets.lib.{domain}")


def test_the_rules_catch_each_kind_of_violation() -> None:
    upward = _synthetic("readings", "def f():\n    from aqi_assets.lib.tiers import retention\n")
    sideways = _synthetic("archive", "from aqi_assets.lib.sinks.columns import sink_columns\n")
    common = _synthetic("common", "import aqi_assets.lib.readings.schema\n")
    outside = _synthetic("tiers", "from aqi_assets.defs.common.storage import AqiStorage\n")
    cycle = _synthetic("covid", "from aqi_assets.lib import deploy\n") + _synthetic(
        "deploy", "from aqi_assets.lib.covid import data\n"
    )
    allowed = _synthetic("tiers", "from aqi_assets.lib.readings.history import day_path\nimport duckdb\n")

    assert upward_or_sideways(upward) == ["lib/readings/probe.py:2 imports aqi_assets.lib.tiers (layer 4 from layer 1)"]
    assert upward_or_sideways(sideways) == [
        "lib/archive/probe.py:1 imports aqi_assets.lib.sinks.columns (layer 3 from layer 3)"
    ]
    assert common_importing_a_domain(common) == ["lib/common/probe.py:1 imports aqi_assets.lib.readings.schema"]
    assert upward_or_sideways(common) != []  # also an upward import
    assert outside_lib(outside) == ["lib/tiers/probe.py:1 imports aqi_assets.defs.common.storage"]
    assert domain_cycles(cycle) == [("covid", "deploy"), ("deploy", "covid")]
    assert domain_cycles(upward + _synthetic("tiers", "import aqi_assets.lib.readings\n")) == [
        ("readings", "tiers"), ("tiers", "readings")
    ]  # fmt: skip
    for rule in RULES:
        assert rule(allowed) == [], rule.__name__
    unknown = _synthetic("tiers", "from aqi_assets.lib.weather import x\n")
    assert upward_or_sideways(unknown) == [
        "lib/tiers/probe.py:1 imports aqi_assets.lib.weather: place tiers and weather in LAYERS"
    ]


def test_relative_imports_are_resolved_and_checked() -> None:
    package = "aqi_assets.lib.readings"
    assert imported_modules(
        "from ..tiers import retention\nfrom . import schema\nfrom .history import day_path\nfrom .. import sinks\n"
        "from ...defs import storage\n",
        package,
    ) == [
        (1, "aqi_assets.lib.tiers"),
        (2, "aqi_assets.lib.readings"),
        (3, "aqi_assets.lib.readings.history"),
        (4, "aqi_assets.lib.sinks"),
        (5, "aqi_assets.defs"),
    ]
    upward = _synthetic("readings", "from ..tiers.retention import prune_hot_tier\n")
    assert upward_or_sideways(upward) == [
        "lib/readings/probe.py:1 imports aqi_assets.lib.tiers.retention (layer 4 from layer 1)"
    ]
    assert outside_lib(_synthetic("readings", "from ...bench import core\n")) == [
        "lib/readings/probe.py:1 imports aqi_assets.bench"
    ]
    with pytest.raises(ValueError, match="beyond the top"):
        imported_modules("from ..... import x\n", package)
    # An `__init__.py` is its own package: `.` is the package itself.
    init = LIB / "readings" / "__init__.py"
    assert package_of(init) == "aqi_assets.lib.readings"
    assert package_of(LIB / "readings" / "history.py") == "aqi_assets.lib.readings"
