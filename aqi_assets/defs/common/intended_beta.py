"""The project's intended uses of Dagster Beta and Preview features, silenced by name where they are declared.

Dagster warns on every use of a Beta (`dg.BetaWarning`) or Preview (`dg.PreviewWarning`) parameter. The uses
chosen on purpose are silenced here, each by its warning class and a message naming the parameter, and only
while its declaration runs: a new Beta use, a deprecation or anything else an upgrade brings still shows.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

# Regexes matched against the start of each warning's message (see `warnings.filterwarnings`).
BACKFILL_POLICY_ON_ASSET = r"Parameter `backfill_policy` of function `asset` is currently in beta"
PARTITIONS_DEF_ON_CHECK_SPEC = r"Specifying a partitions_def on an AssetCheckSpec is currently in preview"


@contextlib.contextmanager
def intended(category: type[Warning], message: str) -> Iterator[None]:
    """Inside the block, ignore the warnings of ``category`` whose message matches ``message``; all others show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=category, message=message)
        yield


def asset_with_backfill_policy(**asset_kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`dg.asset(**asset_kwargs)` for an asset whose `backfill_policy` (Beta) is intended: Dagster warns when the
    decorator is made, so only that warning is silenced, there."""
    with intended(dg.BetaWarning, BACKFILL_POLICY_ON_ASSET):
        return dg.asset(**asset_kwargs)
