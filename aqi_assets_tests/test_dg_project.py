"""`dg` for real: what `dg scaffold defs` writes lands in `aqi_assets/components/` (the project's `defs_module`)
and the one code location loads it beside the hand-built domains."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from aqi_assets_tests.support.samples import PROJECT_ROOT

LIST_ASSETS = """
import json
from aqi_assets.definitions import defs
print(json.dumps(sorted(k.to_user_string() for k in defs().resolve_asset_graph().get_all_asset_keys())))
"""


def test_a_scaffolded_asset_is_loaded_by_the_code_location(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT, project, ignore=shutil.ignore_patterns(
        ".git", ".venv", "data", "test-output", "site", "*.egg-info", "__pycache__", ".dagster*", ".pytest_cache"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AQI_")}, "PYTHONPATH": str(project)}
    dg_cli = Path(sys.executable).parent / "dg"
    scaffold = subprocess.run([str(dg_cli), "scaffold", "defs", "dagster.asset", "hello_world.py"], cwd=project,
                              env=env, capture_output=True, text=True, timeout=300)
    assert scaffold.returncode == 0, scaffold.stderr[-2000:]
    assert (project / "aqi_assets" / "components" / "hello_world.py").is_file()
    listed = subprocess.run([sys.executable, "-W", "ignore", "-c", LIST_ASSETS], cwd=project, env=env,
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    keys = json.loads(listed.stdout.strip().splitlines()[-1])
    assert "hello_world" in keys and "aqi_readings" in keys and "aqi_daily" in keys
