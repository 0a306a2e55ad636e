"""Configuration from environment variables, resolved when the code location loads (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

import dagster as dg

R = TypeVar("R", bound=dg.ConfigurableResource)


def is_set(name: str) -> bool:
    return os.environ.get(name, "") != ""


def from_env(resource_type: type[R], variables: Mapping[str, str], **fixed: Any) -> R:
    """``resource_type`` with each field of ``variables`` (field → variable) taken from that variable when it
    is set, as a `dg.EnvVar` (the UI then shows where the value came from), and the field's own default
    otherwise; so every default is written once, on the resource. ``fixed`` values are passed as they are.

    Dagster's `EnvVar` has no default of its own and fails when the variable is unset, but every setting of
    this platform has one, so that a fresh clone runs with no configuration at all.
    """
    configured = {field: _env_var(resource_type, field, name) for field, name in variables.items() if is_set(name)}
    return resource_type(**configured, **fixed)


def _env_var(resource_type: type[R], field: str, name: str) -> Any:
    # An integer field needs Dagster's integer variant (a plain EnvVar is text and fails validation).
    if resource_type.model_fields[field].annotation is int:
        return dg.EnvVar.int(name)
    return dg.EnvVar(name)


def setting(name: str, default: str) -> str:
    """A setting's value now (at load time), for values that are not resource fields (sensor intervals)."""
    return os.environ[name] if is_set(name) else default
