"""Peak resident memory of this process, in MB; a step run in a fresh process, as Dagster runs a step."""

from __future__ import annotations

import multiprocessing
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def process_peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). `getrusage` would not do for a spawned child: on Linux its maximum
    survives exec, so the child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return peak_rss_mb()


def in_fresh_process(step: Callable[..., None], *args: Any) -> dict[str, Any]:
    """Run `step(*args, results)` in a spawned process (cold memory and caches, its own peak RSS) and return
    the dict it puts on `results`."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=step, args=(*args, results))
    child.start()
    figures = results.get()
    child.join()
    if child.exitcode:
        raise RuntimeError(f"{getattr(step, '__name__', step)}{args} failed (exit code {child.exitcode})")
    return figures
