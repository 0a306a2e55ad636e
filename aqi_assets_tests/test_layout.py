"""The package's imports run one way: `lib/common` at the bottom, the readings contract above it, the domains
above that; no `lib/` module imports a layer above its own, and no two `lib/` domains import each other."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

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


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, function-level ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from aqi_assets.lib import tiers` names the domain in the alias
            if node.module == "aqi_assets.lib":
                found += [(node.lineno, f"aqi_assets.lib.{alias.name}") for alias in node.names]
    return found


def lib_domain(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["aqi_assets", "lib"] and len(parts) > 2:
        return parts[2]
    return None


def lib_imports() -> list[tuple[str, Path, int, str]]:
    """(importing domain, file, line, imported module) for every import of an `aqi_assets` module in lib/."""
    rows = []
    for path in sorted(LIB.rglob("*.py")):
        relative = path.relative_to(LIB)
        if len(relative.parts) < 2:
            continue
        for line, module in imported_modules(path):
            if module.split(".")[0] == "aqi_assets":
                rows.append((relative.parts[0], path, line, module))
    return rows


def test_every_lib_domain_has_a_layer() -> None:
    domains = {p.name for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert domains == set(LAYER_OF), f"place each lib/ domain in LAYERS: {domains ^ set(LAYER_OF)}"


def test_lib_imports_only_lib() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line} {module}"
        for _domain, path, line, module in lib_imports()
        if lib_domain(module) is None
    ]
    assert offenders == [], f"lib/ imports defs/ or bench/: {offenders}"


def test_lib_common_imports_no_domain() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line} {module}"
        for domain, path, line, module in lib_imports()
        if domain == "common" and lib_domain(module) != "common"
    ]
    assert offenders == [], f"lib/common must not import a domain: {offenders}"


def test_no_lib_module_imports_a_layer_above_or_beside_it() -> None:
    offenders = []
    for domain, path, line, module in lib_imports():
        target = lib_domain(module)
        if target is None or target == domain:
            continue
        if LAYER_OF[target] >= LAYER_OF[domain]:
            offenders.append(f"{path.relative_to(PACKAGE)}:{line} imports {module} (layer {LAYER_OF[target]} "
                             f"from layer {LAYER_OF[domain]})")
    assert offenders == [], "\n".join(offenders)


def test_no_two_lib_domains_import_each_other() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for domain, _path, _line, module in lib_imports():
        target = lib_domain(module)
        if target is not None and target != domain:
            graph[domain].add(target)

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

    cycles = sorted((a, b) for a in list(graph) for b in graph[a] if reaches(b, a))
    assert cycles == [], f"lib/ domains importing each other: {cycles}"


def test_the_layout_rules_catch_an_upward_import(tmp_path: Path) -> None:
    """The checks read real imports: an upward import written to a file is found by `imported_modules`."""
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from aqi_assets.lib.tiers import retention\n")
    (line, name), = imported_modules(module)
    assert (line, lib_domain(name)) == (2, "tiers")
    assert LAYER_OF["tiers"] > LAYER_OF["readings"]
