"""Configuration from environment variables, resolved when the code location loads (never at import)."""

from __future__ import annotations

import os

import dagster as dg


def env_or(name: str, default: str) -> str:
    """`EnvVar(name)` when the variable is set (the UI then shows where the value came from), else the default.

    Dagster's `EnvVar` has no default of its own and fails when the variable is unset, but every setting
    of this platform has one, so that a fresh clone runs with no configuration at all.
    """
    if os.environ.get(name, "") != "":
        return dg.EnvVar(name)
    return default
