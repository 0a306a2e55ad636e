"""Run a real `dagster dev` for a test: free loopback port, private DAGSTER_HOME, stopped by its process group.

`dagster dev` started from a non-interactive shell inherits SIGINT as ignored (and maps SIGTERM to SIGINT), so
it would survive a plain `terminate()`. It is therefore started through a tiny launcher that resets both
signals to their defaults and execs it, in a session of its own, and stopped with `os.killpg` on that group:
the webserver, daemon, code server and run workers all go with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aqi_assets_tests.support.samples import PROJECT_ROOT

INSTANCE_YAML = PROJECT_ROOT / ".dagster" / "dagster.yaml"

# Restore default SIGINT/SIGTERM (dispositions survive exec), then become `dagster dev` with the same pid.
_LAUNCHER = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)

_LOCATIONS_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


class DagsterDevError(RuntimeError):
    """`dagster dev` did not come up; the message ends with the tail of its log."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_dagster_home(directory: Path) -> Path:
    """A fresh instance directory with the project's dagster.yaml (telemetry off, the `duckdb` pool)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INSTANCE_YAML, directory / "dagster.yaml")
    return directory


def _log_tail(path: Path, lines: int = 40, width: int = 240) -> str:
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace"))  # drop the log's colour codes
        return "\n".join(line[:width] for line in text.splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


@dataclass
class DagsterDev:
    process: subprocess.Popen
    url: str
    log_path: Path

    def graphql(self, query: str, timeout_s: float = 10.0) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines)

    def _fail(self, message: str) -> DagsterDevError:
        return DagsterDevError(f"{message}\n--- last lines of {self.log_path} ---\n{self.log_tail()}")

    def wait_until_ready(self, timeout_s: float) -> None:
        """Wait for `/server_info`, then for every code location to be loaded (a load error fails at once)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise self._fail(f"dagster dev exited with code {self.process.returncode} while starting")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise self._fail(f"dagster dev did not answer {self.url}/server_info within {timeout_s:.0f} s")
            time.sleep(0.5)
        while True:
            entries = self.graphql(_LOCATIONS_QUERY)["data"]["workspaceOrError"].get("locationEntries") or []
            errors = [
                f"{entry['name']}: {entry['locationOrLoadError']['message']}"
                for entry in entries
                if (entry.get("locationOrLoadError") or {}).get("__typename") == "PythonError"
            ]
            if errors:
                raise self._fail("code location failed to load:\n" + "\n".join(errors))
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                return
            if time.monotonic() > deadline:
                raise self._fail(f"code locations not loaded within {timeout_s:.0f} s: {entries}")
            time.sleep(0.5)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left of it after `grace_s`."""
        group = self.process.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        # Children (daemon, code server, run workers) may outlive the leader: finish the group off.
        deadline = time.monotonic() + grace_s
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=5)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def start_dagster_dev(
    workspace: Path,
    dagster_home: Path,
    env: Mapping[str, str],
    log_path: Path,
    *,
    cwd: Path = PROJECT_ROOT,
) -> DagsterDev:
    """Start `dagster dev -w <workspace>` on a free 127.0.0.1 port; `env` is added to a copy of os.environ
    from which every other `AQI_*` variable is removed (the test decides the whole configuration)."""
    port = free_loopback_port()
    dagster_exe = Path(sys.executable).with_name("dagster")
    child_env = {name: value for name, value in os.environ.items() if not name.startswith("AQI_")}
    child_env.update(env)
    child_env["DAGSTER_HOME"] = str(dagster_home)
    child_env["PYTHONUNBUFFERED"] = "1"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _LAUNCHER,
                str(dagster_exe),
                "dev",
                "-w",
                str(workspace),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return DagsterDev(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
