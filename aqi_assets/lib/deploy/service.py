"""The production topology on one machine: a gRPC code server, the daemon and the webserver as three separate
processes on 127.0.0.1, sharing one PostgreSQL-backed instance (`deploy/dagster.yaml`).

Each process is started through a tiny launcher that resets SIGINT/SIGTERM to their defaults (a background
process inherits SIGINT as ignored and Dagster copies that disposition to SIGTERM) and execs the Dagster CLI, in
a session of its own: its pid is its process-group id, and stopping it signals that group only (the code server's
group includes the run workers it launched). Pids are kept in `<state_dir>/pids.json` for `stop`.

CLI (what `make prod` / `make prod-stop` call):
    python -m aqi_assets.lib.deploy.service start [--state-dir .prod] [--web-port 3000] [--code-port 4266]
    python -m aqi_assets.lib.deploy.service stop  [--state-dir .prod]
`start` needs the DAGSTER_PG_* variables, or `--local-postgres` for a throwaway cluster in /tmp (stopped by
`stop`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import urllib3

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PRODUCTION_INSTANCE = PROJECT_ROOT / "deploy" / "dagster.yaml"
DEV_INSTANCE = PROJECT_ROOT / ".dagster" / "dagster.yaml"  # what `make dev` runs with
CODE_MODULE = "aqi_assets.definitions"
LOCATION_NAME = "aqi_assets"
PG_ENV = ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB")
PROCESS_NAMES = ("code_server", "daemon", "webserver")

# Restore default SIGINT/SIGTERM (dispositions survive exec), then become the Dagster CLI with the same pid.
_LAUNCHER = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)

_LOCATION_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
_DAEMON_QUERY = """{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"""


class DeploymentError(RuntimeError):
    """A process did not come up; the message ends with the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cli(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_ours(pid: int, home: Path) -> bool:
    """The pid still belongs to a process of this deployment (its DAGSTER_HOME), not a recycled pid."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"DAGSTER_HOME={home}".encode() in environ


def stop_group(group: int, grace_s: float = 15.0) -> None:
    """SIGTERM the process group led by `group`, then SIGKILL what is left after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _group_alive(group) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(group, os.WNOHANG)  # reap our own child so it does not linger as a zombie
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(group, 0)


@dataclass
class Deployment:
    """Code server, daemon and webserver of one instance directory (`home`); with `dev=True` the newcomer's
    topology instead: one `dagster dev` (which runs all three itself) on the local instance of `make dev`."""

    state_dir: Path
    env: dict[str, str]
    code_port: int
    web_port: int
    host: str = "127.0.0.1"
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    dev: bool = False

    def _process_for(self, name: str) -> str:
        """The process that serves `name` ("webserver", "daemon"): under `dagster dev`, that one process."""
        return "dev" if self.dev else name

    @property
    def home(self) -> Path:
        return self.state_dir / "dagster_home"

    @property
    def workspace(self) -> Path:
        return self.state_dir / "workspace.yaml"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def prepare(self, instance_yaml: Path | None = None) -> None:
        """DAGSTER_HOME with the production instance and a workspace pointing at the gRPC code server (with
        `dev`: the local instance and the module itself, as `make dev`)."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        (self.state_dir / "compute_logs").mkdir(exist_ok=True)
        default = DEV_INSTANCE if self.dev else PRODUCTION_INSTANCE
        shutil.copyfile(instance_yaml or default, self.home / "dagster.yaml")
        if self.dev:
            self.workspace.write_text(
                "load_from:\n"
                "  - python_module:\n"
                f"      module_name: {CODE_MODULE}\n"
                f"      location_name: {LOCATION_NAME}\n"
                f"      working_directory: {PROJECT_ROOT}\n"
            )
        else:
            self.workspace.write_text(
                "load_from:\n"
                "  - grpc_server:\n"
                f"      host: {self.host}\n"
                f"      port: {self.code_port}\n"
                f"      location_name: {LOCATION_NAME}\n"
            )
        self.env.setdefault("DAGSTER_COMPUTE_LOG_DIR", str(self.state_dir / "compute_logs"))

    def _env(self) -> dict[str, str]:
        env = dict(self.env)
        env["DAGSTER_HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def argv(self, name: str) -> list[str]:
        if name == "code_server":
            return [
                _cli("dagster"),
                "code-server",
                "start",
                "-m",
                CODE_MODULE,
                "--location-name",
                LOCATION_NAME,
                "-h",
                self.host,
                "-p",
                str(self.code_port),
            ]
        if name == "daemon":
            return [_cli("dagster-daemon"), "run", "-w", str(self.workspace)]
        if name == "webserver":
            return [_cli("dagster-webserver"), "-w", str(self.workspace), "-h", self.host, "-p", str(self.web_port)]
        if name == "dev":
            return [_cli("dagster"), "dev", "-w", str(self.workspace), "-h", self.host, "-p", str(self.web_port)]
        raise ValueError(f"unknown process {name!r}")

    def start_process(self, name: str) -> subprocess.Popen:
        with open(self.log_path(name), "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, *self.argv(name)],
                cwd=PROJECT_ROOT,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        self.save_pids()
        return process

    def save_pids(self) -> None:
        pids = {name: process.pid for name, process in self.processes.items() if process.poll() is None}
        (self.state_dir / "pids.json").write_text(json.dumps({"home": str(self.home), "pids": pids}))

    def stop_process(self, name: str, *, kill: bool = False) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        if kill:  # a crash: SIGKILL the group at once
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        stop_group(process.pid)
        process.wait(timeout=5)
        self.save_pids()

    def _fail(self, name: str, message: str) -> DeploymentError:
        return DeploymentError(f"{message}\n--- last lines of {self.log_path(name)} ---\n{_tail(self.log_path(name))}")

    def _check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            raise self._fail(name, f"{name} exited with code {process.returncode}")

    def wait_code_server(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive("code_server")
            check = subprocess.run(
                [_cli("dagster"), "api", "grpc-health-check", "-h", self.host, "-p", str(self.code_port)],
                capture_output=True,
                env=self._env(),
            )
            if check.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise self._fail("code_server", f"code server not serving within {timeout_s:.0f} s")
            time.sleep(1.0)

    def graphql(self, query: str, variables: Mapping[str, object] | None = None, timeout_s: float = 30.0) -> dict:
        # A webserver busy reloading the code location answers 5xx for a moment: retried with backoff (every
        # query and mutation used here is idempotent, so POST may be retried).
        retry = urllib3.Retry(total=4, backoff_factor=1.0, status_forcelist=(500, 502, 503, 504), allowed_methods=None)
        response = urllib3.request(
            "POST",
            f"{self.url}/graphql",
            body=json.dumps({"query": query, "variables": dict(variables or {})}).encode(),
            headers={"Content-Type": "application/json"},
            timeout=timeout_s,
            retries=retry,
        )
        if response.status >= 400:
            raise DeploymentError(f"GraphQL answered HTTP {response.status}: {response.data[:300]!r}")
        answer = json.loads(response.data)
        if answer.get("errors"):
            raise DeploymentError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def wait_webserver(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive(self._process_for("webserver"))
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        entries = self.graphql(_LOCATION_QUERY)["workspaceOrError"].get("locationEntries") or []
                        loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
                        kinds = {(e["locationOrLoadError"] or {}).get("__typename") for e in loaded}
                        if loaded and kinds == {"RepositoryLocation"}:
                            return
                        if "PythonError" in kinds:
                            raise self._fail(self._process_for("webserver"), f"code location failed to load: {entries}")
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise self._fail(self._process_for("webserver"), f"webserver not ready within {timeout_s:.0f} s")
            time.sleep(0.5)

    def daemon_statuses(self) -> dict[str, bool]:
        statuses = self.graphql(_DAEMON_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {status["daemonType"]: bool(status["healthy"]) for status in statuses if status["required"]}

    def wait_daemon(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive(self._process_for("daemon"))
            statuses = self.daemon_statuses()
            if statuses and all(statuses.values()):
                return
            if time.monotonic() > deadline:
                message = f"daemon not healthy within {timeout_s:.0f} s: {statuses}"
                raise self._fail(self._process_for("daemon"), message)
            time.sleep(1.0)

    def start(self, timeout_s: float = 180.0) -> None:
        """Code server first (the others connect to it), then daemon and webserver; wait until all are ready."""
        try:
            if self.dev:
                self.start_process("dev")
            else:
                self.start_process("code_server")
                self.wait_code_server(timeout_s)
                self.start_process("daemon")
                self.start_process("webserver")
            self.wait_webserver(timeout_s)
            self.wait_daemon(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Webserver and daemon first (nothing new is launched), then the code server and its run workers."""
        for name in ("dev", "webserver", "daemon", "code_server"):
            self.stop_process(name)

    def start_sensor(self, sensor_name: str) -> str:
        """Start a sensor through the GraphQL API; returns its instigation state id (for `stop_sensor`)."""
        data = self.graphql(
            """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
                 __typename ... on Sensor { sensorState { id status } } ... on PythonError { message } } }""",
            {
                "selector": {
                    "repositoryLocationName": LOCATION_NAME,
                    "repositoryName": "__repository__",
                    "sensorName": sensor_name,
                }
            },
        )["startSensor"]
        if data["__typename"] != "Sensor" or data["sensorState"]["status"] != "RUNNING":
            raise DeploymentError(f"could not start {sensor_name}: {data}")
        return str(data["sensorState"]["id"])

    def launch_job(
        self, job_name: str, tags: Mapping[str, str] | None = None, run_config: Mapping[str, object] | None = None
    ) -> str:
        """Submit a run through the GraphQL API (it is queued, then launched by the daemon); returns its id."""
        data = self.graphql(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
                 __typename ... on LaunchRunSuccess { run { runId status } } ... on PythonError { message }
                 ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }""",
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": LOCATION_NAME,
                        "repositoryName": "__repository__",
                        "jobName": job_name,
                    },
                    "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
                    "runConfigData": dict(run_config or {}),
                }
            },
        )["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise DeploymentError(f"could not launch {job_name}: {data}")
        return str(data["run"]["runId"])

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each process group (the code server includes its gRPC child)."""
        import psutil

        totals: dict[str, int] = {}
        for name, process in self.processes.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(process.pid)
                members = [root, *root.children(recursive=True)]
                totals[name] = sum(m.memory_info().rss for m in members if m.is_running())
        return totals


def pg_env_from_cluster(port: int, role: str, password: str, database: str) -> dict[str, str]:
    return {
        "DAGSTER_PG_USERNAME": role,
        "DAGSTER_PG_PASSWORD": password,
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(port),
        "DAGSTER_PG_DB": database,
    }


def _start(args: argparse.Namespace) -> int:
    from aqi_assets.lib.deploy.postgres import PostgresCluster, make_cluster_directory

    state_dir = Path(args.state_dir).resolve()
    if (state_dir / "pids.json").exists():
        print(f"{state_dir}/pids.json exists: run `make prod-stop` first", file=sys.stderr)
        return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.local_postgres:
        port = free_port()
        password = secrets.token_urlsafe(18)
        cluster = PostgresCluster(directory=make_cluster_directory(), port=port)
        cluster.init()
        cluster.start()
        cluster.create_application_database("dagster", password, "dagster")
        (state_dir / "postgres.json").write_text(json.dumps({"directory": str(cluster.directory), "port": port}))
        env.update(pg_env_from_cluster(port, "dagster", password, "dagster"))
    missing = [name for name in PG_ENV if name not in env]
    if missing:
        print(f"set {', '.join(missing)} (or pass --local-postgres)", file=sys.stderr)
        return 1
    deployment = Deployment(state_dir=state_dir, env=env, code_port=args.code_port, web_port=args.web_port)
    deployment.prepare()
    try:
        deployment.start()  # stops whatever it started when something does not come up
    except BaseException:
        (state_dir / "pids.json").unlink(missing_ok=True)
        _stop(args)  # and the throwaway cluster, if there is one
        raise
    print(
        f"code server 127.0.0.1:{args.code_port}, daemon, webserver {deployment.url}; "
        f"logs in {state_dir}/logs; pids in {state_dir}/pids.json"
    )
    return 0


def _stop(args: argparse.Namespace) -> int:
    from aqi_assets.lib.deploy.postgres import PostgresCluster

    state_dir = Path(args.state_dir).resolve()
    pid_file = state_dir / "pids.json"
    if pid_file.exists():
        recorded = json.loads(pid_file.read_text())
        home = Path(recorded["home"])
        for name in ("webserver", "daemon", "code_server"):
            pid = recorded["pids"].get(name)
            if pid is not None and _is_ours(pid, home):
                stop_group(pid)
                print(f"stopped {name} (pid {pid})")
        pid_file.unlink()
    pg_file = state_dir / "postgres.json"
    if pg_file.exists():
        recorded = json.loads(pg_file.read_text())
        cluster = PostgresCluster(directory=Path(recorded["directory"]), port=recorded["port"])
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
        pg_file.unlink()
        print("stopped the local PostgreSQL cluster")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aqi_assets.lib.deploy.service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start code server, daemon and webserver")
    start.add_argument("--state-dir", default=".prod")
    start.add_argument("--web-port", type=int, default=3000)
    start.add_argument("--code-port", type=int, default=4266)
    start.add_argument("--local-postgres", action="store_true", help="a throwaway PostgreSQL cluster in /tmp")
    stop = commands.add_parser("stop", help="stop what `start` started, by its recorded pids")
    stop.add_argument("--state-dir", default=".prod")
    args = parser.parse_args(argv)
    return _start(args) if args.command == "start" else _stop(args)


if __name__ == "__main__":
    raise SystemExit(main())
