"""The suite's skip policy, on real pytest runs of small test files: a skip fails the run, a deselection does not,
and the counts come before pytest's own closing line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aqi_assets_tests.support.samples import PROJECT_ROOT
from aqi_assets_tests.support.skip_policy import ALLOW_SKIPS_ENV

# The same delegation as aqi_assets_tests/conftest.py, without its fixtures.
CONFTEST = """
from aqi_assets_tests.support import skip_policy


def pytest_sessionfinish(session):
    skip_policy.sessionfinish(session)


def pytest_terminal_summary(terminalreporter):
    skip_policy.terminal_summary(terminalreporter)
"""

TESTS = """
import pytest


def test_passes():
    assert 1 + 1 == 2


def test_skips():
    pytest.skip("influxd not found on PATH")


@pytest.mark.soak
def test_long():
    assert True
"""


def run_pytest(directory: Path, *args: str, allow_skips: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != ALLOW_SKIPS_ENV}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only pytest itself: these runs need no plugin
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]))
    if allow_skips is not None:
        env[ALLOW_SKIPS_ENV] = allow_skips
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "markers=soak: long", *args],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(TESTS)
    return tmp_path


def closing_line(output: str) -> str:
    return output.rstrip().splitlines()[-1]


def test_a_skip_fails_an_otherwise_green_run(project: Path) -> None:
    result = run_pytest(project)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "aqi_assets tests: 2 ran, 2 passed, 0 failed, 0 errors, 1 skipped, 0 deselected" in result.stdout
    assert "FAILED: 1 test skipped; a skip fails the run" in result.stdout
    assert "test_sample.py::test_skips: Skipped: influxd not found on PATH" in result.stdout
    assert closing_line(result.stdout).startswith("2 passed, 1 skipped in ")  # pytest's own line stays last


def test_deselecting_by_marker_is_not_a_skip(project: Path) -> None:
    result = run_pytest(project, "-m", "not soak", "-k", "not test_skips")
    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert "aqi_assets tests: 1 ran, 1 passed, 0 failed, 0 errors, 0 skipped, 2 deselected" in result.stdout
    assert closing_line(result.stdout).startswith("1 passed, 2 deselected in ")


def test_skips_can_be_tolerated_locally_on_purpose(project: Path) -> None:
    tolerated = run_pytest(project, allow_skips="1")
    assert tolerated.returncode == pytest.ExitCode.OK, tolerated.stdout
    assert f"1 test skipped, tolerated because {ALLOW_SKIPS_ENV} is set" in tolerated.stdout
    assert run_pytest(project, allow_skips="0").returncode == pytest.ExitCode.TESTS_FAILED


def test_a_module_skipped_at_collection_fails_the_run(project: Path) -> None:
    (project / "test_sample.py").write_text(
        "import pytest\n\npytest.skip('sample missing', allow_module_level=True)\n"
    )
    (project / "test_other.py").write_text("def test_ok():\n    assert True\n")
    result = run_pytest(project)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "1 ran, 1 passed, 0 failed, 0 errors, 1 skipped" in result.stdout


def test_failures_keep_their_exit_status(project: Path) -> None:
    (project / "test_sample.py").write_text(textwrap.dedent(TESTS) + "\n\ndef test_fails():\n    assert 1 == 2\n")
    result = run_pytest(project)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    assert "3 ran, 2 passed, 1 failed, 0 errors, 1 skipped" in result.stdout
    assert closing_line(result.stdout).startswith("1 failed, 2 passed, 1 skipped in ")
