"""The lock (requirements/lock.txt) is what this environment runs, and it covers everything setup.py asks for.

Every install (`make install`, `make install-test`, the Dockerfile) passes the lock to pip as constraints;
`make lock` regenerates it. The lock is resolved for Python 3.11 on Linux x86_64: a package it pins that a
requirement wants only elsewhere (an environment marker false here) need not be installed, but one that this
environment's `make install-test` (the project with the `test` and `docs` extras) needs must be, at the locked
version.
"""

from __future__ import annotations

import runpy
from importlib import metadata
from unittest import mock

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from aqi_assets_tests.support.samples import PROJECT_ROOT

LOCK = PROJECT_ROOT / "requirements" / "lock.txt"
INSTALLED_EXTRAS = ("test", "docs")  # what `make install-test` installs


def parse_lock(text: str) -> dict[NormalizedName, Requirement]:
    """Package → its pin; each requirement line must pin exactly one version (`name==version`)."""
    pins: dict[NormalizedName, Requirement] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):  # comments and pip options (--index-url, ...)
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"lock line {number} is no pin: {raw!r}"
        assert not requirement.extras, f"lock line {number}: pip constraints cannot carry extras: {raw!r}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"lock line {number}: {name} pinned twice"
        pins[name] = requirement
    return pins


def locked_version(requirement: Requirement) -> Version:
    return Version(next(iter(requirement.specifier)).version)


def setup_requirements() -> dict[str, list[Requirement]]:
    """setup.py's `install_requires` (key "") and each extra's requirements, read by running setup.py with
    `setuptools.setup` replaced (the file computes some pins, e.g. the Dagster version)."""
    with mock.patch("setuptools.setup") as setup:
        runpy.run_path(str(PROJECT_ROOT / "setup.py"), run_name="__main__")
    kwargs = setup.call_args.kwargs
    groups = {"": kwargs["install_requires"], **kwargs.get("extras_require", {})}
    return {extra: [Requirement(text) for text in texts] for extra, texts in groups.items()}


def applies(requirement: Requirement, extras: tuple[str, ...]) -> bool:
    """Whether ``requirement``'s marker holds in this environment when the requiring package was installed
    with ``extras``."""
    marker: Marker | None = requirement.marker
    if marker is None:
        return True
    return any(marker.evaluate({"extra": extra}) for extra in ("", *extras))


def required_closure(roots: list[Requirement]) -> tuple[dict[NormalizedName, str], set[NormalizedName]]:
    """Every distribution ``roots`` need here, transitively (extras and markers followed): (name → the
    requirement chain that pulls it in, names needed but not installed)."""
    needed: dict[NormalizedName, str] = {}
    missing: set[NormalizedName] = set()
    extras_wanted: dict[NormalizedName, set[str]] = {}
    queue = [(requirement, "setup.py") for requirement in roots if applies(requirement, ())]
    while queue:
        requirement, via = queue.pop()
        name = canonicalize_name(requirement.name)
        new_extras = set(requirement.extras) - extras_wanted.get(name, set())
        if name in needed and not new_extras:
            continue
        needed.setdefault(name, f"{via} → {name}")
        extras_wanted.setdefault(name, set()).update(requirement.extras)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.add(name)
            continue
        extras = tuple(sorted(extras_wanted[name]))
        for text in distribution.requires or []:
            child = Requirement(text)
            if applies(child, extras):
                queue.append((child, needed[name]))
    return needed, missing


@pytest.fixture(scope="module")
def pins() -> dict[NormalizedName, Requirement]:
    return parse_lock(LOCK.read_text())


@pytest.fixture(scope="module")
def install_test_roots() -> list[Requirement]:
    groups = setup_requirements()
    return [requirement for extra in ("", *INSTALLED_EXTRAS) for requirement in groups[extra]]


def test_lock_says_what_it_was_resolved_for_and_how_to_regenerate_it() -> None:
    lines = LOCK.read_text().splitlines()
    header = "\n".join(lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))])
    assert "Python 3.11" in header and "Linux x86_64" in header
    assert "make lock" in header


def test_parse_lock_refuses_ranges_and_reads_pins() -> None:
    pins = parse_lock("# header\n\nfoo-bar==1.2.3\n    # via baz\nqux==4.0 ; sys_platform == 'win32'\n")
    assert set(pins) == {"foo-bar", "qux"} and locked_version(pins["foo-bar"]) == Version("1.2.3")
    with pytest.raises(AssertionError, match="no pin"):
        parse_lock("foo>=1\n")


def test_every_setup_requirement_is_locked_within_its_range(pins: dict[NormalizedName, Requirement]) -> None:
    groups = setup_requirements()
    assert set(INSTALLED_EXTRAS) <= set(groups), f"setup.py extras: {sorted(groups)}"
    problems = []
    for extra, requirements in groups.items():
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            if name not in pins:
                problems.append(f"{requirement} ({extra or 'install_requires'}): not in the lock")
            elif not requirement.specifier.contains(locked_version(pins[name]), prereleases=True):
                problems.append(f"{requirement}: the lock pins {locked_version(pins[name])}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_installed_packages_are_the_locked_versions(
    pins: dict[NormalizedName, Requirement], install_test_roots: list[Requirement]
) -> None:
    needed, _ = required_closure(install_test_roots)
    wrong, missing = [], []
    for name, pin in sorted(pins.items()):
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            if name in needed:  # locked for something this environment installs, yet absent
                missing.append(f"{name} (needed: {needed[name]})")
            continue
        if installed != locked_version(pin):
            wrong.append(f"{name}: installed {installed}, locked {locked_version(pin)}")
    assert not wrong and not missing, (
        "the environment is not the lock (`make install-test` installs it):\n" + "\n".join(wrong + missing)
    )


def test_everything_make_install_test_needs_here_is_locked(
    pins: dict[NormalizedName, Requirement], install_test_roots: list[Requirement]
) -> None:
    needed, not_installed = required_closure(install_test_roots)
    assert not not_installed, f"required but not installed: {sorted(not_installed)}"
    unlocked = sorted(f"{chain}" for name, chain in needed.items() if name not in pins)
    assert not unlocked, "required here but not in the lock (run `make lock`):\n" + "\n".join(unlocked)


def test_required_closure_follows_extras_and_markers() -> None:
    """On real installed metadata: moto's `server` extra pulls in flask; a Windows-only requirement does not
    count on Linux."""
    needed, missing = required_closure([Requirement("moto[server]>=5")])
    assert "flask" in needed and "moto" in needed and not missing
    needed_plain, _ = required_closure([Requirement("moto>=5")])
    assert "flask" not in needed_plain
    assert not applies(Requirement("colorama ; sys_platform == 'win32'"), ())
    assert applies(Requirement("flask ; extra == 'server'"), ("server",))
    assert not applies(Requirement("flask ; extra == 'server'"), ())
