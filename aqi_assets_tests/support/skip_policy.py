"""No silent skips: a run with a skipped test fails, and every run says how many tests ran, passed and skipped.

A skip hides a test that did not run (a missing binary, a missing sample) behind a green result, so the suite
treats one as a failure. Leaving a test out on purpose is done by deselecting it with a documented marker
(`pytest -m "not soak"`): pytest reports that as "deselected", never as "skipped". Set `AQI_ALLOW_SKIPS=1` to
see the skips of a deliberately partial local environment as a warning instead (`.ci/run` clears it).

The conftest of the test package delegates its `pytest_sessionfinish` and `pytest_terminal_summary` hooks here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

ALLOW_SKIPS_ENV = "AQI_ALLOW_SKIPS"
HEADLINE = "aqi_assets tests"


@dataclass(frozen=True)
class Outcomes:
    passed: int
    failed: int
    errors: int
    skipped: int
    xfailed: int
    xpassed: int
    deselected: int

    @property
    def ran(self) -> int:
        return self.passed + self.failed + self.xfailed + self.xpassed

    def line(self) -> str:
        parts = [
            f"{self.ran} ran",
            f"{self.passed} passed",
            f"{self.failed} failed",
            f"{self.errors} errors",
            f"{self.skipped} skipped",
            f"{self.deselected} deselected",
        ]
        if self.xfailed or self.xpassed:
            parts += [f"{self.xfailed} xfailed", f"{self.xpassed} xpassed"]
        return f"{HEADLINE}: " + ", ".join(parts)


def _count(stats: dict[str, list], category: str) -> int:
    # Counted as pytest's own closing line counts them (a report may opt out, e.g. a subtest's parent).
    return sum(1 for report in stats.get(category, []) if getattr(report, "count_towards_summary", True))


def outcomes(stats: dict[str, list]) -> Outcomes:
    return Outcomes(
        passed=_count(stats, "passed"),
        failed=_count(stats, "failed"),
        errors=_count(stats, "error"),
        skipped=_count(stats, "skipped"),
        xfailed=_count(stats, "xfailed"),
        xpassed=_count(stats, "xpassed"),
        deselected=_count(stats, "deselected"),
    )


def skips_allowed() -> bool:
    return os.environ.get(ALLOW_SKIPS_ENV, "").strip().lower() in {"1", "true", "yes"}


def _reporter_stats(config: pytest.Config) -> dict[str, list]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        raise pytest.UsageError("the skip policy reads the terminal reporter's counts; do not run with -p no:terminal")
    return reporter.stats


def sessionfinish(session: pytest.Session) -> None:
    """Turn a green run with skips into a failed one (exit status 1), unless skips are allowed."""
    counts = outcomes(_reporter_stats(session.config))
    if counts.skipped and not skips_allowed() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line with the counts (before pytest's own closing line), and why a skip fails the run."""
    counts = outcomes(terminalreporter.stats)
    terminalreporter.write_sep("-", "counts")
    terminalreporter.write_line(counts.line())
    if counts.skipped:
        reasons = sorted({_skip_reason(report) for report in terminalreporter.stats.get("skipped", [])})
        verdict = (
            f"{_tests(counts.skipped)} skipped, tolerated because {ALLOW_SKIPS_ENV} is set"
            if skips_allowed()
            else f"FAILED: {_tests(counts.skipped)} skipped; a skip fails the run (deselect on purpose with a "
            f"documented marker, e.g. -m \"not soak\", or set {ALLOW_SKIPS_ENV}=1 locally)"
        )
        terminalreporter.write_line(verdict, red=not skips_allowed(), yellow=skips_allowed(), bold=True)
        for reason in reasons:
            terminalreporter.write_line(f"  skipped: {reason}")


def _tests(count: int) -> str:
    return f"{count} test" if count == 1 else f"{count} tests"


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return f"{report.nodeid or longrepr[0]}: {longrepr[2]}"
    return f"{report.nodeid}: {longrepr}"
